package storage

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"raftkv/raft"
)

// The write half of Storage: Save and its group-commit form, and the two ways a
// snapshot arrives. Each queues WAL records and updates the in-memory log under s.mu,
// then waits for durability without it.

// Save implements raft.Storage: it appends ents (replacing the log from ents[0].Index
// on, if that is not past the end) and then st, if not empty, and returns once they
// are durable. Entries at or below the snapshot are ignored. The Storage keeps the
// entries' Data (it copies the slice, not the bytes): the caller must not modify it
// afterwards.
func (s *Storage) Save(st raft.HardState, ents []raft.Entry) error {
	ticket, err := s.SaveAsync(st, ents)
	if err != nil || ticket == 0 {
		return err
	}
	return s.wal.waitDurable(uint64(ticket))
}

// A Ticket names a write of SaveAsync; WaitDurable(t) returns once it is durable.
// Tickets grow with every write, and a durable ticket makes every earlier one durable.
// The zero Ticket names no write and is always durable. (An alias, so that Storage
// implements raft.AsyncStorage.)
type Ticket = uint64

// SaveAsync is Save without the wait: it queues the write, updates the log that
// readers see, and returns a ticket for WaitDurable (0 if there was nothing to write).
// Several writes queued before one WaitDurable share a single fdatasync. Until the
// wait returns, nothing that depends on the write may leave the node. The queue is
// bounded: once 64 MiB wait unflushed, SaveAsync flushes its own write before it
// returns.
func (s *Storage) SaveAsync(st raft.HardState, ents []raft.Entry) (Ticket, error) {
	t, err := s.queueSave(st, ents)
	if err == nil && t != 0 && s.wal.overPending() {
		err = s.wal.waitDurable(uint64(t))
	}
	return t, err
}

func (s *Storage) queueSave(st raft.HardState, ents []raft.Entry) (Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(); err != nil {
		return 0, err
	}
	if !st.IsEmpty() && st.Term < s.mu.hs.Term {
		panic(fmt.Sprintf("storage: Save of hard state %+v would lower the term of %+v", st, s.mu.hs))
	}
	if len(ents) > 0 && ents[0].Index <= s.mu.snap.Index {
		skip := s.mu.snap.Index + 1 - ents[0].Index
		ents = ents[min(skip, uint64(len(ents))):]
	}
	if len(ents) > 0 {
		s.checkAppendLocked(ents)
	}
	var hs *raft.HardState
	if !st.IsEmpty() && st != s.mu.hs {
		hs = &st
	}
	if hs == nil && len(ents) == 0 {
		return 0, nil
	}
	ticket, places, err := s.wal.appendBatch(ents, hs, s.mu.places[:0])
	s.mu.places = places[:0]
	if err != nil {
		return 0, err
	}
	if len(ents) > 0 {
		s.appendLocked(ents, places)
		s.mu.unflushed = append(s.mu.unflushed, unflushedWrite{ticket: ticket, first: ents[0].Index})
		s.evictLocked()
	}
	if hs != nil {
		s.mu.hs = st
	}
	return Ticket(ticket), nil
}

// unflushedWrite is a write of entries from first on, durable once ticket is.
type unflushedWrite struct {
	ticket, first uint64
}

