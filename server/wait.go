package server

import (
	"context"
	"sync"

	"raftkv/kv"
)

// waitRegistry connects requests waiting for their entry to apply with the apply loop.
// A request is found by its request id; a request proposed on the leader also knows
// its index, so if another entry is applied there, it learns at once that its own was
// lost (the seed's rule) instead of waiting for its deadline.
type waitRegistry struct {
	mu struct {
		sync.Mutex
		byID    map[uint64]*waiter
		byIndex map[uint64]uint64 // index -> request id expected there
	}
}

type waiter struct {
	ch chan applyResult
}

type applyResult struct {
	result kv.Result
	// lost: another entry took the index this request was proposed at.
	lost bool
}

func newWaitRegistry() *waitRegistry {
	w := &waitRegistry{}
	w.mu.byID = map[uint64]*waiter{}
	w.mu.byIndex = map[uint64]uint64{}
	return w
}

func (w *waitRegistry) register(id uint64) *waiter {
	wt := &waiter{ch: make(chan applyResult, 1)}
	w.mu.Lock()
	w.mu.byID[id] = wt
	w.mu.Unlock()
	return wt
}

// expectAt records the index Start returned for request id.
func (w *waitRegistry) expectAt(id, index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.mu.byID[id]; ok {
		w.mu.byIndex[index] = id
	}
}

func (w *waitRegistry) cancel(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.mu.byID, id)
}

// applied is called by the apply loop for the entry at index, which carried request
// id (0 for entries that are not requests).
func (w *waitRegistry) applied(index, id uint64, res kv.Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if expected, ok := w.mu.byIndex[index]; ok {
		delete(w.mu.byIndex, index)
		if expected != id {
			if wt, ok := w.mu.byID[expected]; ok {
				delete(w.mu.byID, expected)
				wt.ch <- applyResult{lost: true}
			}
		}
	}
	if id == 0 {
		return
	}
	if wt, ok := w.mu.byID[id]; ok {
		delete(w.mu.byID, id)
		wt.ch <- applyResult{result: res}
	}
}

// appliedNotifier lets readers wait until the applied index reaches a read point.
type appliedNotifier struct {
	mu      sync.Mutex
	index   uint64
	changed chan struct{}
	// waited: a reader holds changed. The apply loop closes and replaces the
	// channel only then, so applying an entry with no reader waiting allocates nothing.
	waited bool
}

func newAppliedNotifier(index uint64) *appliedNotifier {
	return &appliedNotifier{index: index, changed: make(chan struct{})}
}

func (a *appliedNotifier) set(index uint64) {
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

// wait returns once the applied index is at least index.
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
		}
	}
}
