package kv

import (
	"cmp"
	"fmt"
	"slices"
)

// This file is the store's history by revision: what every write changed, in order,
// read back as etcd's watch events. A watcher reads it through Events alone, never
// through the index, so that a store with another engine (one that keeps its
// revisions in an ordered key/value file, as etcd does) serves watchers by
// implementing Events and nothing else.

// EventType mirrors mvccpb.Event_EventType, with the same numbers.
type EventType int32

// Event types, numbered as in etcd.
const (
	EventPut    EventType = 0
	EventDelete EventType = 1
)

// Event mirrors mvccpb.Event: one change to one key at one revision.
type Event struct {
	Type EventType
	// Kv is the key as the change left it: for a put, the whole KeyValue; for a
	// delete, only Key and ModRevision (the delete's revision), as in etcd.
	Kv KeyValue
	// PrevKv is the key as it was at Kv.ModRevision-1, when EventsRequest.PrevKv
	// asks for it, the key existed then, and the event is not the put that created
	// the key (etcd's watch server skips those, as it does here).
	PrevKv *KeyValue
}

// IsCompaction reports whether data, an encoded Command, is a compaction, without
// decoding it: the server lets its watchers take the history a compaction drops
// before applying one.
func IsCompaction(data []byte) bool {
	return len(data) >= 2 && data[0] == commandVersion && opKind(data[1]) == opCompact
}

// eventOverheadBytes approximates the memory of an Event beside its keys and
// values: the struct, a KeyValue for PrevKv, and a pointer to it in a response.
const eventOverheadBytes = 200

// Size is the memory the event holds: its keys and values, and an estimate of the
// rest.
func (ev *Event) Size() int {
	n := eventOverheadBytes + len(ev.Kv.Key) + len(ev.Kv.Value)
	if ev.PrevKv != nil {
		n += len(ev.PrevKv.Key) + len(ev.PrevKv.Value)
	}
	return n
}

// EventsRequest selects a stretch of history.
type EventsRequest struct {
	// FromRevision and ToRevision bound the revisions read, both included. A
	// ToRevision of 0 or above the store's revision means the store's revision.
	FromRevision, ToRevision int64
	// Contains selects the keys whose events are returned; nil selects every key.
	// It is called under the store's read lock and must not call the store.
	Contains func(key []byte) bool
	// PrevKv fills in Event.PrevKv.
	PrevKv bool
	// MaxEvents and MaxBytes, when above 0, end the read after the first revision
	// that brings the events returned to MaxEvents or more, or their Size to
	// MaxBytes or more. A revision's events are never split between two reads, so
	// one revision with more is returned whole.
	MaxEvents, MaxBytes int
}

// EventsResponse is a stretch of history.
type EventsResponse struct {
	// Events are the selected events of every revision in [FromRevision,
	// NextRevision), in the order they happened: by revision, and within a revision
	// in the order its command made them (etcd's sub-revision order).
	Events []Event
	// NextRevision is the first revision not read: ToRevision+1 when the read
	// reached it, less when MaxEvents ended it early.
	NextRevision int64
	// Revision and CompactRevision are the store's at the time of the read.
	Revision, CompactRevision int64
}

// Events reads the history from FromRevision on. It fails with ErrCompacted when
// FromRevision is below the last compaction's revision: compaction drops the events
// before it. Events at the compaction revision itself are kept as etcd keeps them:
// every delete, and every put that was not deleted again in the same revision.
//
// Snapshots carry each key's history, not the order of the changes within a
// revision nor the deletes at the compaction revision. So a store restored from a
// snapshot (a member's restart, or a snapshot from the leader) returns the events
// of a revision before the snapshot that changed several keys (a txn, a
// DeleteRange) in key order rather than in the order the command made them, and
// until its next compaction it refuses a read from exactly the compaction revision
// with ErrCompacted, where etcd would replay it, rather than miss a delete there.
func (s *Store) Events(r *EventsRequest) (*EventsResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	return s.mu.st.events(r)
}

func (st *state) events(r *EventsRequest) (*EventsResponse, error) {
	resp := &EventsResponse{Revision: st.rev, CompactRevision: st.compactRev}
	if r.FromRevision < st.compactRev || (r.FromRevision == st.compactRev && st.history.boundaryLost) {
		return resp, ErrCompacted
	}
	to := r.ToRevision
	if to <= 0 || to > st.rev {
		to = st.rev
	}
	h := &st.history
	resp.NextRevision = max(to+1, r.FromRevision)
	size := 0
	for rev := max(r.FromRevision, h.first); rev <= to && rev < h.next(); rev++ {
		if (r.MaxEvents > 0 && len(resp.Events) >= r.MaxEvents) || (r.MaxBytes > 0 && size >= r.MaxBytes) {
			resp.NextRevision = rev
			break
		}
		lo, hi := h.changesOf(rev)
		for i := lo; i < hi; i++ {
			ki := h.keys[i]
			if r.Contains != nil && !r.Contains(ki.key) {
				continue
			}
			if ev, ok := st.eventAt(ki, rev, h.deleted[i], r.PrevKv); ok {
				resp.Events = append(resp.Events, ev)
				size += ev.Size()
			}
		}
	}
	return resp, nil
}

