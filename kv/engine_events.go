package kv

import "fmt"

// events reads the history from r.FromRevision on, with Store.Events' semantics
// (history.go), from the engine's change records. Unlike the in-memory history,
// the engine's survives a snapshot whole: the order of a revision's changes and
// the deletes at the compaction revision are records like any other, so a member
// restored from an engine snapshot replays them exactly as etcd would.
func (e *engine) events(r *EventsRequest) (*EventsResponse, error) {
	resp := &EventsResponse{Revision: e.rev, CompactRevision: e.compactRev}
	if r.FromRevision < e.compactRev {
		return resp, ErrCompacted
	}
	to := r.ToRevision
	if to <= 0 || to > e.rev {
		to = e.rev
	}
	resp.NextRevision = max(to+1, r.FromRevision)
	size := 0
	current := int64(0) // the revision whose changes are being read
	var readErr error
	err := e.changes(max(r.FromRevision, 1), to, func(c engineChange) bool {
		if c.rev != current {
			// A revision's events are never split: the limits are checked between
			// revisions, after the one that reached them.
			if (r.MaxEvents > 0 && len(resp.Events) >= r.MaxEvents) || (r.MaxBytes > 0 && size >= r.MaxBytes) {
				resp.NextRevision = c.rev
				return false
			}
			current = c.rev
		}
		if r.Contains != nil && !r.Contains(c.key) {
			return true
		}
		ev, ok, err := e.eventOf(c, r.PrevKv)
		if err != nil {
			readErr = err
			return false
		}
		if ok {
			resp.Events = append(resp.Events, ev)
			size += ev.Size()
		}
		return true
	})
	if err != nil {
		readErr = engineReadFailed("the history", err)
	}
	if readErr != nil {
		return nil, e.readFailed(readErr)
	}
	return resp, nil
}

// eventOf builds the event of one change. A put that compaction dropped (at the
// compaction revision, a put deleted again in the same revision) is no event.
func (e *engine) eventOf(c engineChange, withPrev bool) (Event, bool, error) {
	var ev Event
	if c.deleted {
		ev = Event{Type: EventDelete, Kv: KeyValue{Key: c.key, ModRevision: c.rev}}
	} else {
		rec, ok, err := e.version(c.key, c.rev, c.sub)
		if err != nil {
			return Event{}, false, engineReadFailed(fmt.Sprintf("key %q at revision %d", c.key, c.rev), err)
		}
		if !ok {
			return Event{}, false, nil
		}
		ev = Event{Type: EventPut, Kv: rec.keyValue(c.key, c.rev, true)}
		if rec.createRevision == c.rev {
			return ev, true, nil
		}
	}
	// etcd reads the previous value at rev-1, which fails below the compaction.
	if withPrev && c.rev-1 >= e.compactRev {
		prev, ok, err := e.get(c.key, c.rev-1, true)
		if err != nil {
			return Event{}, false, engineReadFailed(fmt.Sprintf("key %q at revision %d", c.key, c.rev-1), err)
		}
		if ok {
			ev.PrevKv = &prev
		}
	}
	return ev, true, nil
}
