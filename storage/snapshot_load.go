package storage

import (
	"errors"
	"sync"

	"raftkv/raft"
)

// snapLoader holds the one snapshot whose data the Storage keeps in memory for the
// leader's run loop (raft.SnapshotLoader): the data of a snapshot can be as large as
// the whole state, and reading it back from its file took minutes at 655 MB, far
// past an election timeout, while the run loop waited (§7 of the Raft paper, thesis
// §5: the leader sends InstallSnapshot to a follower whose entries it compacted).
//
// Memory stays bounded: one load at a time, one loaded snapshot, handed out once
// (the transport holds it while sending; a second follower, or a retry after a failed
// send, loads it again), and dropped as soon as a newer snapshot is taken or installed.
type snapLoader struct {
	mu      sync.Mutex
	loading bool          // a goroutine is reading a snapshot file
	snap    raft.Snapshot // loaded; Index 0 if none
	err     error         // the last load's failure, for errIndex
	errIdx  uint64
	wg      sync.WaitGroup
}

// LoadSnapshot implements raft.SnapshotLoader: the latest snapshot if its data is
// loaded, else raft.ErrSnapshotTemporarilyUnavailable while a goroutine of its own
// reads the file (with the checks Snapshot makes). A failed read is returned once,
// then the next call tries again.
func (s *Storage) LoadSnapshot() (raft.Snapshot, error) {
	meta, err := s.SnapshotMeta()
	if err != nil || meta.Index == 0 {
		return raft.Snapshot{}, err
	}
	l := &s.loader
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.snap.Index == meta.Index && l.snap.Term == meta.Term {
		snap := l.snap
		l.snap = raft.Snapshot{}
		return snap, nil
	}
	l.snap = raft.Snapshot{} // older than the latest: never sent
	if l.err != nil && l.errIdx == meta.Index {
		err := l.err
		l.err = nil
		return raft.Snapshot{}, err
	}
	if !l.loading {
		l.loading = true
		l.wg.Go(func() {
			snap, err := s.Snapshot()
			l.mu.Lock()
			defer l.mu.Unlock()
			l.loading = false
			switch {
			case errors.Is(err, ErrClosed):
			case err != nil:
				l.err, l.errIdx = err, meta.Index
			case s.isLatestSnapshot(snap):
				l.snap = snap
			}
		})
	}
	return raft.Snapshot{}, raft.ErrSnapshotTemporarilyUnavailable
}

// isLatestSnapshot reports whether snap is still the Storage's latest snapshot.
func (s *Storage) isLatestSnapshot(snap raft.Snapshot) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.snap.Index == snap.Index && s.mu.snap.Term == snap.Term
}

// dropLoadedSnapshot frees a loaded snapshot's data once a newer one replaces it.
func (s *Storage) dropLoadedSnapshot() {
	s.loader.mu.Lock()
	s.loader.snap = raft.Snapshot{}
	s.loader.mu.Unlock()
}
