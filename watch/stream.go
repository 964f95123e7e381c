package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"raftkv/kv"
)

// Errors a create can be answered with, in etcd's words: the Created response is
// also Canceled, with the error's text as its cancel reason and watch id -1.
var (
	ErrEmptyRange  = errors.New("mvcc: watcher range is empty")
	ErrDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// ErrCompactedStart answers a negative start revision, as etcd does.
	ErrCompactedStart = errors.New("etcdserver: mvcc: required revision has been compacted")
	ErrTooManyWatches = errors.New("raftkv: too many watches on this stream")
)

// errStreamClosed: Create or Cancel on a closed stream, or their context ended
// while the stream's control queue was full.
var errStreamClosed = errors.New("watch: stream closed")

// Response is one answer for a stream's client, etcd's WatchResponse without the
// header's member fields.
type Response struct {
	WatchID  int64
	Created  bool
	Canceled bool
	// CancelReason says why a create was refused.
	CancelReason    string
	CompactRevision int64
	// Revision is the header's: the store's at a create or cancel, the revision the
	// watcher is brought up to by events or a progress response, 0 with
	// CompactRevision (as in etcd).
	Revision int64
	// Events are shared between watchers and with the hub: read-only.
	Events []*kv.Event
	// PrevKv says whether to send the events' PrevKv (the hub may have read it for
	// another watcher); Fragment whether the watcher accepts a response split to fit
	// the request size limit.
	PrevKv, Fragment bool
	control          bool
}

// bytes estimates what r holds in memory beyond its own struct.
func (r *Response) bytes() int {
	n := 0
	for _, ev := range r.Events {
		n += ev.Size()
	}
	return n
}

// CreateRequest mirrors etcdserverpb.WatchCreateRequest.
type CreateRequest struct {
	Key, RangeEnd []byte
	// StartRevision: 0 watches from the next revision; an older one replays the
	// history from it; a negative one is refused.
	StartRevision int64
	// WatchID 0 asks the stream for an id.
	WatchID        int64
	NoPut          bool
	NoDelete       bool
	PrevKv         bool
	ProgressNotify bool
	Fragment       bool
}

// Stream is one client's Watch stream. Create, Cancel and RequestProgress are
// called from one goroutine (the one reading the client's requests), Next from
// another (the one sending).
type Stream struct {
	hub *Hub
	// ready has room for one signal: "a response was queued or the stream closed".
	ready chan struct{}
	// room has room for one signal: "a control response left the queue".
	room chan struct{}
	// Guarded by the hub's lock:
	watchers map[int64]*watcher
	nextID   int64
	mu       struct {
		sync.Mutex
		queue       []Response
		events      int // event responses in queue
		eventBytes  int
		control     int // control responses in queue
		wantsRoom   bool
		closed      bool
		progressDue time.Time
	}
}

// NewStream opens a stream.
func (h *Hub) NewStream() *Stream {
	s := &Stream{hub: h, ready: make(chan struct{}, 1), room: make(chan struct{}, 1), watchers: map[int64]*watcher{}}
	s.mu.progressDue = time.Now().Add(h.progressInterval())
	h.mu.Lock()
	if h.mu.closed {
		s.mu.closed = true
	} else {
		h.mu.streams[s] = struct{}{}
	}
	h.mu.Unlock()
	return s
}

func (h *Hub) progressInterval() time.Duration {
	d := h.cfg.ProgressNotifyInterval
	return d + rand.N(d/10+1)
}

