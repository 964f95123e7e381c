package storage

import (
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"raftkv/raft"
)

// Issue 13: Open's memory must be set by the configuration, not by the log's size.
// These build a log of ~100 MiB of ~100 KiB entries (below a snapshot count of
// 10,000, so all of it is the log after the snapshot) on the real disk, reopen it,
// and measure the live heap after Open.

const (
	bigLogBytes   = 100 << 20
	bigEntryBytes = 100 << 10
)

// buildBigEntryWAL writes entries of entryBytes until the log holds size bytes of
// entry data, a few entries per Save, and returns the last index.
func buildBigEntryWAL(tb testing.TB, dir string, opts Options, size int64, entryBytes int) uint64 {
	tb.Helper()
	s, err := Open(NewOSFS(), dir, opts)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	next := uint64(1)
	for written := int64(0); written < size; {
		ents := make([]raft.Entry, 8)
		for i := range ents {
			data := make([]byte, entryBytes)
			for j := 0; j < len(data); j += 512 {
				data[j] = byte(next) // distinct entries, mostly compressible zeros
			}
			ents[i] = raft.Entry{Term: 1 + next/500, Index: next, Data: data}
			written += int64(entryBytes)
			next++
		}
		if err := s.Save(raft.HardState{Term: 1 + (next-1)/500, Vote: 1, Commit: next - 1}, ents); err != nil {
			tb.Fatal(err)
		}
	}
	return next - 1
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// openMeasured opens dir and returns the Storage, the peak of the heap during Open
// and the live heap it keeps after it (both as growth over the live heap before),
// and how long Open took. The peak is sampled with the collector running almost
// continuously (GOGC=5), so that it is close to the live heap: at the default GOGC it
// would measure the collector's pacing too.
func openMeasured(tb testing.TB, dir string, opts Options) (s *Storage, peak, kept int64, took time.Duration) {
	tb.Helper()
	before := liveHeap()
	old := debug.SetGCPercent(5)
	defer debug.SetGCPercent(old)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var top uint64
	wg.Go(func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(sample)
			top = max(top, sample[0].Value.Uint64())
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	})
	start := time.Now()
	s, err := Open(NewOSFS(), dir, opts)
	took = time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		tb.Fatal(err)
	}
	return s, int64(top) - int64(before), int64(liveHeap()) - int64(before), took
}

// maxOpenHeapGrowth bounds the live heap Open may keep for a 100 MiB log: the
// log cache (DefaultLogCacheBytes), the offset index and slack. The whole log in
// memory (as before issue 13) is over 100 MiB.
const maxOpenHeapGrowth = 32 << 20

func TestOpenHeapBoundedByConfigNotLogSize(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100 MiB to disk")
	}
	dir := filepath.Join(t.TempDir(), "data")
	opts := Options{ClusterID: testClusterID}
	last := buildBigEntryWAL(t, dir, opts, bigLogBytes, bigEntryBytes)
	s, grown, kept, took := openMeasured(t, dir, opts)
	defer s.Close()
	t.Logf("%d entries of %d KiB (%d MiB): heap during Open peaks at +%.1f MiB, keeps +%.1f MiB; Open %v",
		last, bigEntryBytes>>10, bigLogBytes>>20, float64(grown)/(1<<20), float64(kept)/(1<<20), took)
	if got, _ := s.LastIndex(); got != last {
		t.Fatalf("LastIndex %d, want %d", got, last)
	}
	if grown > maxOpenHeapGrowth {
		t.Fatalf("Open of a %d MiB log takes the heap to +%.1f MiB, want at most %d MiB",
			bigLogBytes>>20, float64(grown)/(1<<20), maxOpenHeapGrowth>>20)
	}
	// Every entry still reads back, from the first (on disk) to the last (cached).
	first, _ := s.FirstIndex()
	for lo := first; lo <= last; {
		ents, err := s.Entries(lo, last+1, 8<<20)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range ents {
			if e.Index != lo+uint64(i) || len(e.Data) != bigEntryBytes || e.Data[0] != byte(e.Index) || e.Term != 1+e.Index/500 {
				t.Fatalf("entry %d read back as index %d, term %d, %d bytes", lo+uint64(i), e.Index, e.Term, len(e.Data))
			}
		}
		lo += uint64(len(ents))
	}
}

// BenchmarkOpenBigEntries reports the peak heap during Open and the live heap after Open of a 100 MiB log of
// 100 KiB entries, and the time Open takes.
func BenchmarkOpenBigEntries(b *testing.B) {
	dir := filepath.Join(benchDirFor(b), "data")
	opts := Options{ClusterID: testClusterID}
	buildBigEntryWAL(b, dir, opts, bigLogBytes, bigEntryBytes)
	var peak, kept int64
	var took time.Duration
	for b.Loop() {
		s, p, k, t := openMeasured(b, dir, opts)
		peak, kept, took = max(peak, p), max(kept, k), took+t
		s.Close()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(kept)/(1<<20), "kept-heap-MiB")
	b.ReportMetric(took.Seconds()*1e3/float64(b.N), "open-ms")
}

