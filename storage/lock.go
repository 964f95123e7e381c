package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// lockFileName is the file in the data dir whose flock(2) says a node runs on it.
const lockFileName = "LOCK"

// lockFile takes a non-blocking exclusive flock on name. flock locks belong to the
// open file description, so a second Open in the same process conflicts too, and the
// kernel releases the lock when the process dies: a crashed node never leaves a stale
// lock behind.
func lockFile(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var lockErr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lockErr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
			if lockErr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		f.Close()
		return nil, err
	}
	if lockErr != nil {
		f.Close()
		if errors.Is(lockErr, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: flock %s: %w", ErrLocked, name, lockErr)
		}
		return nil, &os.PathError{Op: "flock", Path: name, Err: lockErr}
	}
	return f, nil
}
