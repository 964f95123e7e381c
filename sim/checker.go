package sim

import (
	"fmt"
	"time"

	"raftkv/raft"
)

// Violation is a broken invariant: a safety property of Raft, a liveness bound, or the
// Ready contract. It names the seed and the virtual time so the run can be replayed.
type Violation struct {
	Seed int64
	At   time.Duration
	// Property names what broke, e.g. "election safety" or "log matching".
	Property string
	Detail   string
}

// Error says what broke, where in which seed's run.
func (v *Violation) Error() string {
	return fmt.Sprintf("seed %d at %v: %s: %s", v.Seed, v.At, v.Property, v.Detail)
}

// violate records the first violation; the run stops at the end of the current event.
func (c *Cluster) violate(property, format string, args ...any) {
	if c.err != nil {
		return
	}
	v := &Violation{Seed: c.opts.Seed, At: c.now, Property: property, Detail: fmt.Sprintf(format, args...)}
	c.err = v
	c.tracef("VIOLATION %v", v)
}

// checker holds what the invariants are checked against, built up incrementally so that
// each check costs O(1) per entry or message, never a rescan of a log.
type checker struct {
	// leaderOf maps a term to the node that was leader in it (§5.2 Election Safety).
	leaderOf map[uint64]uint64
	// entries maps every (index, term) ever persisted by any node to what it held and
	// the term of the entry before it. If (index, term) always determines both, then by
	// induction two logs that agree on an (index, term) agree on everything before it:
	// Log Matching (§5.3).
	entries map[entryKey]entryRecord
	// committed[i] is the entry at index i as the first node to apply it saw it, and
	// the application hash after it; committed[0] is the empty prefix.
	committed []committedEntry
	// globalCommit is the highest commit index any node has persisted, and commits
	// records, per term in which entries were committed, the last of them.
	globalCommit uint64
	commits      []commitSegment
	// bootstrap is the configuration of Options.Nodes; confs the configuration
	// entries applied, by ascending index (membership.go).
	bootstrap raft.Membership
	confs     []committedConf
}

// commitSegment says that the entry at index, of entryTerm, and all before it were
// committed by the leader of commitTerm (or earlier).
type commitSegment struct {
	index, entryTerm, commitTerm uint64
}

type entryKey struct{ index, term uint64 }

type entryRecord struct {
	entryType raft.EntryType
	data      string
	prevTerm  uint64
	node      uint64
}

type committedEntry struct {
	term      uint64
	entryType raft.EntryType
	data      string
	hash      uint64
	// node is the first to apply it.
	node uint64
}

func newChecker(bootstrap raft.Membership) checker {
	return checker{
		leaderOf:  map[uint64]uint64{},
		entries:   map[entryKey]entryRecord{},
		committed: []committedEntry{{hash: initialHash}},
		bootstrap: bootstrap,
	}
}

// checkRole runs after every Ready: at most one leader per term, whatever the
// configurations, and a new leader holds every entry committed before it (§5.4
// Leader Completeness); only voters campaign and lead (checkCampaign).
func (c *Cluster) checkRole(n *node) {
	st := n.rn.Status()
	if st.State != n.lastState {
		c.tracef("n%d %v -> %v term=%d", n.id, n.lastState, st.State, st.Term)
		n.lastState = st.State
		c.checkCampaign(n, st)
	} else if st.State == raft.StateLeader && st.Term != n.leaderTerm {
		c.checkCampaign(n, st)
	}
	if st.State != raft.StateLeader || st.Term == n.leaderTerm {
		return
	}
	n.leaderTerm = st.Term
	if other, ok := c.check.leaderOf[st.Term]; ok && other != n.id {
		c.violate("election safety", "nodes %d and %d were both leader in term %d", other, n.id, st.Term)
		return
	}
	c.check.leaderOf[st.Term] = n.id
	c.counters.Elections++
	// A leader of term T must hold every entry committed in a term before T.
	segments := c.check.commits
	for i := len(segments) - 1; i >= 0; i-- {
		if seg := segments[i]; seg.commitTerm < st.Term {
			if !c.holds(n, seg.index, seg.entryTerm) {
				c.violate("leader completeness", "node %d became leader of term %d without entry %d (term %d), committed in term %d; its log: %s",
					n.id, st.Term, seg.index, seg.entryTerm, seg.commitTerm, c.describeLog(n, seg.index))
			}
			return
		}
	}
}

// holds reports whether node n's durable log has the entry (index, term), or has
// compacted past index into a snapshot.
func (c *Cluster) holds(n *node, index, term uint64) bool {
	first, _ := n.storage.FirstIndex()
	if index < first-1 {
		return true
	}
	last, _ := n.storage.LastIndex()
	if index > last {
		return false
	}
	t, err := n.storage.Term(index)
	return err == nil && t == term
}

func (c *Cluster) describeLog(n *node, index uint64) string {
	first, _ := n.storage.FirstIndex()
	last, _ := n.storage.LastIndex()
	t, err := n.storage.Term(index)
	return fmt.Sprintf("first=%d last=%d term(%d)=%d err=%v", first, last, index, t, err)
}

