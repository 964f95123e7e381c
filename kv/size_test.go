package kv

import (
	"strings"
	"testing"
)

// Sizes follows the values and keys put, drops compaction's garbage from the bytes
// in use, agrees with a count from scratch after every kind of write, and survives a
// snapshot.
func TestSizes(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s := newTestStoreOn(t, Config{}, backend)
			empty := s.Sizes()
			if empty.TotalBytes != 0 || empty.InUseBytes != 0 {
				t.Fatalf("empty store: %+v, want zeros", empty)
			}
			value := strings.Repeat("v", 1000)
			for i := range 10 {
				mustPut(t, s, "key", value) // ten revisions of one key
				mustPut(t, s, string(rune('a'+i)), value)
			}
			// An IgnoreValue put shares its value: no new bytes in use.
			apply(t, s, &Command{Put: &PutRequest{Key: []byte("key"), IgnoreValue: true}})
			mustDelete(t, s, "a", "")
			checkSizeCounters(t, s)
			before := s.Sizes()
			if want := int64(20 * 1000); before.InUseBytes < want || before.InUseBytes > want+4096 {
				t.Fatalf("after 20 puts of 1000 bytes: %d bytes in use, want about %d", before.InUseBytes, want)
			}
			if before.TotalBytes != before.InUseBytes {
				t.Fatalf("nothing compacted, yet total %d != in use %d", before.TotalBytes, before.InUseBytes)
			}
			// Compacting to now drops nine revisions of "key" and the deleted "a".
			res := apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			checkSizeCounters(t, s)
			after := s.Sizes()
			if dropped := before.InUseBytes - after.InUseBytes; dropped < 10*1000 {
				t.Fatalf("compaction dropped 10 values of 1000 bytes, but in use fell by only %d (%+v -> %+v)", dropped, before, after)
			}
			if after.TotalBytes < after.InUseBytes {
				t.Fatalf("total %d below in use %d", after.TotalBytes, after.InUseBytes)
			}
			snap, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			restored := newTestStoreOn(t, Config{}, backend)
			if err := restored.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if got := restored.Sizes(); got.InUseBytes != after.InUseBytes {
				t.Fatalf("restored store: %+v, want %d in use as before", got, after.InUseBytes)
			}
		})
	}
}

// checkSizeCounters fails if the counters kept by writes differ from a count from
// scratch.
func checkSizeCounters(t *testing.T, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.mu.st.sizes
	s.mu.st.recountSizes()
	if s.mu.st.sizes != kept {
		t.Fatalf("size counters %+v, counted from scratch %+v", kept, s.mu.st.sizes)
	}
}
