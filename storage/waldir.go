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
	path := filepath.Join(s.dir, walDirMarker)
	dir, found, err := readMarker(s.fs, path, "a WAL dir record")
	if err != nil || !found {
		return "", err
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("storage: %s records %q, not an absolute path; write the WAL dir's path in it", path, dir)
	}
	return dir, nil
}

// writeWALDirMarker records walDir in the data dir.
func (s *Storage) writeWALDirMarker(walDir string) error {
	if err := writeMarker(s.fs, s.dir, walDirMarker, walDir); err != nil {
		return fmt.Errorf("storage: recording the WAL dir: %w", err)
	}
	return nil
}

// readMarker reads a small text file that records one value (what names it in
// errors), trimmed; found is false if there is no such file.
func readMarker(fsys FS, path, what string) (value string, found bool, err error) {
	names, err := fsys.List(filepath.Dir(path))
	if err != nil {
		return "", false, fmt.Errorf("storage: listing %s: %w", filepath.Dir(path), err)
	}
	for _, name := range names {
		found = found || name == filepath.Base(path)
	}
	if !found {
		return "", false, nil
	}
	f, err := fsys.Open(path)
	if err != nil {
		return "", false, fmt.Errorf("storage: opening %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil || size > 4096 {
		return "", false, fmt.Errorf("storage: %s is not %s (%d bytes, %v)", path, what, size, err)
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return "", false, fmt.Errorf("storage: reading %s: %w", path, err)
	}
	return strings.TrimSpace(string(buf)), true, nil
}

// writeMarker records value in dir/name, durably: a temporary file, synced, renamed
// into place, and the directory synced.
func writeMarker(fsys FS, dir, name, value string) error {
	path := filepath.Join(dir, name)
	tmp := path + tmpSuffix
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.WriteAt([]byte(value+"\n"), 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		_ = fsys.Remove(tmp) // a failed write leaves no file behind
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
