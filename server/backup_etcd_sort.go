package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// etcdChangeSort sorts an etcd backup's changes by key, then revision: etcd keeps
// them by revision, and Import takes keys in key order. It is an external sort
// through a pebble store of its own in a temporary directory ($TMPDIR), so its
// memory is bounded by the store's memtable and cache, whatever the number of keys
// and changes. Measured on an etcd database of a million keys of 1 KiB (1.39 GB):
// a map of the keys' changes peaked at 452 MB of anonymous memory, this sort at
// 118 MB, the restore taking 11.2 and 13.1 s. Each change is one record: the key,
// escaped so that its order is kept (0x00 as 0x00 0xFF, ended by 0x00 0x01), then
// the revision (main, sub, tombstone mark); no value.
type etcdChangeSort struct {
	dir   string
	db    *pebble.DB
	batch *pebble.Batch
	it    *pebble.Iterator
	// key and revs are the group the iterator is at.
	key  []byte
	revs []etcdRev
	// failed holds pebble's first background error (a flush that found the disk
	// full, which pebble would retry for ever): every call then fails with it.
	failed atomic.Pointer[error]
}

// etcdSortDirs are the sorts' directories that exist, for RemoveTempFiles.
var etcdSortDirs sync.Map

// RemoveTempFiles removes the temporary directories of etcd backups being read:
// for a command interrupted by a signal, which ends before it closes them.
func RemoveTempFiles() {
	etcdSortDirs.Range(func(dir, _ any) bool {
		_ = os.RemoveAll(dir.(string))
		etcdSortDirs.Delete(dir)
		return true
	})
}

// err returns the sort's background failure, if any.
func (s *etcdChangeSort) err() error {
	if p := s.failed.Load(); p != nil {
		return fmt.Errorf("sorting etcd's changes by key in %s failed (set TMPDIR to a disk with room for "+
			"about the keys' bytes plus 20 bytes per change): %w", s.dir, *p)
	}
	return nil
}

const (
	// etcdSortMemTable and etcdSortCache size the sort's pebble store.
	etcdSortMemTable = 16 << 20
	etcdSortCache    = 8 << 20
	// etcdSortBatch is how many changes go to the store in one batch.
	etcdSortBatch = 1 << 16
)

func newEtcdChangeSort() (*etcdChangeSort, error) {
	dir, err := os.MkdirTemp("", "raftkv-etcd-sort-")
	if err != nil {
		return nil, fmt.Errorf("a temporary directory to sort etcd's changes by key (set TMPDIR to another disk?): %w", err)
	}
	s := &etcdChangeSort{dir: dir}
	etcdSortDirs.Store(dir, true)
	cache := pebble.NewCache(etcdSortCache)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{DisableWAL: true, MemTableSize: etcdSortMemTable, Cache: cache, Logger: sortLogger{},
		EventListener: &pebble.EventListener{BackgroundError: func(err error) { s.failed.CompareAndSwap(nil, &err) }}})
	if err != nil {
		_ = os.RemoveAll(dir)
		etcdSortDirs.Delete(dir)
		return nil, err
	}
	s.db, s.batch = db, db.NewBatch()
	return s, nil
}

// add records one change of key.
func (s *etcdChangeSort) add(key []byte, r etcdRev) error {
	if err := s.err(); err != nil {
		return err
	}
	k := make([]byte, 0, len(key)+2+13)
	for _, b := range key {
		if b == 0 {
			k = append(k, 0, 0xFF)
		} else {
			k = append(k, b)
		}
	}
	k = append(k, 0, 1)
	k = binary.BigEndian.AppendUint64(k, uint64(r.main))
	k = binary.BigEndian.AppendUint32(k, r.sub)
	if r.tombstone {
		k = append(k, 1)
	} else {
		k = append(k, 0)
	}
	if err := s.batch.Set(k, nil, nil); err != nil {
		return err
	}
	if s.batch.Count() >= etcdSortBatch {
		return s.commit()
	}
	return nil
}

func (s *etcdChangeSort) commit() error {
	if err := s.err(); err != nil {
		return err
	}
	if err := s.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("sorting etcd's changes in %s: %w", s.dir, err)
	}
	s.batch.Reset()
	return nil
}

// rewind commits what add left and goes back to the first key.
func (s *etcdChangeSort) rewind() error {
	if s.batch.Count() > 0 {
		if err := s.commit(); err != nil {
			return err
		}
	}
	if s.it != nil {
		if err := s.it.Close(); err != nil {
			return err
		}
	}
	it, err := s.db.NewIter(nil)
	if err != nil {
		return err
	}
	s.it = it
	s.it.First()
	return nil
}

// next returns the next key and its changes, in revision order; ok is false at the
// end. Both are valid until the next call.
func (s *etcdChangeSort) next() (key []byte, revs []etcdRev, ok bool, err error) {
	if err := s.err(); err != nil {
		return nil, nil, false, err
	}
	s.key, s.revs = s.key[:0], s.revs[:0]
	var prefix []byte
	for ; s.it.Valid(); s.it.Next() {
		k := s.it.Key()
		end := terminatorAt(k)
		if end < 0 || len(k)-end-2 != 13 {
			return nil, nil, false, fmt.Errorf("sorting etcd's changes: record %x is malformed", k)
		}
		if prefix == nil {
			prefix = append([]byte(nil), k[:end+2]...)
			for i := 0; i < end; i++ {
				s.key = append(s.key, k[i])
				if k[i] == 0 {
					i++ // 0x00 0xFF
				}
			}
		} else if !bytes.Equal(k[:end+2], prefix) {
			break
		}
		rest := k[end+2:]
		s.revs = append(s.revs, etcdRev{main: int64(binary.BigEndian.Uint64(rest)), sub: binary.BigEndian.Uint32(rest[8:]), tombstone: rest[12] == 1})
	}
	if err := s.it.Error(); err != nil {
		return nil, nil, false, err
	}
	if prefix == nil {
		return nil, nil, false, nil
	}
	return s.key, s.revs, true, nil
}

// terminatorAt returns where the escaped key of record k ends (its 0x00 0x01), or
// -1.
func terminatorAt(k []byte) int {
	for i := 0; i+1 < len(k); i++ {
		if k[i] != 0 {
			continue
		}
		if k[i+1] == 1 {
			return i
		}
		i++ // 0x00 0xFF
	}
	return -1
}

// close ends the sort and removes its directory. After a background failure the
// store is not closed (pebble's Close would wait for the flush it retries); the
// command ends soon after.
func (s *etcdChangeSort) close() {
	if s.err() == nil {
		if s.it != nil {
			_ = s.it.Close()
		}
		_ = s.batch.Close()
		_ = s.db.Close()
	}
	if err := os.RemoveAll(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("removing the directory that sorted etcd's changes", "dir", s.dir, "err", err)
	}
	etcdSortDirs.Delete(s.dir)
}

// sortLogger keeps pebble's informational lines out of the command's output.
type sortLogger struct{}

func (sortLogger) Infof(string, ...any) {}
func (sortLogger) Errorf(format string, args ...any) {
	slog.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (sortLogger) Fatalf(format string, args ...any) {
	panic(sortFatal("pebble: " + fmt.Sprintf(format, args...)))
}

// sortFatal is the panic of a fatal error in the sort's store, which
// recoverDamagedEtcd does not take for damage in the etcd database.
type sortFatal string
