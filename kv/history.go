package kv

// This file is the store's history by revision: what every write changed, in order,
// read back as etcd's watch events (the records are the engine's:
// engine_events.go). A watcher reads it through Events alone.

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
// before applying one. Both formats carry the kind second: the command of an
// authenticated client (version 2, with its sender) is a compaction like any other.
func IsCompaction(data []byte) bool { return peekKind(data) == opCompact }

// IsPut reports whether data, an encoded Command, is a put, without decoding it:
// the server groups consecutive puts into one engine batch (Store.BeginGroup).
func IsPut(data []byte) bool { return peekKind(data) == opPut }

// peekKind returns the kind of the encoded Command data, read from its second
// byte as Command.decode reads it, or opMany (no command's kind) if data is too
// short or of a format this build does not read.
func peekKind(data []byte) opKind {
	if len(data) < 2 || (data[0] != commandVersion && data[0] != commandVersionSender) {
		return opMany
	}
	return opKind(data[1])
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
// The history is records in the engine (engine_events.go), in engine snapshots
// like any other, so a store restored from one replays it exactly. A store
// imported from a snapshot of the previous format (or a backup: Import) has each
// key's history but not the order of the changes within a revision: it returns
// the events of a revision before the import that changed several keys (a txn, a
// DeleteRange) in key order.
func (s *Store) Events(r *EventsRequest) (*EventsResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	return s.mu.st.e.events(r)
}
