package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"raftkv/storage"
	"raftkv/version"
)

// snapshotChunkBytes is the blob size of a Snapshot stream's messages, etcd's.
const snapshotChunkBytes = 32 * 1024

// The bounds on what Maintenance.Snapshot holds on disk. Variables, so that tests
// can shorten them.
var (
	// backupSpoolSlots is how many Snapshot calls may hold a copy of the store
	// (a spool file) at once; later callers wait for a slot until their context
	// ends. Waiting, not refusing: two backup jobs that happen to overlap (cron)
	// both succeed, and a waiting caller holds no disk, no view of the store,
	// only its goroutine; its own deadline (etcdctl's --command-timeout) says how
	// long it is willing to wait, and the error then says why it waited.
	backupSpoolSlots = 2
	// backupSendStall ends a Snapshot stream whose client has taken nothing for
	// this long (one Send blocked, its flow-control window full): a client that
	// stopped reading must not hold a slot and its copy of the store forever.
	// Generous, for a client on a slow link or one whose disk is busy.
	backupSendStall = 3 * time.Minute
	// backupSpoolReserve is the free space a spool leaves on the data dir's file
	// system, for the WAL's next segments (64 MiB each, when the WAL shares it)
	// and the store's flushes: a full disk stops the member. On a file system
	// smaller than 1 GiB it is an eighth of its size (spoolReserve), as the WAL's
	// preallocation shrinks with the free space, so that a small volume can still
	// hold a backup.
	backupSpoolReserve int64 = 128 << 20
	// backupSpoolCheckBytes is how often, in bytes written, a spool checks the
	// free space again (other writers use it too).
	backupSpoolCheckBytes int64 = 16 << 20
	// diskUsage reads the size and free space of the file system holding dir.
	diskUsage = func(dir string) (storage.DiskUsage, error) { return storage.NewOSFS().Usage(dir) }
)

// spoolSlots is a counting semaphore of backupSpoolSlots slots; its zero value
// is ready.
type spoolSlots struct {
	once  sync.Once
	slots chan struct{}
}

func (p *spoolSlots) init() {
	p.once.Do(func() { p.slots = make(chan struct{}, max(backupSpoolSlots, 1)) })
}

// acquire takes a slot, waiting until ctx ends; the error is the call's answer.
func (p *spoolSlots) acquire(ctx context.Context) error {
	p.init()
	select {
	case p.slots <- struct{}{}:
		return nil
	default:
	}
	// Give up a little before the caller's deadline, so that it gets this
	// answer, not only its own "context deadline exceeded".
	wait := ctx
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, d.Add(-min(time.Until(d)/10, time.Second)))
		defer cancel()
	}
	started := time.Now()
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-wait.Done():
		what := fmt.Sprintf("waited %v for one of the %d snapshot slots, which other Snapshot calls hold "+
			"(each keeps a copy of the store on disk until its client has read it); retry once they are done",
			time.Since(started).Round(time.Millisecond), cap(p.slots))
		if errors.Is(wait.Err(), context.DeadlineExceeded) {
			return status.Error(codes.DeadlineExceeded, "etcdserver: request timed out: "+what)
		}
		return status.Error(codes.Canceled, "etcdserver: request canceled: "+what)
	}
}

func (p *spoolSlots) release() { <-p.slots }

// Snapshot streams a backup of the store (backup.go), so `etcdctl snapshot save`
// works: the backup's body in chunks, then, as etcd does, a last message holding
// its SHA-256. The backup is first written from one frozen view of the store to a
// spool file in the member's data dir (unlinked at once, so a crash leaves nothing),
// and the view released: the store holds off compaction and Raft snapshots while a
// view is out, and a slow client must not hold them off for the length of a
// download. Memory stays bounded by one chunk and one key's history. The disk holds
// one backup per stream in flight, so at most backupSpoolSlots streams spool at
// once (the others wait for a slot), a spool that would leave less than
// backupSpoolReserve free on the data dir's file system is refused
// (ResourceExhausted, naming the bytes needed and available), and a stream whose
// client takes nothing for backupSendStall is ended, releasing its slot and file.
// Root only under auth, as etcd.
func (m *maintenanceService) Snapshot(r *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	ctx := stream.Context()
	s := m.s
	if err := s.requireAdmin(ctx); err != nil {
		return err
	}
	if err := s.backupSpools.acquire(ctx); err != nil {
		return err
	}
	spool, size, rev, started, err := s.spoolBackup(ctx)
	if err != nil {
		s.backupSpools.release()
		return err
	}
	// The sending runs on a goroutine of its own, which owns the spool and the
	// slot: a Send that blocks (the client reads nothing) can be ended only by
	// ending the stream, which this handler does by returning; the stream's end
	// then fails that Send, and the goroutine closes the file and frees the slot.
	progress := make(chan struct{}, 1)
	done := make(chan error, 1)
	s.goTracked(func() {
		err := sendSpool(stream, spool, size, progress)
		_ = spool.Close()
		s.backupSpools.release()
		done <- err
	})
	stall := time.NewTimer(backupSendStall)
	defer stall.Stop()
	for {
		select {
		case err := <-done:
			if err == nil {
				s.logger.Info("sent a backup", "revision", rev, "bytes", size, "took", time.Since(started))
			}
			return err
		case <-progress:
			stall.Reset(backupSendStall)
		case <-stall.C:
			s.logger.Warn("ending a Snapshot stream whose client has taken nothing for a while, to free its copy of the store",
				"revision", rev, "bytes", size, "stalled_for", backupSendStall)
			return status.Errorf(codes.DeadlineExceeded,
				"etcdserver: snapshot stream ended: the client took none of it for %v", backupSendStall)
		}
	}
}

