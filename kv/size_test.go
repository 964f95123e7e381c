package kv

import (
	"math/rand/v2"
	"testing"
)

// Sizes follows the values and keys put, counts the keys as a count from
// scratch does after every kind of write, shrinks once compaction's garbage is
// gone from the engine's tables, and survives a snapshot.
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
			if flushed := s.Sizes(); flushed.InUseBytes < 20*1000 || flushed.TotalBytes < flushed.InUseBytes {
				t.Fatalf("flushed: %+v, want at least %d bytes in use, and in total", flushed, 20*1000)
			}
			// Compacting to now drops nine revisions of "key" and the deleted "a".
			res := apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			checkSizeCounters(t, s)
			// Defragment has pebble drop what the range deletes cover now.
			if err := s.Defragment(); err != nil {
				t.Fatal(err)
			}
			after := s.Sizes()
			if after.Keys != 10 || after.InUseBytes > 12*1000 || after.InUseBytes < 10*1000 {
				t.Fatalf("compacted to 10 keys of 1000 bytes: %+v", after)
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

// checkSizeCounters fails if the key count kept by writes differs from a count
// from scratch.
func checkSizeCounters(t *testing.T, s *Store) {
	t.Helper()
	if kept, counted := s.Sizes().Keys, int64(len(keyHistories(t, s))); kept != counted {
		t.Fatalf("key counter %d, counted from scratch %d", kept, counted)
	}
}
