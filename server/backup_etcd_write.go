package server

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"google.golang.org/protobuf/proto"

	"raftkv/internal/durable"
	"raftkv/kv"
)

// The way back to etcd: WriteEtcdBackup writes a raftkv backup as etcd's database
// (backup_etcd.go has the schema), with a SHA-256 trailer, the file etcdctl
// snapshot save writes against etcd, which etcdutl snapshot restore takes. The
// keys' histories go to etcd's key bucket by revision, the compaction revision to
// its meta bucket (finished, so etcd's start has nothing to resume), with
// storageVersion 3.6 (etcd 3.6 and 3.7 read it; etcdutl adds the consistent
// index and the membership); the leases and the auth state to their buckets.

// etcdWriteBatch and etcdWriteBatchChanges bound one bbolt transaction of
// WriteEtcdBackup: its changes' bytes, and their number (etcd's own batch limit).
const (
	etcdWriteBatch        = 16 << 20
	etcdWriteBatchChanges = 10000
)

// etcdStorageVersion is the storage version WriteEtcdBackup records: the first
// that has one (etcd 3.6), which later versions migrate from.
const etcdStorageVersion = "3.6.0"

// WriteEtcdBackup reads the raftkv backup at src (checking its checksum unless
// skipHashCheck) and writes it to dst, which must not exist, as an etcd backup.
// It writes dst.partial first and renames it to dst once whole and synced, so a
// dst is never a part of one; on an error the partial file it created is removed
// (one that was there before, another run's, is left alone).
func WriteEtcdBackup(src, dst string, skipHashCheck bool) (info BackupInfo, err error) {
	c, br, err := openBackup(src, skipHashCheck, "convert")
	if err != nil {
		return info, err
	}
	defer c.Close()
	switch {
	case br.info.Format != "raftkv":
		return info, fmt.Errorf("%s: an etcd backup already", src)
	case br.info.Version == backupVersionNoSubs:
		// etcd keys each change by its place in its revision, which these lack.
		return info, fmt.Errorf("%s: a backup of format %d, which does not keep the order of a revision's changes; "+
			"take a new backup with this raftkv", src, backupVersionNoSubs)
	}
	switch _, err := os.Lstat(dst); {
	case err == nil:
		return info, fmt.Errorf("%s exists: give a new file", dst)
	case !errors.Is(err, os.ErrNotExist):
		return info, err
	}
	partial := dst + ".partial"
	// O_EXCL: a partial file left by a crashed run, or another run's, is not
	// written over, nor removed (it may be another conversion's, running): the
	// error names it. Only a file this call created is removed on an error.
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return info, fmt.Errorf("%w (remove it if no conversion is running)", err)
	}
	tempFiles.Store(partial, true)
	defer func() {
		if err != nil {
			_ = os.Remove(partial)
		}
		tempFiles.Delete(partial)
	}()
	defer func() {
		// A fatal error of a sort's store (sortLogger) is an error here too, so
		// that the partial file goes.
		if r := recover(); r != nil {
			err = fmt.Errorf("writing %s: %v", dst, r)
		}
	}()
	if err := f.Close(); err != nil {
		return info, err
	}
	db, err := bbolt.Open(partial, 0o600, &bbolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		return info, err
	}
	if err := writeEtcdState(db, br); err != nil {
		_ = db.Close()
		return info, fmt.Errorf("%s: %w", src, err)
	}
	if err := db.Close(); err != nil {
		return info, err
	}
	if err := appendSHA256(partial); err != nil {
		return info, err
	}
	// A link, not a rename: it fails if dst was made meanwhile.
	if err := os.Link(partial, dst); err != nil {
		return info, err
	}
	if err := os.Remove(partial); err != nil {
		return info, err
	}
	return br.info, durable.SyncDir(filepath.Dir(dst))
}