// checkHardState runs before a HardState is persisted: the term never goes back, a vote
// once cast in a term never changes (§5.2), and the commit index never decreases.
func (c *Cluster) checkHardState(n *node, hs raft.HardState) {
	if hs.IsEmpty() {
		return
	}
	old := n.written
	switch {
	case hs.Term < old.Term:
		c.violate("durable state", "node %d: term goes back from %d to %d", n.id, old.Term, hs.Term)
	case hs.Term == old.Term && old.Vote != raft.None && hs.Vote != old.Vote:
		c.violate("election safety", "node %d: changes its vote in term %d from %d to %d", n.id, hs.Term, old.Vote, hs.Vote)
	case hs.Commit < old.Commit:
		c.violate("durable state", "node %d: commit index goes back from %d to %d", n.id, old.Commit, hs.Commit)
	}
}

// checkOverwrite runs before entries are persisted: a node never replaces an entry it
// has recorded as committed (durably, or in a write still queued in AsyncWrites mode).
func (c *Cluster) checkOverwrite(n *node, ents []raft.Entry) {
	if len(ents) == 0 || ents[0].Index > n.written.Commit {
		return
	}
	first, _ := n.storage.FirstIndex()
	last, _ := n.storage.LastIndex()
	for _, e := range ents {
		if e.Index > n.written.Commit || e.Index > last {
			return
		}
		if e.Index < first {
			continue
		}
		if t, err := n.storage.Term(e.Index); err == nil && t != e.Term {
			c.violate("committed entries never change", "node %d: overwrites entry %d (term %d), committed there, with term %d",
				n.id, e.Index, t, e.Term)
			return
		}
	}
}

// checkLogMatching runs after entries are persisted: every (index, term) ever written
// anywhere must always carry the same payload and follow the same previous term.
func (c *Cluster) checkLogMatching(n *node, ents []raft.Entry) {
	if len(ents) == 0 {
		return
	}
	prevTerm, err := n.storage.Term(ents[0].Index - 1)
	if err != nil {
		c.violate("storage", "node %d: Term(%d) right after saving entries from %d: %v", n.id, ents[0].Index-1, ents[0].Index, err)
		return
	}
	for _, e := range ents {
		key := entryKey{e.Index, e.Term}
		if rec, ok := c.check.entries[key]; ok {
			if rec.entryType != e.Type || rec.data != string(e.Data) || rec.prevTerm != prevTerm {
				c.violate("log matching", "entry %d term %d: node %d holds %v %q after term %d, node %d holds %v %q after term %d",
					e.Index, e.Term, rec.node, rec.entryType, rec.data, rec.prevTerm, n.id, e.Type, e.Data, prevTerm)
				return
			}
		} else {
			c.check.entries[key] = entryRecord{entryType: e.Type, data: string(e.Data), prevTerm: prevTerm, node: n.id}
		}
		prevTerm = e.Term
	}
}

// checkSnapshotPersisted runs after a snapshot from the leader became durable.
func (c *Cluster) checkSnapshotPersisted(n *node, snap raft.Snapshot) {
	if snap.Index < n.written.Commit {
		c.violate("committed entries never change", "node %d: installs snapshot %d below its recorded commit %d", n.id, snap.Index, n.written.Commit)
	}
}

// checkSnapshotState compares an application snapshot with what was applied at its
// index elsewhere: the same term, the same history hash.
func (c *Cluster) checkSnapshotState(n *node, index, term, hash uint64) {
	committed := c.check.committed
	if index >= uint64(len(committed)) {
		// Every snapshot is taken by an application that applied its index, so this
		// index must already be known.
		c.violate("state machine safety", "node %d: snapshot at %d, beyond any index applied anywhere (%d)", n.id, index, len(committed)-1)
		return
	}
	if rec := committed[index]; rec.term != term || rec.hash != hash {
		c.violate("state machine safety", "node %d: snapshot at %d has term %d hash %x; node %d applied term %d hash %x there",
			n.id, index, term, hash, rec.node, rec.term, rec.hash)
	}
}

// checkApplied runs for every applied entry: no two nodes apply different entries, or
// reach different states, at an index (§5.4.3 State Machine Safety).
func (c *Cluster) checkApplied(n *node, e raft.Entry) {
	committed := c.check.committed
	switch {
	case e.Index < uint64(len(committed)):
		rec := committed[e.Index]
		if rec.term != e.Term || rec.entryType != e.Type || rec.data != string(e.Data) || rec.hash != n.app.hash {
			c.violate("state machine safety", "index %d: node %d applied %v %q (term %d), node %d applied %v %q (term %d)",
				e.Index, rec.node, rec.entryType, rec.data, rec.term, n.id, e.Type, e.Data, e.Term)
		}
	case e.Index == uint64(len(committed)):
		c.check.committed = append(committed, committedEntry{
			term: e.Term, entryType: e.Type, data: string(e.Data), hash: n.app.hash, node: n.id,
		})
		if e.Type == raft.EntryConfChange {
			c.recordCommittedConf(n, e)
		}
	default:
		c.violate("state machine safety", "node %d applied %d but no node ever applied %d", n.id, e.Index, len(committed))
	}
}

