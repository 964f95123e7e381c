package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"raftkv/kv"
	"raftkv/raft"
	"raftkv/storage"
)

// A member that crashes at any write while it restores a body the leader sent
// starts again: its store is the one before the restore, behind the log's received
// snapshot, whose body Raft then hands over again; or the restored one, ahead of the
// log by exactly what the body left, with the record that says so
// (metaRestoredFrom); or one cut off between clearing its records and the end of the
// restore, which the start restores from the body again. The record once went to
// disk in a flush after the restored state's own, and a crash between the two left
// a store ahead of the log with no record: refused at every start, its body already
// removed. A cut-off store was refused too, until its directory was removed by hand.
// Each crash is a power cut (what was not synced is lost) and a kill (nothing is
// lost): pebble's ingest removed the body's tables, and a kill after it, before the
// restore's end was flushed, left a cut-off store and no body to restore it from.
func TestCrashWhileRestoringAReceivedBody(t *testing.T) {
	leader := newReconcileFixture(t)
	leader.applyPuts(t, 1, 12, 1) // the body: the leader's store at 12, past the snapshot's 10
	var body bytes.Buffer
	if _, err := leader.s.sm.store.WriteSnapshot(&body); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind string
		kill bool
	}{{inboundTablesSuffix, false}, {inboundStreamSuffix, false}, {inboundTablesSuffix, true}, {inboundStreamSuffix, true}} {
		name := c.kind + "/power-cut"
		if c.kill {
			name = c.kind + "/kill"
		}
		kind := c.kind
		t.Run(name, func(t *testing.T) {
			points, cutOff := 0, 0
			for at := 1; ; at++ {
				crashed, refused := crashWhileRestoring(t, body.Bytes(), kind, at, c.kill)
				if !crashed {
					break
				}
				points++
				if refused {
					cutOff++
				}
			}
			if points < 5 {
				t.Fatalf("the restore made %d writes; the test crashes it at none of the steps it means to", points)
			}
			if cutOff == 0 {
				t.Fatalf("no crash point cut the restore off between clearing the store and its end")
			}
			t.Logf("%d crash points; at %d of them the store was cut off and the start restored the body again", points, cutOff)
		})
	}
}

