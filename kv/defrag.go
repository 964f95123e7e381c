package kv

import (
	"context"
	"fmt"
)

// Defragment returns to the file system, now, the space that MVCC compaction freed:
// it flushes the engine and has pebble compact its whole key space, which drops
// what compaction's range deletes cover (otherwise that happens when pebble's own
// compactions reach those files). It is etcd's defragment, which rewrites its bbolt
// file, and like it, it holds up Apply (not reads) while it runs: the store's size
// after it is that of the live data, which the space quota then sees.
func (s *Store) Defragment(ctx context.Context) error {
	if _, err := s.Flush(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return ErrClosed
	}
	e := s.mu.st.e
	if err := e.db.Compact(ctx, []byte{0}, []byte{0xff, 0xff}, true); err != nil {
		return fmt.Errorf("kv: compacting the storage engine in %q: %w", e.dir, err)
	}
	return nil
}
