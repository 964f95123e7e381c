package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Expected conditions, testable with errors.Is.
var (
	// ErrCorrupt: the WAL or a snapshot holds data that fails its checks somewhere other
	// than a torn tail. The node must not start on it. Errors that wrap it are
	// *CorruptError values naming the file and offset.
	ErrCorrupt = errors.New("storage: data is corrupt")
	// ErrClusterMismatch: the data dir holds the WAL of another cluster. Errors that
	// wrap it also match ErrCorrupt: the node must not start on that data either.
	ErrClusterMismatch = errors.New("storage: data dir belongs to another cluster")
	// ErrLocked: another running process holds the data dir's lock.
	ErrLocked = errors.New("storage: data dir is locked by another process")
	// ErrDiskFull: a write failed for lack of space. Everything synced before it is
	// intact; the Storage accepts no more writes (it is failed, see ErrFailed).
	// Errors that wrap it are *NoSpaceError values saying what was full, how much
	// the write needed and how much was free; they wrap syscall.ENOSPC too.
	ErrDiskFull = errors.New("storage: disk full")
	// ErrFailed: a write or sync failed earlier, so what is on disk is no longer known
	// to match what the Storage reported. Every call after the failure returns the
	// same error, which wraps ErrFailed and the cause; the node must stop.
	ErrFailed = errors.New("storage: failed")
	// ErrClosed: the Storage has been closed.
	ErrClosed = errors.New("storage: closed")
	// ErrRecordTooLarge: an entry does not fit in one WAL segment. Nothing was written;
	// raise Options.SegmentSize or lower the raft message size limits.
	ErrRecordTooLarge = errors.New("storage: record larger than a WAL segment allows")
)

// CorruptError says which file is corrupt, where, and how. It wraps ErrCorrupt.
type CorruptError struct {
	// File is the path of the corrupt file.
	File string
	// Offset is the byte offset in File where the problem starts.
	Offset int64
	// Reason says what check failed.
	Reason string
}

// Error says what is corrupt, where, and what to do about it.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("storage: %s is corrupt at offset %d: %s; refusing to start on data that fails its checks: "+
		"move the data dir aside and let the node rejoin from a peer's snapshot, or restore it from a backup",
		e.File, e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// clusterMismatchError says whose WAL the data dir holds.
type clusterMismatchError struct {
	dataDir     string
	found, want uint64
}

func (e *clusterMismatchError) Error() string {
	return fmt.Sprintf("storage: data dir %q holds a WAL of cluster %x, not %x; point --data-dir elsewhere",
		e.dataDir, e.found, e.want)
}

func (e *clusterMismatchError) Is(target error) bool {
	return target == ErrClusterMismatch || target == ErrCorrupt
}

func corruptf(file string, offset int64, format string, args ...any) error {
	return &CorruptError{File: file, Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

// NoSpaceError is a write that failed because the file system holding Path is full
// (ENOSPC). It matches ErrDiskFull and ErrFailed, and unwraps to the cause, so
// errors.Is(err, syscall.ENOSPC) holds too. Its message is the one line a member
// stops with: what is full, how much the write needed, how much is free, and what to
// do.
type NoSpaceError struct {
	// What is the write that failed ("write at offset 8192 of WAL segment").
	What string
	// Path is the file or directory written to.
	Path string
	// Needed is the bytes the failed call asked for, or 0 if not known.
	Needed int64
	// Usage is the file system's size and free space when the write failed; its
	// Total is 0 if they could not be read.
	Usage DiskUsage
	// Err is the cause, which wraps syscall.ENOSPC.
	Err error
}

// Error says what is full, how much was needed and free, and what to do, on one line.
func (e *NoSpaceError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "disk full: %s %s", e.What, e.Path)
	if e.Needed > 0 {
		fmt.Fprintf(&b, " needed %s", formatBytes(e.Needed))
	}
	if e.Usage.Total > 0 {
		fs := "the file system"
		if e.Usage.Mount != "" {
			fs = fmt.Sprintf("the file system mounted at %s", e.Usage.Mount)
		}
		fmt.Fprintf(&b, ", but %s (%s) has %s free", fs, formatBytes(e.Usage.Total), formatBytes(e.Usage.Free))
	}
	fmt.Fprintf(&b, " (%v); free space on that file system (or move the directory to a larger one), then restart the member: "+
		"everything synced before this is intact, and it catches up from the others", errnoOf(e.Err))
	return b.String()
}

// Is reports whether target is ErrDiskFull or ErrFailed.
func (e *NoSpaceError) Is(target error) bool { return target == ErrDiskFull || target == ErrFailed }

// Unwrap returns the cause.
func (e *NoSpaceError) Unwrap() error { return e.Err }

// NewNoSpaceError describes a write of needed bytes (0 if not known) to path that
// failed with cause, which wraps syscall.ENOSPC, reading the file system's free
// space from fsys. The server uses it for the ENOSPC of its other files (the kv
// engine's), so every full disk stops the member with the same line.
func NewNoSpaceError(fsys FS, what, path string, needed int64, cause error) *NoSpaceError {
	e := &NoSpaceError{What: what, Path: path, Needed: needed, Err: cause}
	if u, err := fsys.Usage(existingParent(fsys, path)); err == nil {
		e.Usage = u
	}
	return e
}

// existingParent returns path if it is a directory fsys lists, else its nearest
// parent directory that is (a file being created has no usage of its own).
func existingParent(fsys FS, path string) string {
	for d := path; ; d = filepath.Dir(d) {
		if _, err := fsys.List(d); err == nil || d == filepath.Dir(d) {
			return d
		}
	}
}

// errnoOf returns the errno of a failed call on a file, if err is just that (its
// *os.PathError names the file, which the message names already), or else err,
// which says more (another component's words on what it was writing).
func errnoOf(err error) error {
	var errno syscall.Errno
	if pe, ok := err.(*os.PathError); ok && errors.As(pe.Err, &errno) {
		return errno
	}
	return err
}

// formatBytes prints n in the largest binary unit that keeps it at least 1.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// fatalError wraps the first failed write or sync of path: it is ErrFailed and the
// cause, or a *NoSpaceError when the cause was ENOSPC. needed is what the call asked
// for, in bytes, or 0.
func fatalError(fsys FS, what, path string, needed int64, cause error) error {
	if errors.Is(cause, syscall.ENOSPC) {
		return NewNoSpaceError(fsys, what, path, needed, cause)
	}
	return fmt.Errorf("%w: %s %s: %w; the node must stop: after a failed write or sync the disk's contents are unknown, "+
		"restart it to recover from what the disk holds (recovery reads the WAL back from the disk, not the page cache)", ErrFailed, what, path, cause)
}
