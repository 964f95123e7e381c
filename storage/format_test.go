package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"raftkv/raft"
)

// testdata/format1 is a data dir written by raftkv before raft's encodings carried a
// version byte: WAL segments of format 1 (entries and hard states in the unversioned
// encoding), written by TestWriteFormat1DataDir at commit 734aa3b, with the segments'
// preallocated zeros cut off to keep it small (recovery reads a segment that ends
// after its last record as a clean one). A data dir of an upgraded member looks just
// like it, so it must keep opening, and be written on in the new format.

// format1Workload is what the data dir holds: a few segments of entries over three
// terms, a snapshot, and a conflicting suffix replaced by a later leader's entries.
func format1Workload(t *testing.T, s *Storage, m *model) {
	saveWithModel(t, s, m, raft.HardState{Term: 1, Vote: 1}, nil)
	for first := uint64(1); first <= 60; first += 10 {
		saveWithModel(t, s, m, raft.HardState{}, makeEntries(first, 10, 1, 100))
	}
	saveWithModel(t, s, m, raft.HardState{Term: 2, Vote: 2, Commit: 40}, makeEntries(61, 20, 2, 60))
	if _, err := s.CreateSnapshot(30, raft.Membership{}, []byte("state at 30")); err != nil {
		t.Fatal(err)
	}
	m.createSnapshot(30, raft.Membership{}, []byte("state at 30"))
	saveWithModel(t, s, m, raft.HardState{Term: 3, Vote: 3, Commit: 70}, makeEntries(75, 11, 3, 80))
}

// format1Options are the options the data dir was written with: small segments, and a
// log cache small enough that most entries are read back from the WAL.
func format1Options(t *testing.T) Options {
	opts, _ := testOptions(t, MinSegmentSize)
	opts.LogCacheBytes = 512
	return opts
}

// TestWriteFormat1DataDir writes the data dir of testdata/format1 when
// RAFTKV_WRITE_FORMAT1_DIR names where. It makes format 1 only on a commit before the
// format changed; it is kept to show how the data dir was made.
func TestWriteFormat1DataDir(t *testing.T) {
	dir := os.Getenv("RAFTKV_WRITE_FORMAT1_DIR")
	if dir == "" {
		t.Skip("set RAFTKV_WRITE_FORMAT1_DIR to write the data dir")
	}
	s := mustOpen(t, NewOSFS(), dir, format1Options(t))
	format1Workload(t, s, &model{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// testdata/format2 is the same workload written at commit 2116cca, the last before
// segments named their member (format 3): segments of format 2, preallocated to the
// test's 4 KiB.

// TestOpenOlderFormatDataDirs opens the data dirs written in formats 1 and 2, reads
// everything back (most entries from the old segments), writes on each, and opens it
// again with segments of both formats: the new ones of the current format, naming the
// member they were written as.
func TestOpenOlderFormatDataDirs(t *testing.T) {
	for _, version := range []uint32{1, 2} {
		t.Run(fmt.Sprintf("format%d", version), func(t *testing.T) {
			testOpenOlderFormatDataDir(t, version)
		})
	}
}

func testOpenOlderFormatDataDir(t *testing.T, version uint32) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(fmt.Sprintf("testdata/format%d", version))); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil || len(segs) < 2 {
		t.Fatalf("testdata/format%d holds segments %v (%v); want several", version, segs, err)
	}
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if h, problem := parseSegmentHeader(b); problem != "" || h.version != version {
			t.Fatalf("%s: version %d (%s); the test data must be of format %d", seg, h.version, problem, version)
		}
	}

	want := &model{}
	scratch := mustOpen(t, NewMemFS(), "scratch", format1Options(t))
	if scratch.OlderBuildsWAL() {
		t.Fatal("a new WAL is reported as an older build's")
	}
	format1Workload(t, scratch, want)
	opts := format1Options(t)
	opts.MemberID = 0xa1
	s := mustOpen(t, NewOSFS(), dir, opts)
	if got := readState(t, s); !equalState(got, want.state()) {
		t.Fatalf("format %d data dir reads as\n%v\nwant\n%v", version, got, want.state())
	}
	if !s.OlderBuildsWAL() {
		t.Fatalf("a WAL of format %d alone is not reported as an older build's", version)
	}
	// Open started a segment of the current format, but nothing was written: a
	// start that stops here leaves the WAL an older build's.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, NewOSFS(), dir, opts)
	if !s.OlderBuildsWAL() {
		t.Fatalf("a WAL of format %d is no longer reported as an older build's after an open and a close that wrote nothing", version)
	}
	// New writes go to a segment of the current format, after the old ones.
	saveWithModel(t, s, want, raft.HardState{Term: 4, Vote: 1, Commit: 85}, makeEntries(86, 30, 4, 90))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(after[len(after)-1])
	if err != nil {
		t.Fatal(err)
	}
	if h, problem := parseSegmentHeader(b); problem != "" || h.version != segmentVersion || h.memberID != 0xa1 {
		t.Fatalf("the newest segment has version %d, member %x (%s), want %d, a1", h.version, h.memberID, problem, segmentVersion)
	}

	s = mustOpen(t, NewOSFS(), dir, opts)
	defer s.Close()
	if s.OlderBuildsWAL() {
		t.Fatal("a WAL this build wrote on is still reported as an older build's")
	}
	if got := readState(t, s); !equalState(got, want.state()) {
		t.Fatalf("after writing on it, the data dir reads as\n%v\nwant\n%v", got, want.state())
	}
}
