package raft_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"raftkv/raft"
)

// FuzzStep drives a 3-node cluster of RawNodes with a sequence of operations decoded
// from the fuzz input: ticks, deliveries, drops and reorderings of the messages the
// nodes send each other, proposals, campaigns, reads, compactions, and arbitrary
// messages of every network type with arbitrary fields (To is always the node). Every
// Ready is persisted to the node's MemoryStorage as the contract demands. It checks
// that nothing panics and that each node's local invariants hold: term and commit
// index never decrease, a vote is never changed within a term, and committed entries
// are delivered in order, exactly once, and never change.
//
// Forged messages can break cross-node safety (a forged leader can say anything), so
// only local invariants are checked here; the simulator in package sim checks the
// cluster-wide ones on an honest network.
//
//	go test ./raft -run '^$' -fuzz FuzzStep -fuzztime 60s
func FuzzStep(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{5, 0, 1, 1, 1, 1, 3, 0, 'a', 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{4, 1, 3, 2, 5, 1, 9, 9, 9, 2, 1, 7, 'x', 'y', 4, 2, 9, 1, 1, 1, 200, 1, 0, 3})
	f.Add([]byte{5, 2, 1, 1, 1, 1, 1, 1, 3, 2, 'p', 1, 1, 1, 1, 8, 2, 1, 1, 1, 1, 6, 2, 4, 0, 11, 1, 3, 3, 3})
	f.Fuzz(runFuzzInput)
}

func runFuzzInput(t *testing.T, input []byte) {
	c := newFuzzCluster(t)
	in := fuzzInput{data: input}
	for op := 0; !in.done() && op < 2000; op++ {
		c.apply(&in)
	}
}

// TestFuzzStepRegressions replays inputs FuzzStep found; each names the core bug it
// showed, since fixed.
func TestFuzzStepRegressions(t *testing.T) {
	for _, tc := range []struct {
		name, fixed string
		input       []byte
	}{
		{
			name: "term-zero-MsgApp-rewinds-term",
			fixed: "RawNode.Step took a network message with Term 0 as term-less: a MsgApp of term 0 " +
				"makes a pre-candidate at term 88 becomeFollower(0), so its durable term goes back",
			input: []byte("\"100X00000&00000000B02000070090010200007000070090010200002000000B1000000000000000000002000000\"110\x000000000000\"1000"),
		},
		{
			name: "misnumbered-MsgApp-entries-panic",
			fixed: "a MsgApp whose entries were not numbered Index+1, Index+2, ... panics in raftLog.commitTo " +
				"(commit index past last index) instead of being rejected as malformed",
			input: []byte("\"0100\x00\x0000001"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Fixed by checkNetworkMessage: the input must now run clean.
			runFuzzInput(t, tc.input)
		})
	}
}

// fuzzInput hands out the fuzz bytes; once they run out it returns zeros.
type fuzzInput struct {
	data []byte
	pos  int
}

func (in *fuzzInput) done() bool { return in.pos >= len(in.data) }

func (in *fuzzInput) byte() byte {
	if in.done() {
		return 0
	}
	b := in.data[in.pos]
	in.pos++
	return b
}

// uint64 reads a varint-sized number so that both small and huge values are easy to
// reach: one byte gives 0..127.
func (in *fuzzInput) uint64() uint64 {
	v, n := binary.Uvarint(in.data[min(in.pos, len(in.data)):])
	if n <= 0 {
		in.pos = len(in.data)
		return 0
	}
	in.pos += n
	return v
}

func (in *fuzzInput) bytes() []byte {
	n := int(in.byte() % 8)
	if n == 0 {
		return nil
	}
	out := make([]byte, 0, n)
	for range n {
		out = append(out, in.byte())
	}
	return out
}

type fuzzNode struct {
	rn      *raft.RawNode
	storage *raft.MemoryStorage
	hard    raft.HardState
	applied uint64
	// committed[i] is the term of the entry delivered as committed at index i.
	committed map[uint64]uint64
}

type fuzzCluster struct {
	t     *testing.T
	nodes []*fuzzNode
	// queue holds messages sent and not yet delivered or dropped.
	queue []raft.Message
}

func newFuzzCluster(t *testing.T) *fuzzCluster {
	c := &fuzzCluster{t: t}
	for id := uint64(1); id <= 3; id++ {
		storage := raft.NewMemoryStorage()
		rn, err := raft.NewRawNode(raft.Config{
			ID: id, Peers: []uint64{1, 2, 3}, ElectionTicks: 10, HeartbeatTicks: 1,
			Storage: storage, RandSeed: int64(id), MaxSizePerMsg: 256, MaxInflightMsgs: 4,
			MaxUncommittedEntriesBytes: 4096,
		})
		if err != nil {
			t.Fatalf("NewRawNode(%d): %v", id, err)
		}
		c.nodes = append(c.nodes, &fuzzNode{rn: rn, storage: storage, committed: map[uint64]uint64{}})
	}
	return c
}

// networkTypes are the message types that cross the network.
var networkTypes = func() []raft.MessageType {
	var types []raft.MessageType
	for t := raft.MessageType(0); t < 32; t++ {
		if !t.IsLocal() && t.String() != fmt.Sprintf("MessageType(%d)", uint8(t)) {
			types = append(types, t)
		}
	}
	return types
}()

