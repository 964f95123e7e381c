package kv

import (
	"bufio"
	"fmt"
	"io"
	"sort"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A member that receives a snapshot from its leader writes the stream into
// sstables as it arrives (WriteSnapshotTables), and the snapshot later applies by
// ingesting them (RestoreFromTables): the records are written once, while the
// body streams in, rather than saved as a stream and then replayed. The tables
// belong to the store's engine (its comparer, table format and file system), so
// they are made through the store, beside whichever directory the caller names.

// WriteSnapshotTables reads the engine snapshot stream r (Store.WriteSnapshot's)
// to its end and writes its records into sstables in the new directory dir,
// synced, for RestoreFromTables. It returns the stream's size. It does not touch
// the store's state, and runs beside Apply. A stream that is corrupt or cut
// short fails with ErrCorruptSnapshot; on any error, dir is removed. Memory: a
// chunk and a table's index and filter.
func (s *Store) WriteSnapshotTables(r io.Reader, dir string) (int64, error) {
	s.mu.RLock()
	e, closed := s.mu.st.e, s.mu.closed
	s.mu.RUnlock()
	if closed {
		return 0, ErrClosed
	}
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, 1<<20)
	err := readEngineSnapshotHeader(br)
	if err == nil {
		_, err = e.writeTables(br, true, dir)
	}
	if err != nil {
		_ = e.opts.FS.RemoveAll(dir)
		return cr.n, err
	}
	return cr.n, nil
}

// RestoreFromTables replaces the store's state with the tables WriteSnapshotTables
// wrote in dir, as RestoreFrom does with a stream: afterwards AppliedIndex and
// AppliedTerm are the stream's. The tables are linked into the engine, and dir
// keeps them (linkForIngest): it is the caller's to remove. A failure past the start leaves the store refusing Apply,
// and its engine refused by OpenStore, until a restore succeeds. A non-nil rec is
// written in the batch that ends the restore (see RestoreRecord).
func (s *Store) RestoreFromTables(dir string, rec *RestoreRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	st := s.mu.st
	fs := st.e.opts.FS
	names, err := fs.List(dir)
	if err != nil {
		return fmt.Errorf("kv: listing the snapshot's tables in %q: %w", dir, err)
	}
	sort.Strings(names)
	var paths []string
	for _, name := range names {
		paths = append(paths, fs.PathJoin(dir, name))
	}
	if len(paths) == 0 {
		return fmt.Errorf("%w: %q holds no tables", ErrCorruptSnapshot, dir)
	}
	term := st.e.term
	links, err := st.e.linkForIngest(paths)
	defer func() { _ = fs.RemoveAll(st.e.restoreDir()) }()
	if err == nil {
		err = st.e.markRestoring()
	}
	if err == nil {
		err = st.e.replaceWithTables(links, rec)
	}
	if err != nil {
		st.cutOff(err)
		return err
	}
	return s.reload(st, term)
}

// linkForIngest hard-links the tables at paths into the engine's restore directory,
// made afresh, and returns the links. pebble's Ingest removes the files it is
// given; the tables in dir must outlive the restore, which a crash may cut off
// once the store is cleared, and which the next start then runs again from them.
// Where the file system has no hard links, the tables are copied (and synced).
func (e *engine) linkForIngest(paths []string) ([]string, error) {
	fs := e.opts.FS
	dir := e.restoreDir()
	if err := freshDir(fs, dir); err != nil {
		return nil, err
	}
	links := make([]string, len(paths))
	for i, path := range paths {
		links[i] = fs.PathJoin(dir, fs.PathBase(path))
		if err := vfs.LinkOrCopy(fs, path, links[i]); err != nil {
			return nil, fmt.Errorf("kv: linking the snapshot's table %q into %q: %w", path, dir, err)
		}
	}
	return links, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