// checkCommit runs after node n persisted hs: when its commit index passes every
// commit index persisted before, n is the leader that committed those entries, in
// hs.Term (followers only learn commit indexes from leaders, after the leader persisted
// them). Every current leader of a later term must already hold them (Leader
// Completeness).
func (c *Cluster) checkCommit(n *node, hs raft.HardState) {
	if hs.Commit <= c.check.globalCommit {
		return
	}
	entryTerm, err := n.storage.Term(hs.Commit)
	if err != nil {
		c.violate("storage", "node %d: Term(%d) of its own commit index: %v", n.id, hs.Commit, err)
		return
	}
	c.check.globalCommit = hs.Commit
	seg := commitSegment{index: hs.Commit, entryTerm: entryTerm, commitTerm: hs.Term}
	if k := len(c.check.commits); k > 0 && c.check.commits[k-1].commitTerm == hs.Term {
		c.check.commits[k-1] = seg
	} else {
		c.check.commits = append(c.check.commits, seg)
	}
	for _, other := range c.nodes {
		if other.rn == nil || other == n || other.lastState != raft.StateLeader {
			continue
		}
		if st := other.rn.Status(); st.State == raft.StateLeader && st.Term > hs.Term && !c.holds(other, hs.Commit, entryTerm) {
			c.violate("leader completeness", "entry %d (term %d) committed in term %d, but node %d, leader of term %d, lacks it: %s",
				hs.Commit, entryTerm, hs.Term, other.id, st.Term, c.describeLog(other, hs.Commit))
			return
		}
	}
}

// checkOutgoing runs for every message as it leaves: what it claims must already be
// durable (design rule 1, persist before you speak). A message that waited for a
// write in AsyncWrites mode was judged when that write became durable (checkHeld);
// held is true for it.
func (c *Cluster) checkOutgoing(n *node, m raft.Message, held bool) {
	if m.From != n.id {
		c.violate("message", "node %d sent a message claiming to be from %d: %v", n.id, m.From, m)
		return
	}
	if held {
		return
	}
	var logTerm uint64
	if n.disk != nil && m.Type == raft.MsgAppResp && !m.Reject {
		logTerm = c.hold(n, m).logTerm
	}
	c.checkClaims(n, m, logTerm)
}

// checkClaims checks that what m claims is durable: the vote it grants, the entries it
// acknowledges (in AsyncWrites mode, the entry at m.Index with logTerm, the term it had
// when m was made), its term.
func (c *Cluster) checkClaims(n *node, m raft.Message, logTerm uint64) {
	switch m.Type {
	case raft.MsgPreVote, raft.MsgPreVoteResp:
		// A pre-vote names a term nobody has entered yet.
		return
	case raft.MsgVoteResp:
		if !m.Reject && (n.durable.Term != m.Term || n.durable.Vote != m.To) {
			c.violate("persist before speak", "node %d grants its vote to %d in term %d but has made durable only %+v",
				n.id, m.To, m.Term, n.durable)
			return
		}
	case raft.MsgAppResp:
		if m.Reject {
			break
		}
		if n.disk != nil {
			c.checkAckDurable(n, m.Index, logTerm)
		} else if last, _ := n.storage.LastIndex(); m.Index > last {
			c.violate("persist before speak", "node %d acknowledges entries through %d but has made durable only through %d",
				n.id, m.Index, last)
		}
		if c.err != nil {
			return
		}
	}
	if m.Term > n.durable.Term {
		c.violate("persist before speak", "node %d sends %v at term %d but has made durable only term %d", n.id, m.Type, m.Term, n.durable.Term)
	}
}

// CheckFinal runs at the end of a run, after a Settle: every command a client saw
// committed is in the log (or under the snapshot) of every member of the final
// configuration at the index it was acknowledged at, and every member has applied at
// least that far. (Removed nodes and nodes never added are not held to it.)
func (c *Cluster) CheckFinal() error {
	if c.err != nil {
		return c.err
	}
	for _, n := range c.nodes {
		if n.rn == nil || !c.isMember(n.id) {
			continue
		}
		first, _ := n.storage.FirstIndex()
		for _, ack := range c.acks {
			if n.app.applied < ack.Index {
				c.violate("durability", "node %d applied only %d, but a client saw %q committed at %d", n.id, n.app.applied, ack.Data, ack.Index)
				return c.err
			}
			if ack.Index < first {
				continue
			}
			ents, err := n.storage.Entries(ack.Index, ack.Index+1, 1<<30)
			if err != nil || len(ents) != 1 || ents[0].Type != raft.EntryCommand || string(ents[0].Data) != ack.Data {
				c.violate("durability", "node %d: log at %d holds %v (err %v), but a client saw %q committed there at %v",
					n.id, ack.Index, ents, err, ack.Data, ack.At)
				return c.err
			}
		}
		if rec := c.check.committed[n.app.applied]; rec.hash != n.app.hash {
			c.violate("state machine safety", "node %d ends with hash %x at %d, node %d had %x", n.id, n.app.hash, n.app.applied, rec.node, rec.hash)
			return c.err
		}
	}
	return nil
}