// appendLocked adds ents, placed in the WAL at places, to the log, replacing the log
// from ents[0].Index on.
func (s *Storage) appendLocked(ents []raft.Entry, places []placement) {
	first := ents[0].Index
	cacheFirst := s.cacheFirstLocked()
	var keep []raft.Entry
	if first > cacheFirst {
		// The cache reaches back before first: its entries up to there stay.
		n := first - cacheFirst
		for i := n; i < uint64(len(s.mu.cache)); i++ {
			s.mu.cachedSize -= int64(s.mu.cache[i].Size())
		}
		keep = s.mu.cache[:n]
		if n < uint64(len(s.mu.cache)) {
			// Clip makes the append copy: readers may hold the entries being replaced.
			keep = slices.Clip(keep)
		}
	} else {
		// The cache starts at first now; every entry before it is durable.
		s.mu.cachedSize = 0
	}
	s.mu.log.truncate(first - 1)
	confs := s.mu.confIndexes
	for len(confs) > 0 && confs[len(confs)-1] >= first {
		confs = confs[:len(confs)-1]
	}
	for i := range ents {
		if ents[i].Type == raft.EntryConfChange {
			confs = append(confs, ents[i].Index)
		}
	}
	s.mu.confIndexes = confs
	k := 0
	for _, p := range places {
		for range p.n {
			s.mu.log.appendEntry(ents[k].Term, p.seq, p.offset)
			k++
		}
	}
	if k != len(ents) || s.mu.log.last != ents[len(ents)-1].Index {
		panic(fmt.Sprintf("storage: the WAL placed %d of %d entries; the log ends at %d, not %d",
			k, len(ents), s.mu.log.last, ents[len(ents)-1].Index))
	}
	s.mu.cache = appendEntries(keep, ents)
	for i := range ents {
		s.mu.cachedSize += int64(ents[i].Size())
	}
}

// evictLocked drops the oldest cached entries once the cache holds more than
// Options.LogCacheBytes, down to three quarters of it (so that the copy eviction
// makes is paid once per quarter of the bound appended). It keeps every entry not yet
// durable: Entries could not read it back from the WAL.
func (s *Storage) evictLocked() {
	// Forget the writes that became durable first, whether or not anything is
	// evicted: the list would otherwise grow by one per write while the cache stays
	// under its bound (a small store that snapshots often).
	n := 0
	for n < len(s.mu.unflushed) && s.wal.isDurable(s.mu.unflushed[n].ticket) {
		n++
	}
	if n > 0 {
		s.mu.unflushed = append(s.mu.unflushed[:0], s.mu.unflushed[n:]...)
	}
	if s.mu.cachedSize <= s.cacheBytes {
		return
	}
	limit := s.mu.log.last + 1 // entries from limit on may not go
	for _, w := range s.mu.unflushed {
		limit = min(limit, w.first)
	}
	cacheFirst := s.cacheFirstLocked()
	drop, size := uint64(0), s.mu.cachedSize
	for drop < uint64(len(s.mu.cache)) && size > s.cacheBytes/4*3 && cacheFirst+drop < limit {
		size -= int64(s.mu.cache[drop].Size())
		drop++
	}
	if drop > 0 {
		s.mu.cache, s.mu.cachedSize = compactEntries(s.mu.cache, drop), size
	}
}

// compactLocked drops the log up to index, which is in it.
func (s *Storage) compactLocked(index uint64) {
	if cacheFirst := s.cacheFirstLocked(); index >= cacheFirst {
		drop := index + 1 - cacheFirst
		for i := range drop {
			s.mu.cachedSize -= int64(s.mu.cache[i].Size())
		}
		s.mu.cache = compactEntries(s.mu.cache, drop)
	}
	s.mu.log.compact(index)
	k := 0
	for k < len(s.mu.confIndexes) && s.mu.confIndexes[k] <= index {
		k++
	}
	s.mu.confIndexes = slices.Delete(s.mu.confIndexes, 0, k)
}

// appendEntries appends to the cached log, doubling its capacity when it runs out.
// (append grows large slices by a quarter at a time, which would copy the whole log
// about five times over as it grows between compactions.)
func appendEntries(dst, src []raft.Entry) []raft.Entry {
	if n := len(dst) + len(src); n > cap(dst) {
		grown := make([]raft.Entry, len(dst), max(n, 2*cap(dst), 256))
		copy(grown, dst)
		dst = grown
	}
	return append(dst, src...)
}

// compactEntries drops the first n cached entries. It copies the rest to a new array
// rather than reslicing, so that the compacted entries and their data are not kept
// alive; the new array has the room the old one had left, so appends carry on
// without growing it again.
func compactEntries(ents []raft.Entry, n uint64) []raft.Entry {
	rest := ents[n:]
	if len(rest) == 0 && cap(rest) == 0 {
		return nil
	}
	out := make([]raft.Entry, len(rest), cap(rest))
	copy(out, rest)
	return out
}

