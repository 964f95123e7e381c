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

// tempSorted is a pebble store of its own in a temporary directory ($TMPDIR) that
// sorts records by key: an external sort, its memory bounded by the store's
// memtables and cache whatever the number of records. etcdChangeSort sorts an etcd
// backup's changes by key with it, WriteEtcdBackup a raftkv backup's by revision.
type tempSorted struct {
	dir   string
	what  string // what it sorts, for its errors
	db    *pebble.DB
	batch *pebble.Batch
	it    *pebble.Iterator
	// failed holds pebble's first background error (a flush that found the disk
	// full, which pebble would retry for ever): every call then fails with it.
	failed atomic.Pointer[error]
}

// tempSortedDirs are the sorts' directories that exist, and tempFiles the
// partial outputs being written (WriteEtcdBackup), for RemoveTempFiles.
var tempSortedDirs, tempFiles sync.Map

// RemoveTempFiles removes the temporary directories and partial files of etcd
// backups being read or written: for a command interrupted by a signal, which ends
// before it removes them itself.
func RemoveTempFiles() {
	for _, m := range []*sync.Map{&tempSortedDirs, &tempFiles} {
		m.Range(func(path, _ any) bool {
			_ = os.RemoveAll(path.(string))
			m.Delete(path)
			return true
		})
	}
}

const (
	// tempSortedMemTable and tempSortedCache size a sort's pebble store.
	tempSortedMemTable = 16 << 20
	tempSortedCache    = 8 << 20
	// tempSortedBatch and tempSortedBatchBytes bound one batch of records: a batch
	// much larger than the memtable is kept whole in memory until flushed (one of
	// 65,536 values of 1 KiB took the heap to 750 MB).
	tempSortedBatch      = 1 << 16
	tempSortedBatchBytes = 4 << 20
)

// newTempSorted opens a sort of what (for its errors).
func newTempSorted(what string) (*tempSorted, error) {
	dir, err := os.MkdirTemp("", "raftkv-etcd-sort-")
	if err != nil {
		return nil, fmt.Errorf("a temporary directory to sort %s (set TMPDIR to another disk?): %w", what, err)
	}
	t := &tempSorted{dir: dir, what: what}
	tempSortedDirs.Store(dir, true)
	cache := pebble.NewCache(tempSortedCache)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{DisableWAL: true, MemTableSize: tempSortedMemTable, Cache: cache, Logger: sortLogger{},
		EventListener: &pebble.EventListener{BackgroundError: func(err error) { t.failed.CompareAndSwap(nil, &err) }}})
	if err != nil {
		_ = os.RemoveAll(dir)
		tempSortedDirs.Delete(dir)
		return nil, err
	}
	t.db, t.batch = db, db.NewBatch()
	return t, nil
}

// err returns the sort's background failure, if any.
func (t *tempSorted) err() error {
	if p := t.failed.Load(); p != nil {
		return fmt.Errorf("sorting %s in %s failed (set TMPDIR to a disk with more room): %w", t.what, t.dir, *p)
	}
	return nil
}

// set records k with value v.
func (t *tempSorted) set(k, v []byte) error {
	if err := t.err(); err != nil {
		return err
	}
	if err := t.batch.Set(k, v, nil); err != nil {
		return err
	}
	if t.batch.Count() >= tempSortedBatch || t.batch.Len() >= tempSortedBatchBytes {
		return t.commit()
	}
	return nil
}

func (t *tempSorted) commit() error {
	if err := t.err(); err != nil {
		return err
	}
	if err := t.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("sorting %s in %s: %w", t.what, t.dir, err)
	}
	t.batch.Reset()
	return nil
}

// rewind commits what set left and puts t.it at the first record.
func (t *tempSorted) rewind() error {
	if t.batch.Count() > 0 {
		if err := t.commit(); err != nil {
			return err
		}
	}
	if t.it != nil {
		if err := t.it.Close(); err != nil {
			return err
		}
	}
	it, err := t.db.NewIter(nil)
	if err != nil {
		return err
	}
	t.it = it
	t.it.First()
	return nil
}

// close ends the sort and removes its directory. After a background failure the
// store is not closed (pebble's Close would wait for the flush it retries); the
// command ends soon after.
func (t *tempSorted) close() {
	if t.err() == nil {
		if t.it != nil {
			_ = t.it.Close()
		}
		_ = t.batch.Close()
		_ = t.db.Close()
	}
	if err := os.RemoveAll(t.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("removing a temporary directory", "dir", t.dir, "err", err)
	}
	tempSortedDirs.Delete(t.dir)
}

// etcdChangeSort sorts an etcd backup's changes by key, then revision: etcd keeps
// them by revision, and Import takes keys in key order. Measured on an etcd
// database of a million keys of 1 KiB (1.39 GB): a map of the keys' changes peaked
// at 452 MB of anonymous memory, this sort at 118 MB, the restore taking 11.2 and
// 13.1 s. Each change is one record: the key, escaped so that its order is kept
// (0x00 as 0x00 0xFF, ended by 0x00 0x01), then the revision (main, sub, tombstone
// mark); no value.
type etcdChangeSort struct {
	*tempSorted
	// key and revs are the group the iterator is at.
	key  []byte
	revs []etcdRev
}

func newEtcdChangeSort() (*etcdChangeSort, error) {
	t, err := newTempSorted("etcd's changes by key (about the keys' bytes plus 20 bytes per change)")
	if err != nil {
		return nil, err
	}
	return &etcdChangeSort{tempSorted: t}, nil
}

// add records one change of key.
func (s *etcdChangeSort) add(key []byte, r etcdRev) error {
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
	return s.set(k, nil)
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
