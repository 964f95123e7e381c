package kv

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// A SnapshotView writes exactly the snapshot of the moment it was taken, while
// writes go on meanwhile: puts to old and new keys, deletes, and a compaction.
// Views do not exclude each other.
func TestSnapshotViewIsTheStoreWhenTaken(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s := newTestStoreOn(t, Config{}, backend)
			for i := range 5000 {
				apply(t, s, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "k%03d", i%400), Value: bytes.Repeat([]byte{byte(i)}, i%300)}})
			}
			mustDelete(t, s, "k100", "k150")
			want, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			view, err := s.SnapshotView()
			if err != nil {
				t.Fatal(err)
			}
			second, err := s.SnapshotView()
			if err != nil {
				t.Fatalf("a second view while one is out: %v", err)
			}
			// Writes after the view: new keys (the index grows under it), more
			// revisions of old keys (their slices grow), deletes (tombstones).
			for i := range 3000 {
				apply(t, s, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "k%03d", (i*7)%900), Value: []byte("after")}})
			}
			mustDelete(t, s, "k2", "k3")
			apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
			var got bytes.Buffer
			n, err := view.WriteTo(&got)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(got.Len()) || !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("view wrote %d bytes (counted %d), want the %d of the snapshot when it was taken", got.Len(), n, len(want))
			}
			view.Release()
			var got2 bytes.Buffer
			if _, err := second.WriteTo(&got2); err != nil || !bytes.Equal(got2.Bytes(), want) {
				t.Fatalf("the second view wrote %d bytes (%v), want the %d of the snapshot when it was taken", got2.Len(), err, len(want))
			}
			second.Release()
			// The view's bytes restore to the store as it was.
			restored := newTestStoreOn(t, Config{}, backend)
			if err := restored.Restore(got.Bytes()); err != nil {
				t.Fatal(err)
			}
			again, err := restored.Snapshot()
			if err != nil || !bytes.Equal(again, want) {
				t.Fatalf("restored store's snapshot differs (err %v)", err)
			}
			// A new view may be taken once the last is released.
			view, err = s.SnapshotView()
			if err != nil {
				t.Fatal(err)
			}
			view.Release()
		})
	}
}

// A view asked for while a compaction runs waits for it and then succeeds.
// (Once the view and the compaction took two locks in opposite orders and
// deadlocked; found in review.)
func TestSnapshotViewDuringCompaction(t *testing.T) {
	// Not closed at cleanup: Close would hang on a deadlocked store.
	s, err := NewStore(Config{})
	if err != nil {
		t.Fatal(err)
	}
	value := bytes.Repeat([]byte{1}, 64)
	for i := range 50_000 {
		apply(t, s, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "k%06d", i%50_000), Value: value}})
	}
	data, err := (&Command{Compact: &CompactionRequest{Revision: s.Revision()}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	compacted := make(chan struct{})
	go func() {
		defer close(compacted)
		s.Apply(s.AppliedIndex()+1, data) // holds the store's lock while it walks the keys
	}()
	time.Sleep(2 * time.Millisecond)
	viewed := make(chan error, 1)
	go func() {
		v, err := s.SnapshotView()
		if err == nil {
			v.Release()
		}
		viewed <- err
	}()
	select {
	case <-compacted:
	case <-time.After(20 * time.Second):
		t.Fatal("compaction and SnapshotView deadlocked")
	}
	select {
	case err := <-viewed:
		if err != nil {
			t.Fatalf("SnapshotView after the compaction: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("SnapshotView never returned")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
