package raft

import (
	"errors"
	"fmt"
)

// raftLog is the log as the core sees it: the durable part in Storage followed by the
// unstable tail, plus the commit and apply cursors.
type raftLog struct {
	storage  LogReader
	unstable unstable

	// committed is the highest index known to be committed (commitIndex, Figure 2).
	// Invariant: applied <= applying <= committed <= lastIndex().
	committed uint64
	// applying is the highest index handed to the driver for applying.
	applying uint64
	// applied is the highest index the driver has applied (lastApplied, Figure 2).
	applied uint64
	// durable is the highest index up to which this node's own log, as it is now,
	// is known durable: what Storage held at start (Open syncs what it recovered),
	// raised by AckDurable, lowered when entries after it are replaced, and the
	// snapshot's index once a received snapshot replaces the log (the driver
	// persists it before applying it). Committed entries are handed out for
	// applying only up to it, so an application's state, which it may make durable
	// at any time, never holds an entry its own log could lose in a crash: after a
	// restart the state is never ahead of the log, and a state that is, is of another
	// log (not this node's, or not its latest).
	durable uint64
	// epoch counts the appends and snapshots that replaced entries of the log
	// (§5.3, §7). A write's acknowledgement raises durable only if no such change
	// came after the write was handed out (DurableMark): an entry replaced and later
	// written again under the same index and term would else be taken as durable on
	// the acknowledgement of its first write, while a write of its replacement, in
	// between, may be what the disk holds.
	epoch uint64

	// maxApplyingBytes limits the committed entries handed out at once.
	maxApplyingBytes uint64
}

func newLog(storage LogReader, maxApplyingBytes uint64) (*raftLog, error) {
	first, err := storage.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := storage.LastIndex()
	if err != nil {
		return nil, err
	}
	return &raftLog{
		storage:          storage,
		unstable:         unstable{offset: last + 1},
		committed:        first - 1,
		applying:         first - 1,
		applied:          first - 1,
		durable:          last,
		epoch:            1, // a DurableMark not taken from a Ready has epoch 0
		maxApplyingBytes: maxApplyingBytes,
	}, nil
}

func (l *raftLog) String() string {
	return fmt.Sprintf("committed=%d applied=%d applying=%d unstable.offset=%d len(unstable)=%d",
		l.committed, l.applied, l.applying, l.unstable.offset, len(l.unstable.entries))
}

// mustStorage panics on a storage read error other than the expected ones: the core
// cannot carry on with a log it cannot read (design rule 6).
func mustStorage(err error) {
	if err != nil && !errors.Is(err, ErrCompacted) && !errors.Is(err, ErrUnavailable) {
		panic(fmt.Sprintf("raft: storage read failed: %v", err))
	}
}

func (l *raftLog) firstIndex() uint64 {
	if i, ok := l.unstable.maybeFirstIndex(); ok {
		return i
	}
	i, err := l.storage.FirstIndex()
	if err != nil {
		panic(fmt.Sprintf("raft: storage FirstIndex failed: %v", err))
	}
	return i
}

func (l *raftLog) lastIndex() uint64 {
	if i, ok := l.unstable.maybeLastIndex(); ok {
		return i
	}
	i, err := l.storage.LastIndex()
	if err != nil {
		panic(fmt.Sprintf("raft: storage LastIndex failed: %v", err))
	}
	return i
}

func (l *raftLog) lastTerm() uint64 {
	t, err := l.term(l.lastIndex())
	if err != nil {
		panic(fmt.Sprintf("raft: term of last index %d unavailable: %v", l.lastIndex(), err))
	}
	return t
}

// term returns the term of entry i. The entry just before the first one (the snapshot's)
// still answers; older ones return ErrCompacted and later ones ErrUnavailable.
func (l *raftLog) term(i uint64) (uint64, error) {
	if t, ok := l.unstable.maybeTerm(i); ok {
		return t, nil
	}
	if i+1 < l.firstIndex() {
		return 0, ErrCompacted
	}
	if i > l.lastIndex() {
		return 0, ErrUnavailable
	}
	t, err := l.storage.Term(i)
	mustStorage(err)
	return t, err
}

