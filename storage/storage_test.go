package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"raftkv/raft"
)

// fsCases runs a test on the OS file system and on MemFS.
func fsCases(t *testing.T, fn func(t *testing.T, fsys FS, dir string)) {
	t.Run("os", func(t *testing.T) { fn(t, NewOSFS(), filepath.Join(t.TempDir(), "data")) })
	t.Run("mem", func(t *testing.T) { fn(t, NewMemFS(), "/data/node1") })
}

func TestSaveAndReopen(t *testing.T) {
	fsCases(t, func(t *testing.T, fsys FS, dir string) {
		opts, _ := testOptions(t, 8<<10)
		s := mustOpen(t, fsys, dir, opts)
		if got := readState(t, s); got.First != 1 || got.Last != 0 || !got.HS.IsEmpty() {
			t.Fatalf("fresh storage: %v; want an empty log from 1", got)
		}
		var m model
		for i := range 40 {
			ents := makeEntries(uint64(i*5+1), 5, 1+uint64(i/10), 100)
			hs := raft.HardState{Term: 1 + uint64(i/10), Vote: 2, Commit: uint64(i * 5)}
			if err := s.Save(hs, ents); err != nil {
				t.Fatalf("Save %d: %v", i, err)
			}
			m.save(hs, ents)
		}
		want := m.state()
		if got := readState(t, s); !equalState(got, want) {
			t.Fatalf("before reopen: got %v, want %v", got, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = mustOpen(t, fsys, dir, opts)
		defer s.Close()
		if got := readState(t, s); !equalState(got, want) {
			t.Fatalf("after reopen: got %v, want %v", got, want)
		}
		if segs := len(s.wal.mu.segments); segs < 3 {
			t.Errorf("%d segments after 20 KB of entries with 8 KiB segments; the test wants several", segs)
		}
	})
}

func TestConflictingSuffixIsReplaced(t *testing.T) {
	fsys := NewMemFS()
	opts, _ := testOptions(t, 4<<10)
	s := mustOpen(t, fsys, "/d", opts)
	var m model
	steps := []struct {
		hs   raft.HardState
		ents []raft.Entry
	}{
		{raft.HardState{Term: 1, Commit: 3}, makeEntries(1, 10, 1, 50)},
		{raft.HardState{Term: 2, Commit: 4}, makeEntries(5, 3, 2, 60)},  // replaces 5..10
		{raft.HardState{Term: 3, Commit: 6}, makeEntries(7, 20, 3, 70)}, // replaces 7, extends
		{raft.HardState{}, makeEntries(27, 1, 3, 0)},
	}
	for _, st := range steps {
		if err := s.Save(st.hs, st.ents); err != nil {
			t.Fatal(err)
		}
		m.save(st.hs, st.ents)
	}
	want := m.state()
	if got := readState(t, s); !equalState(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	s.Close()
	fsys.Crash()
	s = mustOpen(t, fsys, "/d", opts)
	defer s.Close()
	if got := readState(t, s); !equalState(got, want) {
		t.Fatalf("after crash and reopen: got %v, want %v", got, want)
	}
}

func TestEntriesAndTermBounds(t *testing.T) {
	s := mustOpen(t, NewMemFS(), "/d", Options{ClusterID: testClusterID})
	defer s.Close()
	if err := s.Save(raft.HardState{Term: 1, Commit: 10}, makeEntries(1, 10, 1, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSnapshot(4, raft.Membership{}, []byte("state@4")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		lo, hi uint64
		want   error
	}{{3, 6, raft.ErrCompacted}, {4, 6, raft.ErrCompacted}, {5, 12, raft.ErrUnavailable}} {
		if _, err := s.Entries(c.lo, c.hi, 1<<30); !errors.Is(err, c.want) {
			t.Errorf("Entries(%d, %d) error %v; want %v", c.lo, c.hi, err, c.want)
		}
	}
	ents, err := s.Entries(5, 11, 1<<30)
	if err != nil || len(ents) != 6 || ents[0].Index != 5 || ents[5].Index != 10 {
		t.Fatalf("Entries(5, 11) = %d entries, err %v; want 5..10", len(ents), err)
	}
	if cap(ents) != len(ents) {
		t.Errorf("Entries returned cap %d > len %d: a caller's append would write into the storage", cap(ents), len(ents))
	}
	one := uint64(ents[0].Size())
	if got, _ := s.Entries(5, 11, 0); len(got) != 1 {
		t.Errorf("Entries with maxBytes 0 returned %d entries; want exactly 1", len(got))
	}
	if got, _ := s.Entries(5, 11, 2*one); len(got) != 2 {
		t.Errorf("Entries with room for 2 returned %d", len(got))
	}
	for _, c := range []struct {
		i    uint64
		term uint64
		err  error
	}{{3, 0, raft.ErrCompacted}, {4, 1, nil}, {10, 1, nil}, {11, 0, raft.ErrUnavailable}} {
		term, err := s.Term(c.i)
		if term != c.term || !errors.Is(err, c.err) {
			t.Errorf("Term(%d) = %d, %v; want %d, %v", c.i, term, err, c.term, c.err)
		}
	}
	if first, _ := s.FirstIndex(); first != 5 {
		t.Errorf("FirstIndex = %d; want 5", first)
	}
	if _, err := s.CreateSnapshot(4, raft.Membership{}, nil); !errors.Is(err, raft.ErrSnapOutOfDate) {
		t.Errorf("CreateSnapshot at the current snapshot: %v; want ErrSnapOutOfDate", err)
	}
	if _, err := s.CreateSnapshot(11, raft.Membership{}, nil); err == nil {
		t.Errorf("CreateSnapshot above the commit index succeeded")
	}
}

func TestCreateSnapshotDropsSegmentsAndSurvivesReopen(t *testing.T) {
	fsCases(t, func(t *testing.T, fsys FS, dir string) {
		opts, _ := testOptions(t, 4<<10)
		s := mustOpen(t, fsys, dir, opts)
		var m model
		index := uint64(1)
		for round := range 6 {
			ents := makeEntries(index, 30, 1, 200)
			index += 30
			hs := raft.HardState{Term: 1, Commit: index - 1}
			if err := s.Save(hs, ents); err != nil {
				t.Fatal(err)
			}
			m.save(hs, ents)
			data := []byte(fmt.Sprintf("state after round %d", round))
			snap, err := s.CreateSnapshot(index-5, raft.Membership{}, data)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Index != index-5 || snap.Term != 1 {
				t.Fatalf("CreateSnapshot returned %d/%d", snap.Index, snap.Term)
			}
			m.createSnapshot(index-5, raft.Membership{}, data)
		}
		segments, _ := fsys.List(filepath.Join(dir, "wal"))
		snaps, _ := fsys.List(filepath.Join(dir, "snap"))
		// 180 entries of ~220 bytes is ~40 KB, ten 4 KiB segments; the log kept back to
		// the older of two snapshots (30 entries back) fits in three or four.
		if len(segments) > 4 {
			t.Errorf("%d segments left after compaction: %v", len(segments), segments)
		}
		if len(snaps) != DefaultSnapshotsToKeep {
			t.Errorf("snapshot files %v; want the newest %d", snaps, DefaultSnapshotsToKeep)
		}
		want := m.state()
		if got := readState(t, s); !equalState(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		s.Close()
		s = mustOpen(t, fsys, dir, opts)
		defer s.Close()
		if got := readState(t, s); !equalState(got, want) {
			t.Fatalf("after reopen: got %v, want %v", got, want)
		}
	})
}

// TestCreateSnapshotFromStreams: a snapshot larger than the write buffer, streamed in
// small writes, reads back byte for byte, before and after a reopen; it may be above
// the commit index this Storage holds (the application vouches that it applied it);
// and a failing stream changes nothing and leaves no file.
func TestCreateSnapshotFromStreams(t *testing.T) {
	fsCases(t, func(t *testing.T, fsys FS, dir string) {
		opts, _ := testOptions(t, 64<<10)
		s := mustOpen(t, fsys, dir, opts)
		ents := makeEntries(1, 40, 2, 100)
		// The node writes its commit index lazily: the Storage knows of 10 only.
		if err := s.Save(raft.HardState{Term: 2, Commit: 10}, ents); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, 3*snapWriteBufferBytes+12345)
		for i := range data {
			data[i] = byte(i * 7 / 3)
		}
		errApp := errors.New("the application failed mid-stream")
		_, err := s.CreateSnapshotFrom(30, raft.Membership{}, func(w io.Writer) error {
			if _, err := w.Write(data[:1000]); err != nil {
				return err
			}
			return errApp
		})
		if !errors.Is(err, errApp) {
			t.Fatalf("failing stream: %v, want the stream's own error", err)
		}
		if first, _ := s.FirstIndex(); first != 1 {
			t.Fatalf("a failed stream moved the first index to %d", first)
		}
		if names, _ := fsys.List(filepath.Join(dir, "snap")); len(names) != 0 {
			t.Fatalf("a failed stream left %v", names)
		}

		snap, err := s.CreateSnapshotFrom(30, raft.Membership{}, func(w io.Writer) error {
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 4000)
				if _, err := w.Write(rest[:n]); err != nil {
					return err
				}
				rest = rest[n:]
			}
			return nil
		})
		if err != nil || snap.Index != 30 || snap.Term != 2 || snap.Data != nil {
			t.Fatalf("CreateSnapshotFrom(30) = %d/%d with %d bytes, %v; want 30/2 without data", snap.Index, snap.Term, len(snap.Data), err)
		}
		check := func(when string) {
			t.Helper()
			got, err := s.Snapshot()
			if err != nil || got.Index != 30 || got.Term != 2 || !bytes.Equal(got.Data, data) {
				t.Fatalf("%s: Snapshot() = %d/%d with %d bytes, %v; want 30/2 with the %d streamed", when, got.Index, got.Term, len(got.Data), err, len(data))
			}
			if first, _ := s.FirstIndex(); first != 31 {
				t.Fatalf("%s: first index %d, want 31", when, first)
			}
			if last, _ := s.LastIndex(); last != 40 {
				t.Fatalf("%s: last index %d, want 40", when, last)
			}
		}
		check("after the stream")
		if _, err := s.CreateSnapshotFrom(30, raft.Membership{}, func(io.Writer) error { return nil }); !errors.Is(err, raft.ErrSnapOutOfDate) {
			t.Fatalf("a second snapshot at 30: %v, want ErrSnapOutOfDate", err)
		}
		if _, err := s.CreateSnapshotFrom(41, raft.Membership{}, func(io.Writer) error { return nil }); err == nil {
			t.Fatalf("a snapshot past the end of the log succeeded")
		}
		s.Close()
		s = mustOpen(t, fsys, dir, opts)
		defer s.Close()
		check("after reopen")
	})
}

func TestApplySnapshotReplacesLog(t *testing.T) {
	fsys := NewMemFS()
	opts, _ := testOptions(t, 4<<10)
	s := mustOpen(t, fsys, "/d", opts)
	var m model
	save := func(hs raft.HardState, ents []raft.Entry) { t.Helper(); saveWithModel(t, s, &m, hs, ents) }
	save(raft.HardState{Term: 1, Commit: 20}, makeEntries(1, 60, 1, 150))
	snap := raft.Snapshot{Index: 500, Term: 4, Data: []byte("leader state")}
	if err := s.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	m.applySnapshot(snap)
	if err := s.ApplySnapshot(raft.Snapshot{Index: 400, Term: 3}); !errors.Is(err, raft.ErrSnapOutOfDate) {
		t.Errorf("older ApplySnapshot: %v; want ErrSnapOutOfDate", err)
	}
	save(raft.HardState{Term: 4, Commit: 502}, makeEntries(501, 5, 4, 10))
	want := m.state()
	if got := readState(t, s); !equalState(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if segs, _ := fsys.List("/d/wal"); len(segs) != 1 {
		t.Errorf("segments after install %v; want only the one holding the install marker", segs)
	}
	s.Close()
	fsys.Crash()
	s = mustOpen(t, fsys, "/d", opts)
	defer s.Close()
	if got := readState(t, s); !equalState(got, want) {
		t.Fatalf("after crash and reopen: got %v, want %v", got, want)
	}
}

func TestSnapshotFailingChecksumFallsBackToOlder(t *testing.T) {
	fsys := NewMemFS()
	opts, logs := testOptions(t, 4<<10)
	s := mustOpen(t, fsys, "/d", opts)
	var m model
	if err := s.Save(raft.HardState{Term: 2, Commit: 50}, makeEntries(1, 60, 2, 100)); err != nil {
		t.Fatal(err)
	}
	m.save(raft.HardState{Term: 2, Commit: 50}, makeEntries(1, 60, 2, 100))
	if _, err := s.CreateSnapshot(20, raft.Membership{}, []byte("state@20")); err != nil {
		t.Fatal(err)
	}
	older := m.clone()
	older.createSnapshot(20, raft.Membership{}, []byte("state@20"))
	if _, err := s.CreateSnapshot(45, raft.Membership{}, []byte("state@45")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	flipByte(t, fsys, "/d/snap/"+snapshotName(45, 2), snapHeaderSize+3)
	s = mustOpen(t, fsys, "/d", opts)
	defer s.Close()
	if got, want := readState(t, s), older.state(); !equalState(got, want) {
		t.Fatalf("after the newest snapshot went bad: got %v, want the older snapshot and the log after it %v", got, want)
	}
	if lines := logs.find("WARN", "skipping a snapshot", snapshotName(45, 2)); len(lines) != 1 {
		t.Errorf("want one warning naming the bad snapshot, got %q", lines)
	}
}

// flipByte inverts one byte of a file, durably.
func flipByte(t testing.TB, fsys FS, path string, off int64) {
	t.Helper()
	f, err := fsys.OpenReadWrite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestSecondOpenIsRefusedByLock(t *testing.T) {
	fsCases(t, func(t *testing.T, fsys FS, dir string) {
		opts, _ := testOptions(t, 0)
		s := mustOpen(t, fsys, dir, opts)
		_, err := Open(fsys, dir, opts)
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "in use by another running node") ||
			!strings.Contains(err.Error(), dir) {
			t.Fatalf("second Open: %v; want ErrLocked naming the dir", err)
		}
		s.Close()
		s = mustOpen(t, fsys, dir, opts) // released by Close
		s.Close()
	})
}

func TestOtherClusterIsRefused(t *testing.T) {
	fsys := NewMemFS()
	s := mustOpen(t, fsys, "/d", Options{ClusterID: 0x3f2a})
	s.Close()
	_, err := Open(fsys, "/d", Options{ClusterID: 0x91bc})
	want := `data dir "/d" holds a WAL of cluster 3f2a, not 91bc; point --data-dir elsewhere`
	if !errors.Is(err, ErrClusterMismatch) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open with another cluster id: %v; want ErrClusterMismatch (and ErrCorrupt) saying %q", err, want)
	}
}

func TestMissingSegmentIsCorruption(t *testing.T) {
	fsys := NewMemFS()
	opts, _ := testOptions(t, 4<<10)
	s := mustOpen(t, fsys, "/d", opts)
	if err := s.Save(raft.HardState{Term: 1}, makeEntries(1, 100, 1, 200)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := fsys.Remove("/d/wal/" + segmentName(3)); err != nil {
		t.Fatal(err)
	}
	_, err := Open(fsys, "/d", opts)
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), segmentName(3)+" is missing") {
		t.Fatalf("Open with a segment missing: %v; want a CorruptError naming it", err)
	}
}

func TestWriteErrorIsFatal(t *testing.T) {
	for _, op := range []Op{OpWrite, OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			mem := NewMemFS()
			ffs := NewFaultFS(mem)
			opts, logs := testOptions(t, 0)
			s := mustOpen(t, ffs, "/d", opts)
			if err := s.Save(raft.HardState{Term: 1, Commit: 1}, makeEntries(1, 3, 1, 10)); err != nil {
				t.Fatal(err)
			}
			ffs.FailNth(op, 1, syscall.EIO)
			err := s.Save(raft.HardState{Term: 1, Commit: 2}, makeEntries(4, 3, 1, 10))
			if !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.EIO) {
				t.Fatalf("Save with a failing %v: %v; want ErrFailed wrapping EIO", op, err)
			}
			// Every later call gets the same error: the storage never carries on.
			if err2 := s.Save(raft.HardState{}, makeEntries(7, 1, 1, 10)); err2 != err {
				t.Errorf("Save after the failure: %v; want the first error %v", err2, err)
			}
			if _, err2 := s.Entries(1, 2, 100); err2 != err {
				t.Errorf("Entries after the failure: %v; want the first error", err2)
			}
			if _, err2 := s.CreateSnapshot(1, raft.Membership{}, nil); err2 != err {
				t.Errorf("CreateSnapshot after the failure: %v; want the first error", err2)
			}
			if lines := logs.find("ERROR", "storage stopped"); len(lines) != 1 {
				t.Errorf("want exactly one error log line, got %q", lines)
			}
			s.Close()
			mem.Crash()
			s = mustOpen(t, mem, "/d", opts)
			defer s.Close()
			if last, _ := s.LastIndex(); last < 3 {
				t.Errorf("after restart the log ends at %d; the synced entries 1..3 are lost", last)
			}
		})
	}
}

