package server

import (
	"errors"
	"testing"

	"raftkv/kv"
	"raftkv/raft"
)

// The wait registry's answers: a request recorded at an index hears "lost" when
// another entry applies there, its own result when its entry does, and the run
// loop's refusal when it gives one; a snapshot drops the records it covers.
func TestWaitRegistryAnswers(t *testing.T) {
	w := newWaitRegistry()
	mine, wtMine := w.register()
	lost, wtLost := w.register()
	refused, wtRefused := w.register()
	covered, _ := w.register()
	w.proposed(mine, 10, nil)
	w.proposed(lost, 11, nil)
	w.proposed(refused, 0, raft.ErrProposalDropped)
	w.proposed(covered, 12, nil)

	w.applied(10, true, mine, kv.Result{Put: &kv.PutResponse{}})
	if got := <-wtMine.ch; got.lost || got.notProposed != nil || got.result.Put == nil {
		t.Errorf("own entry applied: got %+v, want its result (a PutResponse)", got)
	}
	w.applied(11, false, 0, kv.Result{})
	if got := <-wtLost.ch; !got.lost {
		t.Errorf("another entry at the recorded index: got %+v, want lost", got)
	}
	if got := <-wtRefused.ch; !errors.Is(got.notProposed, raft.ErrProposalDropped) {
		t.Errorf("refused proposal: got %+v, want notProposed ErrProposalDropped", got)
	}
	// A second refusal finds the slot full and is dropped rather than block the
	// run loop.
	w.proposed(refused, 0, raft.ErrNotLeader)
	w.proposed(refused, 0, raft.ErrNotLeader)

	w.snapshotApplied(12)
	w.mu.Lock()
	left := len(w.mu.byIndex)
	w.mu.Unlock()
	if left != 0 {
		t.Errorf("%d indexes still expected after a snapshot at 12 covered them", left)
	}
	// A request that stopped waiting is no longer recorded.
	w.cancel(covered)
	w.proposed(covered, 13, nil)
	w.mu.Lock()
	_, recorded := w.mu.byIndex[13]
	w.mu.Unlock()
	if recorded {
		t.Error("an index recorded for a cancelled request")
	}
}
