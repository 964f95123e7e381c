package server

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"raftkv/kv"
)

// waitRegistry connects requests waiting for their entry to apply with the apply loop.
// It numbers this member's proposals (seq), and finds a waiting request by its
// number when an entry of this member's applies; a request proposed on the leader
// also knows its index, so if another entry is applied there, it learns at once that
// its own was lost (the seed's rule) instead of waiting for its deadline.
type waitRegistry struct {
	mu struct {
		sync.Mutex
		// next is the number the next request gets; numbers start at 1.
		next uint64
		// lowest is a cursor: no request numbered below it is waiting. See
		// lowestPending.
		lowest uint64
		byID   map[uint64]*waiter
		// byIndex holds, by index, the requests expected there: more than one
		// when this member proposed at an index again (its entry there cut), and
		// whichever entry applies decides for them all.
		byIndex map[uint64][]uint64
		// applied is the last index applied, and snapshot the last one a snapshot
		// from the leader applied at: a request proposed at an index between the
		// two learns at once what became of its entry (see proposed).
		applied, snapshot uint64
	}
}

type waiter struct {
	ch chan applyResult
}

type applyResult struct {
	result kv.Result
	// lost: another entry took the index this request was proposed at.
	lost bool
	// notProposed: the leader's run loop refused the request (proposed).
	notProposed error
}

func newWaitRegistry() *waitRegistry {
	w := &waitRegistry{}
	w.mu.next, w.mu.lowest = 1, 1
	w.mu.byID = map[uint64]*waiter{}
	w.mu.byIndex = map[uint64][]uint64{}
	return w
}

// register numbers a new request and registers its waiter. Numbering and
// registering under one lock is what makes lowestPending sound: every number below
// next is either waiting or done.
func (w *waitRegistry) register() (uint64, *waiter) {
	wt := &waiter{ch: make(chan applyResult, 1)}
	w.mu.Lock()
	id := w.mu.next
	w.mu.next++
	w.mu.byID[id] = wt
	w.mu.Unlock()
	return id, wt
}

// lowestPending returns the lowest number of a request still waiting (next, if
// none is). The cursor only moves up, past numbers done, so each number is passed
// once.
func (w *waitRegistry) lowestPending() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.mu.lowest < w.mu.next && w.mu.byID[w.mu.lowest] == nil {
		w.mu.lowest++
	}
	return w.mu.lowest
}

// expectAt records the index Start returned for request id.
func (w *waitRegistry) expectAt(id, index uint64) { w.proposed(id, index, nil) }

// proposed records what the leader's run loop did with request id: the index it
// gave the entry, or err, why it refused it, which the request's waiter gets. It is
// called on the run loop (raft.Node.ProposeAsync), before the entry can apply. A
// request that has stopped waiting (cancel) is no longer here, and nothing is
// recorded for it.
func (w *waitRegistry) proposed(id, index uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.mu.byID[id]
	switch {
	case !ok:
	case err != nil:
		// The slot is empty: the entry is not in the log, so no result of its
		// own can have come, and the request sends it again only after taking
		// this. Never block here all the same: this runs on the raft run loop,
		// which a blocked send would stall for the whole member.
		select {
		case wt.ch <- applyResult{notProposed: err}:
		default:
		}
	case index <= w.mu.snapshot:
		// A snapshot replaced the entry at index before the index was known
		// here: as for the requests snapshotApplied forgets, nothing tells
		// whether it was this one, and the request waits for its deadline.
	case index <= w.mu.applied:
		// The entry at index applied before the index was known here (a leader
		// change between Propose and this call): had it been this request, the
		// request would have had its result and left byID.
		delete(w.mu.byID, id)
		wt.ch <- applyResult{lost: true}
	default:
		// An earlier request of this member expected here stays expected: its
		// entry, cut from this member's log, may still commit through another
		// leader's, and a late expectAt may name an index a newer request took.
		// What applies at index decides, by id (applied).
		if !slices.Contains(w.mu.byIndex[index], id) {
			w.mu.byIndex[index] = append(w.mu.byIndex[index], id)
		}
	}
}