// zeroTermOnOutOfRange turns "no such entry" into term 0, which matches nothing.
func zeroTermOnOutOfRange(t uint64, err error) uint64 {
	if err != nil {
		return 0
	}
	return t
}

func (l *raftLog) matchTerm(i, term uint64) bool {
	t, err := l.term(i)
	return err == nil && t == term
}

// isUpToDate reports whether a log ending at (lastIndex, lastTerm) is at least as
// up-to-date as ours: the election restriction of §5.4.1.
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	ourTerm := l.lastTerm()
	return lastTerm > ourTerm || (lastTerm == ourTerm && lastIndex >= l.lastIndex())
}

// maybeAppend is the follower's half of AppendEntries (§5.3): if our log holds
// prevIndex at prevTerm, append ents (dropping a conflicting suffix), advance the commit
// index to min(leaderCommit, index of last new entry) and return that index. conflict
// is the index from which ents were written, replacing whatever the log held there,
// or 0 if the log held them all already.
func (l *raftLog) maybeAppend(prevIndex, prevTerm, leaderCommit uint64, ents []Entry) (lastNewIndex, conflict uint64, ok bool) {
	if !l.matchTerm(prevIndex, prevTerm) {
		return 0, 0, false
	}
	lastNewIndex = prevIndex + uint64(len(ents))
	if conflict = l.findConflict(ents); conflict != 0 {
		if conflict <= l.committed {
			panic(fmt.Sprintf("raft: entry %d conflicts with committed entry (committed=%d)", conflict, l.committed))
		}
		l.append(ents[conflict-ents[0].Index:]...)
	}
	l.commitTo(min(leaderCommit, lastNewIndex))
	return lastNewIndex, conflict, true
}

