package raft

import (
	"bytes"
	"fmt"
	"testing"
)

// testNetwork runs cores in lock step: every message is delivered at once, in order,
// unless its link is cut. It is the smallest driver that obeys the Ready contract.
type testNetwork struct {
	t        *testing.T
	nodes    map[uint64]*RawNode
	storages map[uint64]*MemoryStorage
	ids      []uint64
	cut      map[[2]uint64]bool
	applied  map[uint64][]Entry
	sent     int
	// readStates collects each node's Ready.ReadStates.
	readStates map[uint64][]ReadState
	// holdCommits keeps settle from calling SendCommit on a leader that holds a
	// commit index or deferred appends back (HasUnsentCommit), as the Node does a
	// CommitDelay later: tests of what is held back set it.
	holdCommits bool
}

func newTestNetwork(t *testing.T, n int, mutate func(*Config)) *testNetwork {
	t.Helper()
	nw := &testNetwork{t: t, nodes: map[uint64]*RawNode{}, storages: map[uint64]*MemoryStorage{},
		cut: map[[2]uint64]bool{}, applied: map[uint64][]Entry{},
		readStates: map[uint64][]ReadState{}}
	for i := 1; i <= n; i++ {
		nw.ids = append(nw.ids, uint64(i))
	}
	for _, id := range nw.ids {
		nw.storages[id] = NewMemoryStorage()
		nw.start(id, mutate)
	}
	return nw
}

func (nw *testNetwork) start(id uint64, mutate func(*Config)) {
	cfg := Config{ID: id, Peers: nw.ids, ElectionTicks: 10, HeartbeatTicks: 1, Storage: nw.storages[id]}
	if mutate != nil {
		mutate(&cfg)
	}
	rn, err := NewRawNode(cfg)
	if err != nil {
		nw.t.Fatal(err)
	}
	nw.nodes[id] = rn
}

func (nw *testNetwork) isolate(id uint64) {
	for _, other := range nw.ids {
		if other != id {
			nw.cut[[2]uint64{id, other}] = true
			nw.cut[[2]uint64{other, id}] = true
		}
	}
}

func (nw *testNetwork) heal() { clear(nw.cut) }

// collect carries out every node's Ready and returns the messages to deliver.
func (nw *testNetwork) collect() []Message {
	var msgs []Message
	for _, id := range nw.ids {
		rn := nw.nodes[id]
		if rn == nil || !rn.HasReady() {
			continue
		}
		rd := rn.Ready()
		st := nw.storages[id]
		if !rd.Snapshot.IsEmpty() {
			if err := st.ApplySnapshot(rd.Snapshot); err != nil {
				nw.t.Fatal(err)
			}
		}
		if err := st.Save(rd.HardState, rd.Entries); err != nil {
			nw.t.Fatal(err)
		}
		msgs = append(msgs, rd.Messages...)
		nw.applied[id] = append(nw.applied[id], rd.CommittedEntries...)
		nw.readStates[id] = append(nw.readStates[id], rd.ReadStates...)
		rn.Advance(rd)
	}
	return msgs
}

// settle runs Ready cycles and deliveries until no node has anything left to do.
func (nw *testNetwork) settle() {
	for round := 0; ; round++ {
		if round > 10000 {
			nw.t.Fatal("network did not settle")
		}
		busy := false
		for _, id := range nw.ids {
			if rn := nw.nodes[id]; rn != nil && rn.HasReady() {
				busy = true
			}
		}
		msgs := nw.collect()
		if !busy && !nw.holdCommits {
			for _, id := range nw.ids {
				if rn := nw.nodes[id]; rn != nil && rn.HasUnsentCommit() {
					rn.SendCommit() // the Node's commit timer, run once all else is quiet
					busy = true
				}
			}
			if busy {
				continue
			}
		}
		if !busy {
			return
		}
		for _, m := range msgs {
			nw.sent++
			if nw.cut[[2]uint64{m.From, m.To}] || nw.nodes[m.To] == nil {
				continue
			}
			_ = nw.nodes[m.To].Step(m)
		}
	}
}

func (nw *testNetwork) tickAll(n int) {
	for range n {
		for _, id := range nw.ids {
			if rn := nw.nodes[id]; rn != nil {
				rn.Tick()
			}
		}
		nw.settle()
	}
}

// newElectedNetwork is newTestNetwork with n default nodes, ticked until one leads.
func newElectedNetwork(t *testing.T, n int) (*testNetwork, uint64) {
	t.Helper()
	nw := newTestNetwork(t, n, nil)
	nw.tickAll(30)
	lead := nw.leader()
	if lead == 0 {
		t.Fatal("no leader after 30 ticks")
	}
	return nw, lead
}

func (nw *testNetwork) leader() uint64 {
	var lead uint64
	for _, id := range nw.ids {
		if rn := nw.nodes[id]; rn != nil && rn.Status().State == StateLeader {
			if lead != 0 && nw.nodes[lead].Status().Term == rn.Status().Term {
				nw.t.Fatalf("two leaders in term %d: %d and %d", rn.Status().Term, lead, id)
			}
			if lead == 0 || rn.Status().Term > nw.nodes[lead].Status().Term {
				lead = id
			}
		}
	}
	return lead
}

func commands(ents []Entry) [][]byte {
	var out [][]byte
	for _, e := range ents {
		if e.Type == EntryCommand {
			out = append(out, e.Data)
		}
	}
	return out
}

