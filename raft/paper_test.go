package raft

import (
	"errors"
	"fmt"
	"testing"
)

// otherThan returns the first node that is not id.
func (nw *testNetwork) otherThan(id uint64) uint64 {
	for _, other := range nw.ids {
		if other != id {
			return other
		}
	}
	nw.t.Fatalf("no node other than %d", id)
	return 0
}

// electLeader ticks until a leader exists and returns it.
func (nw *testNetwork) electLeader() uint64 {
	nw.t.Helper()
	for range 100 {
		nw.tickAll(1)
		if lead := nw.leader(); lead != 0 {
			return lead
		}
	}
	nw.t.Fatal("no leader after 100 ticks")
	return 0
}

// Reference: §5.4.1. A candidate whose log is behind a majority's cannot win.
func TestElectionRestriction(t *testing.T) {
	nw := newTestNetwork(t, 3, nil)
	lead := nw.electLeader()
	behind := nw.otherThan(lead)
	nw.isolate(behind)
	for i := range 5 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	nw.heal()
	// The stale node campaigns first; the others refuse it, both in the pre-vote and
	// in the real vote (PreVote off here to reach the vote itself).
	nw.nodes[behind].raft.preVote = false
	if err := nw.nodes[behind].Campaign(); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if nw.nodes[behind].Status().State == StateLeader {
		t.Fatalf("node %d with a stale log became leader", behind)
	}
}

// Reference: §5.4.2, Figure 8. A leader does not commit an entry of an earlier term by
// counting replicas; it commits it only with an entry of its own term.
func TestLeaderCommitsOnlyCurrentTermByCounting(t *testing.T) {
	nw := newTestNetwork(t, 3, nil)
	lead := nw.electLeader()
	r := nw.nodes[lead].raft
	// An entry of an older term in the leader's log, replicated on a majority,
	// must not commit by counting alone.
	r.log.append(Entry{Term: r.term - 1, Index: r.log.lastIndex() + 1})
	old := r.log.lastIndex()
	for _, id := range r.conf.Voters {
		r.progress[id].match = old
	}
	if r.maybeCommit() && r.log.committed >= old {
		t.Fatalf("committed index %d of term %d by counting in term %d", old, r.term-1, r.term)
	}
}

// Reference: §5.3 with the fast back-up. An old leader holding 60 uncommitted entries
// of its term, cut off while a new leader commits 60 others, is repaired in a few round
// trips, not one per entry.
func TestFastBackupRepairsDivergentFollower(t *testing.T) {
	nw := newTestNetwork(t, 3, nil)
	old := nw.electLeader()
	nw.isolate(old)
	for i := range 60 {
		if _, _, err := nw.nodes[old].Propose(fmt.Appendf(nil, "lost%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	var lead uint64
	for range 100 {
		nw.tickAll(1)
		if lead = nw.leader(); lead != 0 && lead != old {
			break
		}
	}
	if lead == 0 || lead == old {
		t.Fatal("no new leader in the majority partition")
	}
	for i := range 60 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "kept%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	if st := nw.nodes[old].Status(); st.LastIndex < 60 {
		t.Fatalf("old leader holds only %d entries; the divergence was not set up", st.LastIndex)
	}
	nw.heal()
	nw.sent = 0
	for range 20 {
		nw.tickAll(1)
		if nw.nodes[old].Status().Commit == nw.nodes[lead].Status().Commit {
			break
		}
	}
	if got, want := nw.nodes[old].Status().Commit, nw.nodes[lead].Status().Commit; got != want {
		t.Fatalf("old leader not repaired: commit %d, leader's %d", got, want)
	}
	for _, e := range nw.applied[old] {
		if len(e.Data) > 4 && string(e.Data[:4]) == "lost" {
			t.Fatalf("uncommitted entry %q of the cut-off leader was applied at %d", e.Data, e.Index)
		}
	}
	t.Logf("repair took %d messages", nw.sent)
	// One entry per round trip would take over 60 appends and as many answers.
	if nw.sent > 40 {
		t.Fatalf("repair took %d messages; the fast back-up should need far fewer", nw.sent)
	}
}

// Flow control: proposals past the uncommitted limit fail with a sentinel error, and
// an entry larger than a message fails with another.
func TestProposalLimits(t *testing.T) {
	nw := newTestNetwork(t, 3, func(c *Config) {
		c.MaxSizePerMsg = 1024
		c.MaxUncommittedEntriesBytes = 4096
	})
	lead := nw.electLeader()
	rn := nw.nodes[lead]
	if _, _, err := rn.Propose(make([]byte, 2048)); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("oversized proposal: %v, want ErrEntryTooLarge", err)
	}
	// Cut the leader off so nothing commits, then fill the uncommitted budget.
	nw.isolate(lead)
	var err error
	accepted := 0
	for range 100 {
		if _, _, err = rn.Propose(make([]byte, 512)); err != nil {
			break
		}
		accepted++
	}
	if !errors.Is(err, ErrTooManyUncommitted) {
		t.Fatalf("after %d proposals: %v, want ErrTooManyUncommitted", accepted, err)
	}
	if accepted == 0 || accepted > 4096/512 {
		t.Fatalf("accepted %d proposals of 512 bytes under a 4096-byte budget", accepted)
	}
	// Followers refuse proposals outright.
	for _, id := range nw.ids {
		if id != lead {
			if _, _, err := nw.nodes[id].Propose([]byte("x")); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("follower %d Propose: %v, want ErrNotLeader", id, err)
			}
		}
	}
}

