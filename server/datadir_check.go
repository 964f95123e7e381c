package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkDataDirs checks, before anything is written, that the member can keep its
// data where --data-dir and --wal-dir say: each a directory, or a path this user may
// create, so that a mistyped path or a missing permission is reported in the words of
// its flag, as etcd's "cannot access data directory" is, and not as the first open
// that fails deep in the storage. A member on test file systems (Config.files) skips
// it.
func checkDataDirs(cfg Config) error {
	if cfg.files != nil {
		return nil
	}
	for _, d := range []struct{ flag, dir string }{{"--data-dir", cfg.DataDir}, {"--wal-dir", cfg.WALDir}} {
		if d.dir == "" {
			continue
		}
		if err := checkDataDir(d.flag, d.dir); err != nil {
			return err
		}
	}
	return nil
}

func checkDataDir(flag, dir string) error {
	// The nearest part of the path that exists must be a directory this user can
	// write to (the data dir itself, or the parent it will be created in).
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		switch {
		case err == nil && !info.IsDir():
			if d == filepath.Clean(dir) {
				return fmt.Errorf("cannot access data directory: %s %s is a file, not a directory; give a directory (an empty or missing one for a new member)", flag, dir)
			}
			return fmt.Errorf("cannot access data directory: %s %s: %s is a file, not a directory; give a path under a directory", flag, dir, d)
		case err == nil:
			// W_OK|X_OK: create and open files in it. access(2) answers for the
			// real uid without capabilities, so a refusal is checked by creating
			// a file there, as etcd's IsDirWriteable does.
			if aerr := syscall.Access(d, 0x2|0x1); aerr != nil {
				probe, perr := os.CreateTemp(d, ".raftkv-probe-*")
				if perr != nil {
					return fmt.Errorf("cannot access data directory: %s %s: %s is not writable by this user (%v); "+
						"give a directory it may write to, or fix the permissions", flag, dir, d, aerr)
				}
				probe.Close()
				os.Remove(probe.Name())
			}
			return nil
		case !os.IsNotExist(err) && !errors.Is(err, syscall.ENOTDIR):
			return fmt.Errorf("cannot access data directory: %s %s: %v", flag, dir, err)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