// TestRecoveryStreamsRecordsLargerThanItsWindow writes batch records larger than the
// window recovery streams segments through (readChunk), across several segments, and
// checks that they all read back after a restart; then damages the payload of the
// very last one, which recovery must cut off as a torn write, keeping the rest.
func TestRecoveryStreamsRecordsLargerThanItsWindow(t *testing.T) {
	disk := NewMemFS()
	opts, logs := testOptions(t, 16<<20)
	opts.LogCacheBytes = 1 << 20 // most entries read back from the WAL
	s := mustOpen(t, disk, "/data", opts)
	var want []raft.Entry
	next := uint64(1)
	for len(want) < 10*52 {
		// Two entries of 1.5 MiB (a 3 MiB record), then a batch of small ones.
		for _, n := range []struct{ count, size int }{{2, 3 << 19}, {50, 100}} {
			ents := makeEntries(next, n.count, 1, n.size)
			if err := s.Save(raft.HardState{Term: 1, Commit: next + uint64(n.count) - 1}, ents); err != nil {
				t.Fatal(err)
			}
			want = append(want, ents...)
			next += uint64(n.count)
		}
	}
	if err := s.Save(raft.HardState{Term: 1, Commit: next + 1}, makeEntries(next, 2, 1, 3<<19)); err != nil {
		t.Fatal(err)
	}
	last := next + 1
	s.mu.RLock()
	loc := s.mu.log.locate(last, last+1)[0]
	s.mu.RUnlock()
	segs := len(s.wal.mu.segments)
	s.Close()
	if segs < 3 {
		t.Fatalf("the log took %d segments, want several", segs)
	}

	check := func(s *Storage, last uint64) {
		t.Helper()
		if got, _ := s.LastIndex(); got != last {
			t.Fatalf("LastIndex %d, want %d", got, last)
		}
		for lo := uint64(1); lo <= uint64(len(want)); {
			ents, err := s.Entries(lo, uint64(len(want))+1, 4<<20)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if !equalEntry(e, want[e.Index-1]) || e.Index != lo {
					t.Fatalf("entry %d read back as entry %d, %d bytes", lo, e.Index, len(e.Data))
				}
				lo++
			}
		}
	}
	s = mustOpen(t, disk, "/data", opts)
	check(s, last)
	s.Close()

	// Zero a MiB inside the last record's payload: its checksum fails, and nothing
	// but zeros follows it, as after a torn write.
	path := filepath.Join("/data", "wal", segmentName(loc.seq))
	f, err := disk.OpenReadWrite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 1<<20), int64(loc.offset)+recordHeaderSize+(1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s = mustOpen(t, disk, "/data", opts)
	defer s.Close()
	check(s, last-2)
	if len(logs.find("cutting off a torn write")) != 1 {
		t.Fatalf("no warning about the torn write cut off")
	}
}

// TestEntriesOfALongRangeWithSmallMaxBytes asks for the whole log, most of it no
// longer cached, with room for a few entries: Entries must give exactly those, and
// its memory must follow maxBytes, not the range (after a restart raft asks for every
// committed entry after the store's applied index).
func TestEntriesOfALongRangeWithSmallMaxBytes(t *testing.T) {
	if (&raft.Entry{}).Size() != minEntrySize {
		t.Fatalf("the smallest entry is %d bytes, minEntrySize says %d", (&raft.Entry{}).Size(), minEntrySize)
	}
	disk := NewMemFS()
	opts, _ := testOptions(t, 0)
	opts.LogCacheBytes = 4 << 10
	s := mustOpen(t, disk, "/data", opts)
	const n = 200_000
	for lo := uint64(1); lo <= n; lo += 1000 {
		if err := s.Save(raft.HardState{Term: 1, Commit: lo + 999}, makeEntries(lo, 1000, 1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = mustOpen(t, disk, "/data", opts)
	defer s.Close()
	for _, maxBytes := range []uint64{0, 4, 5, 100, 1000} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ents, err := s.Entries(1, n+1, maxBytes)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		var size uint64
		for i := range ents {
			if ents[i].Index != uint64(i)+1 {
				t.Fatalf("maxBytes %d: entry %d is index %d", maxBytes, i, ents[i].Index)
			}
			size += uint64(ents[i].Size())
		}
		next := (&makeEntries(uint64(len(ents))+1, 1, 1, 10)[0]).Size()
		if len(ents) == 0 || (len(ents) > 1 && size > maxBytes) || size+uint64(next) <= maxBytes {
			t.Fatalf("maxBytes %d: %d entries of %d bytes, the next %d bytes", maxBytes, len(ents), size, next)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<10 {
			t.Errorf("maxBytes %d: Entries of %d entries allocated %d KiB for %d entries", maxBytes, n, alloc>>10, len(ents))
		}
	}
}