// findConflict returns the index of the first entry of ents that is not in our log (a
// different term, or past our last index), or 0 if we hold them all. "If an existing
// entry conflicts with a new one, delete it and all that follow" (Figure 2) applies only
// from there: entries we already hold stay, so a stale AppendEntries never truncates.
func (l *raftLog) findConflict(ents []Entry) uint64 {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// firstIndexOfTerm returns the first index at or below i, and above the compacted
// prefix, whose entry has the same term as entry i: the fast back-up hint a follower
// sends when it rejects an AppendEntries.
func (l *raftLog) firstIndexOfTerm(i, term uint64) uint64 {
	first := l.firstIndex()
	for i > first {
		t, err := l.term(i - 1)
		if err != nil || t != term {
			break
		}
		i--
	}
	return i
}

// lastIndexOfTerm returns the last index at or below i whose entry's term is term, or
// 0 if no such entry is in the log: the leader's half of the fast back-up.
func (l *raftLog) lastIndexOfTerm(i, term uint64) uint64 {
	for ; i > 0; i-- {
		t, err := l.term(i)
		if err != nil || t < term {
			return 0
		}
		if t == term {
			return i
		}
	}
	return 0
}

func (l *raftLog) append(ents ...Entry) uint64 {
	if len(ents) == 0 {
		return l.lastIndex()
	}
	if after := ents[0].Index - 1; after < l.committed {
		panic(fmt.Sprintf("raft: appending after %d would overwrite committed index %d", after, l.committed))
	}
	if ents[0].Index <= l.lastIndex() {
		l.epoch++
	}
	l.unstable.truncateAndAppend(ents)
	l.durable = min(l.durable, ents[0].Index-1)
	return l.lastIndex()
}

func (l *raftLog) commitTo(index uint64) {
	if index <= l.committed {
		return
	}
	if last := l.lastIndex(); index > last {
		panic(fmt.Sprintf("raft: commit index %d is past last index %d; the log is corrupt or truncated", index, last))
	}
	l.committed = index
}

// maybeCommit advances the commit index to index if its entry is of term: a leader
// commits only by counting replicas of its own term's entries (§5.4.2, Figure 8).
func (l *raftLog) maybeCommit(index, term uint64) bool {
	if index > l.committed && zeroTermOnOutOfRange(l.term(index)) == term {
		l.commitTo(index)
		return true
	}
	return false
}

// slice returns entries in [lo, hi), at most maxBytes of them but at least one.
func (l *raftLog) slice(lo, hi, maxBytes uint64) ([]Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.firstIndex() {
		return nil, ErrCompacted
	}
	if hi > l.lastIndex()+1 {
		panic(fmt.Sprintf("raft: slice[%d,%d) past last index %d", lo, hi, l.lastIndex()))
	}
	var ents []Entry
	if lo < l.unstable.offset {
		stored, err := l.storage.Entries(lo, min(hi, l.unstable.offset), maxBytes)
		if errors.Is(err, ErrCompacted) {
			return nil, err
		}
		mustStorage(err)
		if err != nil {
			panic(fmt.Sprintf("raft: storage lacks entries [%d,%d): %v", lo, min(hi, l.unstable.offset), err))
		}
		if uint64(len(stored)) < min(hi, l.unstable.offset)-lo {
			// The size limit cut the stored part short; the unstable part must wait.
			return stored, nil
		}
		ents = stored
	}
	if hi > l.unstable.offset {
		tail := l.unstable.slice(max(lo, l.unstable.offset), hi)
		if len(ents) == 0 {
			ents = tail
		} else {
			ents = append(ents[:len(ents):len(ents)], tail...)
		}
	}
	return limitSize(ents, maxBytes), nil
}

// entries returns the entries from i to the end, at most maxBytes of them.
func (l *raftLog) entries(i, maxBytes uint64) ([]Entry, error) {
	if i > l.lastIndex() {
		return nil, nil
	}
	return l.slice(i, l.lastIndex()+1, maxBytes)
}

// hasNextCommittedEnts reports whether committed entries wait to be applied.
func (l *raftLog) hasNextCommittedEnts() bool {
	return l.appliable() > l.applying && l.applying+1 >= l.firstIndex()
}

// appliable is the last index that may be handed out for applying: committed, and
// durable in this node's own log (see durable).
func (l *raftLog) appliable() uint64 { return min(l.committed, l.durable) }

// durableTo records that a write handed out in epoch, whose last entry is index of
// term, is durable: the log up to index is, unless entries were replaced since (see
// epoch; the term check is the same rule's second line of defence).
func (l *raftLog) durableTo(index, term, epoch uint64) {
	if epoch == l.epoch && index > l.durable && l.matchTerm(index, term) {
		l.durable = index
	}
}

// nextCommittedEnts returns committed entries not yet handed out for applying.
func (l *raftLog) nextCommittedEnts() []Entry {
	if !l.hasNextCommittedEnts() {
		return nil
	}
	hi := l.appliable()
	ents, err := l.slice(l.applying+1, hi+1, l.maxApplyingBytes)
	if err != nil {
		panic(fmt.Sprintf("raft: committed entries [%d,%d] unavailable: %v", l.applying+1, hi, err))
	}
	return ents
}

func (l *raftLog) acceptApplying(index uint64) {
	if index > l.committed {
		panic(fmt.Sprintf("raft: applying %d past commit index %d", index, l.committed))
	}
	l.applying = max(l.applying, index)
}

func (l *raftLog) appliedTo(index uint64) {
	if index > l.committed || index < l.applied {
		panic(fmt.Sprintf("raft: applied %d out of range [applied %d, committed %d]", index, l.applied, l.committed))
	}
	l.applied = index
	l.applying = max(l.applying, index)
}

// snapshot returns the newest snapshot, the received one if it is not yet persisted.
func (l *raftLog) snapshot() (Snapshot, error) {
	if l.unstable.snapshot != nil {
		return *l.unstable.snapshot, nil
	}
	if sl, ok := l.storage.(SnapshotLoader); ok {
		return sl.LoadSnapshot() // never blocks; see SnapshotLoader
	}
	return l.storage.Snapshot()
}

// restore replaces the log with a snapshot received from the leader (§7, step 7:
// "discard the entire log").
func (l *raftLog) restore(s Snapshot) {
	l.committed = s.Index
	// The driver persists the snapshot before it hands it to the application (Ready);
	// the entries after it are durable once acknowledged.
	l.durable = s.Index
	l.epoch++
	l.unstable.restore(s)
}
