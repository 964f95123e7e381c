// Package durable writes files and directories so that a crash or power loss at any
// moment leaves either the old state or the new one: a file through a synced
// temporary file renamed into place, then its directory synced; a directory with
// the parents of those it made synced, and its own parent synced whether or not it
// made it (a crash between a mkdir and its parent's sync in an earlier run would
// otherwise leave the entry undurable for good).
package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"raftkv/storage"
)

// WriteFile writes data to path with perm through path+".tmp", synced and renamed
// into place, and syncs path's directory. On an error before the rename the
// temporary file it made is removed and path is as it was.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	created := false
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
		if err != nil {
			return err
		}
		created = true
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err == nil {
			err = SyncDir(filepath.Dir(path))
		}
		return err
	}()
	if err != nil {
		if created {
			_ = os.Remove(tmp) // gone already if the rename took it
		}
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// MkdirAll creates dir and any missing parents with perm, and syncs dir, the
// parent of each directory it made, and dir's parent even when dir exists
// already: a process killed between a mkdir and the sync of its parent left a
// directory whose entry may not be durable, and the next start finds it and would
// otherwise never sync it, so a later power loss could drop the whole directory
// with what was since written and synced in it.
func MkdirAll(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	toSync := []string{dir}
	for _, d := range append(missing, dir) {
		if p := filepath.Dir(d); !slices.Contains(toSync, p) {
			toSync = append(toSync, p)
		}
	}
	for _, d := range toSync {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("fsync of %s: %w", d, err)
		}
	}
	return nil
}

// SyncDir makes dir's entries durable.
func SyncDir(dir string) error { return syncDir(dir) }

// syncDir is the operating system's directory fsync; tests replace it to see what
// is synced.
var syncDir = func(dir string) error { return storage.NewOSFS().SyncDir(dir) }