// Reference: §7. A follower that fell behind a compaction gets the snapshot, then the
// entries after it.
func TestSnapshotToLaggingFollower(t *testing.T) {
	nw := newTestNetwork(t, 3, nil)
	lead := nw.electLeader()
	lagging := nw.otherThan(lead)
	nw.isolate(lagging)
	for i := range 20 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	applied := nw.nodes[lead].Status().Applied
	if _, err := nw.storages[lead].CreateSnapshot(applied, Membership{}, []byte("snap")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nw.nodes[lead].Propose([]byte("after")); err != nil {
		t.Fatal(err)
	}
	nw.heal()
	nw.tickAll(5)
	snap, _ := nw.storages[lagging].Snapshot()
	if snap.Index != applied || string(snap.Data) != "snap" {
		t.Fatalf("lagging follower snapshot = %d %q, want %d %q", snap.Index, snap.Data, applied, "snap")
	}
	if st := nw.nodes[lagging].Status(); st.Commit != nw.nodes[lead].Status().Commit {
		t.Fatalf("lagging follower commit %d, leader %d", st.Commit, nw.nodes[lead].Status().Commit)
	}
}

// Reference: thesis §6.4. ReadIndex names the leader's commit index once a heartbeat
// round confirms leadership; a follower's request is forwarded and answered.
func TestReadIndex(t *testing.T) {
	nw := newTestNetwork(t, 3, nil)
	lead := nw.electLeader()
	if _, _, err := nw.nodes[lead].Propose([]byte("w")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	commit := nw.nodes[lead].Status().Commit
	for _, id := range nw.ids {
		rn := nw.nodes[id]
		if err := rn.ReadIndex([]byte{byte(id)}); err != nil {
			t.Fatalf("node %d ReadIndex: %v", id, err)
		}
		var got []ReadState
		for round := 0; round < 10 && len(got) == 0; round++ {
			for _, m := range nw.collect() {
				if !nw.cut[[2]uint64{m.From, m.To}] {
					_ = nw.nodes[m.To].Step(m)
				}
			}
			got = append(got, nw.readStates[id]...)
			nw.readStates[id] = nil
		}
		if len(got) != 1 || got[0].Index != commit || got[0].RequestCtx[0] != byte(id) {
			t.Fatalf("node %d read states %+v, want index %d", id, got, commit)
		}
	}
}
