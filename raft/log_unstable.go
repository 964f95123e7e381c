package raft

import "fmt"

// unstable holds what the core has accepted but the driver has not yet persisted: new
// entries at the tail of the log, and a snapshot received from the leader.
type unstable struct {
	// snapshot is a received snapshot not yet persisted, or nil.
	snapshot *Snapshot
	// entries are the unpersisted tail of the log.
	entries []Entry
	// offset is the index of entries[0], or of the next entry when entries is empty.
	// Invariant: entries[i].Index == offset + i.
	offset uint64
}

// maybeFirstIndex returns the first log index if the unstable part knows it (only a
// pending snapshot does).
func (u *unstable) maybeFirstIndex() (uint64, bool) {
	if u.snapshot != nil {
		return u.snapshot.Index + 1, true
	}
	return 0, false
}

// maybeLastIndex returns the last log index if the unstable part knows it.
func (u *unstable) maybeLastIndex() (uint64, bool) {
	if n := len(u.entries); n != 0 {
		return u.offset + uint64(n) - 1, true
	}
	if u.snapshot != nil {
		return u.snapshot.Index, true
	}
	return 0, false
}

// maybeTerm returns the term of entry i if the unstable part holds it.
func (u *unstable) maybeTerm(i uint64) (uint64, bool) {
	if i < u.offset {
		if u.snapshot != nil && u.snapshot.Index == i {
			return u.snapshot.Term, true
		}
		return 0, false
	}
	last, ok := u.maybeLastIndex()
	if !ok || i > last {
		return 0, false
	}
	return u.entries[i-u.offset].Term, true
}

// stableTo records that the entries up to index i, whose entry had term t, are durable.
// If the entry at i has changed since (a new leader overwrote it), nothing is dropped:
// the newer entries are still unpersisted.
func (u *unstable) stableTo(i, t uint64) {
	gt, ok := u.maybeTerm(i)
	if !ok || gt != t || i < u.offset {
		return
	}
	n := i + 1 - u.offset
	u.entries = u.entries[n:]
	u.offset = i + 1
	if len(u.entries) == 0 {
		// Let the old array be collected rather than pinned by an empty slice.
		u.entries = nil
	}
}

// stableSnapTo records that the pending snapshot at index i is durable.
func (u *unstable) stableSnapTo(i uint64) {
	if u.snapshot != nil && u.snapshot.Index == i {
		u.snapshot = nil
	}
}

// restore replaces the unstable part with a received snapshot.
func (u *unstable) restore(s Snapshot) {
	u.offset = s.Index + 1
	u.entries = nil
	u.snapshot = &s
}

// truncateAndAppend appends ents, first dropping any unstable entries at or after
// ents[0].Index (§5.3: a conflicting suffix is replaced).
func (u *unstable) truncateAndAppend(ents []Entry) {
	after := ents[0].Index
	switch {
	case after == u.offset+uint64(len(u.entries)):
		u.entries = append(u.entries, ents...)
	case after <= u.offset:
		// The new entries replace everything unstable and part of what is stable; the
		// driver's Save truncates the stable part when it writes them.
		u.offset = after
		u.entries = append([]Entry(nil), ents...)
	default:
		kept := u.entries[:after-u.offset]
		u.entries = append(append(make([]Entry, 0, len(kept)+len(ents)), kept...), ents...)
	}
}

// slice returns the unstable entries in [lo, hi).
func (u *unstable) slice(lo, hi uint64) []Entry {
	last := u.offset + uint64(len(u.entries))
	if lo > hi || lo < u.offset || hi > last {
		panic(fmt.Sprintf("raft: unstable.slice[%d,%d) out of bound [%d,%d]", lo, hi, u.offset, last))
	}
	return u.entries[lo-u.offset : hi-u.offset]
}
