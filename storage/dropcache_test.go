package storage

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"raftkv/raft"
)

// traceFS wraps an FS and records, per path, the file calls that decide what
// recovery reads: sync, drop (DropCache) and read.
type traceFS struct {
	FS
	mu     sync.Mutex
	events map[string][]string
}

func newTraceFS(inner FS) *traceFS { return &traceFS{FS: inner, events: map[string][]string{}} }

func (t *traceFS) record(path, ev string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events[path] = append(t.events[path], ev)
}

func (t *traceFS) trace(path string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.events[path])
}

func (t *traceFS) wrap(name string, f File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &traceFile{File: f, fs: t, name: name}, nil
}

func (t *traceFS) Create(name string) (File, error) {
	f, err := t.FS.Create(name)
	return t.wrap(name, f, err)
}

func (t *traceFS) Open(name string) (File, error) {
	f, err := t.FS.Open(name)
	return t.wrap(name, f, err)
}

func (t *traceFS) OpenReadWrite(name string) (File, error) {
	f, err := t.FS.OpenReadWrite(name)
	return t.wrap(name, f, err)
}

type traceFile struct {
	File
	fs   *traceFS
	name string
}

func (f *traceFile) Sync() error {
	f.fs.record(f.name, "sync")
	return f.File.Sync()
}

func (f *traceFile) DropCache() error {
	err := f.File.DropCache()
	if err == nil {
		f.fs.record(f.name, "drop")
	}
	return err
}

func (f *traceFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.record(f.name, "read")
	return f.File.ReadAt(p, off)
}

// After a failed fdatasync Linux may keep the pages it could not write cached and
// marked clean, so the fsync at restart succeeds and a replay from the page cache
// would trust entries the disk does not hold (fsyncgate). Open must sync every WAL
// segment and drop its cached pages before it reads the segment: on the real file
// system, so that posix_fadvise itself is exercised.
func TestOpenDropsTheCacheOfEverySegmentBeforeReadingIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	opts, _ := testOptions(t, MinSegmentSize)
	s := mustOpen(t, NewOSFS(), dir, opts)
	for first := uint64(1); first < 40; first += 4 {
		if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: first + 3}, makeEntries(first, 4, 1, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(dir, "wal")
	names, err := NewOSFS().List(walDir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, name := range names {
		if _, ok := parseSegmentName(name); ok {
			segs = append(segs, filepath.Join(walDir, name))
		}
	}
	if len(segs) < 3 {
		t.Fatalf("the WAL has %d segments, the test wants several", len(segs))
	}

	fsys := newTraceFS(NewOSFS())
	s = mustOpen(t, fsys, dir, opts)
	defer s.Close()
	if last, _ := s.LastIndex(); last != 40 {
		t.Fatalf("after the restart the log ends at %d, want 40", last)
	}
	for _, seg := range segs {
		trace := fsys.trace(seg)
		firstRead := slices.Index(trace, "read")
		if firstRead < 0 {
			t.Errorf("%s: never read by recovery (calls %v)", seg, trace)
			continue
		}
		sync := slices.Index(trace[:firstRead], "sync")
		if sync < 0 || !slices.Contains(trace[sync:firstRead], "drop") {
			t.Errorf("%s: recovery read it before syncing it and dropping its cached pages (calls %v)", seg, trace)
		}
	}
}
