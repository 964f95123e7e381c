package storage

import (
	"errors"
	"fmt"
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

// fatalError wraps the first failed write or sync: it is ErrFailed, the cause, and
// ErrDiskFull when the cause was ENOSPC.
func fatalError(what string, cause error) error {
	if errors.Is(cause, syscall.ENOSPC) {
		return fmt.Errorf("%w: %w: %s: %w; free space in the data dir's file system, then restart the node "+
			"(everything synced before this is intact)", ErrFailed, ErrDiskFull, what, cause)
	}
	return fmt.Errorf("%w: %s: %w; the node must stop: after a failed write or sync the disk's contents are unknown, "+
		"restart it to recover from what was synced", ErrFailed, what, cause)
}