// spoolBackup writes a backup of the store to an unlinked spool file in the member
// dir, checking first, and as it writes, that the file system keeps
// backupSpoolReserve free. It returns the file (at its start), its size and
// revision, and when the spooling started.
func (s *Server) spoolBackup(ctx context.Context) (spool *os.File, size, rev int64, started time.Time, err error) {
	dir := filepath.Join(s.cfg.DataDir, "member")
	// The backup is the store's records, about what the store counts in use.
	need := s.sm.store.InUseBytes() + backupAlign + 32
	if u, err := diskUsage(dir); err != nil {
		s.logger.Warn("reading the data dir's free space failed; spooling the backup unchecked", "dir", dir, "err", err)
	} else if u.Free-spoolReserve(u) < need {
		return nil, 0, 0, started, spoolNoSpace(dir, need, spoolReserve(u), u.Free)
	}
	f, err := os.CreateTemp(dir, "backup-*.spool")
	if err != nil {
		return nil, 0, 0, started, toGRPC(err)
	}
	_ = os.Remove(f.Name())
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	view, err := s.storeView(ctx)
	if err != nil {
		return nil, 0, 0, started, toGRPC(err)
	}
	started = time.Now()
	g := &spaceGuard{w: f, dir: dir, need: need, next: backupSpoolCheckBytes}
	size, err = writeBackup(g, view)
	rev = view.Revision()
	view.Release()
	if err != nil {
		var ns *errSpoolNoSpace
		if errors.As(err, &ns) {
			return nil, 0, 0, started, ns.grpc
		}
		if errors.Is(err, syscall.ENOSPC) {
			free := int64(0)
			if u, uerr := diskUsage(dir); uerr == nil {
				free = u.Free
			}
			return nil, 0, 0, started, spoolNoSpace(dir, max(need, g.written), 0, free)
		}
		return nil, 0, 0, started, toGRPC(err)
	}
	s.logger.Info("sending a backup", "revision", rev, "bytes", size, "spooled_in", time.Since(started))
	if _, err = f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, 0, started, toGRPC(err)
	}
	return f, size, rev, started, nil
}

// spoolReserve is the free space a spool leaves on the file system u describes:
// backupSpoolReserve, or an eighth of a file system smaller than eight times it.
func spoolReserve(u storage.DiskUsage) int64 {
	if u.Total > 0 {
		return min(backupSpoolReserve, u.Total/8)
	}
	return backupSpoolReserve
}

// spoolNoSpace is the answer to a Snapshot whose copy of the store does not fit.
func spoolNoSpace(dir string, need, reserve, free int64) error {
	return status.Errorf(codes.ResourceExhausted,
		"etcdserver: no space for the snapshot: its copy of the store needs about %d bytes in %s, "+
			"and %d more are kept free for the WAL and the store, but the file system has %d available; "+
			"free space there, or take the snapshot from another member",
		need, dir, reserve, free)
}

// errSpoolNoSpace is a spool stopped as the file system ran short.
type errSpoolNoSpace struct{ grpc error }

func (e *errSpoolNoSpace) Error() string { return e.grpc.Error() }

// spaceGuard writes to w, and checks every backupSpoolCheckBytes that the file
// system keeps backupSpoolReserve free: the estimate may be short, and other
// writers (the WAL, the store, other spools) use the disk too.
type spaceGuard struct {
	w             io.Writer
	dir           string
	need, written int64
	next          int64
}

func (g *spaceGuard) Write(p []byte) (int, error) {
	if g.written+int64(len(p)) >= g.next {
		g.next = g.written + int64(len(p)) + backupSpoolCheckBytes
		if u, err := diskUsage(g.dir); err == nil && u.Free-int64(len(p)) < spoolReserve(u) {
			return 0, &errSpoolNoSpace{grpc: spoolNoSpace(g.dir, max(g.need, g.written+int64(len(p))), spoolReserve(u), u.Free)}
		}
	}
	n, err := g.w.Write(p)
	g.written += int64(n)
	return n, err
}

// sendSpool sends the spooled backup of size bytes in chunks, telling progress
// after each Send.
func sendSpool(stream pb.Maintenance_SnapshotServer, spool io.Reader, size int64, progress chan<- struct{}) error {
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
		select {
		case progress <- struct{}{}:
		default:
		}
	}
	return nil
}
