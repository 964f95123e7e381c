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

// A request whose index is known only after the entry there applied (a leader
// change between Propose and expectAt) hears "lost" at once, and leaves no record
// behind; one whose index a snapshot covered is not recorded either. A request
// proposed at an index where an earlier one of this member was expected does not
// make the earlier one "lost": that entry, cut from this member's log, may still
// commit through another leader's; what applies there decides.
func TestWaitRegistryLateAndReusedIndexes(t *testing.T) {
	w := newWaitRegistry()
	w.applied(20, false, 0, kv.Result{})
	late, wtLate := w.register()
	w.proposed(late, 20, nil)
	select {
	case got := <-wtLate.ch:
		if !got.lost {
			t.Errorf("proposed at 20 after another entry applied there: got %+v, want lost", got)
		}
	default:
		t.Error("proposed at 20 after another entry applied there: no answer; the request would wait for its deadline")
	}

	w.snapshotApplied(30)
	covered, wtCovered := w.register()
	w.proposed(covered, 25, nil)
	select {
	case got := <-wtCovered.ch:
		t.Errorf("proposed at 25, which a snapshot covered: got %+v, want no answer (it cannot tell)", got)
	default:
	}

	// A second request proposed at an index where a first was expected: the first
	// is not told "lost" then (its entry may still commit through another
	// leader); whichever applies there decides, for both.
	first, wtFirst := w.register()
	second, wtSecond := w.register()
	w.proposed(first, 31, nil)
	w.proposed(second, 31, nil)
	w.applied(31, true, first, kv.Result{Put: &kv.PutResponse{}})
	if got := <-wtFirst.ch; got.lost || got.result.Put == nil {
		t.Errorf("the first request's entry applied at 31: got %+v, want its result", got)
	}
	if got := <-wtSecond.ch; !got.lost {
		t.Errorf("the first request's entry applied at 31: the second got %+v, want lost", got)
	}
	// And when the later one's entry applies, the earlier one hears at once.
	third, wtThird := w.register()
	fourth, wtFourth := w.register()
	w.proposed(third, 32, nil)
	w.proposed(fourth, 32, nil)
	w.applied(32, true, fourth, kv.Result{Put: &kv.PutResponse{}})
	if got := <-wtThird.ch; !got.lost {
		t.Errorf("the later request's entry applied at 32: the earlier got %+v, want lost", got)
	}
	if got := <-wtFourth.ch; got.lost || got.result.Put == nil {
		t.Errorf("the later request's entry applied at 32: it got %+v, want its result", got)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.mu.byIndex) != 0 {
		t.Errorf("indexes still expected: %v; want none", w.mu.byIndex)
	}
}
