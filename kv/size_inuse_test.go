package kv

import "testing"

// InUseBytes is what Sizes reports as in use, as puts, overwrites, deletes and
// compaction change it.
func TestInUseBytesIsSizes(t *testing.T) {
	s := newTestStore(t, Config{})
	check := func(when string) {
		t.Helper()
		if got, want := s.InUseBytes(), s.Sizes().InUseBytes; got != want {
			t.Fatalf("%s: InUseBytes %d, Sizes().InUseBytes %d", when, got, want)
		}
	}
	check("empty")
	mustPut(t, s, "a", "one")
	mustPut(t, s, "b", "two")
	mustPut(t, s, "a", "three")
	check("after puts")
	before := s.InUseBytes()
	mustDelete(t, s, "b", "")
	apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
	check("after a delete and a compaction")
	if s.InUseBytes() >= before {
		t.Fatalf("in use %d bytes after compacting away a deleted key and an old version, %d before", s.InUseBytes(), before)
	}
}