// Reference: §5.2. A single node elects itself and commits on its own.
func TestSingleNodeCommits(t *testing.T) {
	nw := newTestNetwork(t, 1, nil)
	nw.tickAll(25)
	if nw.leader() != 1 {
		t.Fatalf("single node did not become leader: %+v", nw.nodes[1].Status())
	}
	idx, term, err := nw.nodes[1].Propose([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	got := commands(nw.applied[1])
	if len(got) != 1 || !bytes.Equal(got[0], []byte("x")) {
		t.Fatalf("applied %q, want [x]", got)
	}
	if last := nw.applied[1][len(nw.applied[1])-1]; last.Index != idx || last.Term != term {
		t.Fatalf("applied at %d/%d, Propose said %d/%d", last.Index, last.Term, idx, term)
	}
}

// Reference: §5.2, §5.3. Three nodes elect one leader, and every proposal reaches every
// node at the index Propose returned.
func TestThreeNodesReplicate(t *testing.T) {
	nw, lead := newElectedNetwork(t, 3)
	for i := range 10 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "cmd%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.tickAll(3)
	for _, id := range nw.ids {
		if got := commands(nw.applied[id]); len(got) != 10 {
			t.Fatalf("node %d applied %d commands, want 10", id, len(got))
		}
	}
}

// Reference: §5.3 (followers learn commitIndex from the next AppendEntries). A commit
// that no append carries is held back from the followers until SendCommit, rather
// than costing an empty append per follower per write; the next append carries it
// when there is one, and a follower that forwarded the proposal hears at once.
func TestCommitIndexRidesTheNextAppend(t *testing.T) {
	// Every append to every follower at once (AppendToAll), so that both hear of
	// each entry; TestAppendsGoToTheLastCommitsQuorumFirst covers the default.
	nw := newTestNetwork(t, 3, func(c *Config) { c.AppendToAll = true })
	nw.tickAll(30)
	lead := nw.leader()
	if lead == 0 {
		t.Fatal("no leader after 30 ticks")
	}
	nw.holdCommits = true
	followers := []uint64{}
	for _, id := range nw.ids {
		if id != lead {
			followers = append(followers, id)
		}
	}
	commitOf := func(id uint64) uint64 { return nw.nodes[id].Status().Commit }

	// A proposal on the leader: committed there, held back from the followers.
	index, _, err := nw.nodes[lead].Propose([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	sentBefore := nw.sent
	nw.settle()
	if commitOf(lead) != index {
		t.Fatalf("leader commit %d, want %d", commitOf(lead), index)
	}
	// Two appends and two acknowledgements, nothing more.
	if got := nw.sent - sentBefore; got != 4 {
		t.Fatalf("%d messages for one write, want 4 (an append and an ack per follower)", got)
	}
	for _, id := range followers {
		if commitOf(id) >= index {
			t.Fatalf("follower %d already knows commit %d, before any append carried it", id, commitOf(id))
		}
	}
	if !nw.nodes[lead].HasUnsentCommit() {
		t.Fatal("HasUnsentCommit false while the followers lack the commit index")
	}

	// The next append carries it.
	next, _, err := nw.nodes[lead].Propose([]byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	nw.settle()
	for _, id := range followers {
		if commitOf(id) < index {
			t.Fatalf("follower %d commit %d after the next append, want at least %d", id, commitOf(id), index)
		}
	}

	// SendCommit tells the followers the rest, once.
	nw.nodes[lead].SendCommit()
	nw.settle()
	for _, id := range followers {
		if commitOf(id) != next {
			t.Fatalf("follower %d commit %d after SendCommit, want %d", id, commitOf(id), next)
		}
	}
	if nw.nodes[lead].HasUnsentCommit() {
		t.Fatal("HasUnsentCommit still true after SendCommit")
	}
	sentBefore = nw.sent
	nw.nodes[lead].SendCommit()
	nw.settle()
	if nw.sent != sentBefore {
		t.Fatalf("SendCommit with nothing to tell sent %d messages", nw.sent-sentBefore)
	}

	// A proposal forwarded by a follower: that follower hears of the commit at once.
	fwd := followers[0]
	if err := nw.nodes[fwd].Forward([]byte("c")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	want := commitOf(lead)
	if got := commitOf(fwd); got != want || want != next+1 {
		t.Fatalf("forwarding follower's commit %d, leader's %d, want both %d", got, want, next+1)
	}
	if got := commitOf(followers[1]); got >= want {
		t.Fatalf("the other follower already knows commit %d", got)
	}
}

// Reference: §5.2, §5.4.1, thesis §9.6. A cut-off leader is replaced; on return it
// steps down and the isolated node's campaigns (PreVote) never raised anyone's term.
func TestReelectionAndPreVote(t *testing.T) {
	nw := newTestNetwork(t, 3, nil)
	nw.tickAll(30)
	old := nw.leader()
	oldTerm := nw.nodes[old].Status().Term
	nw.isolate(old)
	nw.tickAll(40)
	lead := nw.leader()
	if lead == old || lead == 0 {
		t.Fatalf("no new leader after isolating %d (leader now %d)", old, lead)
	}
	// The old leader stepped down by CheckQuorum and, campaigning with PreVote while
	// cut off, never incremented its term.
	if st := nw.nodes[old].Status(); st.State == StateLeader || st.Term != oldTerm {
		t.Fatalf("isolated old leader: %+v, want follower/pre-candidate at term %d", st, oldTerm)
	}
	newTerm := nw.nodes[lead].Status().Term
	nw.heal()
	nw.tickAll(40)
	if nw.leader() != lead || nw.nodes[lead].Status().Term != newTerm {
		t.Fatalf("rejoining node disturbed the leader: leader %d term %d, want %d term %d",
			nw.leader(), nw.nodes[nw.leader()].Status().Term, lead, newTerm)
	}
}
