package kv

import (
	"context"
	"fmt"
)

// Sizes is how much the store takes, for Maintenance.Status's DbSize and
// DbSizeInUse (etcd reports its bbolt file there, and how much of it is in use),
// and the server's quota check.
type Sizes struct {
	// TotalBytes is the engine's disk usage (pebble's tables, including those a
	// compaction has replaced and not yet deleted, and its manifest), plus the
	// writes not yet flushed from the memtables.
	TotalBytes int64
	// InUseBytes is the engine's live tables plus the writes not yet flushed:
	// what the data takes now. Compaction's range deletes shrink it once pebble's
	// own compactions have dropped what they cover.
	InUseBytes int64
	// Keys counts the keys with a version record, deleted ones included until
	// compaction drops their history (etcd's keys_total counts the same).
	Keys int64
}

// Sizes returns how much the store takes.
func (s *Store) Sizes() Sizes {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.mu.st.e
	m := e.db.Metrics()
	total := m.Total()
	unflushed := min(e.unflushed, engineMemTables*s.cfg.MemTableBytes)
	return Sizes{
		TotalBytes: int64(m.DiskSpaceUsage()) + unflushed,
		InUseBytes: total.AggregateSize() + unflushed,
		Keys:       e.keys,
	}
}

// Defragment has pebble compact the whole key space now, so that what MVCC
// compaction dropped (range deletes) leaves the engine's tables, and Sizes falls
// to the live data: etcd's Defragment, which rewrites its file. Apply goes on
// meanwhile; it takes time in proportion to the data.
func (s *Store) Defragment() error {
	if _, err := s.Flush(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	e := s.mu.st.e
	s.reads.Add(1)
	s.mu.RUnlock()
	defer s.reads.Done()
	if err := e.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("kv: compacting the storage engine in %q: %w", e.dir, err)
	}
	return nil
}
