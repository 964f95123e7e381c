package server

import (
	"errors"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"raftkv/kv"
	"raftkv/raft"
)

// A body whose kv-in sync failed after the rename must not be answered from when
// the leader sends the snapshot again: its name may not survive a power cut, and
// Raft persists a marker naming it. The failed receive removes it and stops the
// member; a resend writes it afresh and syncs kv-in, so the crash image holds it.
func TestReceivedBodyAfterAFailedSyncIsNotKept(t *testing.T) {
	mem := vfs.NewCrashableMem()
	dir := "/member"
	var failSync atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failSync.Load() && op.Kind == errorfs.OpFileSync && filepath.Clean(op.Path) == inboundDir(dir) {
			return errors.New("injected fsync failure")
		}
		return nil
	}))
	s, leader := snapshotReceiver(t, dir, fs)
	snap := raft.Snapshot{Index: 10, Term: 1}
	receive := func() ([]byte, error) {
		pr, pw := io.Pipe()
		go func() {
			_, err := leader.s.sm.store.WriteSnapshot(pw)
			pw.CloseWithError(err)
		}()
		return s.receiveSnapshot(2, snap, pr)
	}
	final := filepath.Join(inboundDir(dir), inboundName(snap))

	failSync.Store(true)
	if _, err := receive(); err == nil {
		t.Fatal("receiveSnapshot succeeded though the fsync of kv-in failed")
	}
	if _, err := mem.Stat(final); err == nil {
		t.Fatalf("the body %s is kept after the fsync of kv-in failed", final)
	}
	if s.fatalErr() == nil {
		t.Fatal("the member goes on after a failed fsync of kv-in")
	}

	failSync.Store(false)
	if _, err := receive(); err != nil {
		t.Fatal(err)
	}
	img := mem.CrashClone(vfs.CrashCloneCfg{})
	if _, err := img.Stat(final); err != nil {
		t.Fatalf("the resent body is gone after a crash: %v", err)
	}
}

// The "already there" branch syncs kv-in before answering: a body that took its
// name without a sync (whatever left it) is made durable before Raft persists a
// marker naming it.
func TestReceivedBodyAlreadyThereIsSynced(t *testing.T) {
	mem := vfs.NewCrashableMem()
	dir := "/member"
	s, leader := snapshotReceiver(t, dir, mem)
	snap := raft.Snapshot{Index: 10, Term: 1}
	if err := mem.MkdirAll(inboundDir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := kv.SyncDir(mem, dir); err != nil {
		t.Fatal(err)
	}
	// A body at its final name, not synced into kv-in.
	pr, pw := io.Pipe()
	go func() {
		_, err := leader.s.sm.store.WriteSnapshot(pw)
		pw.CloseWithError(err)
	}()
	final := filepath.Join(inboundDir(dir), inboundName(snap))
	if _, err := s.sm.store.WriteSnapshotTables(pr, final); err != nil {
		t.Fatal(err)
	}
	pr, pw = io.Pipe()
	go func() {
		_, err := leader.s.sm.store.WriteSnapshot(pw)
		pw.CloseWithError(err)
	}()
	if _, err := s.receiveSnapshot(2, snap, pr); err != nil {
		t.Fatal(err)
	}
	img := mem.CrashClone(vfs.CrashCloneCfg{})
	if _, err := img.Stat(final); err != nil {
		t.Fatalf("the body answered from is gone after a crash: %v", err)
	}
}
