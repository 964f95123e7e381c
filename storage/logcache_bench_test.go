package storage

import (
	"flag"
	"fmt"
	"runtime"
	"testing"

	"raftkv/raft"
)

var heapTest = flag.Bool("logcache.heap", false, "run TestLogCacheHeap")

// BenchmarkEntries reads 64 entries of 256 bytes from the cache and from the WAL.
func BenchmarkEntries(b *testing.B) {
	dir := b.TempDir()
	s := mustOpen(b, NewOSFS(), dir, Options{ClusterID: testClusterID, LogCacheBytes: 1 << 20})
	defer s.Close()
	const total = 40000
	for i := uint64(1); i <= total; i += 1000 {
		if err := s.Save(raft.HardState{Term: 1, Commit: i}, makeEntries(i, 1000, 1, 256)); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		lo   uint64
	}{{"cached", total - 100}, {"wal", 100}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(64 * 256)
			for b.Loop() {
				ents, err := s.Entries(bc.lo, bc.lo+64, 1<<30)
				if err != nil || len(ents) != 64 {
					b.Fatalf("%d entries, %v", len(ents), err)
				}
			}
		})
	}
}

// TestLogCacheHeap appends 200 MB of entries and reports the live heap (run with -v
// and -logcache.heap; skipped otherwise, it takes seconds).
func TestLogCacheHeap(t *testing.T) {
	if !*heapTest {
		t.Skip("run with -logcache.heap")
	}
	s := mustOpen(t, NewOSFS(), t.TempDir(), Options{ClusterID: testClusterID})
	defer s.Close()
	const size, perSave = 1000, 200
	n := uint64(200 << 20 / size)
	for i := uint64(1); i <= n; i += perSave {
		if err := s.Save(raft.HardState{Term: 1, Commit: i}, makeEntries(i, perSave, 1, size)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.mu.RLock()
	fmt.Printf("appended %d entries of %d bytes: heap in use %.1f MiB, cache %d entries %.1f MiB, index %.1f MiB\n",
		n, size, float64(ms.HeapAlloc)/(1<<20), len(s.mu.cache), float64(s.mu.cachedSize)/(1<<20), float64(s.mu.log.sizeBytes())/(1<<20))
	s.mu.RUnlock()
}
