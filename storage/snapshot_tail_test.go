package storage

import (
	"fmt"
	"path/filepath"
	"testing"

	"raftkv/raft"
)

// TestTruncatedTailUnderANewerSnapshot is the case TestTruncationsAreFoundOrTail met
// (found when a change to buildWorkload altered the fixture of seed 7): the last
// segment cut back to its start record loses, among its records, the marker of a
// snapshot whose file stays. Recovery adopts that file, the newest that fits the log
// left, and compacts the log to it: the WAL's prefix, with the entries the snapshot
// holds replaced by it. That is what it must do after a crash between a snapshot's
// file and its marker (TestSnapshotAheadOfTheWALAfterACrash), and the cut disk is
// the same disk.
func TestTruncatedTailUnderANewerSnapshot(t *testing.T) {
	disk := NewMemFS()
	opts := Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize}
	s := mustOpen(t, disk, "/data", opts)
	var m model
	run := func(op workOp) {
		t.Helper()
		if err := op.run(s); err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		op.apply(&m)
	}
	run(workOp{kind: "save", hs: raft.HardState{Term: 1, Vote: 1, Commit: 20}, ents: makeEntries(1, 20, 1, 300)})
	run(workOp{kind: "create", index: 10, data: []byte("app state at 10")})
	// Append one entry at a time until one opens a new segment: what precedes it is
	// what the new segment's start record restates.
	var atRoll model
	for segs := len(s.wal.mu.segments); len(s.wal.mu.segments) == segs; {
		atRoll = *m.clone()
		next := m.lastIndex() + 1
		run(workOp{kind: "save", hs: raft.HardState{Term: 2, Vote: 1, Commit: next}, ents: makeEntries(next, 1, 2, 300)})
	}
	snapIndex := atRoll.hs.Commit - 2 // within the log the cut leaves, and committed
	run(workOp{kind: "create", index: snapIndex, data: []byte(fmt.Sprintf("app state at %d", snapIndex))})
	run(workOp{kind: "save", hs: raft.HardState{Term: 3, Vote: 2, Commit: snapIndex}})
	last := s.wal.segmentPath(s.wal.mu.seq)
	lastSeq := s.wal.mu.seq
	s.Close()

	seg := &segmentFile{seq: lastSeq, path: last}
	if err := openSegment(disk, seg, false, "/data", testClusterID, clusterSeed(testClusterID)); err != nil {
		t.Fatal(err)
	}
	seg.f.Close()
	// Cut in the header of the first record after the start record: a torn write.
	truncateDurably(disk, last, seg.startEnd+7)
	want := atRoll.clone()
	want.createSnapshot(snapIndex, raft.Membership{}, []byte(fmt.Sprintf("app state at %d", snapIndex)))
	s, err := Open(disk, "/data", opts)
	if err != nil {
		t.Fatalf("%s cut in its first record: %v", last, err)
	}
	got := readState(t, s)
	s.Close()
	if !equalState(got, want.state()) {
		t.Fatalf("%s cut in its first record: recovery read\n %v\nwant the WAL's prefix compacted to snapshot %d:\n %v",
			filepath.Base(last), got, snapIndex, want.state())
	}
	if got.HS != atRoll.hs || got.Last != atRoll.lastIndex() {
		t.Fatalf("recovery read hard state %+v and last index %d; the WAL's prefix has %+v and %d",
			got.HS, got.Last, atRoll.hs, atRoll.lastIndex())
	}
}

// TestSnapshotAheadOfTheWALAfterACrash shows that a WAL whose markers end before a
// snapshot file it holds is a state a crash leaves, not damage. SaveAsync queues a
// write that raises the commit index in memory; CreateSnapshot of an index that write
// committed makes its file durable, then crashes before its marker and the queued
// write reach the disk. Recovery must adopt the file (the application has state up
// to it and will not replay the entries before it) over the WAL's durable prefix, and
// must never read anything but: that prefix, that prefix compacted to the snapshot,
// or everything.
func TestSnapshotAheadOfTheWALAfterACrash(t *testing.T) {
	opts := Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize}
	snapData := []byte("app state at 15")
	var prefix model
	prefix.save(raft.HardState{Term: 1, Vote: 1, Commit: 12}, makeEntries(1, 20, 1, 50))
	adopted := prefix.clone()
	adopted.createSnapshot(15, raft.Membership{}, snapData)
	full := prefix.clone()
	full.save(raft.HardState{Term: 1, Vote: 1, Commit: 18}, makeEntries(21, 10, 1, 50))
	full.createSnapshot(15, raft.Membership{}, snapData)
	want := map[string]state{"the durable prefix": prefix.state(), "the prefix compacted to the snapshot": adopted.state(), "everything": full.state()}

	seen := map[string]bool{}
	for n := 0; !seen["everything"]; n++ {
		if n > 100 {
			t.Fatalf("no crash point up to %d let the workload finish", n)
		}
		mem := NewMemFS()
		ffs := NewFaultFS(mem)
		s := mustOpen(t, ffs, "/data", opts)
		if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: 12}, makeEntries(1, 20, 1, 50)); err != nil {
			t.Fatal(err)
		}
		ffs.CrashAfter(n, 0)
		if _, err := s.SaveAsync(raft.HardState{Term: 1, Vote: 1, Commit: 18}, makeEntries(21, 10, 1, 50)); err != nil {
			t.Fatal(err) // it only queues
		}
		_, err := s.CreateSnapshot(15, raft.Membership{}, snapData)
		s.Close()
		mem.Crash()
		r, oerr := Open(mem, "/data", opts)
		if oerr != nil {
			t.Fatalf("crash after %d calls: recovery failed: %v", n, oerr)
		}
		got := readState(t, r)
		r.Close()
		matched := ""
		for what, st := range want {
			if equalState(got, st) {
				matched = what
			}
		}
		if matched == "" || (err == nil && matched != "everything") {
			t.Fatalf("crash after %d calls (CreateSnapshot returned %v): recovery read %v; want one of %v", n, err, got, want)
		}
		seen[matched] = true
	}
	if !seen["the prefix compacted to the snapshot"] {
		t.Fatalf("no crash point left the snapshot's file without its marker; outcomes seen: %v", seen)
	}
}
