package kv

import (
	"bytes"
	"testing"
)

// AppendSnapshot after a prefix appends exactly what Snapshot returns, and the
// appended part restores.
func TestAppendSnapshotMatchesSnapshot(t *testing.T) {
	s := newTestStoreOn(t, Config{}, "mem")
	for i, k := range []string{"a", "b", "a"} {
		if res := s.ApplyCommand(uint64(i+1), &Command{Put: &PutRequest{Key: []byte(k), Value: []byte{byte(i)}}}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	whole, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	framed, err := s.AppendSnapshot([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(framed[len("prefix"):], whole) {
		t.Fatal("AppendSnapshot's bytes differ from Snapshot's")
	}
	restored := newTestStoreOn(t, Config{}, "mem")
	if err := restored.Restore(framed[len("prefix"):]); err != nil {
		t.Fatal(err)
	}
	if restored.Revision() != s.Revision() {
		t.Fatalf("restored revision %d, want %d", restored.Revision(), s.Revision())
	}
}
