package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"raftkv/raft"
)

// A WAL written before the member record (or without Options.MemberID) takes the
// first member id it is opened with; after that, opening it as another member is
// refused, naming both and the record, and the log is untouched.
func TestWALMemberRecord(t *testing.T) {
	dir := t.TempDir()
	opts, _ := testOptions(t, MinSegmentSize)
	s := mustOpen(t, NewOSFS(), dir, opts) // no member id: nothing recorded
	if err := s.Save(raft.HardState{Term: 3, Vote: 7, Commit: 10}, makeEntries(1, 10, 3, 100)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	record := filepath.Join(dir, "wal", walMemberMarker)
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("a WAL opened without a member id has a member record: %v", err)
	}

	opts.MemberID = 0xa1
	s = mustOpen(t, NewOSFS(), dir, opts)
	if last, _ := s.LastIndex(); last != 10 {
		t.Fatalf("the WAL that took member a1: last index %d, want 10", last)
	}
	s.Close()
	if b, err := os.ReadFile(record); err != nil || string(b) != "a1\n" {
		t.Fatalf("member record %q, %v; want \"a1\\n\"", b, err)
	}
	s = mustOpen(t, NewOSFS(), dir, opts) // the same member again
	s.Close()

	opts.MemberID = 0xb2
	if other, err := Open(NewOSFS(), dir, opts); err == nil {
		other.Close()
		t.Fatal("member b2 opened member a1's WAL")
	} else {
		for _, want := range []string{"member a1", "member b2", record} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not say %q", err, want)
			}
		}
	}

	// Without a member id nothing is checked (tools that read any WAL).
	opts.MemberID = 0
	s = mustOpen(t, NewOSFS(), dir, opts)
	if hs, _ := s.InitialState(); hs.Vote != 7 || hs.Term != 3 {
		t.Fatalf("hard state after the refusal: %+v", hs)
	}
	s.Close()

	if err := os.WriteFile(record, []byte("not hex\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.MemberID = 0xa1
	if other, err := Open(NewOSFS(), dir, opts); err == nil || !strings.Contains(err.Error(), `records "not hex"`) {
		if other != nil {
			other.Close()
		}
		t.Fatalf("a member record that is not an id: %v", err)
	}
}

// Segments name their member (format 3), so a segment of another member's WAL is
// refused wherever it turns up: one copied in among a member's own segments, or a
// whole WAL copied segment by segment into a WAL dir that records this member.
func TestWALSegmentsNameTheirMember(t *testing.T) {
	write := func(dir string, id uint64) []string {
		opts, _ := testOptions(t, MinSegmentSize)
		opts.MemberID = id
		s := mustOpen(t, NewOSFS(), dir, opts)
		for first := uint64(1); first <= 60; first += 10 {
			if err := s.Save(raft.HardState{Term: 2, Vote: id, Commit: first - 1}, makeEntries(first, 10, 2, 200)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		segs, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
		if err != nil || len(segs) < 3 {
			t.Fatalf("member %x's WAL has segments %v (%v); want at least 3", id, segs, err)
		}
		return segs
	}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func(dir string, id uint64) error {
		opts, _ := testOptions(t, MinSegmentSize)
		opts.MemberID = id
		s, err := Open(NewOSFS(), dir, opts)
		if err == nil {
			s.Close()
		}
		return err
	}
	wantRefusal := func(what string, err error, wants ...string) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: opened", what)
		}
		for _, want := range wants {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: refusal %q does not say %q", what, err, want)
			}
		}
	}

	a, b := t.TempDir(), t.TempDir()
	aSegs, bSegs := write(a, 0xa1), write(b, 0xb2)
	for _, seg := range aSegs {
		h, problem := parseSegmentHeader(mustRead(t, seg))
		if problem != "" || h.memberID != 0xa1 {
			t.Fatalf("%s names member %x (%s), want a1", seg, h.memberID, problem)
		}
	}

	// One of b2's segments among a1's own.
	mixed := t.TempDir()
	if err := os.CopyFS(mixed, os.DirFS(a)); err != nil {
		t.Fatal(err)
	}
	copyFile(bSegs[1], filepath.Join(mixed, "wal", filepath.Base(bSegs[1])))
	err := open(mixed, 0xa1)
	wantRefusal("a1's WAL with one of b2's segments", err, "segment of member b2", filepath.Base(aSegs[0]), "member a1")
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("a1's WAL with one of b2's segments: %v, want ErrCorrupt", err)
	}
	wantRefusal("the same without a member id", open(mixed, 0), "segment of member b2")

	// All of b2's segments, copied one by one into a1's WAL dir, which records a1.
	for _, seg := range aSegs {
		if err := os.Remove(seg); err != nil {
			t.Fatal(err)
		}
	}
	for _, seg := range bSegs {
		copyFile(seg, filepath.Join(a, "wal", filepath.Base(seg)))
	}
	wantRefusal("b2's segments in a1's WAL dir", open(a, 0xa1), "member b2", "member a1", filepath.Base(bSegs[0]))
	// b2's own start on them passes the segments and is refused by a1's record.
	wantRefusal("b2 on its segments in a1's WAL dir", open(a, 0xb2), "member a1", filepath.Join(a, "wal", walMemberMarker))
	if err := open(b, 0xb2); err != nil {
		t.Fatalf("b2 on its own WAL: %v", err)
	}
}

// A format 3 header's checksum covers the member id: a flipped bit there is damage,
// not another member.
func TestSegmentHeaderChecksumCoversMember(t *testing.T) {
	h := appendSegmentHeader(nil, testClusterID, 0xa1, 7)
	got, problem := parseSegmentHeader(h)
	if problem != "" || got != (segmentHeader{clusterID: testClusterID, memberID: 0xa1, seq: 7, version: segmentVersion}) {
		t.Fatalf("header reads back as %+v (%s)", got, problem)
	}
	for _, off := range []int{36, 43, 50, 63} {
		bad := slices.Clone(h)
		bad[off] ^= 1
		if _, problem := parseSegmentHeader(bad); problem != "segment header fails its checksum" {
			t.Errorf("bit flipped at %d: %q, want a checksum failure", off, problem)
		}
	}
	// A later format with a sound checksum is named as such.
	later := slices.Clone(h)
	binary.LittleEndian.PutUint32(later[8:12], segmentVersion+1)
	binary.LittleEndian.PutUint32(later[32:36], segmentHeaderChecksum(later, segmentVersion))
	if _, problem := parseSegmentHeader(later); !strings.Contains(problem, fmt.Sprintf("format version %d", segmentVersion+1)) {
		t.Errorf("a later format: %q", problem)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
