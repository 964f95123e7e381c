package kv

import (
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Sizes follows the values and keys put, counts the keys and live bytes as a
// count from scratch does after every kind of write, falls at compaction (and
// its total at Defragment), and survives a snapshot.
func TestSizes(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s := newTestStoreOn(t, Config{}, backend)
			empty := s.Sizes()
			if empty.Keys != 0 || empty.InUseBytes > 16<<10 || empty.TotalBytes < empty.InUseBytes {
				t.Fatalf("empty store: %+v, want no keys and a few KiB", empty)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			value := func() string { // incompressible, so that the tables hold its bytes
				b := make([]byte, 1000)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				return string(b)
			}
			for i := range 10 {
				mustPut(t, s, "key", value()) // ten revisions of one key
				mustPut(t, s, string(rune('a'+i)), value())
			}
			apply(t, s, &Command{Put: &PutRequest{Key: []byte("key"), IgnoreValue: true}})
			mustDelete(t, s, "a", "")
			checkSizeCounters(t, s)
			before := s.Sizes()
			if want := int64(20 * 1000); before.InUseBytes < want || before.Keys != 11 {
				t.Fatalf("after 20 puts of 1000 bytes to 11 keys: %+v, want at least %d bytes in use", before, want)
			}
			if _, err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			flushed := s.Sizes()
			if flushed.InUseBytes < 20*1000 || flushed.TotalBytes < flushed.InUseBytes {
				t.Fatalf("flushed: %+v, want at least %d bytes in use, and in total", flushed, 20*1000)
			}
			// Compacting to now drops nine revisions of "key" and the deleted "a".
			res := apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			checkSizeCounters(t, s)
			after := s.Sizes()
			if after.Keys != 10 || after.InUseBytes > 12*1000 || after.InUseBytes < 10*1000 {
				t.Fatalf("compacted to 10 keys of 1000 bytes: %+v", after)
			}
			// Defragment has pebble drop what the range deletes cover now: the
			// total falls from the flushed tables' to near what is in use. (Not
			// measured from just before Defragment: pebble may already have
			// dropped the covered tables in a background delete-only
			// compaction, as it did once in CI under -tags invariants.)
			if err := s.Defragment(); err != nil {
				t.Fatal(err)
			}
			if defragged := s.Sizes(); defragged.TotalBytes >= flushed.TotalBytes || 2*defragged.TotalBytes > 3*defragged.InUseBytes {
				t.Fatalf("Defragment took the total from %d (flushed, before compaction) to %d bytes, with %d in use; want under 1.5 times in use", flushed.TotalBytes, defragged.TotalBytes, defragged.InUseBytes)
			}
			snap, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			restored := newTestStoreOn(t, Config{}, backend)
			if err := restored.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if got := restored.Sizes(); got.Keys != after.Keys || got.InUseBytes < 10*1000 || got.InUseBytes > 12*1000 {
				t.Fatalf("restored store: %+v, want %d keys and about %d bytes in use as before", got, after.Keys, after.InUseBytes)
			}
		})
	}
}

// checkSizeCounters fails if the key count and live bytes kept by writes differ
// from a count from scratch.
func checkSizeCounters(t *testing.T, s *Store) {
	t.Helper()
	if kept, counted := s.Sizes().Keys, int64(len(keyHistories(t, s))); kept != counted {
		t.Fatalf("key counter %d, counted from scratch %d", kept, counted)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	checkLiveBytes(t, s.mu.st.e)
}

// checkLiveBytes fails if e's live bytes differ from those of its version and
// change and value records counted from scratch.
func checkLiveBytes(t testing.TB, e *engine) {
	t.Helper()
	var counted int64
	for _, prefix := range []byte{engineVersionPrefix, engineChangePrefix, engineValuePrefix} {
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
		if err != nil {
			t.Fatal(err)
		}
		for valid := it.First(); valid; valid = it.Next() {
			counted += int64(len(it.Key()) + len(it.Value()))
		}
		it.Close()
	}
	if counted != e.live {
		t.Fatalf("live bytes %d, counted from scratch %d", e.live, counted)
	}
}
