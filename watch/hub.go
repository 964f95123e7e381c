package watch

import (
	"errors"
	"sync"
	"time"

	"raftkv/kv"
)

// History is what the hub needs of the store: its revisions and their events.
// kv.Store implements it.
type History interface {
	// Events reads a stretch of history (see kv.Store.Events).
	Events(*kv.EventsRequest) (*kv.EventsResponse, error)
	// Revision is the store's revision: every event up to it can be read.
	Revision() int64
	// CompactRevision is the revision of the store's last compaction, -1 if none.
	CompactRevision() int64
}

// Hub hands the store's events to watchers. Its goroutine does the work; Notify
// wakes it.
type Hub struct {
	history History
	cfg     Config
	// wake has room for one signal: "there may be work".
	wake  chan struct{}
	stopc chan struct{}
	done  chan struct{}
	// beforeCreateLock, if set (by tests), runs in Stream.Create between its
	// check for room and its taking of mu.
	beforeCreateLock func()
	mu               struct {
		sync.Mutex
		// pos is the revision up to which the synced watchers have been handed
		// their events.
		pos      int64
		synced   *group
		unsynced watcherSet
		// progressWanted holds the streams with an on-demand progress request not
		// yet answered.
		progressWanted map[*Stream]struct{}
		streams        map[*Stream]struct{}
		closed         bool
	}
}

// watcher states.
const (
	stateSynced = iota
	stateUnsynced
	// stateCompacted: told its next revision was compacted; it gets nothing more,
	// but keeps its id until canceled, as in etcd.
	stateCompacted
)

// watcher is one watch. Its fields are set at creation, except those marked as
// guarded by the hub's lock.
type watcher struct {
	id     int64
	stream *Stream
	// key, end: one key when end is nil, else [key, end), end empty for every key
	// from key on.
	key, end               []byte
	startRev               int64
	noPut, noDelete        bool
	prevKV, progressNotify bool
	fragment               bool
	// Guarded by the hub's lock:
	state int
	// nextRev is the first revision whose events the watcher has not been handed,
	// for an unsynced one; for a synced one the first it may be handed (the hub's
	// position decides the rest).
	nextRev int64
	// progressDue: no events were queued for the watcher since the last periodic
	// progress tick.
	progressDue bool
}

// NewHub starts a hub following history from its current revision. Close stops it.
func NewHub(history History, cfg Config) *Hub {
	h := newHub(history, cfg)
	go h.run()
	return h
}

// newHub returns a hub without its goroutine (tests drive it by hand).
func newHub(history History, cfg Config) *Hub {
	h := &Hub{history: history, cfg: cfg.withDefaults(), wake: make(chan struct{}, 1),
		stopc: make(chan struct{}), done: make(chan struct{})}
	h.mu.pos = history.Revision()
	h.mu.synced = newGroup()
	h.mu.unsynced = watcherSet{}
	h.mu.progressWanted = map[*Stream]struct{}{}
	h.mu.streams = map[*Stream]struct{}{}
	return h
}

// Notify tells the hub the store applied entries. It never blocks.
func (h *Hub) Notify() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Flush hands the synced watchers every event up to the store's current revision,
// in the caller's goroutine. The server's apply loop calls it before a compaction
// and before restoring a snapshot, which would drop events not yet handed out. It
// does not wait for any client: a watcher whose queue is full becomes unsynced.
func (h *Hub) Flush() {
	h.dispatch()
}

// Close stops the hub and ends every stream.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.mu.closed {
		h.mu.Unlock()
		return
	}
	h.mu.closed = true
	streams := make([]*Stream, 0, len(h.mu.streams))
	for s := range h.mu.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	close(h.stopc)
	<-h.done
	for _, s := range streams {
		s.Close()
	}
}

// Stats counts the hub's watchers and what its streams hold, for tests and metrics.
type Stats struct {
	Streams, Synced, Unsynced int
	// Revision is the hub's position: the synced watchers have every event up to it.
	Revision int64
	// QueuedResponses and QueuedBytes add up the event responses queued on every
	// stream and their size (kv.Event.Size); MaxStreamBytes is the most one stream
	// holds.
	QueuedResponses, QueuedBytes, MaxStreamBytes int
}