func TestConcurrentSavesShareSyncs(t *testing.T) {
	mem := NewMemFS()
	ffs := NewFaultFS(mem)
	s := mustOpen(t, ffs, "/d", Options{ClusterID: testClusterID})
	before := ffs.Calls(OpSync)
	// Concurrent writers must not interleave conflicting indexes; each appends its own
	// range through SaveAsync under a shared lock, then waits outside it.
	const writers, perWriter = 8, 50
	var mu sync.Mutex
	next := uint64(1)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range perWriter {
				mu.Lock()
				ticket, err := s.SaveAsync(raft.HardState{}, makeEntries(next, 1, 1, 64))
				next++
				mu.Unlock()
				if err == nil {
					err = s.WaitDurable(ticket)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	syncs := ffs.Calls(OpSync) - before
	t.Logf("%d saves, %d fdatasyncs", writers*perWriter, syncs)
	if syncs > writers*perWriter {
		t.Errorf("%d fdatasyncs for %d saves", syncs, writers*perWriter)
	}
	s.Close()
	mem.Crash()
	s = mustOpen(t, mem, "/d", Options{ClusterID: testClusterID})
	defer s.Close()
	if last, _ := s.LastIndex(); last != writers*perWriter {
		t.Fatalf("after crash the log ends at %d; every one of the %d acknowledged saves must survive", last, writers*perWriter)
	}
}

func TestEntryTooLargeIsRefusedWithoutHarm(t *testing.T) {
	s := mustOpen(t, NewMemFS(), "/d", Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize})
	defer s.Close()
	err := s.Save(raft.HardState{Term: 1}, makeEntries(1, 1, 1, MinSegmentSize))
	if !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("Save of an entry bigger than a segment: %v; want ErrRecordTooLarge", err)
	}
	if err := s.Save(raft.HardState{Term: 1}, makeEntries(1, 1, 1, 100)); err != nil {
		t.Fatalf("Save after a refused one: %v", err)
	}
}

