package kv

import (
	"context"
	"fmt"
)

// Sizes is how much the store takes, for Maintenance.Status's DbSize and
// DbSizeInUse (etcd reports its bbolt file there, and how much of it is in use),
// and the server's quota check.
type Sizes struct {
	// TotalBytes is the size of the engine's live tables (what compaction dropped
	// included, until pebble's own compactions reclaim it, or Defragment), plus
	// the writes not yet flushed from the memtables; at least InUseBytes.
	TotalBytes int64
	// InUseBytes is the bytes of the retained version records (keys, values),
	// separated values' records and history records, uncompressed: what the data is, counted as it is written
	// and as compaction drops it, whatever pebble has reclaimed yet (etcd's in-use
	// bytes fall at compaction too).
	InUseBytes int64
	// Keys counts the keys with a version record, deleted ones included until
	// compaction drops their history (etcd's keys_total counts the same).
	Keys int64
}

// InUseBytes is Sizes().InUseBytes without the rest: the quota check of every
// write needs only it, and Sizes asks pebble for its metrics, which cost a
// sixth of a leader's CPU under put-1000c when every put asked.
func (s *Store) InUseBytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.e.live
}

// Sizes returns how much the store takes.
func (s *Store) Sizes() Sizes {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.mu.st.e
	unflushed := min(e.unflushed, engineMemTables*s.cfg.MemTableBytes)
	m := e.db.Metrics()
	levels := m.Total()
	total := levels.AggregateSize() + unflushed
	return Sizes{TotalBytes: max(total, e.live), InUseBytes: e.live, Keys: e.keys}
}

// Defragment has pebble compact the whole key space now, so that what MVCC
// compaction dropped (its deletions) leaves the engine's tables, and
// Sizes.TotalBytes falls to about the live data: etcd's Defragment, which
// rewrites its file. Apply goes on
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
