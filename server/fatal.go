package server

import (
	"errors"
	"sync"
	"syscall"

	"raftkv/storage"
)

// fatalStop is the error that stopped the member on its own (stopOnFatal), if any.
type fatalStop struct {
	once sync.Once
	err  error
	c    chan struct{} // closed once err is set
}

// stopOnFatal stops the member after an error it cannot go on from: a full disk (any
// error wrapping syscall.ENOSPC: the WAL's, a snapshot file's, the kv engine's) or a
// failed write of its state. It records err, described by describeFatal, as what Err
// returns and closes Done, once; a later call is ignored (the first cause is the one
// to fix). It logs nothing: the owner of the member (cmd/raftkv's serve) stops it and
// prints Err as the one line the member stops with, so saying it here too would say
// it twice. The caller must not go on as if the failed write had happened: a loop
// that failed returns, and the apply loop, after a refused entry, counts no entry
// applied from there on (storeFailed).
//
// A member stopped for a full disk loses nothing acknowledged (what it acknowledged
// is in its WAL, synced before the failed write) and, once space is freed and it is
// restarted, catches up from the others.
func (s *Server) stopOnFatal(err error) {
	s.fatal.once.Do(func() {
		s.fatal.err = s.describeFatal(err)
		close(s.fatal.c)
	})
}

// fatalErr returns what stopOnFatal recorded, or nil.
func (s *Server) fatalErr() error {
	select {
	case <-s.fatal.c:
		return s.fatal.err
	default:
		return nil
	}
}

// describeFatal makes a full disk's error the one line a member stops with: the
// storage's *storage.NoSpaceError says already what is full, how much the write
// needed, how much is free and what to do, and is returned without the layers that
// passed it on ("raft: waiting for a write to be durable: ..."); any other error
// that wraps syscall.ENOSPC (the kv engine's) becomes one, for the member's data
// dir. Other errors are returned as they are.
func (s *Server) describeFatal(err error) error {
	var nse *storage.NoSpaceError
	if errors.As(err, &nse) {
		return nse
	}
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	return storage.NewNoSpaceError(storage.NewOSFS(), "a write under the data dir", s.cfg.DataDir, 0, err)
}