// crashWhileRestoring restores body, saved in kv-in as kind, into a follower
// whose log ends with the received snapshot at 10, crashes the store's file system
// at its at-th write of the restore (a kill if kill, else a power cut), and checks
// the start after it. It returns
// whether the restore made at writes, and whether the store was refused as cut
// off.
func crashWhileRestoring(t *testing.T, body []byte, kind string, at int, kill bool) (crashed, cutOff bool) {
	t.Helper()
	const dir = "/member"
	members := []member{{ID: 1, Name: "a"}, {ID: 2, Name: "b"}, {ID: 3, Name: "c", IsLearner: true}}
	mem := newLinkGuard(vfs.NewCrashableMem())
	var (
		mu     sync.Mutex
		armed  bool
		writes int
		image  *vfs.MemFS
	)
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		mu.Lock()
		defer mu.Unlock()
		if armed && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			if writes++; writes == at {
				if kill {
					image = mem.killClone(t)
				} else {
					image = mem.crashClone()
				}
			}
		}
		return nil
	}))
	sm, err := newStateMachine(kv.Config{}, dir, members, fs)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.store.Close()
	walDir := t.TempDir()
	st, err := storage.Open(storage.NewOSFS(), walDir, storage.Options{ClusterID: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	// The body as receiveSnapshot leaves it: synced in kv-in, the log's newest
	// snapshot naming it. (A stream saved whole is what members before the
	// tables left there.)
	snap := raft.Snapshot{Index: 10, Term: 1, Membership: raft.Membership{Voters: []uint64{1, 2}, Learners: []uint64{3}}}
	name := fmt.Sprintf("%016x-%016x%s", snap.Term, snap.Index, kind)
	s := &Server{clusterID: 7, storage: st, sm: sm, logger: slog.New(slog.DiscardHandler)}
	if kind == inboundTablesSuffix {
		data, err := s.receiveSnapshot(2, snap, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, got, _ := snapshotKind(data); got != name {
			t.Fatalf("receiveSnapshot named the body %q, want %q", got, name)
		}
	} else {
		if err := fs.MkdirAll(inboundDir(dir), 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := fs.Create(filepath.Join(inboundDir(dir), name), vfs.WriteCategoryUnspecified)
		if err == nil {
			_, err = f.Write(bytes.Clone(body)) // under invariants (and -race) MemFS scrambles what it was given
		}
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = f.Close()
		}
		if err == nil {
			err = kv.SyncDir(fs, dir)
		}
		if err == nil {
			err = sm.syncInbound()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	snap.Data = receivedSnapshotData(name)
	if err := st.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	armed = true
	mu.Unlock()
	if err := sm.restore(snap.Index, snap.Data); err != nil {
		t.Fatalf("restore: %v", err)
	}
	mu.Lock()
	img := image
	mu.Unlock()
	if img == nil {
		return false, false
	}

	// The start after the crash: the store on what the crash left, the log as it
	// was. A store cut off between clearing its records and the end of the
	// restore opens only to restore the body again, which the start does; without
	// the body it is refused.
	discard := slog.New(slog.DiscardHandler)
	if probe, err := kv.OpenStoreFS(kv.Config{}, storeDir(dir), img.CrashClone(vfs.CrashCloneCfg{})); err == nil {
		probe.Close()
	} else if errors.Is(err, kv.ErrRestoreCutOff) {
		cutOff = true
		noBody := img.CrashClone(vfs.CrashCloneCfg{})
		if err := noBody.RemoveAll(filepath.Join(inboundDir(dir), name)); err != nil {
			t.Fatal(err)
		}
		s = &Server{clusterID: 7, storage: st, logger: discard}
		if _, err := s.openStateMachine(kv.Config{}, dir, members, noBody); !errors.Is(err, kv.ErrRestoreCutOff) || !strings.Contains(err.Error(), "that the log names is gone") {
			t.Fatalf("crash at write %d of the restore, the body then removed: the start says %v; want the store refused as cut off, the body gone", at, err)
		}
		// Nor does a log that names no received snapshot let it open.
		other, err := storage.Open(storage.NewOSFS(), t.TempDir(), storage.Options{ClusterID: 7})
		if err != nil {
			t.Fatal(err)
		}
		s = &Server{clusterID: 7, storage: other, logger: discard}
		_, err = s.openStateMachine(kv.Config{}, dir, members, img.CrashClone(vfs.CrashCloneCfg{}))
		other.Close()
		if !errors.Is(err, kv.ErrRestoreCutOff) || !strings.Contains(err.Error(), "the log names no snapshot body the leader sent") {
			t.Fatalf("crash at write %d of the restore, a log without the snapshot: the start says %v; want the store refused as cut off, no body named", at, err)
		}
	} else {
		t.Fatalf("crash at write %d of the restore: the store does not open: %v", at, err)
	}
	s = &Server{clusterID: 7, storage: st, logger: discard}
	sm2, err := s.openStateMachine(kv.Config{}, dir, members, img)
	if err != nil {
		t.Fatalf("crash at write %d of the restore: the state machine does not open: %v", at, err)
	}
	defer sm2.store.Close()
	s.sm = sm2
	applied, err := s.reconcileStore()
	if err != nil {
		t.Fatalf("crash at write %d of the restore: the start is refused: %v", at, err)
	}
	switch {
	case applied < snap.Index:
		// Raft hands the snapshot over first: its body must still be there.
		if err := sm2.restore(snap.Index, snap.Data); err != nil {
			t.Fatalf("crash at write %d of the restore: restoring again: %v", at, err)
		}
	case applied != 12:
		t.Fatalf("crash at write %d of the restore: the store starts at applied index %d; want below 10 or the body's 12", at, applied)
	}
	for i := 1; i <= 12; i++ {
		key := fmt.Appendf(nil, "k%d", i)
		resp, err := sm2.store.Range(&kv.RangeRequest{Key: key})
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Fatalf("crash at write %d of the restore: after the start, key %s reads %+v, %v", at, key, resp, err)
		}
	}
	if a := sm2.store.AppliedIndex(); a != 12 {
		t.Fatalf("crash at write %d of the restore: the store ends at applied index %d, want 12", at, a)
	}
	return true, cutOff
}