// Stats returns the hub's counts now.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Stats{Streams: len(h.mu.streams), Synced: h.mu.synced.len(), Unsynced: len(h.mu.unsynced), Revision: h.mu.pos}
	for s := range h.mu.streams {
		s.mu.Lock()
		st.QueuedResponses += s.mu.events
		st.QueuedBytes += s.mu.eventBytes
		st.MaxStreamBytes = max(st.MaxStreamBytes, s.mu.eventBytes)
		s.mu.Unlock()
	}
	return st
}

func (h *Hub) run() {
	defer close(h.done)
	retry := time.NewTicker(retryInterval)
	defer retry.Stop()
	for {
		select {
		case <-h.wake:
		case <-retry.C:
		case <-h.stopc:
			return
		}
		h.dispatch()
		if h.catchUp() {
			h.Notify() // more to do and progress made: go round again at once
		}
		h.answerProgress()
	}
}

// dispatch reads the revisions after the hub's position up to the store's, and
// queues their events for the synced watchers, a bounded read at a time.
func (h *Hub) dispatch() {
	for {
		target := h.history.Revision()
		h.mu.Lock()
		if h.mu.closed || h.mu.pos >= target {
			h.mu.Unlock()
			return
		}
		from := h.mu.pos + 1
		if h.mu.synced.len() == 0 {
			h.mu.pos = target
			h.mu.Unlock()
			return
		}
		resp, err := h.history.Events(&kv.EventsRequest{FromRevision: from, ToRevision: target,
			Contains: h.mu.synced.contains, PrevKv: h.mu.synced.prevKVs > 0,
			MaxEvents: maxEventsPerRead, MaxBytes: h.cfg.MaxQueuedBytes})
		switch {
		case errors.Is(err, kv.ErrCompacted):
			// Only a restored snapshot moves the compaction past the hub (Flush runs
			// before every compaction): the synced watchers lost events, and hear it
			// as unsynced ones do.
			h.cfg.Logger.Info("the history after the watchers' position was compacted; they will be told",
				"position", h.mu.pos, "compacted", h.history.CompactRevision(), "watchers", h.mu.synced.len())
			for w := range h.mu.synced.all {
				w.nextRev = max(w.nextRev, from)
				h.makeUnsyncedLocked(w)
			}
			h.mu.pos = target
			h.mu.Unlock()
			h.Notify()
			return
		case err != nil:
			h.mu.Unlock()
			return // the store is closed: the server is stopping
		}
		upTo := resp.NextRevision - 1
		for w, evs := range h.matchLocked(h.mu.synced, resp.Events) {
			if !h.sendEventsLocked(w, evs, upTo) {
				w.nextRev = max(w.nextRev, from)
				h.makeUnsyncedLocked(w)
			}
		}
		h.mu.pos = upTo
		h.mu.Unlock()
	}
}

// matchLocked sorts events out to the watchers of g they concern: in the watcher's
// range, at or after its next revision, past its filters.
func (h *Hub) matchLocked(g *group, events []kv.Event) map[*watcher][]*kv.Event {
	out := map[*watcher][]*kv.Event{}
	for i := range events {
		ev := &events[i]
		g.each(ev.Kv.Key, func(w *watcher) {
			if ev.Kv.ModRevision < w.nextRev || (ev.Type == kv.EventPut && w.noPut) || (ev.Type == kv.EventDelete && w.noDelete) {
				return
			}
			out[w] = append(out[w], ev)
		})
	}
	return out
}

// sendEventsLocked queues w's events, which bring it up to revision upTo, and
// reports whether they fit its stream's queue.
func (h *Hub) sendEventsLocked(w *watcher, evs []*kv.Event, upTo int64) bool {
	if !w.stream.queueEvents(Response{WatchID: w.id, Revision: upTo, Events: evs, PrevKv: w.prevKV, Fragment: w.fragment}) {
		return false
	}
	w.progressDue = false
	return true
}