func (c *fuzzCluster) apply(in *fuzzInput) {
	op := in.byte() % 12
	n := c.nodes[in.byte()%3]
	switch op {
	case 0, 1:
		n.rn.Tick()
	case 2, 3:
		// Deliver a queued message, chosen by the input: the network reorders.
		if len(c.queue) > 0 {
			i := int(in.byte()) % len(c.queue)
			m := c.queue[i]
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			n = c.nodes[m.To-1]
			_ = n.rn.Step(m)
		}
	case 4:
		if len(c.queue) > 0 {
			i := int(in.byte()) % len(c.queue)
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
		}
	case 5:
		_, _, _ = n.rn.Propose(in.bytes())
	case 6:
		_ = n.rn.Campaign()
	case 7:
		_ = n.rn.ReadIndex(in.bytes())
	case 8:
		if applied := n.applied; applied > 0 {
			if _, err := n.storage.CreateSnapshot(applied, raft.Membership{}, []byte{byte(applied)}); err != nil && err != raft.ErrSnapOutOfDate {
				c.t.Fatalf("node %d: CreateSnapshot(%d): %v", n.rn.Status().ID, applied, err)
			}
		}
	case 9:
		peer := uint64(in.byte()%3) + 1
		if in.byte()%2 == 0 {
			n.rn.ReportUnreachable(peer)
		} else {
			n.rn.ReportSnapshot(peer, in.byte()%2 == 0)
		}
	default:
		_ = n.rn.Step(c.forge(in, n.rn.Status().ID))
	}
	c.ready(n)
}

// forge builds an arbitrary network message to node id.
func (c *fuzzCluster) forge(in *fuzzInput, id uint64) raft.Message {
	m := raft.Message{
		Type:       networkTypes[int(in.byte())%len(networkTypes)],
		To:         id,
		From:       uint64(in.byte() % 5),
		Term:       in.uint64(),
		LogTerm:    in.uint64(),
		Index:      in.uint64(),
		Commit:     in.uint64(),
		Reject:     in.byte()%2 == 1,
		RejectHint: in.uint64(),
		Context:    in.bytes(),
	}
	for range in.byte() % 4 {
		m.Entries = append(m.Entries, raft.Entry{
			Term: in.uint64(), Index: in.uint64(), Type: raft.EntryType(in.byte() % 3), Data: in.bytes(),
		})
	}
	if in.byte()%2 == 1 {
		m.Snapshot = &raft.Snapshot{Index: in.uint64(), Term: in.uint64(), Data: in.bytes()}
	}
	return m
}

// ready carries out node n's Readys and checks its local invariants.
func (c *fuzzCluster) ready(n *fuzzNode) {
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		id := n.rn.Status().ID
		if !rd.Snapshot.IsEmpty() {
			if rd.Snapshot.Index <= n.applied {
				c.t.Fatalf("node %d: Ready.Snapshot at %d would rewind the application at %d", id, rd.Snapshot.Index, n.applied)
			}
			if err := n.storage.ApplySnapshot(rd.Snapshot); err != nil {
				c.t.Fatalf("node %d: ApplySnapshot(%d): %v", id, rd.Snapshot.Index, err)
			}
		}
		if hs := rd.HardState; !hs.IsEmpty() {
			old := n.hard
			switch {
			case hs.Term < old.Term:
				c.t.Fatalf("node %d: term went back from %d to %d", id, old.Term, hs.Term)
			case hs.Term == old.Term && old.Vote != raft.None && hs.Vote != old.Vote:
				c.t.Fatalf("node %d: vote changed in term %d from %d to %d", id, hs.Term, old.Vote, hs.Vote)
			case hs.Commit < old.Commit:
				c.t.Fatalf("node %d: commit went back from %d to %d", id, old.Commit, hs.Commit)
			}
			n.hard = hs
		}
		if err := n.storage.Save(rd.HardState, rd.Entries); err != nil {
			c.t.Fatalf("node %d: Save: %v", id, err)
		}
		for _, m := range rd.Messages {
			if m.Type.IsLocal() {
				c.t.Fatalf("node %d sent a local message: %v", id, m)
			}
			if m.To >= 1 && m.To <= 3 && m.To != id {
				c.queue = append(c.queue, m)
			}
		}
		if len(c.queue) > 256 {
			c.queue = c.queue[len(c.queue)-256:]
		}
		if !rd.Snapshot.IsEmpty() {
			n.applied = rd.Snapshot.Index
		}
		for _, e := range rd.CommittedEntries {
			if e.Index != n.applied+1 {
				c.t.Fatalf("node %d: committed entry %d delivered after %d", id, e.Index, n.applied)
			}
			if term, ok := n.committed[e.Index]; ok && term != e.Term {
				c.t.Fatalf("node %d: committed entry %d changed term from %d to %d", id, e.Index, term, e.Term)
			}
			n.committed[e.Index] = e.Term
			n.applied = e.Index
		}
		n.rn.Advance(rd)
	}
}