// snapshotApplied forgets the indexes expected at or below index, which a snapshot
// from the leader has replaced: no entry will apply at them here. Their requests
// cannot tell whether their entries are in the snapshot, and wait for their
// deadline, as they did before; only the records go.
func (w *waitRegistry) snapshotApplied(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.applied, w.mu.snapshot = max(w.mu.applied, index), max(w.mu.snapshot, index)
	for i := range w.mu.byIndex {
		if i <= index {
			delete(w.mu.byIndex, i)
		}
	}
}

func (w *waitRegistry) cancel(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.mu.byID, id)
}

// applied is called by the apply loop for the entry at index, which carried request
// id of this member if mine (anything else: another member's entry, or one that is
// not a request).
func (w *waitRegistry) applied(index uint64, mine bool, id uint64, res kv.Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.applied = max(w.mu.applied, index)
	for _, expected := range w.mu.byIndex[index] {
		if !mine || expected != id {
			if wt, ok := w.mu.byID[expected]; ok {
				delete(w.mu.byID, expected)
				wt.ch <- applyResult{lost: true}
			}
		}
	}
	delete(w.mu.byIndex, index)
	if !mine {
		return
	}
	if wt, ok := w.mu.byID[id]; ok {
		delete(w.mu.byID, id)
		wt.ch <- applyResult{result: res}
	}
}

// appliedTerm is the term of the last entry applied, and a channel closed when it
// grows: a forwarded proposal still waiting when an entry of a newer term than the
// one it was sent in applies was lost with the old leader, or is in the new leader's
// log and applied by then (a leader commits the entries of earlier terms with its
// first entry, Raft §5.4.2), so it is sent again (proposeResending).
type appliedTerm struct {
	term atomic.Uint64
	mu   struct {
		sync.Mutex
		changed chan struct{}
	}
}

func newAppliedTerm() *appliedTerm {
	a := &appliedTerm{}
	a.mu.changed = make(chan struct{})
	return a
}

// set records the term of an entry applied. Terms change rarely; the common case
// is one atomic load.
func (a *appliedTerm) set(term uint64) {
	if term <= a.term.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if term > a.term.Load() {
		a.term.Store(term)
		close(a.mu.changed)
		a.mu.changed = make(chan struct{})
	}
}

// get returns the term and a channel closed when it next grows.
func (a *appliedTerm) get() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.term.Load(), a.mu.changed
}

// appliedNotifier lets readers wait until the applied index reaches a read point.
type appliedNotifier struct {
	// stopped (the member's stopc) and halted (closed by halt, once the store
	// refused an entry: the apply loop then counts none applied, isHalted) end
	// every wait with errStopped, since the index may never come: Stop waits for
	// the read loop, and the requests in flight hold the member's stop up to its
	// grace period.
	stopped  <-chan struct{}
	halted   chan struct{}
	haltOnce sync.Once
	mu       sync.Mutex
	index    uint64
	changed  chan struct{}
	// waited: a reader holds changed. The apply loop closes and replaces the
	// channel only then, so applying an entry with no reader waiting allocates nothing.
	waited bool
}

func newAppliedNotifier(index uint64, stopped <-chan struct{}) *appliedNotifier {
	return &appliedNotifier{index: index, changed: make(chan struct{}), stopped: stopped, halted: make(chan struct{})}
}

// halt stops the applied index where it is and ends every wait, now and later,
// with errStopped: the store refused an entry, so no later index is applied.
func (a *appliedNotifier) halt() { a.haltOnce.Do(func() { close(a.halted) }) }

// isHalted reports whether halt was called.
func (a *appliedNotifier) isHalted() bool {
	select {
	case <-a.halted:
		return true
	default:
		return false
	}
}

// set records index as applied, unless halt was called: then the index stays.
func (a *appliedNotifier) set(index uint64) {
	if a.isHalted() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index = index
	if a.waited {
		close(a.changed)
		a.changed = make(chan struct{})
		a.waited = false
	}
}

func (a *appliedNotifier) get() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index
}

// wait returns once the applied index is at least index, or ctx's error, or
// errStopped once the member stops or its store refused an entry (halt).
func (a *appliedNotifier) wait(ctx context.Context, index uint64) error {
	for {
		a.mu.Lock()
		applied, changed := a.index, a.changed
		a.waited = a.waited || applied < index
		a.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-a.stopped:
			return errStopped
		case <-a.halted:
			return errStopped
		}
	}
}
