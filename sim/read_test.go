package sim

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"raftkv/raft"
)

// read issues a ReadIndex request at node id and waits up to 2 s for its answer,
// returning the read point (0 if refused) and whether it was answered.
func (h *harness) read(id uint64) (uint64, bool) {
	h.t.Helper()
	ctx, err := h.ReadIndex(id)
	if err != nil {
		return 0, false
	}
	answered := false
	_, runErr := h.RunUntil(2*time.Second, func() bool {
		_, answered = h.ReadResult(ctx)
		return answered
	})
	h.ok(runErr)
	index, _ := h.ReadResult(ctx)
	return index, answered
}

// TestReadIndexLinearizable: a read point from the leader, or through a follower, is at
// least every index acknowledged committed before the read was issued (thesis §6.4).
// The checker asserts the same of every read the simulator sees; this test makes sure
// reads are actually answered.
func TestReadIndexLinearizable(t *testing.T) {
	h := newHarness(t, 3, Options{})
	for i := range 5 {
		index := h.one(fmt.Sprintf("w%d", i), 3, true)
		leader := h.checkOneLeader()
		for _, id := range []uint64{leader, h.others(leader)[0]} {
			point, answered := h.read(id)
			if !answered || point == 0 {
				h.fatalf("read at node %d (leader %d) not answered: point %d answered %v", id, leader, point, answered)
			}
			if point < index {
				h.fatalf("read at node %d returned read point %d, below the acknowledged write at %d", id, point, index)
			}
		}
	}
	h.finish()
}

// TestReadIndexStaleLeader: a leader cut off from the majority cannot confirm its
// leadership, so it never answers a read while the others elect a new leader and
// commit past it.
func TestReadIndexStaleLeader(t *testing.T) {
	h := newHarness(t, 5, Options{})
	h.one("w0", 5, true)
	stale := h.checkOneLeader()
	h.Disconnect(stale)
	ctx, err := h.ReadIndex(stale)
	if err != nil {
		h.fatalf("cut-off leader %d refused the read at once: %v; want it to wait for a quorum", stale, err)
	}
	for i := range 5 {
		h.one(fmt.Sprintf("w%d", i+1), 4, true)
	}
	if index, answered := h.ReadResult(ctx); answered && index != 0 {
		h.fatalf("cut-off leader %d answered a read with point %d while the majority committed through %d",
			stale, index, h.CommittedIndex())
	}
	h.Connect(stale)
	h.finish()
}

// TestReadIndexNewLeader: a new leader has not yet committed an entry of its term and
// so does not know the commit index: it must refuse or hold reads until its no-op
// commits, never answer with a stale point.
func TestReadIndexNewLeader(t *testing.T) {
	h := newHarness(t, 3, Options{})
	h.one("w0", 3, true)
	old := h.checkOneLeader()
	h.Disconnect(old)
	next := h.leaderAmong(h.others(old), h.Status(old).Term)
	// Right after the election, before the no-op can have reached anyone.
	ctx, err := h.ReadIndex(next)
	if err != nil && !errors.Is(err, raft.ErrReadIndexNotReady) {
		h.fatalf("new leader %d: ReadIndex: %v", next, err)
	}
	h.run(time.Second)
	// Whatever the answer, the checker held it to everything applied before the read.
	_, _ = h.ReadResult(ctx)
	// Once the no-op has committed, reads are answered at or past it.
	noop := h.Status(next).Commit
	if point, answered := h.read(next); !answered || point < noop {
		h.fatalf("leader %d answered a read with %d (answered %v) after committing through %d", next, point, answered, noop)
	}
	h.Connect(old)
	h.finish()
}

// TestReadsUnderChurn: clients mixing writes and reads while leaders are cut off and
// nodes crash; the checker holds every read point to linearizability.
func TestReadsUnderChurn(t *testing.T) {
	h := newHarness(t, 5, Options{Clients: 4, ReadRate: 0.5, SnapshotEvery: 15, Net: UnreliableNet()})
	for round := range 10 {
		if leader, ok := h.Leader(); ok {
			if round%2 == 0 {
				h.Disconnect(leader)
			} else {
				h.Crash(leader)
			}
		}
		h.run(2 * time.Second)
		h.Heal()
		for _, id := range h.peers {
			h.Restart(id)
		}
		h.run(time.Second)
	}
	h.finish()
	if len(h.Acks()) == 0 || h.ReadsServed() == 0 {
		h.fatalf("%d commands acknowledged and %d reads served; the scenario did no work", len(h.Acks()), h.ReadsServed())
	}
}
