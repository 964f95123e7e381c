package sim

import (
	"errors"
	"testing"
	"time"

	"raftkv/raft"
)

// The checkers are only worth their silence if they speak up. These tests break Raft on
// purpose, through the network, and require the right violation.

// expectViolation runs the cluster until a violation of property, failing otherwise.
func expectViolation(t *testing.T, c *Cluster, property string, limit time.Duration) {
	t.Helper()
	err := c.RunFor(limit)
	var v *Violation
	if !errors.As(err, &v) {
		t.Fatalf("seed %d: want a %q violation, got %v\nreplay: %s", c.Seed(), property, err, replayCommand(t.Name(), c.Seed()))
	}
	if v.Property != property {
		t.Fatalf("seed %d: want a %q violation, got %v\nreplay: %s", c.Seed(), property, v, replayCommand(t.Name(), c.Seed()))
	}
	t.Logf("caught as expected: %v", v)
}

// TestCheckerCatchesForgedVotes: a network that turns every refused vote into a grant
// elects two leaders in one term; election safety must flag it.
func TestCheckerCatchesForgedVotes(t *testing.T) {
	h := newSyncHarness(t, 3, Options{Configure: func(cfg *raft.Config) { cfg.DisablePreVote = true }})
	h.Intercept(func(m *raft.Message) bool {
		if m.Type == raft.MsgVoteResp {
			m.Reject = false
		}
		return true
	})
	_ = h.Campaign(1)
	_ = h.Campaign(2)
	expectViolation(t, h.Cluster, "election safety", time.Second)
}

// TestCheckerCatchesCorruptedEntries: a network that rewrites the payload of entries on
// their way to node 3 makes logs disagree on an (index, term); log matching must flag
// it when node 3 persists them.
func TestCheckerCatchesCorruptedEntries(t *testing.T) {
	h := newHarness(t, 3, Options{})
	leader := h.checkOneLeader()
	h.Intercept(func(m *raft.Message) bool {
		if m.Type == raft.MsgApp && m.To == 3 && len(m.Entries) > 0 {
			ents := append([]raft.Entry(nil), m.Entries...)
			for i := range ents {
				ents[i].Data = []byte("corrupted")
			}
			m.Entries = ents
		}
		return true
	})
	if _, _, err := h.Propose(leader, []byte("cmd")); err != nil {
		t.Fatalf("propose: %v", err)
	}
	expectViolation(t, h.Cluster, "log matching", time.Second)
}

// TestCheckerCatchesNoProgress: a majority that cannot talk fails the liveness check.
func TestCheckerCatchesNoProgress(t *testing.T) {
	h := newHarness(t, 3, Options{LivenessBound: 3 * time.Second})
	h.checkOneLeader()
	h.Partition([]uint64{1}, []uint64{2}, []uint64{3})
	err := h.AwaitLiveness(h.peers)
	var v *Violation
	if !errors.As(err, &v) || v.Property != "liveness" {
		t.Fatalf("seed %d: want a liveness violation, got %v", h.Seed(), err)
	}
}