func (h *Hub) makeUnsyncedLocked(w *watcher) {
	h.mu.synced.remove(w)
	w.state = stateUnsynced
	h.mu.unsynced[w] = struct{}{}
}

func (h *Hub) makeSyncedLocked(w *watcher) {
	delete(h.mu.unsynced, w)
	w.state = stateSynced
	h.mu.synced.add(w)
}

// removeLocked takes w out of the hub, whatever its state.
func (h *Hub) removeLocked(w *watcher) {
	switch w.state {
	case stateSynced:
		h.mu.synced.remove(w)
	case stateUnsynced:
		delete(h.mu.unsynced, w)
	}
	w.state = stateCompacted
}

// catchUp serves up to maxCatchUpWatchers unsynced watchers whose streams have
// room with one bounded read of the history from the oldest revision they need,
// and moves those that reach the hub's position to the synced ones. Watchers whose
// next revision was compacted are told so and end. It reports whether unsynced
// watchers remain after a round that moved some forward.
func (h *Hub) catchUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed || len(h.mu.unsynced) == 0 {
		return false
	}
	compactRev := h.history.CompactRevision()
	chosen := newGroup()
	minRev := int64(-1)
	moved := false
	for w := range h.mu.unsynced {
		if chosen.len() >= maxCatchUpWatchers {
			break
		}
		if !w.stream.hasRoom() {
			continue
		}
		switch {
		case w.nextRev < compactRev:
			// etcd's answer: the compaction revision, the watch canceled, and a
			// header revision of 0.
			if w.stream.queueEvents(Response{WatchID: w.id, CompactRevision: compactRev, Canceled: true}) {
				h.removeLocked(w)
				moved = true
			}
		case w.nextRev > h.mu.pos:
			h.makeSyncedLocked(w)
			moved = true
		default:
			chosen.add(w)
			if minRev < 0 || w.nextRev < minRev {
				minRev = w.nextRev
			}
		}
	}
	if chosen.len() == 0 {
		return moved && len(h.mu.unsynced) > 0
	}
	resp, err := h.history.Events(&kv.EventsRequest{FromRevision: minRev, ToRevision: h.mu.pos,
		Contains: chosen.contains, PrevKv: chosen.prevKVs > 0,
		MaxEvents: maxEventsPerRead, MaxBytes: h.cfg.MaxQueuedBytes})
	if errors.Is(err, kv.ErrCompacted) {
		// Compacted meanwhile, or a restored store that cannot serve its compaction
		// revision (kv.Store.Events): the watchers that need it are told.
		for w := range chosen.all {
			if w.nextRev <= resp.CompactRevision && w.stream.queueEvents(
				Response{WatchID: w.id, CompactRevision: resp.CompactRevision, Canceled: true}) {
				h.removeLocked(w)
				moved = true
			}
		}
		return moved && len(h.mu.unsynced) > 0
	}
	if err != nil {
		return false // the store is closed: the server is stopping
	}
	upTo := resp.NextRevision - 1
	matched := h.matchLocked(chosen, resp.Events)
	for w := range chosen.all {
		if evs := matched[w]; len(evs) > 0 && !h.sendEventsLocked(w, evs, upTo) {
			continue // still no room: stays where it is
		}
		w.nextRev = max(w.nextRev, resp.NextRevision)
		moved = true
		if w.nextRev > h.mu.pos {
			h.makeSyncedLocked(w)
		}
	}
	return moved && len(h.mu.unsynced) > 0
}

// answerProgress answers the streams' on-demand progress requests whose watchers
// are all synced and past their start revision: the hub's position then is a
// revision every watcher of the stream has all events up to, and none after. A
// request was taken only if its stream was synced as it arrived (RequestProgress);
// it waits here only while the hub dispatches the revisions up to the store's.
func (h *Hub) answerProgress() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.mu.progressWanted {
		if !s.allSyncedLocked(h.mu.pos) {
			continue
		}
		if len(s.watchers) == 0 || s.queueEvents(Response{WatchID: -1, Revision: h.mu.pos}) {
			delete(h.mu.progressWanted, s)
		}
	}
}
