package server

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"raftkv/kv"
	"raftkv/raft"
	"raftkv/storage"
)

// reconcileFixture is a member's storage and state machine without the rest of the
// server: what reconcileStore reads before Raft starts.
type reconcileFixture struct {
	s   *Server
	dir string
}

func newReconcileFixture(t *testing.T) *reconcileFixture {
	t.Helper()
	dir := t.TempDir()
	st, err := storage.Open(storage.NewOSFS(), dir, storage.Options{ClusterID: 7})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := newStateMachine(kv.Config{}, dir, []member{{ID: 1, Name: "a"}, {ID: 2, Name: "b"}, {ID: 3, Name: "c", IsLearner: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sm.store.Close()
		_ = st.Close()
	})
	return &reconcileFixture{s: &Server{clusterID: 7, storage: st, sm: sm, logger: slog.New(slog.DiscardHandler)}, dir: dir}
}

// applyPuts applies puts at indexes from..to in term.
func (f *reconcileFixture) applyPuts(t *testing.T, from, to, term uint64) {
	t.Helper()
	f.s.sm.store.SetTerm(term)
	for i := from; i <= to; i++ {
		data, err := (&kv.Command{Put: &kv.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		if res := f.s.sm.store.Apply(i, data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
}

// logEntries stores entries from..to of term in the log, committed.
func (f *reconcileFixture) logEntries(t *testing.T, from, to, term uint64) {
	t.Helper()
	var ents []raft.Entry
	for i := from; i <= to; i++ {
		ents = append(ents, raft.Entry{Index: i, Term: term, Type: raft.EntryCommand})
	}
	if err := f.s.storage.Save(raft.HardState{Term: term, Commit: to}, ents); err != nil {
		t.Fatal(err)
	}
}

func wantRefused(t *testing.T, err error, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("reconcileStore accepted the store; want a refusal saying %q", words)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("reconcileStore: %v\nwant it to say %q", err, w)
		}
	}
}

// TestReconcileStoreAheadOfLog: a store past the log's end was applied from another
// log (a member applies only entries durable in its own log): refused, naming the
// store, the WAL and both ends, and nothing is rewritten.
func TestReconcileStoreAheadOfLog(t *testing.T) {
	f := newReconcileFixture(t)
	f.logEntries(t, 1, 3, 2)
	f.applyPuts(t, 1, 8, 2)
	_, err := f.s.reconcileStore()
	wantRefused(t, err, storeDir(f.dir), f.s.storage.WALDir(), "applied index 8 of term 2", "end at 3 of term 2")
	if snap, err := f.s.storage.Snapshot(); err != nil || !snap.IsEmpty() {
		t.Fatalf("after the refusal the log has snapshot %+v (%v); want none", snap, err)
	}
	if last, _ := f.s.storage.LastIndex(); last != 3 {
		t.Fatalf("after the refusal the log ends at %d, want 3", last)
	}
}

// TestReconcileStoreRefusesAnotherHistory: a store and a log that disagree on the term
// of an entry, or a store past the log with an earlier term than the log's end, are of
// different histories (a WAL from another data dir): refused, naming the store.
func TestReconcileStoreRefusesAnotherHistory(t *testing.T) {
	t.Run("within the log", func(t *testing.T) {
		f := newReconcileFixture(t)
		f.logEntries(t, 1, 5, 1)
		f.applyPuts(t, 1, 3, 2)
		_, err := f.s.reconcileStore()
		wantRefused(t, err, storeDir(f.dir), "applied index 3 in term 2", "entry 3 is of term 1", "different histories")
	})
	t.Run("past the log", func(t *testing.T) {
		f := newReconcileFixture(t)
		f.logEntries(t, 1, 3, 3)
		f.applyPuts(t, 1, 5, 2)
		_, err := f.s.reconcileStore()
		wantRefused(t, err, storeDir(f.dir), "applied index 5 of term 2", "end at 3 of term 3")
	})
	t.Run("another cluster", func(t *testing.T) {
		f := newReconcileFixture(t)
		if err := f.s.sm.store.SetMeta(metaClusterID, []byte{0, 0, 0, 0, 0, 0, 0, 9}); err != nil {
			t.Fatal(err)
		}
		_, err := f.s.reconcileStore()
		wantRefused(t, err, storeDir(f.dir), "belongs to cluster 9", "cluster 7")
	})
}

// TestReconcileStoreBehindLocalSnapshot: the log was truncated to an index the store
// had made durable; a store behind it lost data and is refused rather than rebuilt.
func TestReconcileStoreBehindLocalSnapshot(t *testing.T) {
	f := newReconcileFixture(t)
	f.applyPuts(t, 1, 3, 1)
	if err := f.s.storage.ApplySnapshot(raft.Snapshot{Index: 10, Term: 1, Membership: raft.Membership{Voters: []uint64{1}},
		Data: localSnapshotData()}); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.reconcileStore()
	wantRefused(t, err, storeDir(f.dir), "applied index 3", "truncated to index 10", "lost data")
}

// TestReconcileStoreReceivedSnapshot: a snapshot body the leader sent and the log
// recorded is restored after a restart; a missing one is named.
func TestReconcileStoreReceivedSnapshot(t *testing.T) {
	f := newReconcileFixture(t)
	snap := raft.Snapshot{Index: 10, Term: 1, Membership: raft.Membership{Voters: []uint64{1}}}
	snap.Data = receivedSnapshotData(inboundName(snap))
	if err := f.s.storage.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.reconcileStore()
	wantRefused(t, err, filepath.Join(inboundDir(f.dir), inboundName(snap)))

	// Now with the body there: a store from another member at index 12.
	leader := newReconcileFixture(t)
	leader.applyPuts(t, 1, 12, 1)
	if err := os.MkdirAll(inboundDir(f.dir), 0o700); err != nil {
		t.Fatal(err)
	}
	receiveBody(t, leader, f, inboundName(snap))
	stale := filepath.Join(inboundDir(f.dir), "0000000000000001-0000000000000004.snap")
	if err := os.WriteFile(stale, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	applied, err := f.s.reconcileStore()
	if err != nil || applied != 0 {
		t.Fatalf("reconcileStore = %d, %v; want 0 (Raft hands the snapshot over), nil", applied, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("a superseded body was left in kv-in: %v", err)
	}
	if err := f.s.sm.restore(snap.Index, snap.Data); err != nil {
		t.Fatal(err)
	}
	if got := f.s.sm.store.AppliedIndex(); got != 12 {
		t.Fatalf("restored store applied %d, want the leader's 12", got)
	}
	r, err := f.s.sm.store.Range(&kv.RangeRequest{Key: []byte("k12")})
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("k12 after restore: %+v, %v", r, err)
	}
	if entries, _ := os.ReadDir(inboundDir(f.dir)); len(entries) != 0 {
		t.Fatalf("kv-in holds %d files after the restore, want none", len(entries))
	}

	// Stopped now, before its log holds entries 11 and 12, the member's store is
	// ahead of its log because the leader's body was: its next start keeps it, and
	// the log restarts after it.
	applied, err = f.s.reconcileStore()
	if err != nil || applied != 12 {
		t.Fatalf("reconcileStore after restoring the body at 12 of snapshot 10 = %d, %v; want 12, nil", applied, err)
	}
	if got, err := f.s.storage.Snapshot(); err != nil || got.Index != 12 || got.Term != 1 {
		t.Fatalf("the log restarts at snapshot %d term %d (%v); want 12 term 1", got.Index, got.Term, err)
	}
}

// A store ahead of a log whose newest snapshot is a received one is kept only if it
// is just what the body it was last restored from left, and that body's snapshot is
// at or before the log's newest: an older copy of the WAL behind a store that went on
// applying is refused.
func TestReconcileStoreAheadOfAReceivedSnapshot(t *testing.T) {
	restored := func(t *testing.T) *reconcileFixture {
		f := newReconcileFixture(t)
		leader := newReconcileFixture(t)
		leader.applyPuts(t, 1, 12, 1)
		if err := os.MkdirAll(inboundDir(f.dir), 0o700); err != nil {
			t.Fatal(err)
		}
		first := raft.Snapshot{Index: 10, Term: 1, Membership: raft.Membership{Voters: []uint64{1}}}
		first.Data = receivedSnapshotData(inboundName(first))
		receiveBody(t, leader, f, inboundName(first))
		if err := f.s.storage.ApplySnapshot(first); err != nil {
			t.Fatal(err)
		}
		if err := f.s.sm.restore(first.Index, first.Data); err != nil {
			t.Fatal(err)
		}
		return f
	}
	received := func(index uint64) raft.Snapshot {
		snap := raft.Snapshot{Index: index, Term: 1, Membership: raft.Membership{Voters: []uint64{1}}}
		snap.Data = receivedSnapshotData(inboundName(snap))
		return snap
	}
	t.Run("the log's newest snapshot is older than the body's", func(t *testing.T) {
		f := newReconcileFixture(t)
		leader := newReconcileFixture(t)
		leader.applyPuts(t, 1, 12, 1)
		if err := os.MkdirAll(inboundDir(f.dir), 0o700); err != nil {
			t.Fatal(err)
		}
		first := received(10)
		receiveBody(t, leader, f, inboundName(first))
		if err := f.s.sm.restore(first.Index, first.Data); err != nil {
			t.Fatal(err)
		}
		if err := f.s.storage.ApplySnapshot(received(8)); err != nil {
			t.Fatal(err)
		}
		_, err := f.s.reconcileStore()
		wantRefused(t, err, storeDir(f.dir), "applied index 12 of term 1", "end at 8 of term 1")
	})
	t.Run("the store applied past the body", func(t *testing.T) {
		f := restored(t)
		f.applyPuts(t, 13, 40, 1) // then the WAL was swapped for a copy taken before
		_, err := f.s.reconcileStore()
		wantRefused(t, err, storeDir(f.dir), f.s.storage.WALDir(), "applied index 40 of term 1", "end at 10 of term 1")
	})
	t.Run("a later snapshot persisted and not yet restored", func(t *testing.T) {
		f := restored(t)
		if err := f.s.storage.ApplySnapshot(received(11)); err != nil {
			t.Fatal(err)
		}
		applied, err := f.s.reconcileStore()
		if err != nil || applied != 12 {
			t.Fatalf("reconcileStore = %d, %v; want 12, nil", applied, err)
		}
	})
}

// TestRestoreReceivedKeepsNewerBodies: a leader may send a second snapshot while the
// first is restored (seen in e2e: bodies at 1000 and 1100 received 11 ms apart).
// Restoring the first must leave the second's body, and any body still being
// received, for Raft to hand over next.
func TestRestoreReceivedKeepsNewerBodies(t *testing.T) {
	f := newReconcileFixture(t)
	leader := newReconcileFixture(t)
	leader.applyPuts(t, 1, 12, 1)
	if err := os.MkdirAll(inboundDir(f.dir), 0o700); err != nil {
		t.Fatal(err)
	}
	first := raft.Snapshot{Index: 10, Term: 1}
	second := raft.Snapshot{Index: 12, Term: 1}
	for _, snap := range []raft.Snapshot{first, second} {
		receiveBody(t, leader, f, inboundName(snap))
	}
	older := filepath.Join(inboundDir(f.dir), "0000000000000001-0000000000000004.snap")
	inFlight := filepath.Join(inboundDir(f.dir), ".recv-123")
	for _, p := range []string{older, inFlight} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.s.sm.restore(first.Index, receivedSnapshotData(inboundName(first))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{older, filepath.Join(inboundDir(f.dir), inboundName(first))} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still in kv-in after the restore at %d (stat: %v)", filepath.Base(p), first.Index, err)
		}
	}
	if _, err := os.Stat(inFlight); err != nil {
		t.Errorf("the body being received was removed: %v", err)
	}
	if err := f.s.sm.restore(second.Index, receivedSnapshotData(inboundName(second))); err != nil {
		t.Fatalf("restoring the second body: %v", err)
	}
	if got := f.s.sm.store.AppliedIndex(); got != 12 {
		t.Fatalf("applied %d after the second restore, want 12", got)
	}
}

// receiveBody writes leader's store into f's kv-in as the body name, as
// receiveSnapshot does.
func receiveBody(t *testing.T, leader, f *reconcileFixture, name string) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		_, err := leader.s.sm.store.WriteSnapshot(pw)
		pw.CloseWithError(err)
	}()
	if _, err := f.s.sm.store.WriteSnapshotTables(pr, filepath.Join(inboundDir(f.dir), name)); err != nil {
		t.Fatal(err)
	}
}

// A stream body saved whole, as members before the tables saved it, still
// restores: a member upgraded between receiving it and applying it.
func TestRestoreReceivedStreamFile(t *testing.T) {
	f := newReconcileFixture(t)
	leader := newReconcileFixture(t)
	leader.applyPuts(t, 1, 12, 1)
	if err := os.MkdirAll(inboundDir(f.dir), 0o700); err != nil {
		t.Fatal(err)
	}
	name := "0000000000000001-000000000000000a.snap"
	out, err := os.Create(filepath.Join(inboundDir(f.dir), name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leader.s.sm.store.WriteSnapshot(out); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.s.sm.restore(10, receivedSnapshotData(name)); err != nil {
		t.Fatal(err)
	}
	if got := f.s.sm.store.AppliedIndex(); got != 12 {
		t.Fatalf("applied %d after restoring the stream file, want 12", got)
	}
	if entries, _ := os.ReadDir(inboundDir(f.dir)); len(entries) != 0 {
		t.Fatalf("kv-in holds %d entries after the restore, want none", len(entries))
	}
}

func TestInboundIndex(t *testing.T) {
	for name, want := range map[string]int64{
		inboundName(raft.Snapshot{Term: 3, Index: 1100}): 1100,
		".recv-42": -1,
		"0000000000000001-000000000000044c.snap.tmp": -1,
		"0000000000000001-000000000000044c.snap":     1100,
		"0000000000000001-000000000000044c.tables.x": -1,
		"zz": -1,
	} {
		got, ok := inboundIndex(name)
		if (want < 0) == ok || (ok && int64(got) != want) {
			t.Errorf("inboundIndex(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

// A received body survives a crash once receiveSnapshot returns, the first one too,
// which creates kv-in: Raft persists the snapshot naming it next, and a member whose
// log names a body it lost cannot start.
func TestReceivedBodySurvivesACrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	dir := "/member"
	s, leader := snapshotReceiver(t, dir, mem)
	pr, pw := io.Pipe()
	go func() {
		_, err := leader.s.sm.store.WriteSnapshot(pw)
		pw.CloseWithError(err)
	}()
	data, err := s.receiveSnapshot(2, raft.Snapshot{Index: 10, Term: 1}, pr)
	if err != nil {
		t.Fatal(err)
	}
	_, name, err := snapshotKind(data)
	if err != nil {
		t.Fatal(err)
	}
	img := mem.CrashClone(vfs.CrashCloneCfg{})
	if _, err := img.Stat(filepath.Join(inboundDir(dir), name)); err != nil {
		t.Fatalf("the body the snapshot names is gone after a crash: %v", err)
	}
}

// testdata/olderbuild is a member's WAL as the last build before the store-ahead
// rule wrote it (c9374b3, segments of format 2): entries 1 to 3 of term 2,
// committed, in cluster 7. Written with storage.Open and Save on that commit.

// A store ahead of a log that only a build before the rule wrote is what such a
// build could leave (it applied committed entries before its own write of them), so
// until this build first writes to that log it is accepted as that build accepted
// it, the log restarting after the store; from then on the rule holds.
func TestReconcileStoreAheadOfAnOlderBuildsLog(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/olderbuild")); err != nil {
		t.Fatal(err)
	}
	open := func() *reconcileFixture {
		st, err := storage.Open(storage.NewOSFS(), dir, storage.Options{ClusterID: 7})
		if err != nil {
			t.Fatal(err)
		}
		sm, err := newStateMachine(kv.Config{}, dir, []member{{ID: 1, Name: "a"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &reconcileFixture{s: &Server{clusterID: 7, storage: st, sm: sm, logger: slog.New(slog.DiscardHandler)}, dir: dir}
	}
	closeFixture := func(f *reconcileFixture) {
		if err := f.s.sm.store.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.s.storage.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// A first start that stopped after opening the log (its store, say, failed
	// to open) leaves the exception for the next one.
	if st, err := storage.Open(storage.NewOSFS(), dir, storage.Options{ClusterID: 7}); err != nil {
		t.Fatal(err)
	} else if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	f := open()
	if !f.s.storage.OlderBuildsWAL() {
		t.Fatal("storage does not report testdata/olderbuild as written by an older build")
	}
	if last, err := f.s.storage.LastIndex(); err != nil || last != 3 {
		t.Fatalf("testdata/olderbuild's log ends at %d (%v), want 3", last, err)
	}
	f.applyPuts(t, 1, 8, 2)
	if _, err := f.s.sm.store.Flush(); err != nil { // as the older build left it: on disk
		t.Fatal(err)
	}
	if applied, err := f.s.reconcileStore(); err != nil || applied != 8 {
		t.Fatalf("first start on an older build's log: reconcileStore = %d, %v; want 8, nil", applied, err)
	}
	if snap, err := f.s.storage.Snapshot(); err != nil || snap.Index != 8 || snap.Term != 2 {
		t.Fatalf("the log restarts at snapshot %d of term %d (%v); want 8 of term 2", snap.Index, snap.Term, err)
	}
	f.applyPuts(t, 9, 12, 2) // this build's own log then falls behind its store
	if _, err := f.s.sm.store.Flush(); err != nil {
		t.Fatal(err)
	}
	closeFixture(f)

	f = open()
	defer closeFixture(f)
	if f.s.storage.OlderBuildsWAL() {
		t.Fatal("storage still reports the log as an older build's after this build wrote to it")
	}
	_, err := f.s.reconcileStore()
	wantRefused(t, err, storeDir(dir), f.s.storage.WALDir(), "applied index 12 of term 2", "end at 8 of term 2")
}

// A body Raft refused as stale (its snapshot at or below the member's commit index
// when it arrived) used to stay in kv-in until the next restore or restart, and a
// body is as large as the store. The apply loop now removes it when it next starts
// a local snapshot; bodies of later snapshots and bodies still arriving stay.
func TestStaleReceivedBodyIsRemovedAtTheNextSnapshot(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.SnapshotCount = 20 })
	leader := waitForLeader(t, members)
	follower := members[0]
	if follower == leader {
		follower = members[1]
	}
	dir := inboundDir(follower.srv.sm.dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, inboundName(raft.Snapshot{Index: 3, Term: 1}))
	later := filepath.Join(dir, inboundName(raft.Snapshot{Index: 1 << 40, Term: 1}))
	arriving := filepath.Join(dir, ".recv-123")
	for _, p := range []string{stale, later, arriving} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "000001.sst"), []byte("table"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	putKeys(t, leader, "k", 0, 50, []byte("v"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(stale); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stale body %s is still in kv-in after 50 writes with --snapshot-count 20", filepath.Base(stale))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Past another snapshot, so that a pass that removed them after the stale one
	// would have run to its end.
	putKeys(t, leader, "k", 50, 100, []byte("v"))
	waitKeyCount(t, follower, "k", 100)
	for _, p := range []string{later, arriving} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
}

// snapshotReceiver returns a server of one member whose state machine is in dir on
// fs, to receive snapshot bodies, and a leader's fixture with 12 puts applied to
// send them from.
func snapshotReceiver(t *testing.T, dir string, fs vfs.FS) (*Server, *reconcileFixture) {
	t.Helper()
	sm, err := newStateMachine(kv.Config{}, dir, []member{{ID: 1, Name: "a"}}, fs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sm.store.Close() })
	s := &Server{sm: sm, logger: slog.New(slog.DiscardHandler)}
	s.fatal.c = make(chan struct{})
	leader := newReconcileFixture(t)
	leader.applyPuts(t, 1, 12, 1)
	return s, leader
}
