package storage

import (
	"sync"
	"testing"
	"time"

	"raftkv/raft"
)

// OnWALFlush hears of every flush that made a Save durable, with the bytes it wrote
// (at least the entries' data) and non-negative durations.
func TestOnWALFlushReportsEachFlush(t *testing.T) {
	opts, _ := testOptions(t, 1<<20)
	var mu sync.Mutex
	var flushes, written int
	opts.OnWALFlush = func(n int, write, fsync time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if write < 0 || fsync < 0 {
			t.Errorf("OnWALFlush(%d, %v, %v): negative duration", n, write, fsync)
		}
		flushes++
		written += n
	}
	s := mustOpen(t, NewMemFS(), "/d", opts)
	defer s.Close()
	const saves, entryBytes = 5, 100
	for i := range saves {
		index := uint64(i + 1)
		if err := s.Save(raft.HardState{Term: 1, Commit: index}, makeEntries(index, 1, 1, entryBytes)); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if flushes < saves {
		t.Errorf("%d Saves, each waiting for its write, made %d flushes reported; want at least %d", saves, flushes, saves)
	}
	if written < saves*entryBytes {
		t.Errorf("flushes reported %d bytes written; the entries alone are %d", written, saves*entryBytes)
	}
}
