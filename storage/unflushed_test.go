package storage

import (
	"io"
	"testing"
	"time"

	"raftkv/raft"
)

// The list of writes not yet known durable forgets each write once it is, even when
// the cached log never reaches its bound (a store that snapshots often): before the
// fix it grew by one element per write, forever (found in review).
func TestUnflushedWritesAreForgotten(t *testing.T) {
	s := mustOpen(t, NewMemFS(), "/data", Options{ClusterID: testClusterID, LogCacheBytes: 2 << 20})
	defer s.Close()
	index := uint64(1)
	for range 20 {
		for range 500 {
			ticket, err := s.SaveAsync(raft.HardState{Term: 1, Vote: 1, Commit: index}, makeEntries(index, 1, 1, 100))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.WaitDurable(ticket); err != nil {
				t.Fatal(err)
			}
			index++
		}
		if _, err := s.CreateSnapshot(index-1, raft.Membership{}, []byte("state")); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.RLock()
	n := len(s.mu.unflushed)
	s.mu.RUnlock()
	if n > 1 {
		t.Fatalf("after %d durable writes the storage still lists %d as not durable", index-1, n)
	}
}

// A snapshot whose log changed while it was being written is refused, and its file
// removed: left behind it would count among the snapshots kept (found in review).
func TestSnapshotOfAChangedLogLeavesNoFile(t *testing.T) {
	fsys := NewMemFS()
	s := mustOpen(t, fsys, "/data", Options{ClusterID: testClusterID})
	defer s.Close()
	if err := s.Save(raft.HardState{Term: 2, Vote: 1, Commit: 2}, makeEntries(1, 5, 1, 10)); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateSnapshotFrom(4, raft.Membership{}, func(w io.Writer) error {
		if _, err := w.Write([]byte("state at 4")); err != nil {
			return err
		}
		// A new leader overwrites the uncommitted entries from 3 on meanwhile.
		return s.Save(raft.HardState{Term: 2, Vote: 1, Commit: 2}, makeEntries(3, 3, 2, 10))
	})
	if err == nil {
		t.Fatal("a snapshot of entry 4 of term 1 was taken after the entry was replaced")
	}
	names, err := fsys.List(s.snapDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name == snapshotName(4, 1) {
			t.Fatalf("the refused snapshot's file %s is still in %s", name, s.snapDir)
		}
	}
}

// A leader's snapshot is installed while one of this node's own is still being
// written: ApplySnapshot runs on the node's run loop and must not wait for the stream,
// which takes as long as the state is large. The own snapshot, of a log that is gone
// once it ends, is then refused and leaves no file.
func TestApplySnapshotDoesNotWaitForAnOwnSnapshot(t *testing.T) {
	fsys := NewMemFS()
	s := mustOpen(t, fsys, "/data", Options{ClusterID: testClusterID})
	defer s.Close()
	if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: 5}, makeEntries(1, 5, 1, 10)); err != nil {
		t.Fatal(err)
	}
	streaming, release := make(chan struct{}), make(chan struct{})
	created := make(chan error, 1)
	go func() {
		_, err := s.CreateSnapshotFrom(4, raft.Membership{}, func(w io.Writer) error {
			close(streaming)
			<-release
			_, err := w.Write([]byte("state at 4"))
			return err
		})
		created <- err
	}()
	<-streaming
	applied := make(chan error, 1)
	go func() {
		applied <- s.ApplySnapshot(raft.Snapshot{Index: 20, Term: 2, Data: []byte("state at 20")})
	}()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatalf("ApplySnapshot: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("ApplySnapshot waited for the node's own snapshot to finish streaming")
	}
	close(release)
	if err := <-created; err == nil {
		t.Fatal("the own snapshot of index 4 was taken after a snapshot of index 20 was installed")
	}
	if snap, err := s.Snapshot(); err != nil || snap.Index != 20 || string(snap.Data) != "state at 20" {
		t.Fatalf("Snapshot() = index %d data %q, %v; want the installed one at 20", snap.Index, snap.Data, err)
	}
	names, err := fsys.List(s.snapDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name != snapshotName(20, 2) {
			t.Fatalf("%s holds %v, want only the installed snapshot", s.snapDir, names)
		}
	}
}
