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

// MkdirAll creates dir and any missing parents with perm, and syncs the parent of
// each directory it made and of dir itself.
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
	synced := map[string]bool{}
	for _, d := range append(missing, dir) {
		parent := filepath.Dir(d)
		if synced[parent] {
			continue
		}
		synced[parent] = true
		if err := SyncDir(parent); err != nil {
			return fmt.Errorf("fsync of %s: %w", parent, err)
		}
	}
	return nil
}

// SyncDir makes dir's entries durable.
func SyncDir(dir string) error { return storage.NewOSFS().SyncDir(dir) }
