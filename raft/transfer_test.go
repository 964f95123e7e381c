package raft

import (
	"errors"
	"fmt"
	"testing"
)

// Reference: thesis §3.10. A leader hands leadership to an up-to-date follower at
// once: MsgTimeoutNow makes it campaign without waiting for its election timeout, and
// the voters grant it even though CheckQuorum's lease (on by default) would have them
// ignore a vote request while their leader is alive.
func TestLeadershipTransfer(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	to := nw.otherThan(lead)
	term := nw.nodes[lead].Status().Term
	if err := nw.nodes[lead].TransferLeadership(to); err != nil {
		t.Fatal(err)
	}
	nw.settle() // no tick: nobody's election timer has a part in it
	if st := nw.nodes[to].Status(); st.State != StateLeader || st.Term != term+1 {
		t.Fatalf("transfer target %d: %+v, want leader of term %d", to, st, term+1)
	}
	if st := nw.nodes[lead].Status(); st.State != StateFollower || st.Lead != to || st.LeadTransferee != None {
		t.Fatalf("old leader %d: %+v, want a follower of %d", lead, st, to)
	}
	// Transferring to the leader itself does nothing; to a learner or a stranger is
	// refused; None picks an up-to-date voter.
	if err := nw.nodes[to].TransferLeadership(to); err != nil || nw.nodes[to].Status().LeadTransferee != None {
		t.Fatalf("transfer to itself: %v, transferee %d", err, nw.nodes[to].Status().LeadTransferee)
	}
	if err := nw.nodes[to].TransferLeadership(9); !errors.Is(err, ErrBadTransferee) {
		t.Fatalf("transfer to a stranger: %v, want ErrBadTransferee", err)
	}
	if err := nw.nodes[lead].TransferLeadership(to); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("transfer from a follower: %v, want ErrNotLeader", err)
	}
	if err := nw.nodes[to].TransferLeadership(None); err != nil {
		t.Fatal(err)
	}
	picked := nw.nodes[to].Status().LeadTransferee
	if picked == None || picked == to {
		t.Fatalf("TransferLeadership(None) picked %d", picked)
	}
	nw.settle()
	if nw.leader() != picked {
		t.Fatalf("leader %d after the transfer to %d", nw.leader(), picked)
	}
}

// Reference: thesis §3.10 ("the prior leader ... brings the target up to date"). A
// target behind the leader gets the entries it lacks before MsgTimeoutNow, and the
// leader takes no proposals meanwhile; the new leader has every entry.
func TestTransferToLaggingFollowerCatchesItUpFirst(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	to := nw.otherThan(lead)
	nw.isolate(to)
	for i := range 20 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	leaderLast := nw.nodes[lead].Status().LastIndex
	if nw.nodes[to].Status().LastIndex >= leaderLast {
		t.Fatal("the target is not behind; the scenario needs it to be")
	}
	nw.heal()
	if err := nw.nodes[lead].TransferLeadership(to); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nw.nodes[lead].Propose([]byte("during")); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("proposal during the transfer: %v, want ErrProposalDropped", err)
	}
	if _, _, err := nw.nodes[lead].ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 9}); !errors.Is(err, ErrProposalDropped) {
		t.Fatalf("configuration change during the transfer: %v, want ErrProposalDropped", err)
	}
	// Deliver by hand, checking every MsgTimeoutNow as it leaves: the target must
	// hold the leader's whole log by then.
	timeoutNows := 0
	for round := 0; round < 200 && nw.nodes[to].Status().State != StateLeader; round++ {
		if round%10 == 9 {
			for _, id := range nw.ids {
				nw.nodes[id].Tick() // a heartbeat, if a probe is paused
			}
		}
		for _, m := range nw.collect() {
			if m.Type == MsgTimeoutNow {
				timeoutNows++
				if got := nw.nodes[to].Status().LastIndex; got < leaderLast {
					t.Fatalf("MsgTimeoutNow sent while the target's log ends at %d, the leader's at %d", got, leaderLast)
				}
			}
			_ = nw.nodes[m.To].Step(m)
		}
	}
	if timeoutNows == 0 || nw.nodes[to].Status().State != StateLeader {
		t.Fatalf("target %d: %+v after the transfer (%d MsgTimeoutNow)", to, nw.nodes[to].Status(), timeoutNows)
	}
	if got := commands(nw.applied[lead]); len(got) != 20 {
		t.Fatalf("old leader applied %d commands, want 20", len(got))
	}
	if _, _, err := nw.nodes[to].Propose([]byte("after")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	nw.tickAll(1)
	if got := commands(nw.applied[to]); len(got) != 21 {
		t.Fatalf("new leader applied %d commands, want 21", len(got))
	}
}

// Reference: thesis §3.10 ("if the transfer does not complete within an election
// timeout, the prior leader aborts the transfer and resumes accepting client
// requests").
func TestTransferAbortsAfterElectionTimeout(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	to := nw.otherThan(lead)
	nw.isolate(to)
	term := nw.nodes[lead].Status().Term
	if err := nw.nodes[lead].TransferLeadership(to); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if nw.nodes[lead].Status().LeadTransferee != to {
		t.Fatal("no transfer under way")
	}
	for tick := 1; nw.nodes[lead].Status().LeadTransferee != None; tick++ {
		if tick > 10 {
			t.Fatalf("transfer still under way after %d ticks, an election timeout", tick-1)
		}
		if _, _, err := nw.nodes[lead].Propose([]byte("x")); !errors.Is(err, ErrProposalDropped) {
			t.Fatalf("proposal during the transfer: %v", err)
		}
		nw.nodes[lead].Tick()
		nw.settle()
	}
	if st := nw.nodes[lead].Status(); st.State != StateLeader || st.Term != term {
		t.Fatalf("after the abandoned transfer: %+v, want leader of term %d", st, term)
	}
	if _, _, err := nw.nodes[lead].Propose([]byte("after")); err != nil {
		t.Fatalf("proposal after the abandoned transfer: %v", err)
	}
}
