package sim

import (
	"errors"
	"testing"
	"time"

	"raftkv/raft"
)

// TestAsyncCrashLosesQueuedWrite: with AsyncWrites, an entry the leader has queued is in
// its log at once, but a crash before its disk flushes loses it; once flushed, a crash
// keeps it.
func TestAsyncCrashLosesQueuedWrite(t *testing.T) {
	h := startHarness(t, 3, Options{AsyncWrites: true})
	leader := h.checkOneLeader()
	h.run(time.Second)
	last := h.Status(leader).LastIndex

	index, _, err := h.Propose(leader, []byte("lost"))
	if err != nil || index != last+1 {
		h.fatalf("propose: index %d, err %v; want index %d", index, err, last+1)
	}
	if got := h.Status(leader).LastIndex; got != index {
		h.fatalf("leader's log ends at %d right after queueing %d; a queued write must be readable at once", got, index)
	}
	h.Crash(leader)
	h.Restart(leader)
	if got := h.Status(leader).LastIndex; got != last {
		h.fatalf("leader restarted with its log ending at %d; the write of %d was never flushed and must be lost (want %d)", got, index, last)
	}

	// On every node, once its flush has run, what it holds survives a crash.
	h.run(time.Second)
	h.one("kept", 3, true)
	for _, id := range h.peers {
		want := h.Status(id).LastIndex
		h.run(200 * time.Millisecond)
		h.crashRestart(id)
		if got := h.Status(id).LastIndex; got < want {
			h.fatalf("node %d restarted with its log ending at %d, below the %d it had flushed", id, got, want)
		}
		h.run(time.Second)
	}
	h.finish()
}

// TestCheckerCatchesAckBeforeDurable: with AsyncWrites, an acknowledgement that left a
// follower while the entries it names were only queued, not yet flushed, is a
// persist-before-speak violation.
func TestCheckerCatchesAckBeforeDurable(t *testing.T) {
	h := startHarness(t, 3, Options{AsyncWrites: true})
	leader := h.checkOneLeader()
	h.run(time.Second)
	follower := h.others(leader)[0]
	index, term, err := h.Propose(leader, []byte("x"))
	if err != nil {
		h.fatalf("propose: %v", err)
	}
	// Stop at the event that queues the entry on the follower: its flush comes later.
	h.until(time.Second, "the follower queueing the entry", func() bool { return h.Status(follower).LastIndex >= index })
	h.send(h.node(follower), raft.Message{Type: raft.MsgAppResp, From: follower, To: leader, Term: term, Index: index})
	var v *Violation
	if !errors.As(h.Err(), &v) || v.Property != "persist before speak" {
		h.fatalf("want a persist-before-speak violation for an acknowledgement of a queued entry, got %v", h.Err())
	}
	t.Logf("caught as expected: %v", v)
}
