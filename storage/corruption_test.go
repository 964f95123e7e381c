package storage

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"raftkv/raft"
)

var corruptSeed = flag.Uint64("corrupt.seed", 7, "seed of the corruption tests' workload")

// corruptionFixture is a data dir with several segments, two snapshots and a last
// segment whose final record is a single entry, and what a reader must see in it.
type corruptionFixture struct {
	disk *MemFS
	opts Options
	full state // everything
	// withoutLast is full without the final entry: what remains if the final record,
	// the only one a tear can take, is cut off.
	withoutLast state
	// candidates are all states the workload passed through, partial operations
	// included.
	candidates []state
	// tailCandidates are the states a truncated last segment may recover: the
	// candidates, each with the newest snapshot file that fits it adopted (see
	// adoptNewerSnapshot).
	tailCandidates []state
	segments       []string // WAL segment paths, oldest first
	snapshots      []string
	// lastRecord is the offset of the final record in the last segment.
	lastRecord int64
}

func newCorruptionFixture(t *testing.T) *corruptionFixture {
	t.Helper()
	f := &corruptionFixture{disk: NewMemFS(), opts: Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize}}
	t.Logf("workload seed %d; replay with -corrupt.seed=%d", *corruptSeed, *corruptSeed)
	ops := buildWorkload(rand.New(rand.NewPCG(*corruptSeed, 7)), 50)
	var m model
	for _, op := range ops {
		f.candidates = append(f.candidates, op.outcomes(&m)...)
		op.apply(&m)
	}
	f.withoutLast = m.state()
	lastOp := workOp{kind: "save", ents: makeEntries(m.lastIndex()+1, 1, m.hs.Term, 40)}
	f.candidates = append(f.candidates, lastOp.outcomes(&m)...)
	ops = append(ops, lastOp)
	lastOp.apply(&m)
	f.full = m.state()

	s := mustOpen(t, f.disk, "/data", f.opts)
	for _, op := range ops {
		if err := op.run(s); err != nil {
			t.Fatalf("%v: %v", op, err)
		}
	}
	f.lastRecord = s.wal.fileOffset - int64(len(appendBatchRecord(nil, 0, lastOp.ents, nil, nil)))
	s.Close()
	names, _ := f.disk.List("/data/wal")
	for _, n := range names {
		f.segments = append(f.segments, filepath.Join("/data/wal", n))
	}
	names, _ = f.disk.List("/data/snap")
	for _, n := range names {
		f.snapshots = append(f.snapshots, filepath.Join("/data/snap", n))
	}
	if len(f.segments) < 3 || len(f.snapshots) != 2 {
		t.Fatalf("fixture has segments %v and snapshots %v; want several segments and 2 snapshots", f.segments, f.snapshots)
	}
	if got := readState(t, mustReopen(t, f.disk, f.opts)); !equalState(got, f.full) {
		t.Fatalf("fixture reads back %v, want %v", got, f.full)
	}
	files := readSnapshotFiles(t, f.disk, "/data/snap")
	for _, c := range f.candidates {
		f.tailCandidates = append(f.tailCandidates, adoptNewerSnapshot(c, files))
	}
	return f
}

// snapshotFile is a snapshot file's contents and kind.
type snapshotFile struct {
	snap raft.Snapshot
	kind snapKind
}

