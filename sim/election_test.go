package sim

import (
	"math/rand/v2"
	"testing"
	"time"
)

// electionTimeout is the cores' election timeout in virtual time (10 ticks of 100ms);
// each follower waits between one and two of them.
const electionTimeout = time.Second

// TestInitialElection: a fresh cluster elects one leader, and with nothing failing the
// term then stays put (6.824 TestInitialElection3A).
func TestInitialElection(t *testing.T) {
	h := newHarness(t, 3, Options{})
	h.checkOneLeader()
	h.run(50 * time.Millisecond)
	term1 := h.checkTerms(h.peers...)
	if term1 < 1 {
		h.fatalf("term is %d after the first election, want at least 1", term1)
	}
	h.run(2 * electionTimeout)
	if term2 := h.checkTerms(h.peers...); term2 != term1 {
		h.fatalf("term changed from %d to %d with no failures", term1, term2)
	}
	h.checkOneLeader()
}

// TestReElection: when the leader is cut off the others elect a new one; the old one
// rejoining does not depose it (PreVote and CheckQuorum); without a quorum no one is
// elected (6.824 TestReElection3A).
func TestReElection(t *testing.T) {
	h := newHarness(t, 3, Options{})
	leader1 := h.checkOneLeader()

	h.Disconnect(leader1)
	leader2 := h.checkOneLeader()
	if leader2 == leader1 {
		h.fatalf("node %d is still the newest leader after being cut off", leader1)
	}

	// The old leader rejoins: it must follow, not disrupt.
	term := h.Status(leader2).Term
	h.Connect(leader1)
	if got := h.checkOneLeader(); got != leader2 || h.Status(leader2).Term != term {
		h.fatalf("rejoining node %d disrupted leader %d of term %d: leader now %d of term %d",
			leader1, leader2, term, got, h.Status(got).Term)
	}

	// No quorum: no leader, and the cut-off leader steps down (CheckQuorum).
	rest := h.others(leader2)
	h.Disconnect(leader2)
	h.Disconnect(rest[0])
	h.run(2 * electionTimeout)
	h.checkNoLeader(h.peers...)

	// A quorum again: a leader.
	h.Connect(rest[0])
	h.checkOneLeader()
	h.Connect(leader2)
	h.checkOneLeader()
}

// TestNoLeaderWithoutQuorum: with three of five nodes cut off from everyone, nobody
// leads, the old leader included, and PreVote keeps every term where it was.
func TestNoLeaderWithoutQuorum(t *testing.T) {
	h := newHarness(t, 5, Options{})
	leader := h.checkOneLeader()
	h.one("x", 5, false)
	cut := append([]uint64{leader}, h.others(leader)[:2]...)
	terms := map[uint64]uint64{}
	for _, id := range h.peers {
		terms[id] = h.Status(id).Term
	}
	for _, id := range cut {
		h.Disconnect(id)
	}
	h.run(5 * electionTimeout)
	h.checkNoLeader(h.peers...)
	for _, id := range h.peers {
		if got := h.Status(id).Term; got != terms[id] {
			h.fatalf("node %d moved from term %d to %d without a quorum; PreVote should prevent that", id, terms[id], got)
		}
	}
	h.Heal()
	h.checkOneLeader()
	h.one("y", 5, true)
	h.finish()
}

// TestManyElections: seven nodes, three random ones cut off at a time, ten times over;
// the other four must always elect a leader (6.824 TestManyElections3A).
func TestManyElections(t *testing.T) {
	h := newHarness(t, 7, Options{})
	rng := rand.New(rand.NewPCG(uint64(h.Seed()), 7))
	h.checkOneLeader()
	for range 10 {
		perm := rng.Perm(7)
		cut := []uint64{uint64(perm[0] + 1), uint64(perm[1] + 1), uint64(perm[2] + 1)}
		for _, id := range cut {
			h.Disconnect(id)
		}
		h.checkOneLeader()
		for _, id := range cut {
			h.Connect(id)
		}
	}
	h.checkOneLeader()
	h.finish()
}
