package storage

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// FS is the seam between storage and the file system: every call the WAL and the
// snapshot files make goes through it, so tests can run storage on a file system that
// crashes (MemFS) or fails chosen calls (FaultFS).
//
// Names are paths as filepath understands them. Implementations must be safe for
// concurrent use.
type FS interface {
	// Create opens name for reading and writing, creating it or truncating it to zero.
	// The new directory entry is durable only after SyncDir of its directory.
	Create(name string) (File, error)
	// Open opens an existing file read-only.
	Open(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing.
	OpenReadWrite(name string) (File, error)
	// Remove deletes a file. The removal is durable only after SyncDir.
	Remove(name string) error
	// Rename moves oldname to newname, replacing newname atomically if it exists. The
	// change is durable only after SyncDir of newname's directory.
	Rename(oldname, newname string) error
	// MkdirAll creates dir and any missing parents. New directories are durable only
	// after SyncDir of their parent.
	MkdirAll(dir string) error
	// List returns the names (not paths) of the entries in dir, sorted.
	List(dir string) ([]string, error)
	// SyncDir makes the creations, renames and removals in dir durable.
	SyncDir(dir string) error
	// Lock takes an exclusive lock on the file name, creating it if needed, without
	// waiting: if another holder has it, Lock fails with an error wrapping ErrLocked.
	// Closing the returned Closer releases the lock; so does the process dying.
	Lock(name string) (io.Closer, error)
	// Usage returns the size and free space of the file system holding the
	// directory dir: the WAL sizes its preallocation by it (wal.preallocationStep),
	// and a full disk's error reports it.
	Usage(dir string) (DiskUsage, error)
}

// DiskUsage is what a file system holds.
type DiskUsage struct {
	// Total is the file system's size in bytes.
	Total int64
	// Free is the bytes this process may still write (statfs(2)'s f_bavail: what
	// is not reserved for root).
	Free int64
	// Mount is where the file system is mounted, if known ("" otherwise).
	Mount string
}

// File is an open file. Writes name their offset (there is no file position), which
// is all an append-only log with preallocated segments needs.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes every write to the file durable, with the metadata needed to read it
	// back (its size), like fdatasync(2). It does not sync the file's directory entry.
	Sync() error
	// Preallocate makes the file at least size bytes long, reserving the space so that
	// later writes within it do not fail for lack of space. New bytes read as zero.
	// Like a write, it is durable after Sync.
	Preallocate(size int64) error
	// Size returns the file's length in bytes.
	Size() (int64, error)
	// DropCache evicts the file's clean cached pages, like posix_fadvise(2) with
	// POSIX_FADV_DONTNEED, so that the next reads come from the disk. Call it after
	// a Sync that succeeded: after a failed writeback Linux may keep the pages it
	// could not write cached and marked clean, and a later fsync then succeeds
	// without writing them; dropping them makes reads show what the disk holds.
	// An implementation without a page cache makes it a no-op.
	DropCache() error
}

// NewOSFS returns the FS of the operating system. Sync is fdatasync(2), Preallocate is
// fallocate(2) (or ftruncate where fallocate is unsupported), DropCache is
// posix_fadvise(2) with POSIX_FADV_DONTNEED, SyncDir fsyncs the directory, and Lock
// is flock(2).
func NewOSFS() FS { return osFS{} }

type osFS struct{}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return newOSFile(f)
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return newOSFile(f)
}

func (osFS) OpenReadWrite(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return newOSFile(f)
}

func (osFS) Remove(name string) error             { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o755) }
func (osFS) Lock(name string) (io.Closer, error)  { return lockFile(name) }
func (osFS) List(dir string) ([]string, error)    { return listDir(dir) }
func (osFS) SyncDir(dir string) error             { return syncDir(dir) }

func (osFS) Usage(dir string) (DiskUsage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return DiskUsage{}, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return DiskUsage{
		Total: int64(st.Blocks) * int64(st.Bsize),
		Free:  int64(st.Bavail) * int64(st.Bsize),
		Mount: mountPoint(dir),
	}, nil
}

// mountPoint returns the mount point of the file system holding dir: the highest of
// its ancestors on the same device. It returns "" if dir cannot be read.
func mountPoint(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	dev := func(path string) (uint64, bool) {
		fi, err := os.Stat(path)
		if err != nil {
			return 0, false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, false
		}
		return uint64(st.Dev), true
	}
	want, ok := dev(dir)
	if !ok {
		return ""
	}
	for {
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		if d, ok := dev(parent); !ok || d != want {
			return dir
		}
		dir = parent
	}
}

func listDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct {
	f  *os.File
	rc syscall.RawConn // for the calls os.File lacks; fetched once, not per sync
}

func newOSFile(f *os.File) (*osFile, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &osFile{f: f, rc: rc}, nil
}

func (o *osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o *osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o *osFile) Close() error                             { return o.f.Close() }

func (o *osFile) Sync() error {
	return o.control("fdatasync", func(fd uintptr) error {
		for {
			err := syscall.Fdatasync(int(fd))
			if err != syscall.EINTR {
				return err
			}
		}
	})
}

func (o *osFile) Preallocate(size int64) error {
	cur, err := o.Size()
	if err != nil || cur >= size {
		return err
	}
	err = o.control("fallocate", func(fd uintptr) error {
		for {
			err := syscall.Fallocate(int(fd), 0, 0, size)
			if err != syscall.EINTR {
				return err
			}
		}
	})
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		// The file system cannot reserve space; a sparse extension still reads as
		// zeros, and ENOSPC will then surface from a later write instead.
		return o.f.Truncate(size)
	}
	return err
}

func (o *osFile) DropCache() error {
	return o.control("fadvise", func(fd uintptr) error {
		for {
			err := unix.Fadvise(int(fd), 0, 0, unix.FADV_DONTNEED)
			if err != unix.EINTR {
				return err
			}
		}
	})
}

func (o *osFile) Size() (int64, error) {
	fi, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// control runs fn on the file descriptor, reporting failures as *os.PathError so that
// they name the file and still match errors.Is(err, syscall.EIO).
func (o *osFile) control(op string, fn func(fd uintptr) error) error {
	var opErr error
	if err := o.rc.Control(func(fd uintptr) { opErr = fn(fd) }); err != nil {
		return err
	}
	if opErr != nil {
		return &os.PathError{Op: op, Path: o.f.Name(), Err: opErr}
	}
	return nil
}

// removeTemps deletes leftover "*.tmp" files in dir (a creation cut short by a crash
// is never part of the durable state: files become visible only by rename).
func removeTemps(fsys FS, dir string) (removed int, err error) {
	names, err := fsys.List(dir)
	if err != nil {
		return 0, err
	}
	for _, name := range names {
		if filepath.Ext(name) != tmpSuffix {
			continue
		}
		if err := fsys.Remove(filepath.Join(dir, name)); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

const tmpSuffix = ".tmp"

// sortedNames returns names sorted; List implementations promise this, but a fake
// that forgets must not reorder the WAL.
func sortedNames(names []string) []string {
	if !slices.IsSorted(names) {
		names = slices.Clone(names)
		slices.Sort(names)
	}
	return names
}