// readSnapshotFiles reads every snapshot file in dir, newest first.
func readSnapshotFiles(t *testing.T, fsys FS, dir string) []snapshotFile {
	t.Helper()
	list, err := listSnapshots(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []snapshotFile
	for _, sf := range list {
		snap, kind, err := readSnapshot(fsys, dir, sf, testClusterID)
		if err != nil {
			t.Fatalf("snapshot %s: %v", sf.name, err)
		}
		files = append(files, snapshotFile{snap: snap, kind: kind})
	}
	return files
}

// adoptNewerSnapshot returns the state recovery makes of a WAL that holds st when the
// snapshot directory holds files (newest first), some of them newer than any marker
// in that WAL. A cut of the last segment takes records off the end of the WAL, the
// marker of a later snapshot among them, but not the snapshot's file. Recovery cannot
// tell that apart from a crash between a snapshot's file and its marker, which leaves
// the same disk (TestSnapshotAheadOfTheWALAfterACrash) and after which it must adopt
// the file: the newest one that fits the log. A file received from the leader
// replaces the log; one made here compacts it, if its term agrees with the log's at
// its index or its index is past the log's end (the application may apply, and
// snapshot, committed entries before this node's own write of them is durable).
// Nothing is lost: the entries it drops are those the snapshot holds.
func adoptNewerSnapshot(st state, files []snapshotFile) state {
	for _, f := range files {
		index := f.snap.Index
		if index <= st.Snap.Index {
			break
		}
		if f.kind == snapCompact && index <= st.Last && st.Entries[index-st.First].Term != f.snap.Term {
			continue // recovery skips it as not of this log
		}
		if f.kind == snapInstall || index >= st.Last {
			st.Entries, st.Last = nil, index
		} else {
			st.Entries = st.Entries[index+1-st.First:]
		}
		st.Snap, st.First = f.snap, index+1
		return st
	}
	return st
}

func mustReopen(t *testing.T, disk *MemFS, opts Options) *Storage {
	t.Helper()
	s := mustOpen(t, disk, "/data", opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func fileSize(t *testing.T, fsys FS, path string) int64 {
	t.Helper()
	f, err := fsys.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkNamedCorruption asserts that err reports corruption of path.
func checkNamedCorruption(t *testing.T, err error, path, what string) {
	t.Helper()
	var ce *CorruptError
	switch {
	case errors.As(err, &ce):
		if ce.File != path {
			t.Fatalf("%s: the error names %s at %d, not the damaged %s: %v", what, ce.File, ce.Offset, path, err)
		}
	case errors.Is(err, ErrClusterMismatch):
		// A flip in the cluster id of the first segment reads as another cluster's WAL.
	default:
		t.Fatalf("%s: Open failed with %v; want a CorruptError naming %s", what, err, path)
	}
}

// TestBitFlipsAreFoundAndNamed flips one bit at many offsets of every segment. Recovery
// must either refuse with an error naming the file, or read everything (the flip hit
// bytes no record uses). The one exception is the final record of the last segment,
// which a flip makes look like a torn write: it may be cut off, and only it.
func TestBitFlipsAreFoundAndNamed(t *testing.T) {
	f := newCorruptionFixture(t)
	stride := int64(5)
	if testing.Short() || raceEnabled {
		stride = 23
	}
	flips, refused, cut := 0, 0, 0
	for i, path := range f.segments {
		isLast := i == len(f.segments)-1
		size := fileSize(t, f.disk, path)
		for off := int64(i % 5); off < size; off += stride {
			disk := f.disk.clone()
			flipBit(t, disk, path, off, uint(off%8))
			what := fmt.Sprintf("bit %d of byte %d of %s", off%8, off, path)
			s, err := Open(disk, "/data", f.opts)
			flips++
			if err != nil {
				checkNamedCorruption(t, err, path, what)
				refused++
				continue
			}
			got := readState(t, s)
			s.Close()
			switch {
			case equalState(got, f.full):
			case isLast && off >= f.lastRecord && equalState(got, f.withoutLast):
				cut++
			default:
				t.Fatalf("%s: recovery read %v; want %v, or refusal", what, got, f.full)
			}
		}
	}
	t.Logf("%d flips: %d refused as corruption, %d cut the final record as torn, the rest hit unused bytes", flips, refused, cut)
	if refused < flips/2 {
		t.Errorf("only %d of %d flips were found; most bytes of a segment are records", refused, flips)
	}
}

// TestTruncationsAreFoundOrTail cuts every segment at many lengths. A segment with a
// successor must hold every record up to the end its successor names: shorter is
// corruption. The last segment cut short is a torn tail: recovery yields a state the
// workload went through, never garbage; the snapshot files stay as they were, so that
// state may have a later snapshot adopted (adoptNewerSnapshot).
func TestTruncationsAreFoundOrTail(t *testing.T) {
	f := newCorruptionFixture(t)
	stride := int64(3)
	if testing.Short() || raceEnabled {
		stride = 17
	}
	for i, path := range f.segments {
		isLast := i == len(f.segments)-1
		size := fileSize(t, f.disk, path)
		for length := int64(0); length < size; length += stride {
			disk := f.disk.clone()
			truncateDurably(disk, path, length)
			what := fmt.Sprintf("%s cut to %d bytes", path, length)
			s, err := Open(disk, "/data", f.opts)
			if err != nil {
				checkNamedCorruption(t, err, path, what)
				if isLast && length >= segmentHeaderSize+recordHeaderSize+maxSegmentStartPayload {
					t.Fatalf("%s: the last segment cut after its start record must recover, got %v", what, err)
				}
				continue
			}
			got := readState(t, s)
			s.Close()
			if !isLast && !equalState(got, f.full) {
				t.Fatalf("%s: recovery read %v; want %v or refusal", what, got, f.full)
			}
			if isLast && !matchesAny(got, f.tailCandidates) {
				t.Fatalf("%s: recovery read %v, not a state the workload passed through (with the newest snapshot file that fits it)", what, got)
			}
		}
	}
}

// TestSnapshotFlipsFallBack flips bytes of the snapshot files: the newest falls back to
// the older one (same log and hard state), the older one is never needed. Unless the
// newest was received from the leader: it replaced the whole log, so no older
// snapshot leads to the log after it, and recovery must refuse, naming it.
func TestSnapshotFlipsFallBack(t *testing.T) {
	f := newCorruptionFixture(t)
	files := readSnapshotFiles(t, f.disk, "/data/snap")
	for _, path := range f.snapshots {
		size := fileSize(t, f.disk, path)
		name := filepath.Base(path)
		noFallback := name == snapshotName(files[0].snap.Index, files[0].snap.Term) && files[0].kind == snapInstall
		for off := int64(0); off < size; off += 3 {
			disk := f.disk.clone()
			flipBit(t, disk, path, off, uint(off%8))
			s, err := Open(disk, "/data", f.opts)
			if noFallback {
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), name) {
					t.Fatalf("flip at %d of the installed snapshot %s: Open returned %v; want ErrCorrupt naming it", off, path, err)
				}
				if s != nil {
					s.Close()
				}
				continue
			}
			if err != nil {
				t.Fatalf("flip at %d of %s: %v; a bad snapshot must fall back to an older one", off, path, err)
			}
			got := readState(t, s)
			s.Close()
			if got.HS != f.full.HS || got.Last != f.full.Last || got.Snap.Index > f.full.Snap.Index {
				t.Fatalf("flip at %d of %s: recovery read %v; want the log of %v", off, path, got, f.full)
			}
			for _, e := range got.Entries {
				if e.Index >= f.full.First && !equalEntry(e, f.full.Entries[e.Index-f.full.First]) {
					t.Fatalf("flip at %d of %s: entry %d differs", off, path, e.Index)
				}
			}
		}
	}
}

func equalEntry(a, b raft.Entry) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && string(a.Data) == string(b.Data)
}

func flipBit(t *testing.T, fsys FS, path string, off int64, bit uint) {
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
	b[0] ^= 1 << bit
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// truncateDurably cuts a MemFS file to length in both its live and durable states.
func truncateDurably(m *MemFS, path string, length int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	node := m.live[path]
	node.data = node.data[:min(int64(len(node.data)), length)]
	node.size = length
	c := m.durable.contents[node.ino]
	c.data = c.data[:min(int64(len(c.data)), length)]
	c.size = length
}

// TestRecoveryLeavesNoGoroutines opens a WAL of many segments that fails early in the
// recovery pipeline, and one that succeeds, and checks that every goroutine recovery
// started has ended.
func TestRecoveryLeavesNoGoroutines(t *testing.T) {
	disk := NewMemFS()
	opts := Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize}
	s := mustOpen(t, disk, "/data", opts)
	if err := s.Save(raft.HardState{Term: 1}, makeEntries(1, 600, 1, 200)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	segments, _ := disk.List("/data/wal")
	if len(segments) < 20 {
		t.Fatalf("%d segments; the test wants more than the pipeline's queues hold", len(segments))
	}
	before := runtime.NumGoroutine()
	bad := disk.clone()
	flipBit(t, bad, "/data/wal/"+segments[0], 300, 2)
	if _, err := Open(bad, "/data", opts); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with the first segment damaged: %v; want ErrCorrupt", err)
	}
	s = mustOpen(t, disk, "/data", opts)
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after recovery, %d before: recovery leaked some", n, before)
	}
}
