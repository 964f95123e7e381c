package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"raftkv/raft"
)

// With Options.WALDir the segments live there, not in <dir>/wal, and a reopen finds
// the log. A reopen that forgets the WAL dir, or names another, is refused rather
// than started with an empty log; so is a WAL dir for a data dir that already has
// its own WAL; and two nodes cannot share a WAL dir.
func TestWALDir(t *testing.T) {
	root := t.TempDir()
	dataDir, walDir := filepath.Join(root, "data"), filepath.Join(root, "fast-disk", "wal")
	opts, _ := testOptions(t, MinSegmentSize)
	opts.WALDir = walDir
	s := mustOpen(t, NewOSFS(), dataDir, opts)
	ents := makeEntries(1, 20, 1, 100)
	if err := s.Save(raft.HardState{Term: 1, Commit: 20}, ents); err != nil {
		t.Fatal(err)
	}
	// A second node on another data dir cannot take the same WAL dir.
	if other, err := Open(NewOSFS(), filepath.Join(root, "other"), opts); !errors.Is(err, ErrLocked) {
		if other != nil {
			other.Close()
		}
		t.Fatalf("a second data dir on the same WAL dir: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := segmentNames(t, walDir); len(segs) == 0 {
		t.Fatalf("no segment in the WAL dir %s", walDir)
	}
	if segs := segmentNames(t, filepath.Join(dataDir, "wal")); len(segs) != 0 {
		t.Fatalf("segments %v in the data dir's own wal/", segs)
	}

	s = mustOpen(t, NewOSFS(), dataDir, opts)
	if last, _ := s.LastIndex(); last != 20 {
		t.Fatalf("reopened with the WAL dir: last index %d, want 20", last)
	}
	s.Close()

	for _, tc := range []struct{ walDir, want string }{
		{"", "start it with --wal-dir " + walDir},
		{filepath.Join(root, "elsewhere"), "give --wal-dir " + walDir},
	} {
		opts.WALDir = tc.walDir
		if s, err := Open(NewOSFS(), dataDir, opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			if s != nil {
				s.Close()
			}
			t.Errorf("reopen with WAL dir %q: %v; want a refusal saying %q", tc.walDir, err, tc.want)
		}
	}

	// A data dir with its own WAL does not silently move it.
	plain := filepath.Join(root, "plain")
	opts.WALDir = ""
	s = mustOpen(t, NewOSFS(), plain, opts)
	if err := s.Save(raft.HardState{Term: 1, Commit: 1}, makeEntries(1, 1, 1, 10)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	opts.WALDir = filepath.Join(root, "new-wal")
	if s, err := Open(NewOSFS(), plain, opts); err == nil || !strings.Contains(err.Error(), "drop --wal-dir") {
		if s != nil {
			s.Close()
		}
		t.Errorf("a WAL dir for a data dir with its own WAL: %v; want a refusal", err)
	}
}

func segmentNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, ok := parseSegmentName(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}
