package raft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// waitLeader returns the node that leads among those running, waiting up to 10s.
func (c *testCluster) waitLeader() uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range slices.Sorted(func(yield func(uint64) bool) {
			for id := range c.nodes {
				if !yield(id) {
					return
				}
			}
		}) {
			if _, isLeader := c.nodes[id].State(); isLeader {
				return id
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return 0
}

// proposeConf proposes cc at the leader, retrying while the leader is not ready or
// leadership moves, and returns the change's index.
func (c *testCluster) proposeConf(cc ConfChange) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		lead := c.waitLeader()
		index, _, err := c.nodes[lead].ProposeConfChange(context.Background(), cc)
		if err == nil {
			return index
		}
		if !errors.Is(err, ErrConfChangePending) && !errors.Is(err, ErrNotLeader) {
			c.t.Fatalf("ProposeConfChange(%v): %v", cc, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.t.Fatalf("ProposeConfChange(%v) not accepted within 10s", cc)
	return 0
}

// waitMembership waits until the application of every node in ids has applied a
// configuration equal to want.
func (c *testCluster) waitMembership(want Membership, ids ...uint64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			app := c.apps[id]
			app.mu <- struct{}{}
			got := app.membership
			<-app.mu
			if got.Equal(want) {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %d applied configuration %v, want %v", id, got, want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// A member's whole life through the Node's API: a learner joins with an empty log and
// catches up, the leader's MembershipStatus shows it caught up, it is promoted, takes
// leadership by transfer (thesis §3.10), hands it on to the most up-to-date voter
// (the SIGTERM hand-off), and the original leader is removed.
func TestNodeMembershipLifecycle(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newWrappedTestCluster(t, 3, nil, func(c *testCluster) { c.joined = map[uint64]bool{4: true} })
	_, index := c.propose([]byte("one"))
	c.waitApplied(index, []byte("one"), c.peers...)

	c.storages[4] = NewMemoryStorage()
	c.start(4, 0)
	confIndex := c.proposeConf(ConfChange{Type: ConfChangeAddLearner, NodeID: 4, Context: []byte("node four")})
	withLearner := Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	c.waitMembership(withLearner, 1, 2, 3, 4)
	c.waitApplied(index, []byte("one"), 4)
	app := c.apps[4]
	app.mu <- struct{}{}
	confs := slices.Clone(app.confs)
	<-app.mu
	if len(confs) != 1 || confs[0].Index != confIndex || confs[0].ConfChange.Type != ConfChangeAddLearner ||
		string(confs[0].ConfChange.Context) != "node four" {
		t.Fatalf("learner applied configuration changes %+v, want the one at %d adding it with its context", confs, confIndex)
	}

	// The leader shows the learner caught up: its match is the leader's.
	deadline := time.Now().Add(10 * time.Second)
	var lead uint64
	for {
		lead = c.waitLeader()
		st := c.nodes[lead].MembershipStatus()
		var self, learner PeerProgress
		for _, p := range st.Progress {
			switch p.ID {
			case lead:
				self = p
			case 4:
				learner = p
			}
		}
		if learner.IsLearner && learner.Match > 0 && learner.Match == self.Match {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("learner not caught up within 10s: leader %d's status %+v", lead, st)
		}
		time.Sleep(2 * time.Millisecond)
	}

	c.proposeConf(ConfChange{Type: ConfChangePromote, NodeID: 4})
	c.waitMembership(Membership{Voters: []uint64{1, 2, 3, 4}}, 1, 2, 3, 4)

	// Hand leadership to 4, then from 4 to the most up-to-date voter (the SIGTERM
	// hand-off). A loaded machine's late ticks can start an election meanwhile, which
	// fails a transfer (ErrTransferFailed) or moves the leadership (ErrNotLeader):
	// retry those.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	transfer := func(to uint64, done func(lead uint64) bool) {
		t.Helper()
		for {
			lead := c.waitLeader()
			if done(lead) {
				return
			}
			err := c.nodes[lead].TransferLeadership(ctx, to)
			switch {
			case err == nil && done(c.waitLeader()):
				return
			case err == nil, errors.Is(err, ErrTransferFailed), errors.Is(err, ErrNotLeader):
				if ctx.Err() != nil {
					t.Fatalf("transfer from %d to %d: %v; out of time", lead, to, err)
				}
			default:
				t.Fatalf("transfer from %d to %d: %v", lead, to, err)
			}
		}
	}
	transfer(4, func(lead uint64) bool { return lead == 4 })
	for {
		lead := c.waitLeader()
		err := c.nodes[lead].TransferLeadership(ctx, 9)
		if errors.Is(err, ErrBadTransferee) {
			break
		}
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("transfer to a stranger: %v, want ErrBadTransferee", err)
		}
	}
	transfer(None, func(lead uint64) bool { return lead != 4 })

	// Remove node 1, leader or not.
	c.proposeConf(ConfChange{Type: ConfChangeRemove, NodeID: 1})
	c.waitMembership(Membership{Voters: []uint64{2, 3, 4}}, 2, 3, 4)
	lead, index = c.propose([]byte("two"))
	if lead == 1 {
		t.Fatal("removed node 1 leads")
	}
	c.waitApplied(index, []byte("two"), 2, 3, 4)
}

// A leader elected by its own vote alone (the only voter) must not send its appends
// before its term is durable, though a leader's appends may otherwise leave before its
// write (thesis §10.2.1): they claim its term, and a crash before the term is durable
// would let it vote again in that term. With learners (or removed members still
// tracked), such a leader has someone to send to. Found by the simulator: seed 258
// (-confchanges=on).
func TestNodeSingleVoterSpeaksOnlyInADurableTerm(t *testing.T) {
	checkNoGoroutineLeak(t)
	var mu sync.Mutex
	var problems []string
	async := map[uint64]*asyncTestStorage{}
	c := newWrappedTestCluster(t, 1, func(id uint64, tr Transport) Transport {
		return checkTransport{next: tr, check: func(m Message) {
			if _, hs := async[id].durable(); m.Term > hs.Term {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("node %d sent %v in term %d with only term %d durable", id, m.Type, m.Term, hs.Term))
				mu.Unlock()
			}
		}}
	}, func(c *testCluster) {
		c.async = async
		c.asyncDelay = 20 * time.Millisecond
		c.joined = map[uint64]bool{2: true}
	})
	lead, index := c.propose([]byte("one"))
	c.waitApplied(index, []byte("one"), lead)
	c.storages[2] = NewMemoryStorage()
	async[2] = &asyncTestStorage{MemoryStorage: c.storages[2], delay: time.Millisecond}
	c.start(2, 0)
	c.proposeConf(ConfChange{Type: ConfChangeAddLearner, NodeID: 2})
	c.waitApplied(index, []byte("one"), 2)
	// Restart the voter: it wins its new term alone, at once, and has a learner to
	// send to.
	for range 3 {
		c.stop(1)
		c.start(1, 0)
		_, index = c.propose([]byte("again"))
		c.waitApplied(index, []byte("again"), 1, 2)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("%d messages ahead of the durable term, first: %s", len(problems), problems[0])
	}
}
