package storage

import (
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"

	"raftkv/raft"
)

// checkNoSpace fails the test unless err is the one-line disk-full error of a write
// under dir: ErrDiskFull, ErrFailed and ENOSPC at once, naming the file, what it
// needed and what is free, and saying what to do.
func checkNoSpace(t *testing.T, err error, dir string) *NoSpaceError {
	t.Helper()
	var nse *NoSpaceError
	if !errors.As(err, &nse) || !errors.Is(err, ErrDiskFull) || !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v (%T); want a *NoSpaceError matching ErrDiskFull, ErrFailed and syscall.ENOSPC", err, err)
	}
	msg := err.Error()
	for _, want := range []string{"disk full", nse.Path, "free space", "restart"} {
		if !strings.Contains(msg, want) {
			t.Errorf("disk-full message %q lacks %q", msg, want)
		}
	}
	if !strings.HasPrefix(nse.Path, dir) {
		t.Errorf("disk-full error names %q; want a file under %s", nse.Path, dir)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("disk-full message spans lines: %q", msg)
	}
	return nse
}

// saveUntilFailure saves batches of 5 entries of size bytes from index first on
// until one fails, recording the saves that succeeded in m, and returns the failed
// save and its error.
func saveUntilFailure(t *testing.T, s *Storage, m *model, first uint64, size int) (workOp, error) {
	t.Helper()
	for i := first; i < first+100_000; i += 5 {
		op := workOp{kind: "save", hs: raft.HardState{Term: 1, Commit: i}, ents: makeEntries(i, 5, 1, size)}
		if err := op.run(s); err != nil {
			return op, err
		}
		op.apply(m)
	}
	t.Fatalf("100,000 entries from %d saved without the disk filling up", first)
	return workOp{}, nil
}

func TestDiskFullStopsWritesAndKeepsSyncedData(t *testing.T) {
	for _, tc := range []struct {
		name string
		// arm makes the disk full, after Open.
		arm func(mem *MemFS, ffs *FaultFS)
		// needed is whether the error must say how much the failed call needed.
		needed bool
	}{
		{"write fails", func(_ *MemFS, ffs *FaultFS) { ffs.FailNth(OpWrite, 3, syscall.ENOSPC) }, true},
		// The WAL retries a generous preallocation with what the write needs;
		// only if that fails too is the disk full.
		{"preallocation fails", func(_ *MemFS, ffs *FaultFS) {
			ffs.FailNth(OpPreallocate, 1, syscall.ENOSPC)
			ffs.FailNth(OpPreallocate, 2, syscall.ENOSPC)
		}, true},
		{"fsync fails", func(_ *MemFS, ffs *FaultFS) { ffs.FailNth(OpSync, 2, syscall.ENOSPC) }, false},
		{"small disk", func(mem *MemFS, _ *FaultFS) { mem.SetCapacity(64 << 10) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := NewMemFS()
			ffs := NewFaultFS(mem)
			opts, logs := testOptions(t, 4<<10)
			s := mustOpen(t, ffs, "/d", opts)
			var m model
			tc.arm(mem, ffs)
			failed, err := saveUntilFailure(t, s, &m, 1, 100)
			nse := checkNoSpace(t, err, "/d/wal/")
			if tc.needed && nse.Needed <= 0 {
				t.Errorf("disk-full error %q does not say how much the write needed", err)
			}
			if nse.Usage.Total == 0 {
				t.Errorf("disk-full error %q does not say how much is free", err)
			}
			if _, err2 := s.LastIndex(); err2 != err {
				t.Errorf("LastIndex after disk full: %v; want the first error", err2)
			}
			if lines := logs.find("ERROR"); len(lines) != 0 {
				t.Errorf("storage logged %q; a full disk is the caller's to report, once", lines)
			}
			s.Close()
			mem.Crash()
			mem.SetCapacity(0) // space freed
			s = mustOpen(t, mem, "/d", opts)
			defer s.Close()
			// Every synced save survives; of the failed one, entries written before
			// the failure may survive too, never anything else.
			if got := readState(t, s); !matchesAny(got, failed.outcomes(&m)) {
				t.Fatalf("after disk full and restart: got %v, want every synced save %v (plus maybe a prefix of %v)", got, m.state(), failed)
			}
		})
	}
}

