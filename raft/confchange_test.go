package raft

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Scenario tests of configuration changes (thesis chapter 4) and leadership transfer
// (§3.10), on the lock-step testNetwork of raft_test.go.

// join starts node id as a node that joins the cluster: empty storage, no Peers.
func (nw *testNetwork) join(id uint64, mutate func(*Config)) {
	nw.t.Helper()
	nw.ids = append(nw.ids, id)
	nw.storages[id] = NewMemoryStorage()
	cfg := Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, Storage: nw.storages[id]}
	if mutate != nil {
		mutate(&cfg)
	}
	rn, err := NewRawNode(cfg)
	if err != nil {
		nw.t.Fatal(err)
	}
	nw.nodes[id] = rn
}

// proposeConf proposes cc at node id, settles, and returns the change's index.
func (nw *testNetwork) proposeConf(id uint64, cc ConfChange) uint64 {
	nw.t.Helper()
	index, _, err := nw.nodes[id].ProposeConfChange(cc)
	if err != nil {
		nw.t.Fatalf("node %d: ProposeConfChange(%v): %v", id, cc, err)
	}
	nw.settle()
	return index
}

func (nw *testNetwork) membership(id uint64) MembershipStatus { return nw.nodes[id].MembershipStatus() }

// appliedConf returns the configuration entries node id has applied, decoded.
func (nw *testNetwork) appliedConf(id uint64) []ConfEntry {
	var out []ConfEntry
	for _, e := range nw.applied[id] {
		if e.Type == EntryConfChange {
			out = append(out, mustDecodeConfEntry(&e))
		}
	}
	return out
}

func voters(ids ...uint64) Membership { return Membership{Voters: ids} }

// followersOf returns the nodes other than lead, ascending.
func (nw *testNetwork) followersOf(lead uint64) []uint64 {
	var out []uint64
	for _, id := range nw.ids {
		if id != lead {
			out = append(out, id)
		}
	}
	return out
}

// campaignAndHold makes id campaign and delivers messages until it leads, then
// returns before its first appends leave, so that the caller decides who hears them.
// It reports whether id won.
func (nw *testNetwork) campaignAndHold(id uint64) bool {
	nw.t.Helper()
	if err := nw.nodes[id].Campaign(); err != nil {
		nw.t.Fatal(err)
	}
	for range 20 {
		if nw.nodes[id].Status().State == StateLeader {
			return true
		}
		msgs := nw.collect()
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if !nw.cut[[2]uint64{m.From, m.To}] && nw.nodes[m.To] != nil {
				_ = nw.nodes[m.To].Step(m)
			}
		}
	}
	return nw.nodes[id].Status().State == StateLeader
}

func (nw *testNetwork) connect(a, b uint64) {
	delete(nw.cut, [2]uint64{a, b})
	delete(nw.cut, [2]uint64{b, a})
}

func (nw *testNetwork) disconnect(a, b uint64) {
	nw.cut[[2]uint64{a, b}], nw.cut[[2]uint64{b, a}] = true, true
}

