package raft

import (
	"testing"
	"time"
)

// Observe reports the leader, the commitIndex and the leader changes without the run
// loop: every member learns the leader, the commitIndex covers a committed command,
// and a failover counts as one more leader change on the survivors. ElectedAt says
// when a leader took office.
func TestNodeObserve(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newTestCluster(t, 3)
	lead, index := c.propose([]byte("one"))
	c.waitApplied(index, []byte("one"), c.peers...)

	changesBefore := map[uint64]uint64{}
	for _, id := range c.peers {
		o := waitObservation(t, c.nodes[id], func(o Observation) bool { return o.Lead == lead && o.Commit >= index })
		if o.IsLeader != (id == lead) {
			t.Errorf("node %d: IsLeader %v, but the leader is %d", id, o.IsLeader, lead)
		}
		if o.LeaderChanges < 1 {
			t.Errorf("node %d knows leader %d but counted %d leader changes", id, lead, o.LeaderChanges)
		}
		if term, _ := c.nodes[id].State(); o.Term != term {
			t.Errorf("node %d: Observe says term %d, State %d", id, o.Term, term)
		}
		changesBefore[id] = o.LeaderChanges
		if id == lead && o.ElectedAt.IsZero() {
			t.Errorf("leader %d: ElectedAt is zero", id)
		}
	}
	firstElected := c.nodes[lead].Observe().ElectedAt

	c.net.Isolate(lead)
	c.stop(lead)
	newLead, index := c.propose([]byte("two"))
	c.waitApplied(index, []byte("two"), c.others(lead)...)
	for _, id := range c.others(lead) {
		o := waitObservation(t, c.nodes[id], func(o Observation) bool { return o.Lead == newLead && o.Commit >= index })
		if o.LeaderChanges <= changesBefore[id] {
			t.Errorf("node %d: leader changed from %d to %d, but LeaderChanges stayed %d", id, lead, newLead, o.LeaderChanges)
		}
		if id == newLead && !o.ElectedAt.After(firstElected) {
			t.Errorf("new leader %d: ElectedAt %v, not after the first leader's %v", id, o.ElectedAt, firstElected)
		}
	}
}

// waitObservation polls n.Observe until ok holds, for up to 10 seconds.
func waitObservation(t *testing.T, n *Node, ok func(Observation) bool) Observation {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o := n.Observe()
		if ok(o) {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("observation %+v never met the condition within 10s", o)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