// A segment is preallocated by what the free space allows, so a member starts and
// runs on a volume smaller than a segment, and fills it before it fails.
func TestWALPreallocationAdaptsToFreeSpace(t *testing.T) {
	const capacity = 4 << 20
	mem := NewMemFS()
	mem.SetCapacity(capacity)
	opts, _ := testOptions(t, DefaultSegmentSize) // 64 MiB segments on a 4 MiB disk
	s := mustOpen(t, mem, "/d", opts)
	seg := "/d/wal/" + segmentName(1)
	if size := fileSize(t, mem, seg); size > capacity/preallocFreeDivisor {
		t.Fatalf("a new segment on a disk of %d bytes is %d bytes; want at most a quarter of the free space", capacity, size)
	}
	var m model
	failed, err := saveUntilFailure(t, s, &m, 1, 1000)
	nse := checkNoSpace(t, err, "/d/wal/")
	if nse.Usage.Free >= nse.Needed {
		t.Errorf("disk full with %d bytes free for a write of %d", nse.Usage.Free, nse.Needed)
	}
	// The WAL used the disk: it failed for want of room for its own write, not for
	// a reservation far ahead of it.
	if written := int64(len(m.ents)) * 1000; written < capacity*9/10 {
		t.Errorf("the disk filled after %d bytes of entries on a disk of %d", written, capacity)
	}
	s.Close()

	// A restart on the still-full disk stops with the same error, not a crash:
	// either at open or at the first write.
	s, err = Open(mem, "/d", opts)
	if err == nil {
		_, err = saveUntilFailure(t, s, m.clone(), m.lastIndex()+1, 1000)
		s.Close()
	}
	checkNoSpace(t, err, "/d/wal/")

	mem.SetCapacity(2 * capacity) // space freed
	s = mustOpen(t, mem, "/d", opts)
	defer s.Close()
	if got := readState(t, s); !matchesAny(got, failed.outcomes(&m)) {
		t.Fatalf("after the disk filled and was freed: got %v, want every synced save %v", got, m.state())
	}
	last, _ := s.LastIndex()
	saveWithModel(t, s, &m, raft.HardState{Term: 1, Commit: last + 5}, makeEntries(last+1, 5, 1, 1000))
}

// On a roomy disk a segment is preallocated whole, as before: the adaptation costs
// nothing there.
func TestWALPreallocatesWholeSegmentOnRoomyDisk(t *testing.T) {
	mem := NewMemFS()
	opts, _ := testOptions(t, 1<<20)
	s := mustOpen(t, mem, "/d", opts)
	defer s.Close()
	if size := fileSize(t, mem, "/d/wal/"+segmentName(1)); size != 1<<20 {
		t.Fatalf("segment is %d bytes on an unbounded disk; want the whole segment size %d", size, 1<<20)
	}
}

func TestSnapshotWriteOnFullDiskStops(t *testing.T) {
	mem := NewMemFS()
	ffs := NewFaultFS(mem)
	opts, _ := testOptions(t, 64<<10)
	s := mustOpen(t, ffs, "/d", opts)
	defer s.Close()
	var m model
	saveWithModel(t, s, &m, raft.HardState{Term: 1, Commit: 10}, makeEntries(1, 10, 1, 100))
	ffs.FailNth(OpWrite, 1, syscall.ENOSPC)
	_, err := s.CreateSnapshotFrom(10, raft.Membership{}, func(w io.Writer) error {
		_, err := w.Write(make([]byte, 3000))
		return err
	})
	nse := checkNoSpace(t, err, "/d/snap/")
	if nse.Needed <= 0 {
		t.Errorf("snapshot disk-full error %q does not say how much the write needed", err)
	}
	if err2 := s.Save(raft.HardState{Term: 1, Commit: 11}, makeEntries(11, 1, 1, 10)); err2 != err {
		t.Errorf("Save after the snapshot's disk-full: %v; want the same error", err2)
	}
}