// Reference: thesis §4.1, §4.2.1. A new server joins with an empty log, catches up, and
// counts towards majorities from the moment the leader appends the change: with it,
// three of four voters are needed, so the leader and the new server alone commit
// nothing.
func TestAddVoterCatchesUpAndCounts(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	for i := range 5 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "before%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	nw.join(4, nil)
	if st := nw.membership(4); !st.Membership.IsEmpty() {
		t.Fatalf("a joining node knows a configuration before hearing from the leader: %v", st.Membership)
	}
	index := nw.proposeConf(lead, ConfChange{Type: ConfChangeAddVoter, NodeID: 4, Context: []byte("n4")})
	nw.tickAll(3)
	want := voters(1, 2, 3, 4)
	for _, id := range nw.ids {
		st := nw.membership(id)
		if !st.Membership.Equal(want) || st.Index != index || !st.Committed {
			t.Fatalf("node %d: configuration %v at %d (committed %v), want %v at %d committed", id, st.Membership, st.Index, st.Committed, want, index)
		}
		confs := nw.appliedConf(id)
		if len(confs) != 1 || confs[0].Change.NodeID != 4 || string(confs[0].Change.Context) != "n4" || !confs[0].Membership.Equal(want) {
			t.Fatalf("node %d applied configuration entries %+v, want the one adding 4", id, confs)
		}
	}
	if got := commands(nw.applied[4]); len(got) != 5 {
		t.Fatalf("new voter applied %d of the 5 earlier commands", len(got))
	}
	// Cut the two old followers off: the leader and node 4 are two of four voters.
	for _, id := range nw.followersOf(lead) {
		if id != 4 {
			nw.isolate(id)
		}
	}
	index, _, err := nw.nodes[lead].Propose([]byte("needs three"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if c := nw.nodes[lead].Status().Commit; c >= index {
		t.Fatalf("leader committed %d with two of four voters", index)
	}
	nw.heal()
	nw.tickAll(2)
	if c := nw.nodes[lead].Status().Commit; c < index {
		t.Fatalf("leader commit %d after healing, want %d", c, index)
	}
}

// Reference: thesis §4.2.1 (non-voting members). A learner receives the log, but its
// acknowledgement never commits an entry, it confirms no ReadIndex round, and it never
// campaigns, however long it hears nothing.
func TestLearnerNeverCounts(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	nw.join(4, nil)
	nw.proposeConf(lead, ConfChange{Type: ConfChangeAddLearner, NodeID: 4})
	nw.tickAll(2)
	if st := nw.membership(4); !st.Membership.Equal(Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}) {
		t.Fatalf("learner's configuration %v", st.Membership)
	}
	// Only the leader and the learner can talk.
	for _, id := range []uint64{1, 2, 3} {
		if id != lead {
			nw.isolate(id)
		}
	}
	index, _, err := nw.nodes[lead].Propose([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if last := nw.nodes[4].Status().LastIndex; last < index {
		t.Fatalf("learner's log ends at %d; the leader did not replicate %d to it", last, index)
	}
	if c := nw.nodes[lead].Status().Commit; c >= index {
		t.Fatalf("entry %d committed with only the leader and a learner", index)
	}
	if err := nw.nodes[lead].ReadIndex([]byte("r")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if rs := nw.readStates[lead]; len(rs) != 0 {
		t.Fatalf("a ReadIndex round confirmed by the leader and a learner: %+v", rs)
	}
	// The learner, cut off from everyone, never campaigns.
	nw.heal()
	nw.isolate(4)
	term := nw.nodes[4].Status().Term
	for range 100 {
		nw.nodes[4].Tick()
		nw.settle()
		if st := nw.nodes[4].Status(); st.State != StateFollower || st.Term != term {
			t.Fatalf("isolated learner: %+v, want a follower at term %d", st, term)
		}
	}
	if err := nw.nodes[4].Campaign(); err != nil {
		t.Fatal(err)
	}
	if st := nw.nodes[4].Status(); st.State != StateFollower {
		t.Fatalf("learner campaigned when asked: %+v", st)
	}
}

// Reference: thesis §4.2.1. A learner that has caught up is promoted; the leader's
// progress shows its match beforehand, which is what a server checks before promoting.
func TestPromoteLearner(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	nw.join(4, nil)
	nw.proposeConf(lead, ConfChange{Type: ConfChangeAddLearner, NodeID: 4})
	for i := range 10 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	st := nw.membership(lead)
	i := slices.IndexFunc(st.Progress, func(p PeerProgress) bool { return p.ID == 4 })
	self := slices.IndexFunc(st.Progress, func(p PeerProgress) bool { return p.ID == lead })
	if i < 0 || self < 0 || !st.Progress[i].IsLearner || st.Progress[i].IsVoter || !st.Progress[self].IsVoter {
		t.Fatalf("leader's progress %+v lacks the learner or itself", st.Progress)
	}
	if st.Progress[i].Match != st.Progress[self].Match || st.Progress[i].Match != nw.nodes[lead].Status().LastIndex {
		t.Fatalf("learner match %d, leader's %d, last index %d: not caught up", st.Progress[i].Match, st.Progress[self].Match,
			nw.nodes[lead].Status().LastIndex)
	}
	if _, _, err := nw.nodes[lead].ProposeConfChange(ConfChange{Type: ConfChangePromote, NodeID: 2}); !errors.Is(err, ErrInvalidConfChange) {
		t.Fatalf("promoting voter 2: %v, want ErrInvalidConfChange", err)
	}
	nw.proposeConf(lead, ConfChange{Type: ConfChangePromote, NodeID: 4})
	nw.tickAll(2)
	for _, id := range nw.ids {
		if m := nw.membership(id).Membership; !m.Equal(voters(1, 2, 3, 4)) {
			t.Fatalf("node %d: configuration %v after the promotion", id, m)
		}
	}
}

// Reference: thesis §4.1 (one change at a time) and the fix of Ongaro's 2015 post (a
// leader commits an entry of its term before it proposes a change).
func TestConfChangeOneAtATime(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	nw.join(4, nil)
	nw.join(5, nil)
	// Hold the first change uncommitted by cutting the leader off.
	nw.isolate(lead)
	if _, _, err := nw.nodes[lead].ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	_, _, err := nw.nodes[lead].ProposeConfChange(ConfChange{Type: ConfChangeAddLearner, NodeID: 5})
	if !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("second change while the first is uncommitted: %v, want ErrConfChangePending", err)
	}
	nw.heal()
	nw.settle()
	nw.tickAll(2)
	nw.proposeConf(lead, ConfChange{Type: ConfChangeAddLearner, NodeID: 5})

	// A new leader that has not committed an entry of its term yet refuses.
	nw2, lead2 := newElectedNetwork(t, 3)
	next := nw2.otherThan(lead2)
	nw2.isolate(lead2)
	nw2.tickAll(10) // past the lease of lead2's last heartbeat
	if !nw2.campaignAndHold(next) {
		t.Fatalf("node %d did not win", next)
	}
	nw2.isolate(next) // its no-op never leaves
	nw2.settle()
	if _, _, err := nw2.nodes[next].ProposeConfChange(ConfChange{Type: ConfChangeRemove, NodeID: lead2}); !errors.Is(err, ErrConfChangePending) {
		t.Fatalf("change before the leader committed an entry of its term: %v, want ErrConfChangePending", err)
	}
}

// Reference: Ongaro, "bug in single-server membership changes" (raft-dev, 2015), and
// thesis §4.1. The scenario of the post, on four servers: S1 leads term 1 and appends
// C1 (adding S5), replicated to S5 only. S2 wins term 2 with S3 and S4 and appends C2
// (removing S1), which commits with S3 (two of C2's three voters). S1 then wins term 3
// with S4 and S5 (three of C1's five) and commits its C1 at the index where C2 was
// committed. Without the fix both commit: two entries committed at one index. With
// it, S2 cannot propose C2 until its term's no-op commits, which takes S4, and then S4
// never votes for S1.
func TestConfChangeOwnTermRule(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		t.Run(fmt.Sprintf("fix=%v", fixed), func(t *testing.T) {
			// Plain Raft, so that the elections go exactly as staged.
			plain := func(c *Config) { c.DisablePreVote, c.DisableCheckQuorum = true, true }
			nw := newTestNetwork(t, 4, plain)
			nw.join(5, plain)
			for _, rn := range nw.nodes {
				rn.raft.skipOwnTermRule = !fixed
			}
			nw.isolate(5)
			if err := nw.nodes[1].Campaign(); err != nil {
				t.Fatal(err)
			}
			nw.settle()
			if nw.leader() != 1 {
				t.Fatalf("leader %d, want 1", nw.leader())
			}
			// S1 appends C1 = {1..5} (term 1); only S5 hears of it.
			nw.heal()
			for _, id := range []uint64{2, 3, 4} {
				nw.disconnect(1, id)
			}
			c1, _, err := nw.nodes[1].ProposeConfChange(ConfChange{Type: ConfChangeAddVoter, NodeID: 5})
			if err != nil {
				t.Fatal(err)
			}
			nw.settle()
			if nw.nodes[5].Status().LastIndex != c1 || !nw.membership(5).IsVoter(5) {
				t.Fatalf("S5's log ends at %d (configuration %v), want C1 at %d", nw.nodes[5].Status().LastIndex, nw.membership(5).Membership, c1)
			}
			// S2 wins term 2 with S3 and S4 (three of C's four voters), and from then
			// on only S3 hears from it.
			nw.isolate(1)
			nw.isolate(5)
			if !nw.campaignAndHold(2) {
				t.Fatal("S2 did not win term 2")
			}
			nw.isolate(4)
			c2, _, err := nw.nodes[2].ProposeConfChange(ConfChange{Type: ConfChangeRemove, NodeID: 1})
			if fixed {
				if !errors.Is(err, ErrConfChangePending) {
					t.Fatalf("S2 proposed C2 before committing an entry of its term: %v", err)
				}
				// Committing its no-op takes S4 as well; then C2 goes through.
				nw.connect(2, 4)
				nw.settle()
				c2 = nw.proposeConf(2, ConfChange{Type: ConfChangeRemove, NodeID: 1})
			} else if err != nil {
				t.Fatal(err)
			}
			nw.settle()
			if c := nw.nodes[2].Status().Commit; c < c2 {
				t.Fatalf("S2 did not commit C2 at %d (commit %d)", c2, c)
			}
			// S1 restarts (a crash, as in the post), back with S4 and S5 only, and
			// campaigns until it wins or has tried three times.
			nw.start(1, plain)
			nw.nodes[1].raft.skipOwnTermRule = !fixed
			nw.heal()
			nw.isolate(2)
			nw.isolate(3)
			won := false
			for range 3 {
				if err := nw.nodes[1].Campaign(); err != nil {
					t.Fatal(err)
				}
				nw.settle()
				if won = nw.nodes[1].Status().State == StateLeader; won {
					break
				}
			}
			var conflict string
			if won {
				if _, _, err := nw.nodes[1].Propose([]byte("term 3")); err != nil {
					t.Fatal(err)
				}
				nw.settle()
				// Two entries committed at one index break State Machine Safety.
				byIndex := map[uint64]uint64{}
				for _, e := range nw.applied[2] {
					byIndex[e.Index] = e.Term
				}
				for _, e := range nw.applied[1] {
					if t2, ok := byIndex[e.Index]; ok && t2 != e.Term {
						conflict = fmt.Sprintf("index %d committed in term %d on S1 and term %d on S2", e.Index, e.Term, t2)
						break
					}
				}
			}
			switch {
			case fixed && (won || conflict != ""):
				t.Fatalf("with the fix, S1 won (%v) or a conflict arose: %s", won, conflict)
			case !fixed && conflict == "":
				t.Fatalf("without the fix the scenario should commit two entries at one index (S1 won: %v)", won)
			}
			if !fixed {
				t.Logf("without the fix, as the post predicts: %s", conflict)
			}
		})
	}
}

// Reference: thesis §4.2.2. A leader that removes itself stays leader until the
// change commits, without counting its own copy; then it steps down and never
// campaigns again, and the most up-to-date voter takes over at once (MsgTimeoutNow)
// rather than after an election timeout.
func TestRemovedLeaderStepsDownAfterCommitting(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	f := nw.followersOf(lead)
	f1, f2 := f[0], f[1]
	nw.isolate(f2)
	index, _, err := nw.nodes[lead].ProposeConfChange(ConfChange{Type: ConfChangeRemove, NodeID: lead})
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	// C_new = {f1, f2}: the leader's own copy does not count, so f1's alone is not a
	// majority.
	if st := nw.nodes[lead].Status(); st.State != StateLeader || st.Commit >= index {
		t.Fatalf("leader removing itself: %+v; want still leader with %d uncommitted", st, index)
	}
	if nw.nodes[lead].MembershipStatus().IsVoter(lead) {
		t.Fatal("the leader's configuration still lists it as soon as it appended its removal")
	}
	term := nw.nodes[lead].Status().Term
	nw.heal()
	nw.tickAll(1)
	st := nw.nodes[lead].Status()
	if st.State != StateFollower || st.Commit < index {
		t.Fatalf("removed leader after the change committed: %+v; want a follower with commit >= %d", st, index)
	}
	newLead := nw.leader()
	if newLead == 0 || newLead == lead {
		t.Fatalf("no new leader one tick after the old one stepped down (leader %d)", newLead)
	}
	if got := nw.nodes[newLead].Status().Term; got != term+1 {
		t.Fatalf("new leader's term %d, want %d: one election, the transfer", got, term+1)
	}
	for _, id := range []uint64{f1, f2} {
		if c := nw.nodes[id].Status().Commit; c < index {
			t.Fatalf("node %d commit %d, the removal at %d not known committed", id, c, index)
		}
	}
	// The removed node stays silent.
	oldTerm := nw.nodes[lead].Status().Term
	nw.isolate(lead)
	nw.tickAll(100)
	if st := nw.nodes[lead].Status(); st.State != StateFollower || st.Term != oldTerm {
		t.Fatalf("removed leader campaigned: %+v", st)
	}
	nw.heal()
	if _, _, err := nw.nodes[newLead].Propose([]byte("after")); err != nil {
		t.Fatal(err)
	}
	nw.tickAll(2)
	if c := nw.nodes[newLead].Status().Commit; c != nw.nodes[newLead].Status().LastIndex {
		t.Fatalf("two-voter cluster did not commit: commit %d, last %d", c, nw.nodes[newLead].Status().LastIndex)
	}
}

// Reference: thesis §4.2.3. A follower removed while it was cut off never learns of
// its removal and keeps campaigning, but with PreVote it raises no term, its own
// included; with PreVote off, CheckQuorum's lease makes the members ignore it.
func TestRemovedServerDoesNotDisrupt(t *testing.T) {
	for _, preVote := range []bool{true, false} {
		t.Run(fmt.Sprintf("prevote=%v", preVote), func(t *testing.T) {
			nw := newTestNetwork(t, 4, func(c *Config) { c.DisablePreVote = !preVote })
			nw.tickAll(30)
			lead := nw.leader()
			removed := nw.otherThan(lead)
			nw.isolate(removed)
			index := nw.proposeConf(lead, ConfChange{Type: ConfChangeRemove, NodeID: removed})
			nw.tickAll(2)
			if c := nw.nodes[lead].Status().Commit; c < index {
				t.Fatalf("removal at %d not committed (commit %d)", index, c)
			}
			if nw.nodes[removed].MembershipStatus().IsVoter(removed) == false {
				t.Fatal("the cut-off node learned of its removal; the scenario needs it not to")
			}
			term := nw.nodes[lead].Status().Term
			nw.heal()
			for range 200 {
				nw.tickAll(1)
				if l := nw.leader(); l != lead || nw.nodes[lead].Status().Term != term {
					t.Fatalf("removed node %d disrupted the cluster: leader %d term %d, was %d term %d", removed, l,
						nw.nodes[l].Status().Term, lead, term)
				}
			}
			if preVote && nw.nodes[removed].Status().Term > term {
				t.Fatalf("removed node raised its own term to %d with PreVote on", nw.nodes[removed].Status().Term)
			}
		})
	}
}

// Reference: thesis §4.1 ("a log entry may be removed... the server must fall back to
// the previous configuration"). A follower that appended an uncommitted configuration
// entry goes back to the configuration before it when a new leader overwrites it.
func TestUncommittedConfChangeRolledBack(t *testing.T) {
	nw := newTestNetwork(t, 5, func(c *Config) { c.DisableCheckQuorum = true })
	if err := nw.nodes[1].Campaign(); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if nw.leader() != 1 {
		t.Fatalf("leader %d, want 1", nw.leader())
	}
	// C_new removes 5; only node 2 hears of it.
	for _, id := range []uint64{3, 4, 5} {
		nw.cut[[2]uint64{1, id}], nw.cut[[2]uint64{id, 1}] = true, true
	}
	index, _, err := nw.nodes[1].ProposeConfChange(ConfChange{Type: ConfChangeRemove, NodeID: 5})
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if m := nw.membership(2); !m.Membership.Equal(voters(1, 2, 3, 4)) || m.Index != index || m.Committed {
		t.Fatalf("node 2 holds %v at %d (committed %v); want the uncommitted change", m.Membership, m.Index, m.Committed)
	}
	// 3, 4 and 5 elect 3 without the change; 2 then hears from 3.
	nw.isolate(1)
	nw.isolate(2)
	if err := nw.nodes[3].Campaign(); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if nw.nodes[3].Status().State != StateLeader {
		t.Fatal("node 3 did not win")
	}
	nw.heal()
	nw.isolate(1)
	nw.tickAll(2)
	m := nw.membership(2)
	if !m.Membership.Equal(voters(1, 2, 3, 4, 5)) || m.Index != 0 {
		t.Fatalf("node 2 holds %v from %d after the truncation; want the bootstrap configuration back", m.Membership, m.Index)
	}
	if got, want := zeroTermOnOutOfRange(nw.nodes[2].raft.log.term(index)), nw.nodes[3].Status().Term; got != want {
		t.Fatalf("node 2's entry %d has term %d, want node 3's term %d", index, got, want)
	}
}

// Reference: §7 ("the snapshot includes the latest configuration"). A server added
// after the leader compacted its log gets a snapshot, and knows the membership from
// it; restarted, every node recovers the configuration from its snapshot and log.
func TestSnapshotCarriesMembership(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	nw.join(4, nil)
	nw.proposeConf(lead, ConfChange{Type: ConfChangeAddLearner, NodeID: 4})
	nw.isolate(4)
	for i := range 5 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	applied := nw.nodes[lead].Status().Applied
	m, err := nw.nodes[lead].MembershipAt(applied)
	if err != nil {
		t.Fatal(err)
	}
	want := Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	if !m.Equal(want) {
		t.Fatalf("MembershipAt(%d) = %v, want %v", applied, m, want)
	}
	if _, err := nw.storages[lead].CreateSnapshot(applied, m, []byte("snap")); err != nil {
		t.Fatal(err)
	}
	// Node 4 restarts empty and is caught up by the snapshot alone.
	nw.storages[4] = NewMemoryStorage()
	cfg := Config{ID: 4, ElectionTicks: 10, HeartbeatTicks: 1, Storage: nw.storages[4]}
	rn, err := NewRawNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nw.nodes[4] = rn
	nw.heal()
	nw.tickAll(3)
	if snap, _ := nw.storages[4].Snapshot(); snap.Index != applied || !snap.Membership.Equal(want) {
		t.Fatalf("node 4's snapshot %d with %v, want %d with %v", snap.Index, snap.Membership, applied, want)
	}
	if got := nw.membership(4).Membership; !got.Equal(want) {
		t.Fatalf("node 4 after the snapshot: %v, want %v", got, want)
	}
	// Every node restarts on its storage with the bootstrap Peers, which the stored
	// configuration overrides: found by reading the whole log, or just the entries a
	// ConfEntryIndexer names.
	for _, id := range nw.ids {
		for _, st := range []Storage{nw.storages[id], indexedStorage{nw.storages[id]}} {
			cfg := Config{ID: id, ElectionTicks: 10, HeartbeatTicks: 1, Storage: st}
			if id != 4 {
				cfg.Peers = []uint64{1, 2, 3}
			}
			rn, err := NewRawNode(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := rn.MembershipStatus().Membership; !got.Equal(want) {
				t.Fatalf("node %d restarted on %T with %v, want %v", id, st, got, want)
			}
		}
	}
	// A ConfEntryIndexer that names an entry that is not a configuration entry is a
	// corrupt storage: refused at start.
	if _, err := NewRawNode(Config{ID: 2, Peers: []uint64{1, 2, 3}, Storage: lyingIndexer{nw.storages[2]}}); err == nil {
		t.Fatal("a storage naming a command as a configuration entry was accepted")
	}
}

// indexedStorage is a MemoryStorage that is a ConfEntryIndexer.
type indexedStorage struct{ *MemoryStorage }

func (s indexedStorage) ConfEntryIndexes() ([]uint64, error) {
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	ents, err := s.Entries(first, last+1, 1<<30)
	var out []uint64
	for _, e := range ents {
		if e.Type == EntryConfChange {
			out = append(out, e.Index)
		}
	}
	return out, err
}

// lyingIndexer names the last entry, a command, as a configuration entry.
type lyingIndexer struct{ *MemoryStorage }

func (s lyingIndexer) ConfEntryIndexes() ([]uint64, error) {
	last, _ := s.LastIndex()
	return []uint64{last}, nil
}

// Reference: thesis §4.2.2. A leader that appended its own removal and lost its
// leadership before the change committed (here by a restart) may hold the longest log
// of the servers up: the others need its vote, and it refuses them (§5.4.1). It must
// then campaign itself, counting the votes of the configuration it appended (which
// does not include it), commit the change and step down; were it to wait, as a server
// outside its configuration otherwise does, no leader could ever be elected. Found by
// the simulator: seeds 65, 110, 113 and 119 (-confchanges=on).
func TestRemovedLeaderWithTheLongestLogFinishesItsRemoval(t *testing.T) {
	nw := newTestNetwork(t, 4, nil)
	if err := nw.nodes[1].Campaign(); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if nw.leader() != 1 {
		t.Fatalf("leader %d, want 1", nw.leader())
	}
	nw.isolate(1)
	index, _, err := nw.nodes[1].ProposeConfChange(ConfChange{Type: ConfChangeRemove, NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	// Node 1 restarts from its storage, a follower with the longest log; node 2 is
	// down for good.
	nw.start(1, nil)
	nw.nodes[2] = nil
	nw.heal()
	nw.isolate(2)
	for tick := 0; tick < 300; tick++ {
		nw.tickAll(1)
		if c := nw.nodes[3].Status().Commit; c >= index && nw.leader() != 0 && nw.leader() != 1 {
			break
		}
	}
	lead := nw.leader()
	if lead == 0 || lead == 1 || nw.nodes[lead].Status().Commit < index {
		t.Fatalf("no leader of the new configuration after 300 ticks (leader %d; node 1 %+v, node 3 %+v, node 4 %+v)",
			lead, nw.nodes[1].Status(), nw.nodes[3].Status(), nw.nodes[4].Status())
	}
	if m := nw.membership(lead).Membership; !m.Equal(voters(2, 3, 4)) {
		t.Fatalf("leader %d's configuration %v, want voters 2 3 4", lead, m)
	}
	// Node 1, now knowing its removal committed, never campaigns again.
	term := nw.nodes[1].Status().Term
	nw.isolate(1)
	nw.tickAll(100)
	if st := nw.nodes[1].Status(); st.State != StateFollower || st.Term != term {
		t.Fatalf("removed node 1 campaigned after learning of its removal: %+v", st)
	}
}

// Reference: Figure 2 (RequestVote returns currentTerm, for the candidate to update
// itself). A voter cut off through several changes keeps a stale configuration and,
// without PreVote, a term it raised by campaigning alone; its vote requests go to its
// stale configuration's voters only, so no one else learns its term. When the current
// configuration needs its vote, a candidate of a lower term must hear that term in
// the answer to its vote request, or it never catches up and no leader is ever
// elected. Found by the simulator: seeds 1884 and 2430 (-confchanges=on).
func TestStaleVoterTellsItsTermToLowerCandidates(t *testing.T) {
	plain := func(c *Config) { c.DisablePreVote = true }
	nw := newTestNetwork(t, 3, plain)
	if err := nw.nodes[1].Campaign(); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	nw.isolate(3)
	nw.join(4, plain)
	nw.isolate(3)
	nw.proposeConf(1, ConfChange{Type: ConfChangeAddVoter, NodeID: 4})
	nw.tickAll(2)
	nw.join(5, plain)
	nw.isolate(3)
	nw.proposeConf(1, ConfChange{Type: ConfChangeAddVoter, NodeID: 5})
	nw.tickAll(2)
	nw.proposeConf(1, ConfChange{Type: ConfChangeRemove, NodeID: 2})
	nw.tickAll(2)
	nw.proposeConf(1, ConfChange{Type: ConfChangeRemove, NodeID: 1})
	nw.tickAll(3)
	for _, id := range []uint64{4, 5} {
		if m := nw.membership(id); !m.Membership.Equal(voters(3, 4, 5)) || !m.Committed {
			t.Fatalf("node %d: configuration %v (committed %v), want voters 3 4 5", id, m.Membership, m.Committed)
		}
	}
	if m := nw.membership(3).Membership; !m.Equal(voters(1, 2, 3)) {
		t.Fatalf("cut-off node 3 holds %v; the scenario needs the bootstrap configuration", m)
	}
	// 1, 2 and 5 go down for good; 3, still cut off, campaigns alone for a while,
	// then 4, cut off too, loses its leadership and campaigns.
	nw.nodes[1], nw.nodes[2], nw.nodes[5] = nil, nil, nil
	for range 100 {
		nw.nodes[3].Tick()
		nw.settle()
	}
	nw.isolate(4)
	nw.tickAll(50)
	if st := nw.nodes[4].Status(); st.State != StateCandidate || st.Term+2 >= nw.nodes[3].Status().Term {
		t.Fatalf("node 4 %+v, node 3 at term %d: the scenario needs 4 campaigning well below 3's term", st, nw.nodes[3].Status().Term)
	}
	nw.heal()
	for tick := 0; tick < 1000 && nw.leader() == 0; tick++ {
		nw.tickAll(1)
	}
	if lead := nw.leader(); lead != 4 {
		t.Fatalf("leader %d after 1000 ticks, want 4 (node 3 %+v, node 4 %+v)", lead, nw.nodes[3].Status(), nw.nodes[4].Status())
	}
}

// Until the first change, the configuration is the bootstrap one, whatever Config.Peers
// says at start: snapshots record it as the zero Membership, not as the list of the
// moment, so that a member restarted with other Peers (the server's
// --force-new-cluster, which makes it the only voter) takes them.
func TestSnapshotBeforeAnyChangeLeavesPeersInCharge(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	if _, _, err := nw.nodes[lead].Propose([]byte("x")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	applied := nw.nodes[lead].Status().Applied
	m, err := nw.nodes[lead].MembershipAt(applied)
	if err != nil || !m.IsEmpty() {
		t.Fatalf("MembershipAt(%d) before any change = %v, %v; want the zero Membership", applied, m, err)
	}
	if _, err := nw.storages[lead].CreateSnapshot(applied, m, []byte("snap")); err != nil {
		t.Fatal(err)
	}
	rn, err := NewRawNode(Config{ID: lead, Peers: []uint64{lead}, ElectionTicks: 10, HeartbeatTicks: 1, Storage: nw.storages[lead]})
	if err != nil {
		t.Fatal(err)
	}
	if got := rn.MembershipStatus().Membership; !got.Equal(voters(lead)) {
		t.Fatalf("restarted with Peers [%d]: configuration %v", lead, got)
	}
	if err := rn.Campaign(); err != nil || rn.Status().State != StateLeader {
		t.Fatalf("the only voter did not win at once: %v, %+v", err, rn.Status())
	}
}