func TestCallsAfterCloseFail(t *testing.T) {
	s := mustOpen(t, NewMemFS(), "/d", Options{ClusterID: testClusterID})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(raft.HardState{Term: 1}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Save after Close: %v; want ErrClosed", err)
	}
	if _, err := s.LastIndex(); !errors.Is(err, ErrClosed) {
		t.Errorf("LastIndex after Close: %v; want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v; want ErrClosed", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{}, {ClusterID: 1, SegmentSize: 100}, {ClusterID: 1, SnapshotsToKeep: -1}} {
		if err := o.Validate(); err == nil {
			t.Errorf("Options %+v validated", o)
		}
		if _, err := Open(NewMemFS(), "/d", o); err == nil {
			t.Errorf("Open with options %+v succeeded", o)
		}
	}
	if err := (Options{ClusterID: 1}).Validate(); err != nil {
		t.Errorf("minimal options: %v", err)
	}
}

func TestSaveAsyncTicketsAndOneSync(t *testing.T) {
	mem := NewMemFS()
	ffs := NewFaultFS(mem)
	s := mustOpen(t, ffs, "/d", Options{ClusterID: testClusterID})
	syncs := ffs.Calls(OpSync)
	var tickets []Ticket
	for i := range 5 {
		ticket, err := s.SaveAsync(raft.HardState{Term: 1, Commit: uint64(i)}, makeEntries(uint64(i+1), 1, 1, 10))
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, ticket)
	}
	if !slices.IsSorted(tickets) || tickets[0] == 0 {
		t.Fatalf("tickets %v; want non-zero and growing", tickets)
	}
	if s.IsDurable(tickets[0]) {
		t.Fatalf("a write is durable before anyone waited for it")
	}
	if last, _ := s.LastIndex(); last != 5 {
		t.Errorf("LastIndex = %d after 5 queued saves; readers see queued writes", last)
	}
	if err := s.WaitDurable(tickets[4]); err != nil {
		t.Fatal(err)
	}
	if got := ffs.Calls(OpSync) - syncs; got != 1 {
		t.Errorf("%d fdatasyncs for 5 queued saves; want 1", got)
	}
	for _, ticket := range tickets {
		if !s.IsDurable(ticket) {
			t.Errorf("ticket %d not durable after a later one was waited for", ticket)
		}
	}
	if ticket, err := s.SaveAsync(raft.HardState{Term: 1, Commit: 4}, nil); ticket != 0 || err != nil {
		t.Errorf("SaveAsync of nothing new: ticket %d, err %v; want 0, nil", ticket, err)
	}
	s.Close()
	mem.Crash()
	s = mustOpen(t, mem, "/d", Options{ClusterID: testClusterID})
	defer s.Close()
	if last, _ := s.LastIndex(); last != 5 {
		t.Errorf("after a crash the log ends at %d; want the 5 durable entries", last)
	}
}

