package storage

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"raftkv/raft"
)

// gatedFS blocks every Open of a snapshot file while its gate is shut: a disk that
// takes as long as it likes to read a large snapshot back.
type gatedFS struct {
	FS
	mu     sync.Mutex
	gate   chan struct{} // nil: open
	opened atomic.Int32  // opens of snapshot files
}

func (g *gatedFS) shut() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }
func (g *gatedFS) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gatedFS) Open(name string) (File, error) {
	if strings.HasSuffix(name, ".snap") || strings.Contains(filepath.Base(filepath.Dir(name)), "snap") {
		g.opened.Add(1)
		g.mu.Lock()
		gate := g.gate
		g.mu.Unlock()
		if gate != nil {
			<-gate
		}
	}
	return g.FS.Open(name)
}

// loadWithin polls LoadSnapshot until it returns a snapshot or an error other than
// ErrSnapshotTemporarilyUnavailable, for at most d; each call must return at once.
func loadWithin(t *testing.T, s *Storage, d time.Duration) (raft.Snapshot, error) {
	t.Helper()
	for deadline := time.Now().Add(d); ; {
		snap, err := returnsAtOnce(t, s)
		if !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) || time.Now().After(deadline) {
			return snap, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func returnsAtOnce(t *testing.T, s *Storage) (raft.Snapshot, error) {
	t.Helper()
	type result struct {
		snap raft.Snapshot
		err  error
	}
	done := make(chan result, 1)
	go func() { snap, err := s.LoadSnapshot(); done <- result{snap, err} }()
	select {
	case r := <-done:
		return r.snap, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("LoadSnapshot waited 5s for the snapshot file; it must never wait on I/O")
		return raft.Snapshot{}, nil
	}
}

// TestLoadSnapshotNeverWaitsForTheFile: the leader's run loop asks for the snapshot
// to send a lagging follower (§7); reading a large file took minutes and stalled the
// loop past the election timeout. LoadSnapshot answers at once: temporarily
// unavailable while one goroutine reads the file, then the data, handed out once;
// a newer snapshot drops the loaded one.
func TestLoadSnapshotNeverWaitsForTheFile(t *testing.T) {
	g := &gatedFS{FS: NewMemFS()}
	opts, _ := testOptions(t, 4<<10)
	s := mustOpen(t, g, "/data/node1", opts)
	defer s.Close()
	defer g.open() // a test failing with the gate shut must not hang Close
	if err := s.Save(raft.HardState{Term: 1, Commit: 20}, makeEntries(1, 20, 1, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(10, raft.Membership{}, []byte("at ten")); err != nil {
		t.Fatal(err)
	}

	g.shut()
	before := g.opened.Load()
	for range 3 {
		if _, err := returnsAtOnce(t, s); !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) {
			t.Fatalf("LoadSnapshot with the file unreadable = %v, want ErrSnapshotTemporarilyUnavailable", err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := g.opened.Load() - before; n != 1 {
		t.Fatalf("%d reads of the snapshot file under way, want exactly 1 (one load at a time)", n)
	}
	g.open()
	snap, err := loadWithin(t, s, 5*time.Second)
	if err != nil || snap.Index != 10 || string(snap.Data) != "at ten" {
		t.Fatalf("LoadSnapshot = %d %q %v, want 10 %q", snap.Index, snap.Data, err, "at ten")
	}
	if _, err := returnsAtOnce(t, s); !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) {
		t.Fatalf("second LoadSnapshot = %v, want ErrSnapshotTemporarilyUnavailable: the data is handed out once", err)
	}
	// Let that load finish, then take a newer snapshot: the loaded data is dropped.
	for deadline := time.Now().Add(5 * time.Second); ; {
		s.loader.mu.Lock()
		loaded := s.loader.snap.Index
		s.loader.mu.Unlock()
		if loaded == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the snapshot at 10 did not load within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := s.CreateSnapshot(15, raft.Membership{}, []byte("at fifteen")); err != nil {
		t.Fatal(err)
	}
	s.loader.mu.Lock()
	kept := s.loader.snap.Index
	s.loader.mu.Unlock()
	if kept != 0 {
		t.Fatalf("snapshot %d still held in memory after a newer one was taken", kept)
	}
	snap, err = loadWithin(t, s, 5*time.Second)
	if err != nil || snap.Index != 15 || string(snap.Data) != "at fifteen" {
		t.Fatalf("LoadSnapshot = %d %q %v, want 15 %q", snap.Index, snap.Data, err, "at fifteen")
	}
}