// writeEtcdState writes br's state into db in etcd's schema.
func writeEtcdState(db *bbolt.DB, br *backupReader) error {
	info := br.info
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range []string{"key", "meta", "lease", "alarm", "cluster", "members", "members_removed", "auth", "authUsers", "authRoles"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Put([]byte("storageVersion"), []byte(etcdStorageVersion)); err != nil {
			return err
		}
		if info.CompactRevision > 0 {
			rev := etcdRev{main: info.CompactRevision}.bucketKey()
			if err := meta.Put([]byte("finishedCompactRev"), rev); err != nil {
				return err
			}
			if err := meta.Put([]byte("scheduledCompactRev"), rev); err != nil {
				return err
			}
		}
		leases := tx.Bucket([]byte("lease"))
		for _, l := range info.Leases {
			v, err := proto.Marshal(&leasepb.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.RemainingTTL})
			if err != nil {
				return err
			}
			if err := leases.Put(binary.BigEndian.AppendUint64(nil, uint64(l.ID)), v); err != nil {
				return err
			}
		}
		return writeEtcdAuth(tx, info.AuthState)
	})
	if err != nil {
		return err
	}
	// The histories come by key; etcd keeps them by revision. They are sorted by
	// revision outside memory first (tempSorted), then appended to the key bucket
	// in order, its pages filled.
	sorted, err := newTempSorted("the backup's changes by revision (about the backup's size)")
	if err != nil {
		return err
	}
	defer sorted.close()
	add := func(r etcdRev, kv *mvccpb.KeyValue) error {
		rec, err := proto.Marshal(kv)
		if err != nil {
			return err
		}
		return sorted.set(r.bucketKey(), rec)
	}
	for {
		h, err := br.nextKey()
		if err != nil {
			return err
		}
		if h == nil {
			break
		}
		for _, g := range h.Generations {
			version := g.FirstVersion
			for _, r := range g.Revisions {
				rec := &mvccpb.KeyValue{Key: h.Key, CreateRevision: g.CreateRevision, ModRevision: r.ModRevision,
					Version: version, Value: r.Value, Lease: r.Lease}
				if err := add(etcdRev{main: r.ModRevision, sub: r.Sub}, rec); err != nil {
					return err
				}
				version++
			}
			if g.TombstoneRevision != 0 {
				if err := add(etcdRev{main: g.TombstoneRevision, sub: g.TombstoneSub, tombstone: true}, &mvccpb.KeyValue{Key: h.Key}); err != nil {
					return err
				}
			}
		}
	}
	// The deletes at the compaction revision, which etcd keeps too.
	for {
		d, err := br.nextDelete()
		if err != nil {
			return err
		}
		if d == nil {
			break
		}
		if err := add(etcdRev{main: br.info.CompactRevision, sub: d.Sub, tombstone: true}, &mvccpb.KeyValue{Key: d.Key}); err != nil {
			return err
		}
	}
	if err := sorted.rewind(); err != nil {
		return err
	}
	// In transactions of at most etcdWriteBatch bytes and etcdWriteBatchChanges
	// changes.
	for sorted.it.Valid() {
		err := db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("key"))
			b.FillPercent = 1 // appended in order, and etcd only appends to this bucket
			for n, size := 0, 0; sorted.it.Valid() && n < etcdWriteBatchChanges && size < etcdWriteBatch; sorted.it.Next() {
				v, err := sorted.it.ValueAndErr()
				if err != nil {
					return err
				}
				if err := b.Put(slices.Clone(sorted.it.Key()), slices.Clone(v)); err != nil {
					return err
				}
				n, size = n+1, size+len(v)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := sorted.it.Error(); err != nil {
		return err
	}
	return sorted.err()
}

// writeEtcdAuth writes the store's auth state into etcd's auth buckets.
func writeEtcdAuth(tx *bbolt.Tx, state []byte) error {
	a, err := kv.DecodeAuthState(state)
	if err != nil {
		return err
	}
	auth := tx.Bucket([]byte("auth"))
	enabled := []byte{0}
	if a.Enabled {
		enabled = []byte{1}
	}
	if err := auth.Put([]byte("authEnabled"), enabled); err != nil {
		return err
	}
	// 8 bytes, big-endian, as etcd's UnsafeSaveAuthRevision.
	if err := auth.Put([]byte("authRevision"), binary.BigEndian.AppendUint64(nil, a.Revision)); err != nil {
		return err
	}
	users, roles := tx.Bucket([]byte("authUsers")), tx.Bucket([]byte("authRoles"))
	for _, u := range a.Users {
		v, err := proto.Marshal(&authpb.User{Name: []byte(u.Name), Password: u.PasswordHash, Roles: u.Roles,
			Options: &authpb.UserAddOptions{NoPassword: u.NoPassword}})
		if err != nil {
			return err
		}
		if err := users.Put([]byte(u.Name), v); err != nil {
			return err
		}
	}
	for _, r := range a.Roles {
		role := &authpb.Role{Name: []byte(r.Name)}
		for _, p := range r.Perms {
			role.KeyPermission = append(role.KeyPermission, &authpb.Permission{PermType: authpb.Permission_Type(p.Type), Key: p.Key, RangeEnd: p.RangeEnd})
		}
		v, err := proto.Marshal(role)
		if err != nil {
			return err
		}
		if err := roles.Put([]byte(r.Name), v); err != nil {
			return err
		}
	}
	return nil
}

// appendSHA256 appends the SHA-256 of the file at path to it, and syncs the file
// whole: the trailer etcdctl snapshot save writes and etcdutl snapshot restore
// checks.
func appendSHA256(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