// A snapshot file the WAL records, removed by hand, is logged by name, and the
// member recovers from an older one, or from the log if there is none.
func TestMissingSnapshotIsLoggedAndRecovered(t *testing.T) {
	for _, tc := range []struct {
		name    string
		removed []uint64 // indexes of the snapshot files removed
		want    uint64   // the snapshot recovered from
	}{
		{"an older one is left", []uint64{45}, 20},
		{"none is left, the log is whole", []uint64{45, 20}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := NewMemFS()
			opts, logs := testOptions(t, 1<<20) // one segment: the log is never dropped
			s := mustOpen(t, fsys, "/d", opts)
			var m model
			saveWithModel(t, s, &m, raft.HardState{Term: 2, Commit: 50}, makeEntries(1, 60, 2, 100))
			want := m.clone()
			for _, index := range []uint64{20, 45} {
				if _, err := s.CreateSnapshot(index, raft.Membership{}, []byte("state")); err != nil {
					t.Fatal(err)
				}
				if index == tc.want {
					want.createSnapshot(index, raft.Membership{}, []byte("state"))
				}
			}
			s.Close()
			for _, index := range tc.removed {
				if err := fsys.Remove("/d/snap/" + snapshotName(index, 2)); err != nil {
					t.Fatal(err)
				}
			}
			s = mustOpen(t, fsys, "/d", opts)
			defer s.Close()
			if got := readState(t, s); !equalState(got, want.state()) {
				t.Fatalf("after removing snapshots %v: got %v, want %v", tc.removed, got, want.state())
			}
			if lines := logs.find("WARN", "missing", snapshotName(45, 2)); len(lines) != 1 {
				t.Errorf("want one warning naming the missing snapshot %s, got %q", snapshotName(45, 2), lines)
			}
		})
	}
}

// Without an older snapshot or the log before it, the refusal names the missing file.
func TestMissingSnapshotWithoutFallbackIsRefusedByName(t *testing.T) {
	fsys := NewMemFS()
	opts, _ := testOptions(t, 4<<10)
	opts.SnapshotsToKeep = 1 // the log below each snapshot is dropped
	s := mustOpen(t, fsys, "/d", opts)
	var m model
	for i := uint64(1); i <= 200; i += 10 {
		saveWithModel(t, s, &m, raft.HardState{Term: 2, Commit: i + 9}, makeEntries(i, 10, 2, 100))
	}
	if _, err := s.CreateSnapshot(190, raft.Membership{}, []byte("state")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	name := snapshotName(190, 2)
	if err := fsys.Remove("/d/snap/" + name); err != nil {
		t.Fatal(err)
	}
	_, err := Open(fsys, "/d", opts)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name+" (missing)") {
		t.Fatalf("Open without the only snapshot the log needs: %v; want ErrCorrupt naming %s as missing", err, name)
	}
}

// A generous preallocation that fails (the disk filled between statfs and
// fallocate) is retried with what the write needs; only that failing is a full disk.
func TestWALPreallocationRetriesWithWhatTheWriteNeeds(t *testing.T) {
	mem := NewMemFS()
	ffs := NewFaultFS(mem)
	opts, _ := testOptions(t, 4<<10)
	s := mustOpen(t, ffs, "/d", opts)
	defer s.Close()
	var m model
	calls := ffs.Calls(OpPreallocate)
	ffs.FailNth(OpPreallocate, 1, syscall.ENOSPC)
	for i := uint64(1); ffs.Calls(OpPreallocate) < calls+2; i += 5 {
		saveWithModel(t, s, &m, raft.HardState{Term: 1, Commit: i}, makeEntries(i, 5, 1, 100))
	}
	if got := readState(t, s); !equalState(got, m.state()) {
		t.Fatalf("after a preallocation retried: got %v, want %v", got, m.state())
	}
}

func TestOSFSUsage(t *testing.T) {
	dir := t.TempDir()
	u, err := NewOSFS().Usage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Total <= 0 || u.Free < 0 || u.Free > u.Total {
		t.Errorf("Usage(%s) = %+v; want 0 <= Free <= Total and Total > 0", dir, u)
	}
	if u.Mount == "" || !strings.HasPrefix(dir, u.Mount) {
		t.Errorf("Usage(%s).Mount = %q; want one of its ancestors", dir, u.Mount)
	}
	if _, err := NewOSFS().Usage(dir + "/missing"); err == nil {
		t.Errorf("Usage of a missing directory succeeded")
	}
}

func TestMemFSCapacity(t *testing.T) {
	mem := NewMemFS()
	mem.SetCapacity(10_000)
	f, err := mem.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 6000), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Preallocate(12_000); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("preallocating past the capacity: %v; want ENOSPC", err)
	}
	g, err := mem.Create("/g")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt(make([]byte, 5000), 0); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("writing past the capacity: %v; want ENOSPC", err)
	}
	if size, _ := g.Size(); size != 0 {
		t.Errorf("a refused write left the file at %d bytes; want it unchanged", size)
	}
	if u, _ := mem.Usage("/"); u.Total != 10_000 || u.Free != 4000 {
		t.Errorf("Usage = %+v; want Total 10000, Free 4000", u)
	}
	if err := mem.Remove("/f"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt(make([]byte, 5000), 0); err != nil {
		t.Errorf("writing after space was freed: %v", err)
	}
}