// TestSnapshotMembershipPersists: a snapshot's configuration, made here or installed
// from the leader, is in its file (format 2) and comes back after a restart, from
// SnapshotMeta without reading the data and from Snapshot with it.
func TestSnapshotMembershipPersists(t *testing.T) {
	fsys := NewMemFS()
	opts, _ := testOptions(t, MinSegmentSize)
	s := mustOpen(t, fsys, "/d", opts)
	if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: 10}, makeEntries(1, 10, 1, 10)); err != nil {
		t.Fatal(err)
	}
	made := raft.Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{7}}
	if _, err := s.CreateSnapshot(5, raft.Membership{Voters: []uint64{2, 1}}, nil); err == nil {
		t.Fatal("CreateSnapshot took a membership out of order")
	}
	if _, err := s.CreateSnapshot(5, made, []byte("state@5")); err != nil {
		t.Fatal(err)
	}
	check := func(s *Storage, index uint64, want raft.Membership, data string) {
		t.Helper()
		meta, err := s.SnapshotMeta()
		if err != nil || meta.Index != index || !meta.Membership.Equal(want) || meta.Data != nil {
			t.Fatalf("SnapshotMeta = %d %v (%d bytes), %v; want %d %v without data", meta.Index, meta.Membership, len(meta.Data), err, index, want)
		}
		snap, err := s.Snapshot()
		if err != nil || snap.Index != index || !snap.Membership.Equal(want) || string(snap.Data) != data {
			t.Fatalf("Snapshot = %d %v %q, %v; want %d %v %q", snap.Index, snap.Membership, snap.Data, err, index, want, data)
		}
	}
	check(s, 5, made, "state@5")
	s.Close()
	s = mustOpen(t, fsys, "/d", opts)
	check(s, 5, made, "state@5")

	installed := raft.Membership{Voters: []uint64{2, 3, 9}}
	if err := s.ApplySnapshot(raft.Snapshot{Index: 40, Term: 3, Membership: installed, Data: []byte("leader@40")}); err != nil {
		t.Fatal(err)
	}
	check(s, 40, installed, "leader@40")
	s.Close()
	s = mustOpen(t, fsys, "/d", opts)
	defer s.Close()
	check(s, 40, installed, "leader@40")
}