// checkAppendLocked checks ents against the log. A gap or a rewrite of a committed
// entry is a bug in the caller and panics. (An entry too big for a segment is the
// WAL's to refuse.)
func (s *Storage) checkAppendLocked(ents []raft.Entry) {
	first, last := ents[0].Index, s.lastIndexLocked()
	if first > last+1 {
		panic(fmt.Sprintf("storage: Save of entries from %d leaves a gap after the last index %d", first, last))
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].Index != ents[i-1].Index+1 {
			panic(fmt.Sprintf("storage: Save of non-consecutive entries: %d follows %d", ents[i].Index, ents[i-1].Index))
		}
	}
	if first <= s.mu.hs.Commit {
		if t, err := s.termLocked(first); err == nil && t != ents[0].Term {
			panic(fmt.Sprintf("storage: Save of entry %d term %d replaces a committed entry of term %d (commit %d)",
				first, ents[0].Term, t, s.mu.hs.Commit))
		}
	}
}

// WaitDurable returns once the write of ticket t, and every one before it, is
// durable, or the fatal error if the Storage failed.
func (s *Storage) WaitDurable(t Ticket) error { return s.wal.waitDurable(uint64(t)) }

// IsDurable reports, without waiting, whether the write of ticket t is durable.
func (s *Storage) IsDurable(t Ticket) bool { return s.wal.isDurable(uint64(t)) }

