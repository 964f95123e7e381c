package raft

import (
	"bytes"
	"testing"
)

// newWritePeerNetwork elects a leader of three voters, holds SendCommit back from
// settle, and returns the leader, its write peer (the follower that completed the
// election's commit) and the other follower.
func newWritePeerNetwork(t *testing.T) (nw *testNetwork, lead, writer, other uint64) {
	t.Helper()
	nw, lead = newElectedNetwork(t, 3)
	nw.holdCommits = true
	r := nw.nodes[lead].raft
	if len(r.writePeers) != 1 {
		t.Fatalf("write peers %v after the election's entry committed; want the one follower that completed it", r.writePeers)
	}
	writer = r.writePeers[0]
	for _, id := range nw.ids {
		if id != lead && id != writer {
			other = id
		}
	}
	return nw, lead, writer, other
}

// TestAppendsGoToTheLastCommitsQuorumFirst: a leader sends a new entry at once only
// to the followers whose acknowledgements completed the last commit (writePeers),
// and to the others with the next SendCommit, gathered with the commit index. A
// write peer that stops answering delays commits only until then: the other
// follower's acknowledgement completes the quorum and it becomes the write peer.
func TestAppendsGoToTheLastCommitsQuorumFirst(t *testing.T) {
	nw, lead, writer, other := newWritePeerNetwork(t)
	r := nw.nodes[lead].raft
	lastOf := func(id uint64) uint64 { return nw.nodes[id].raft.log.lastIndex() }

	index, _, err := nw.nodes[lead].Propose([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	sentBefore := nw.sent
	nw.settle()
	if got := nw.sent - sentBefore; got != 2 {
		t.Fatalf("%d messages for one write; want 2, an append to the write peer and its acknowledgement", got)
	}
	if c := nw.nodes[lead].Status().Commit; c != index {
		t.Fatalf("leader commit %d, want %d: the write peer's acknowledgement makes a quorum", c, index)
	}
	if lastOf(writer) != index || lastOf(other) >= index {
		t.Fatalf("logs end at %d (write peer) and %d (other); want %d and less", lastOf(writer), lastOf(other), index)
	}
	if !nw.nodes[lead].HasUnsentCommit() {
		t.Fatal("HasUnsentCommit false while an append is deferred")
	}
	// A second write before the deferred send. The write peer keeps up, so the
	// next SendCommit holds the other follower's entries back (and tells the write
	// peer the commit index), and the one after sends both in one append.
	index2, _, err := nw.nodes[lead].Propose([]byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	sentBefore = nw.sent
	nw.nodes[lead].SendCommit()
	nw.settle()
	if lastOf(other) >= index || !nw.nodes[lead].HasUnsentCommit() || !nw.nodes[lead].HoldsAppends() {
		t.Fatalf("first SendCommit: the other follower's log ends at %d (want below %d), HasUnsentCommit %v and HoldsAppends %v (want true)",
			lastOf(other), index, nw.nodes[lead].HasUnsentCommit(), nw.nodes[lead].HoldsAppends())
	}
	if got := nw.sent - sentBefore; got != 2 {
		t.Fatalf("%d messages while the deferred entries were held; want 2, the commit index to the write peer and its answer", got)
	}
	if c := nw.nodes[writer].Status().Commit; c != index2 {
		t.Fatalf("write peer's commit %d after SendCommit; want %d", c, index2)
	}
	sentBefore = nw.sent
	nw.nodes[lead].SendCommit()
	nw.settle()
	if lastOf(other) != index2 || nw.nodes[other].Status().Commit != index2 {
		t.Fatalf("after SendCommit the other follower's log ends at %d, commit %d; want %d and %d",
			lastOf(other), nw.nodes[other].Status().Commit, index2, index2)
	}
	if got := nw.sent - sentBefore; got != 2 {
		t.Fatalf("%d messages for the deferred send; want 2, one append with both entries and its answer", got)
	}
	if nw.nodes[lead].HasUnsentCommit() || nw.nodes[lead].HoldsAppends() {
		t.Fatal("HasUnsentCommit or HoldsAppends true after the deferred send")
	}

	// The write peer goes silent: a write waits for the deferred send, which
	// does not hold (the entry whose deferral began the wait is not committed);
	// the other follower's acknowledgement commits it and makes it the write peer.
	nw.cut[[2]uint64{lead, writer}] = true
	index3, _, err := nw.nodes[lead].Propose([]byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if c := nw.nodes[lead].Status().Commit; c >= index3 {
		t.Fatalf("commit %d with the write peer cut off and nothing sent to the other", c)
	}
	nw.nodes[lead].SendCommit()
	nw.settle()
	if c := nw.nodes[lead].Status().Commit; c != index3 {
		t.Fatalf("commit %d after the deferred send; want %d", c, index3)
	}
	if len(r.writePeers) != 1 || r.writePeers[0] != other {
		t.Fatalf("write peers %v; want [%d], whose acknowledgement completed the last commit", r.writePeers, other)
	}
	index4, _, err := nw.nodes[lead].Propose([]byte("d"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if c := nw.nodes[lead].Status().Commit; c != index4 || lastOf(other) != index4 {
		t.Fatalf("commit %d, new write peer's log at %d; want %d: entries go to it at once now", c, lastOf(other), index4)
	}
}

// TestAppendsToEveryoneWithoutAWriteQuorum: with five voters the write peers are the
// two followers that completed the last commit; with AppendToAll, or before any
// commit of this term, every follower gets each entry at once.
func TestAppendsToEveryoneWithoutAWriteQuorum(t *testing.T) {
	nw, lead := newElectedNetwork(t, 5)
	nw.holdCommits = true
	r := nw.nodes[lead].raft
	if len(r.writePeers) < 2 {
		t.Fatalf("write peers %v of five voters; want at least two", r.writePeers)
	}
	if _, _, err := nw.nodes[lead].Propose([]byte("a")); err != nil {
		t.Fatal(err)
	}
	sentBefore := nw.sent
	nw.settle()
	if got, want := nw.sent-sentBefore, 2*len(r.writePeers); got != want {
		t.Fatalf("%d messages for one write with write peers %v; want %d", got, r.writePeers, want)
	}

	all := newTestNetwork(t, 3, func(c *Config) { c.AppendToAll = true })
	all.tickAll(30)
	all.holdCommits = true
	l := all.leader()
	if _, _, err := all.nodes[l].Propose([]byte("a")); err != nil {
		t.Fatal(err)
	}
	sentBefore = all.sent
	all.settle()
	if got := all.sent - sentBefore; got != 4 {
		t.Fatalf("AppendToAll: %d messages for one write; want 4, an append and an answer per follower", got)
	}
}

// TestALaggingFollowerCatchesUpWithoutWaitingForSendCommit: a follower outside the
// write quorum that lacks deferLagEntries entries or more is sent them as its
// acknowledgements come, not one append per CommitDelay; the last few wait for
// a SendCommit.
func TestALaggingFollowerCatchesUpWithoutWaitingForSendCommit(t *testing.T) {
	nw, lead, _, other := newWritePeerNetwork(t)
	r := nw.nodes[lead].raft
	nw.isolate(other)
	// 300 entries of 16 KiB: about five appends of MaxSizePerMsg (1 MiB).
	for i := range 300 {
		if _, _, err := nw.nodes[lead].Propose(bytes.Repeat([]byte{byte(i)}, 16<<10)); err != nil {
			t.Fatal(err)
		}
		nw.settle()
	}
	nw.heal()
	last := r.log.lastIndex()
	before := nw.nodes[other].raft.log.lastIndex()
	// One heartbeat: its answer starts the catch-up.
	nw.nodes[lead].Tick()
	nw.settle()
	got := nw.nodes[other].raft.log.lastIndex()
	if got+deferLagEntries < last || got <= before {
		t.Fatalf("the follower's log went from %d to %d of %d after one heartbeat; want within %d entries of the end",
			before, got, last, deferLagEntries)
	}
	// The next SendCommit may hold the last few back once (HoldsAppends); the
	// one after sends them.
	for i := 0; i < 2 && nw.nodes[lead].HasUnsentCommit(); i++ {
		nw.nodes[lead].SendCommit()
		nw.settle()
	}
	if got := nw.nodes[other].raft.log.lastIndex(); got != last {
		t.Fatalf("the follower's log ends at %d after SendCommit, want %d", got, last)
	}
}

// TestAFollowersReadGetsTheHeldEntriesAtOnce: a follower outside the write quorum
// that asks for a read point gets, with the answer, the entries and commit index it
// needs to serve the read, rather than after the SendCommits that hold them back.
func TestAFollowersReadGetsTheHeldEntriesAtOnce(t *testing.T) {
	nw, lead, writer, other := newWritePeerNetwork(t)
	r := nw.nodes[lead].raft
	// A read round on the leader: the next asks only the follower that answered
	// (read_peers_test.go), so that the other follower hears no heartbeat, whose
	// answer would bring it its entries anyway.
	if err := nw.nodes[lead].ReadIndex([]byte("r0")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if len(r.readPeers) != 1 || r.readPeers[0] != writer {
		t.Fatalf("read peers %v; want [%d], the write peer", r.readPeers, writer)
	}
	index, _, err := nw.nodes[lead].Propose([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	if got := nw.nodes[other].raft.log.lastIndex(); got >= index {
		t.Fatalf("the other follower's log ends at %d before any SendCommit; want below %d", got, index)
	}
	if err := nw.nodes[other].ReadIndex([]byte("r1")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	rs := nw.readStates[other]
	if len(rs) != 1 || rs[0].Index != index {
		t.Fatalf("read states %+v on the follower; want one at %d", rs, index)
	}
	if got, c := nw.nodes[other].raft.log.lastIndex(), nw.nodes[other].Status().Commit; got != index || c != index {
		t.Fatalf("the follower's log ends at %d, commit %d, with its read point %d; want both at it", got, c, index)
	}
}