// TestConfEntryIndexes: the Storage knows where the configuration entries of its log
// are, through appends, a follower's overwrite, compaction, an installed snapshot and
// a restart, so that a core starting on it reads only those (raft.ConfEntryIndexer).
func TestConfEntryIndexes(t *testing.T) {
	fsys := NewMemFS()
	opts, _ := testOptions(t, MinSegmentSize)
	s := mustOpen(t, fsys, "/d", opts)
	conf := func(ents []raft.Entry, indexes ...uint64) []raft.Entry {
		for i := range ents {
			if slices.Contains(indexes, ents[i].Index) {
				ents[i].Type = raft.EntryConfChange
			}
		}
		return ents
	}
	check := func(s *Storage, want ...uint64) {
		t.Helper()
		got, err := s.ConfEntryIndexes()
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("ConfEntryIndexes = %v, %v; want %v", got, err, want)
		}
	}
	if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: 5}, conf(makeEntries(1, 20, 1, 10), 3, 8, 15)); err != nil {
		t.Fatal(err)
	}
	check(s, 3, 8, 15)
	// A new leader's entries replace the log from 12 on.
	if err := s.Save(raft.HardState{Term: 2, Vote: 2, Commit: 10}, conf(makeEntries(12, 5, 2, 10), 13)); err != nil {
		t.Fatal(err)
	}
	check(s, 3, 8, 13)
	if _, err := s.CreateSnapshot(8, raft.Membership{Voters: []uint64{1, 2}}, []byte("state@8")); err != nil {
		t.Fatal(err)
	}
	check(s, 13)
	s.Close()
	s = mustOpen(t, fsys, "/d", opts)
	check(s, 13)
	if err := s.ApplySnapshot(raft.Snapshot{Index: 30, Term: 3, Data: []byte("leader@30")}); err != nil {
		t.Fatal(err)
	}
	check(s)
	if err := s.Save(raft.HardState{Term: 3, Vote: 2, Commit: 30}, conf(makeEntries(31, 3, 3, 10), 32)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = mustOpen(t, fsys, "/d", opts)
	defer s.Close()
	check(s, 32)
}
