package server

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/version"
)

// snapshotChunkBytes is the blob size of a Snapshot stream's messages, etcd's.
const snapshotChunkBytes = 32 * 1024

// Snapshot streams a backup of the store (backup.go), so `etcdctl snapshot save`
// works: the backup's body in chunks, then, as etcd does, a last message holding
// its SHA-256. The backup is first written from one frozen view of the store to a
// spool file in the member's data dir (unlinked at once, so a crash leaves nothing),
// and the view released: the store holds off compaction and Raft snapshots while a
// view is out, and a slow client must not hold them off for the length of a
// download. Memory stays bounded by one chunk and one key's history; the disk holds
// one backup per stream in flight. Root only under auth, as etcd.
func (m *maintenanceService) Snapshot(r *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	ctx := stream.Context()
	s := m.s
	if err := s.requireAdmin(ctx); err != nil {
		return err
	}
	spool, err := os.CreateTemp(filepath.Join(s.cfg.DataDir, "member"), "backup-*.spool")
	if err != nil {
		return toGRPC(err)
	}
	_ = os.Remove(spool.Name())
	defer spool.Close()
	view, err := s.storeView(ctx)
	if err != nil {
		return toGRPC(err)
	}
	started := time.Now()
	size, err := writeBackup(spool, view)
	rev := view.Revision()
	view.Release()
	if err != nil {
		return toGRPC(err)
	}
	s.logger.Info("sending a backup", "revision", rev, "bytes", size, "spooled_in", time.Since(started))
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return toGRPC(err)
	}
	storageVer := storageVersion(version.APIVersion)
	body := size - 32 // the sha256 trailer goes in a message of its own, as etcd's
	var sent int64
	for sent < size {
		n := int64(snapshotChunkBytes)
		if sent < body {
			n = min(n, body-sent)
		} else {
			n = size - sent
		}
		buf := make([]byte, n) // Send may keep buf until the message is out
		if _, err := io.ReadFull(spool, buf); err != nil {
			return toGRPC(errors.Join(errors.New("reading the backup spool"), err))
		}
		sent += n
		remaining := uint64(max(body-sent, 0))
		// No header, as etcd's.
		if err := stream.Send(&pb.SnapshotResponse{RemainingBytes: remaining, Blob: buf,
			Version: storageVer}); err != nil {
			return err
		}
	}
	s.logger.Info("sent a backup", "revision", rev, "bytes", size, "took", time.Since(started))
	return nil
}
