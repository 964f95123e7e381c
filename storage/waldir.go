package storage

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// walDirMarker is the file in the data dir that names the WAL's directory when it is
// not <data dir>/wal (Options.WALDir). Without it, a restart that forgot --wal-dir
// would find an empty <data dir>/wal and start the node with no log: its votes and
// acknowledged entries forgotten.
const walDirMarker = "wal-dir"

// useWALDir settles where the WAL lives: walDir if set, else <dir>/wal, checking it
// against what the data dir recorded, and recording it the first time.
func (s *Storage) useWALDir(walDir string) error {
	recorded, err := s.readWALDirMarker()
	if err != nil {
		return err
	}
	if walDir == "" {
		if recorded != "" {
			return fmt.Errorf("data dir %q keeps its WAL in %q (it was started with --wal-dir %s), but no WAL dir is given; "+
				"start it with --wal-dir %s", s.dir, recorded, recorded, recorded)
		}
		return nil
	}
	walDir, err = filepath.Abs(walDir)
	if err != nil {
		return fmt.Errorf("storage: WAL dir %q: %w", walDir, err)
	}
	if recorded != "" && recorded != walDir {
		return fmt.Errorf("data dir %q keeps its WAL in %q, but --wal-dir is %q; give --wal-dir %s, or move the WAL's files there",
			s.dir, recorded, walDir, recorded)
	}
	if recorded == "" {
		// A data dir that already has its own WAL cannot switch silently.
		if names, err := s.fs.List(filepath.Join(s.dir, "wal")); err == nil {
			for _, name := range names {
				if _, ok := parseSegmentName(name); ok {
					return fmt.Errorf("data dir %q holds its WAL in %s, but --wal-dir is %q; drop --wal-dir, "+
						"or move the segments there first", s.dir, filepath.Join(s.dir, "wal"), walDir)
				}
			}
		}
	}
	if err := makeDir(s.fs, walDir); err != nil {
		return err
	}
	lockPath := filepath.Join(walDir, lockFileName)
	lock, err := s.fs.Lock(lockPath)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return fmt.Errorf("%w: WAL dir %q is in use by another running node (it holds the lock on %s); "+
				"stop that node first, or point --wal-dir elsewhere", ErrLocked, walDir, lockPath)
		}
		return fmt.Errorf("storage: locking WAL dir: %w", err)
	}
	if recorded == "" {
		if err := s.writeWALDirMarker(walDir); err != nil {
			lock.Close()
			return err
		}
	}
	s.walDir, s.walLock = walDir, lock
	return nil
}

// readWALDirMarker returns the WAL dir the data dir recorded, or "" if none.
func (s *Storage) readWALDirMarker() (string, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return "", fmt.Errorf("storage: listing data dir: %w", err)
	}
	found := false
	for _, name := range names {
		found = found || name == walDirMarker
	}
	if !found {
		return "", nil
	}
	path := filepath.Join(s.dir, walDirMarker)
	f, err := s.fs.Open(path)
	if err != nil {
		return "", fmt.Errorf("storage: opening %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil || size > 4096 {
		return "", fmt.Errorf("storage: %s is not a WAL dir record (%d bytes, %v)", path, size, err)
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("storage: reading %s: %w", path, err)
	}
	dir := strings.TrimSpace(string(buf))
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("storage: %s records %q, not an absolute path; write the WAL dir's path in it", path, dir)
	}
	return dir, nil
}

// writeWALDirMarker records walDir in the data dir, durably: a temporary file,
// synced, renamed into place, and the directory synced.
func (s *Storage) writeWALDirMarker(walDir string) error {
	path := filepath.Join(s.dir, walDirMarker)
	tmp := path + tmpSuffix
	f, err := s.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("storage: recording the WAL dir: %w", err)
	}
	_, err = f.WriteAt([]byte(walDir+"\n"), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.fs.Rename(tmp, path)
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err != nil {
		return fmt.Errorf("storage: recording the WAL dir in %s: %w", path, err)
	}
	return nil
}