// eventAt builds the event of ki's change at rev. A put that compaction dropped (at
// the compaction revision, a put deleted again in the same revision) is no event.
func (st *state) eventAt(ki *keyIndex, rev int64, deleted, withPrev bool) (Event, bool) {
	var ev Event
	if deleted {
		ev = Event{Type: EventDelete, Kv: KeyValue{Key: ki.key, ModRevision: rev}}
	} else {
		g, i, ok := ki.putAt(rev)
		if !ok {
			return Event{}, false
		}
		r := &g.revs[i]
		ev = Event{Type: EventPut, Kv: KeyValue{
			Key: ki.key, CreateRevision: g.createRev, ModRevision: rev,
			Version: g.firstVersion + int64(i), Value: st.vals.read(r.value()),
			Lease: leaseID(st.leases.ids, r.lease),
		}}
		if g.createRev == rev {
			return ev, true
		}
	}
	// etcd reads the previous value at rev-1, which fails below the compaction.
	if withPrev && rev-1 >= st.compactRev {
		if prev, ok := ki.kvAt(rev-1, st.vals, &st.leases); ok {
			ev.PrevKv = &prev
		}
	}
	return ev, true
}

// putAt finds ki's put at exactly rev: its generation and index.
func (ki *keyIndex) putAt(rev int64) (*generation, int, bool) {
	for gi := len(ki.gens) - 1; gi >= 0; gi-- {
		g := &ki.gens[gi]
		if g.revs[0].modRev > rev {
			continue
		}
		i := g.lastAtOrBefore(rev)
		return g, i, g.revs[i].modRev == rev
	}
	return nil, 0, false
}

// history indexes the changes by revision: for each revision from first on, the
// keys it changed, in the order its command changed them. A change holds the key's
// entry in the index, so the history costs 9 bytes a change and 4 a revision beside
// the index, and a read of it finds each change's value through the index.
//
// Invariant: starts is non-decreasing, starts[0] == 0 when not empty, every entry
// of starts is at most len(keys), and len(deleted) == len(keys).
type history struct {
	// first is the revision of starts[0].
	first int64
	// starts[r-first] is the index in keys of revision r's first change; revision
	// r's changes end where revision r+1's start, or at len(keys).
	starts  []uint32
	keys    []*keyIndex
	deleted []bool
	// boundaryLost says the history was rebuilt from a snapshot, which lacks the
	// deletes at the compaction revision; the next compaction clears it.
	boundaryLost bool
}

// next is the revision after the last one the history holds.
func (h *history) next() int64 { return h.first + int64(len(h.starts)) }

// changesOf returns the bounds in keys of revision rev's changes.
func (h *history) changesOf(rev int64) (lo, hi int) {
	i := rev - h.first
	lo, hi = int(h.starts[i]), len(h.keys)
	if i+1 < int64(len(h.starts)) {
		hi = int(h.starts[i+1])
	}
	return lo, hi
}

// record appends a change of ki at rev, the newest revision or the one after it.
func (h *history) record(rev int64, ki *keyIndex, deleted bool) {
	if len(h.starts) == 0 {
		h.first = rev
	}
	if rev >= h.next() {
		if rev != h.next() {
			panic(fmt.Sprintf("kv: history records revision %d after %d", rev, h.next()-1))
		}
		if len(h.keys) >= 1<<32-1 {
			panic("kv: more than 2^32 changes in the history; compact the store")
		}
		h.starts = append(h.starts, uint32(len(h.keys)))
	} else if rev != h.next()-1 {
		panic(fmt.Sprintf("kv: history records revision %d, but its newest is %d", rev, h.next()-1))
	}
	h.keys = append(h.keys, ki)
	h.deleted = append(h.deleted, deleted)
}

// compact drops the revisions below rev, into new slices so that the memory of the
// dropped ones is freed.
func (h *history) compact(rev int64) {
	h.boundaryLost = false
	if rev <= h.first || len(h.starts) == 0 {
		return
	}
	if rev >= h.next() {
		*h = history{}
		return
	}
	drop := rev - h.first
	cut := h.starts[drop]
	starts := make([]uint32, len(h.starts)-int(drop))
	for i := range starts {
		starts[i] = h.starts[int(drop)+i] - cut
	}
	*h = history{first: rev, starts: starts,
		keys: slices.Clone(h.keys[cut:]), deleted: slices.Clone(h.deleted[cut:])}
}

// rebuildHistory builds the history of a state restored from a snapshot from its
// index: every retained change from the compaction revision on, ordered by
// revision, then by key, then in the key's own order (see Store.Events for what
// this loses).
func (st *state) rebuildHistory() {
	type change struct {
		rev     int64
		ki      *keyIndex
		deleted bool
	}
	var changes []change
	from := max(st.compactRev, 2) // revision 1 is the empty store
	st.index.ascend(nil, func(ki *keyIndex) bool {
		for gi := range ki.gens {
			g := &ki.gens[gi]
			for _, r := range g.revs {
				if r.modRev >= from {
					changes = append(changes, change{rev: r.modRev, ki: ki})
				}
			}
			if g.tombstoneRev >= from {
				changes = append(changes, change{rev: g.tombstoneRev, ki: ki, deleted: true})
			}
		}
		return true
	})
	slices.SortStableFunc(changes, func(a, b change) int { return cmp.Compare(a.rev, b.rev) })
	h := history{boundaryLost: st.compactRev > 1}
	if len(changes) > 0 {
		h.first = changes[0].rev
		h.keys = make([]*keyIndex, 0, len(changes))
		h.deleted = make([]bool, 0, len(changes))
	}
	for _, c := range changes {
		for h.next() <= c.rev {
			// A revision with no retained change (only possible at the compaction
			// revision) gets an empty entry, so the revisions stay contiguous.
			h.starts = append(h.starts, uint32(len(h.keys)))
		}
		h.keys = append(h.keys, c.ki)
		h.deleted = append(h.deleted, c.deleted)
	}
	if len(h.starts) == 0 {
		h.first = st.rev + 1
	}
	for h.next() <= st.rev {
		h.starts = append(h.starts, uint32(len(h.keys)))
	}
	st.history = h
}