// CreateSnapshot implements raft.Storage: it writes data as the snapshot at index
// (which must be committed), with membership, the configuration as of index, records
// it in the WAL, drops the log up to it from memory, then removes the snapshot files
// beyond Options.SnapshotsToKeep and the WAL segments wholly below the oldest
// snapshot kept. The Storage keeps only the index, term and membership in memory;
// Snapshot reads the data back from the file.
func (s *Storage) CreateSnapshot(index uint64, membership raft.Membership, data []byte) (raft.Snapshot, error) {
	snap, err := s.createSnapshot(index, membership, true, int64(len(data)), func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	snap.Data = data
	return snap, err
}

// CreateSnapshotFrom is CreateSnapshot for an application whose state is too large
// to encode into memory at once: write streams the data into the snapshot file
// through a buffer. The returned Snapshot has no Data. membership is the configuration
// as of index, which the application knows from the ApplyConfChange and ApplySnapshot
// messages it applied up to index (raft.Node.MembershipAt answers it too).
//
// The application calls it itself, rather than through the raft node, with the index
// it has applied: that it applied it vouches that it is committed, so unlike
// CreateSnapshot this does not require the commit index this Storage holds to have
// caught up (the node writes it lazily). After a restart the node takes the snapshot's
// index as committed. An error of write is returned unwrapped and changes nothing;
// raft.ErrSnapOutOfDate says a snapshot at or after index exists already.
func (s *Storage) CreateSnapshotFrom(index uint64, membership raft.Membership, write func(io.Writer) error) (raft.Snapshot, error) {
	return s.createSnapshot(index, membership, false, -1, write)
}

func (s *Storage) createSnapshot(index uint64, membership raft.Membership, mustBeCommitted bool, size int64,
	write func(io.Writer) error) (raft.Snapshot, error) {
	if err := membership.Validate(); err != nil {
		return raft.Snapshot{}, fmt.Errorf("storage: CreateSnapshot(%d): %w", index, err)
	}
	// The file is written under createMu alone, and snapMu taken only to commit it:
	// a leader's snapshot (ApplySnapshot, on the node's run loop) must not wait for
	// this node's own one to stream, which takes as long as the state is large. If
	// one is installed meanwhile, the check below refuses this one.
	s.createMu.Lock()
	defer s.createMu.Unlock()
	s.mu.RLock()
	snap, err := s.checkSnapshotLocked(index, mustBeCommitted)
	s.mu.RUnlock()
	if err != nil {
		return raft.Snapshot{}, err
	}
	snap.Membership = membership.Clone()
	if _, err := writeSnapshotFrom(s.fs, s.snapDir, s.clusterID, snap.Index, snap.Term, membership, snapCompact, size, write); err != nil {
		if !errors.Is(err, ErrFailed) {
			return raft.Snapshot{}, err // the application's, not the disk's
		}
		return raft.Snapshot{}, s.wal.fail(err)
	}

	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.mu.Lock()
	if again, err := s.checkSnapshotLocked(index, mustBeCommitted); err != nil || again.Term != snap.Term {
		// The file just written is of a log that is gone; left in place it would
		// count among the snapshots kept and push out a good one. (Unless a
		// snapshot installed meanwhile has the same index and term, and so the
		// same name: that file is not ours to remove.)
		if s.mu.snap.Index != snap.Index || s.mu.snap.Term != snap.Term {
			_ = s.fs.Remove(filepath.Join(s.snapDir, snapshotName(snap.Index, snap.Term)))
		}
		s.mu.Unlock()
		return raft.Snapshot{}, fmt.Errorf("storage: the log changed under CreateSnapshot(%d): %v", index, err)
	}
	ticket, seq, err := s.wal.appendMarker(snapMarker{kind: snapCompact, index: snap.Index, term: snap.Term})
	if err != nil {
		s.mu.Unlock()
		return raft.Snapshot{}, err
	}
	s.compactLocked(index)
	s.mu.snap = raft.Snapshot{Index: snap.Index, Term: snap.Term, Membership: snap.Membership}
	s.mu.Unlock()
	s.dropLoadedSnapshot()

	if err := s.wal.waitDurable(ticket); err != nil {
		return raft.Snapshot{}, err
	}
	return snap, s.retain(seq)
}

func (s *Storage) checkSnapshotLocked(index uint64, mustBeCommitted bool) (raft.Snapshot, error) {
	if err := s.checkLocked(); err != nil {
		return raft.Snapshot{}, err
	}
	if index <= s.mu.snap.Index {
		return raft.Snapshot{}, raft.ErrSnapOutOfDate
	}
	if mustBeCommitted && index > s.mu.hs.Commit {
		return raft.Snapshot{}, fmt.Errorf("storage: CreateSnapshot(%d): index is above the commit index %d; snapshot only applied entries",
			index, s.mu.hs.Commit)
	}
	term, err := s.termLocked(index)
	if err != nil {
		return raft.Snapshot{}, fmt.Errorf("storage: CreateSnapshot(%d): %w (log ends at %d)", index, err, s.lastIndexLocked())
	}
	return raft.Snapshot{Index: index, Term: term}, nil
}

// ApplySnapshot implements raft.Storage: it persists snap, received from the leader,
// and replaces the whole log with it. The Storage keeps only its index, term and
// membership in memory; Snapshot reads the data back from the file.
func (s *Storage) ApplySnapshot(snap raft.Snapshot) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.mu.RLock()
	err := s.checkLocked()
	current := s.mu.snap.Index
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	if snap.Index <= current {
		return raft.ErrSnapOutOfDate
	}
	if err := writeSnapshot(s.fs, s.snapDir, s.clusterID, snap, snapInstall); err != nil {
		return s.wal.fail(err)
	}

	s.mu.Lock()
	if snap.Index <= s.mu.snap.Index {
		s.mu.Unlock()
		return raft.ErrSnapOutOfDate
	}
	ticket, seq, err := s.wal.appendMarker(snapMarker{kind: snapInstall, index: snap.Index, term: snap.Term})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.mu.snap = raft.Snapshot{Index: snap.Index, Term: snap.Term, Membership: snap.Membership.Clone()}
	s.mu.log.reset(snap.Index)
	s.mu.cache, s.mu.cachedSize = nil, 0
	s.mu.confIndexes = nil
	s.mu.Unlock()
	s.dropLoadedSnapshot()

	if err := s.wal.waitDurable(ticket); err != nil {
		return err
	}
	return s.retain(seq)
}

// retain prunes old snapshot files and the WAL segments before seq that the oldest
// snapshot kept makes unnecessary. Only after the newer snapshot is durable.
func (s *Storage) retain(seq uint64) error {
	oldest, err := pruneSnapshots(s.fs, s.snapDir, s.keepSnapshots, s.logger)
	if err != nil {
		return s.wal.fail(err)
	}
	return s.wal.dropSegments(seq, oldest)
}