// Create starts a watch and queues its Created response (Canceled too, with the
// reason, if the request is refused). It waits while the stream's control queue is
// full, and fails only if ctx ends or the stream closes meanwhile.
func (s *Stream) Create(ctx context.Context, r CreateRequest) error {
	if err := s.waitControlRoom(ctx); err != nil {
		return err
	}
	h := s.hub
	if h.beforeCreateLock != nil {
		h.beforeCreateLock()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, open := h.mu.streams[s]; !open {
		// Closed since waitControlRoom looked: a watcher added now would stay in
		// the hub for good, for nothing takes a closed stream's watchers out.
		return errStreamClosed
	}
	rev := h.history.Revision()
	refuse := func(err error) error {
		s.queueControl(Response{WatchID: -1, Created: true, Canceled: true, CancelReason: err.Error(), Revision: rev})
		return nil
	}
	if r.StartRevision < 0 {
		return refuse(ErrCompactedStart)
	}
	key, end := r.Key, r.RangeEnd
	if len(key) == 0 {
		key = []byte{0} // the smallest key, as in etcd
	}
	switch {
	case len(end) == 0:
		end = nil
	case len(end) == 1 && end[0] == 0:
		end = []byte{} // every key from key on
	case bytes.Compare(key, end) >= 0:
		return refuse(ErrEmptyRange)
	}
	id := r.WatchID
	if id == 0 {
		for s.watchers[s.nextID] != nil {
			s.nextID++
		}
		id = s.nextID
		s.nextID++
	} else if s.watchers[id] != nil {
		return refuse(ErrDuplicateID)
	}
	if len(s.watchers) >= h.cfg.MaxWatchesPerStream {
		return refuse(fmt.Errorf("%w: it has %d, the most allowed; cancel some or open another stream",
			ErrTooManyWatches, len(s.watchers)))
	}
	w := &watcher{id: id, stream: s, key: key, end: end, startRev: r.StartRevision,
		noPut: r.NoPut, noDelete: r.NoDelete, prevKV: r.PrevKv, progressNotify: r.ProgressNotify,
		fragment: r.Fragment, progressDue: true}
	// Created goes into the queue before the watcher joins the hub, so that it
	// precedes the watcher's events.
	s.queueControl(Response{WatchID: id, Created: true, Revision: rev})
	s.watchers[id] = w
	switch start := r.StartRevision; {
	case start == 0:
		w.nextRev = rev + 1
		h.makeSyncedLocked(w)
	case start > h.mu.pos:
		// The hub has not yet read start: the live path delivers it.
		w.nextRev = start
		h.makeSyncedLocked(w)
	default:
		w.nextRev = start
		w.state = stateUnsynced
		h.mu.unsynced[w] = struct{}{}
		h.Notify()
	}
	return nil
}

// Refuse answers a create the server will not serve (its sender may not read the
// range) as a refused create is answered: Created and Canceled, watch id -1, with
// reason. It waits for room as Create does.
func (s *Stream) Refuse(ctx context.Context, reason string) error {
	if err := s.waitControlRoom(ctx); err != nil {
		return err
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	s.queueControl(Response{WatchID: -1, Created: true, Canceled: true, CancelReason: reason, Revision: h.history.Revision()})
	return nil
}

// Cancel ends watch id and queues its Canceled response, after every response
// already queued for it. An id the stream does not have is ignored, as in etcd.
func (s *Stream) Cancel(ctx context.Context, id int64) error {
	if err := s.waitControlRoom(ctx); err != nil {
		return err
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w := s.watchers[id]
	if w == nil {
		return nil
	}
	h.removeLocked(w)
	delete(s.watchers, id)
	s.queueControl(Response{WatchID: id, Canceled: true, Revision: h.history.Revision()})
	return nil
}

// RequestProgress asks for a progress response (watch id -1) for all the stream's
// watchers. As etcd 3.7 does, it is dropped, not kept for later, if a watcher of
// the stream is not synced as the request arrives: one catching up, one told its
// start was compacted (until the client cancels it), or one whose start revision
// is past the store's revision; the client asks again. Otherwise it is queued once
// the hub has dispatched every event up to the revision it names (the hub may be
// a few revisions behind the store); a stream with no watcher gets none, as in etcd.
func (s *Stream) RequestProgress() {
	h := s.hub
	h.mu.Lock()
	if _, open := h.mu.streams[s]; open && s.syncedForProgressLocked(h.history.Revision()) {
		h.mu.progressWanted[s] = struct{}{}
	}
	h.mu.Unlock()
	h.Notify()
}

// syncedForProgressLocked is etcd's test for answering a progress request, at the
// store's revision rev: every watcher of the stream is synced and starts at or
// before rev.
func (s *Stream) syncedForProgressLocked(rev int64) bool {
	for _, w := range s.watchers {
		if w.state != stateSynced || w.startRev > rev {
			return false
		}
	}
	return true
}

// allSyncedLocked reports whether every live watcher of the stream has every event
// up to pos and started at or before it.
func (s *Stream) allSyncedLocked(pos int64) bool {
	for _, w := range s.watchers {
		if w.state != stateCompacted && !w.syncedAt(pos) {
			return false
		}
	}
	return true
}

// syncedAt reports whether pos is a revision w can be told it has every event up
// to: it is synced, pos is not below its start revision (etcd's rule), and not
// below the revision its Created response named.
func (w *watcher) syncedAt(pos int64) bool {
	return w.state == stateSynced && w.startRev <= pos && w.nextRev <= pos+1
}

// progressTick queues a progress response for each watcher that asked for them
// (progress_notify), got no events since the last tick, is synced and past its
// start, as etcd's timed progress notifications do.
func (s *Stream) progressTick() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range s.watchers {
		if !w.progressNotify {
			continue
		}
		if w.progressDue && w.syncedAt(h.mu.pos) {
			s.queueEvents(Response{WatchID: w.id, Revision: h.mu.pos})
		}
		w.progressDue = true
	}
}

// Close ends the stream: its watchers leave the hub and Next returns false.
func (s *Stream) Close() {
	h := s.hub
	h.mu.Lock()
	for _, w := range s.watchers {
		h.removeLocked(w)
	}
	clear(s.watchers)
	delete(h.mu.streams, s)
	delete(h.mu.progressWanted, s)
	h.mu.Unlock()
	s.mu.Lock()
	s.mu.closed = true
	s.mu.queue = nil
	s.mu.Unlock()
	signal(s.ready)
	signal(s.room)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Next returns the next response to send, waiting for one; false once the stream
// is closed or ctx ends. It also runs the stream's timed progress notifications.
func (s *Stream) Next(ctx context.Context) (Response, bool) {
	for {
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			return Response{}, false
		}
		if len(s.mu.queue) > 0 {
			r := s.mu.queue[0]
			s.mu.queue[0] = Response{}
			s.mu.queue = s.mu.queue[1:]
			wakeHub := false
			if r.control {
				s.mu.control--
				signal(s.room)
			} else {
				s.mu.events--
				s.mu.eventBytes -= r.bytes()
				// Half empty again: the watchers that found it full can catch up.
				if s.mu.wantsRoom && s.mu.events <= s.hub.cfg.MaxQueuedResponses/2 &&
					s.mu.eventBytes <= s.hub.cfg.MaxQueuedBytes/2 {
					s.mu.wantsRoom = false
					wakeHub = true
				}
			}
			s.mu.Unlock()
			if wakeHub {
				s.hub.Notify()
			}
			return r, true
		}
		wait := time.Until(s.mu.progressDue)
		s.mu.Unlock()
		if wait <= 0 {
			s.progressTick()
			s.mu.Lock()
			s.mu.progressDue = time.Now().Add(s.hub.progressInterval())
			s.mu.Unlock()
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-s.ready:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return Response{}, false
		}
		timer.Stop()
	}
}

// hasRoom reports whether the stream's queue takes event responses.
func (s *Stream) hasRoom() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.mu.closed && !s.mu.wantsRoom
}

// queueEvents queues an event (or progress, or compaction) response and reports
// whether it fit. One that does not fit marks the stream as wanting room: Next
// wakes the hub once the queue is half empty.
func (s *Stream) queueEvents(r Response) bool {
	size := r.bytes()
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return true // nobody to tell
	}
	cfg := &s.hub.cfg
	if s.mu.events > 0 && (s.mu.events >= cfg.MaxQueuedResponses || s.mu.eventBytes+size > cfg.MaxQueuedBytes) {
		s.mu.wantsRoom = true
		s.mu.Unlock()
		return false
	}
	s.mu.queue = append(s.mu.queue, r)
	s.mu.events++
	s.mu.eventBytes += size
	s.mu.Unlock()
	signal(s.ready)
	return true
}

// queueControl queues a Created or Canceled response; the caller made room for it
// (waitControlRoom).
func (s *Stream) queueControl(r Response) {
	r.control = true
	s.mu.Lock()
	if !s.mu.closed {
		s.mu.queue = append(s.mu.queue, r)
		s.mu.control++
	}
	s.mu.Unlock()
	signal(s.ready)
}

// waitControlRoom waits until the queue holds fewer than maxQueuedControl control
// responses. Only the stream's request goroutine queues them, so the room is still
// there when it queues one.
func (s *Stream) waitControlRoom(ctx context.Context) error {
	for {
		s.mu.Lock()
		closed, full := s.mu.closed, s.mu.control >= maxQueuedControl
		s.mu.Unlock()
		switch {
		case closed:
			return errStreamClosed
		case !full:
			return nil
		}
		select {
		case <-s.room:
		case <-ctx.Done():
			return errStreamClosed
		}
	}
}
