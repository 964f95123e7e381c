package sim

import (
	"fmt"
	"slices"

	"raftkv/raft"
)

// Configuration changes as a fault (Options.ConfChanges), and what the checkers know
// of configurations.
//
// The nemesis asks the leader for a single-server change: add a learner or a voter
// (a new node, started with an empty log and no Peers, which catches up from the
// leader, by snapshot if the log is compacted), promote a learner, remove a member
// (the leader included), or replace a voter (remove it, then add a new one). Node ids
// are never reused; removed nodes keep running, crashing and restarting with the
// rest, so that whatever they do, the cluster must shrug it off. It also starts
// leadership transfers, to a named voter or to the most up-to-date one.
//
// The checkers learn the configuration from the committed configuration entries, as
// the applications apply them (checker.confs), and judge:
//   - at most one leader per term, whatever the configurations (checkRole);
//   - every committed entry is in every later leader's log (checkRole, checkCommit);
//   - a node campaigns or wins only as a voter of its own configuration, or as a voter
//     of the one before it if it does not know the change that removed it committed
//     (it may hold the longest log: raft/confchange.go); a node whose removal
//     committed and that never learned of it starts at most one election after it
//     (PreVote on): the one whose pre-votes it may have gathered just before
//     (checkCampaign);
//   - a snapshot records the configuration committed at its index (checkSnapshotConf);
//   - liveness: a group holding a majority of every configuration that may be in
//     effect (calm, possibleConfs) commits a fresh proposal on each of its members
//     that is a member of the committed configuration; after Settle, every member of
//     the final configuration has every acknowledged command (CheckFinal).

// Bounds on what the nemesis builds: nodes ever started, and voters.
const (
	maxNodes  = 16
	maxVoters = 7
)

// committedConf is a configuration entry some node has applied.
type committedConf struct {
	index      uint64
	membership raft.Membership
}

// confProposal is a configuration change a leader took, at (index, term), leading to
// membership; it may be in effect on some nodes until its index is applied anywhere.
type confProposal struct {
	index, term uint64
	membership  raft.Membership
}

// Membership returns the configuration of the latest committed configuration entry any
// node has applied (the bootstrap one before the first).
func (c *Cluster) Membership() raft.Membership {
	if n := len(c.check.confs); n > 0 {
		return c.check.confs[n-1].membership
	}
	return c.check.bootstrap
}

// membershipAt returns the committed configuration in effect at index, which some node
// has applied.
func (c *Cluster) membershipAt(index uint64) raft.Membership {
	i, _ := slices.BinarySearchFunc(c.check.confs, index+1, func(cc committedConf, target uint64) int {
		if cc.index < target {
			return -1
		}
		return 1
	})
	if i == 0 {
		return c.check.bootstrap
	}
	return c.check.confs[i-1].membership
}

// isMember reports whether id is a voter or learner of the committed configuration.
func (c *Cluster) isMember(id uint64) bool { return c.Membership().IsMember(id) }

// possibleConfs returns every configuration that may be in effect on some node: the
// committed one and those proposed at indexes no node has applied yet.
func (c *Cluster) possibleConfs() []raft.Membership {
	applied := c.CommittedIndex()
	kept := c.confProposals[:0]
	for _, p := range c.confProposals {
		if p.index > applied {
			kept = append(kept, p)
		}
	}
	clear(c.confProposals[len(kept):])
	c.confProposals = kept
	confs := []raft.Membership{c.Membership()}
	for _, p := range c.confProposals {
		confs = append(confs, p.membership)
	}
	return confs
}

// recordCommittedConf runs when a configuration entry is applied for the first time.
func (c *Cluster) recordCommittedConf(n *node, e raft.Entry) {
	var ce raft.ConfEntry
	if err := ce.Unmarshal(e.Data); err != nil {
		c.violate("configuration", "node %d applied configuration entry %d that does not decode: %v", n.id, e.Index, err)
		return
	}
	prev := c.Membership()
	if want, err := prev.Apply(ce.Change); err != nil || !want.Equal(ce.Membership) {
		c.violate("configuration", "entry %d applies %v to %v and records %v; the change gives %v (%v): not a single-server change of the configuration before it",
			e.Index, ce.Change, prev, ce.Membership, want, err)
		return
	}
	c.check.confs = append(c.check.confs, committedConf{index: e.Index, membership: ce.Membership})
	c.counters.ConfChangesCommitted[ce.Change.Type]++
	if ce.Change.Type == raft.ConfChangeRemove && ce.Change.NodeID <= uint64(len(c.nodes)) {
		c.node(ce.Change.NodeID).removed = true
	}
	c.tracef("configuration committed at %d by n%d: %v -> %v", e.Index, n.id, ce.Change, ce.Membership)
}

// checkCampaign runs when node n's role changes: only a voter of its own configuration
// campaigns or takes a term's leadership, or a voter of the configuration before it
// that does not know the change that removed it committed. A node whose removal
// committed, and whose configuration still makes it a voter (it never learned of the
// removal), starts at most one election after it: its pre-votes may have been granted
// just before the removal reached a majority, but once its term is past those, every
// pre-vote it asks is refused by a majority of its old configuration, which holds the
// removal, so with PreVote it never again raises a term (thesis §4.2.3).
func (c *Cluster) checkCampaign(n *node, st raft.Status) {
	switch st.State {
	case raft.StatePreCandidate, raft.StateCandidate:
	case raft.StateLeader:
		if st.Term == n.leaderTerm {
			return
		}
	default:
		return
	}
	ms := n.rn.MembershipStatus()
	if !ms.IsVoter(n.id) {
		if ms.Committed || ms.Index == 0 || !c.confBefore(n, ms.Index).IsVoter(n.id) {
			c.violate("configuration", "node %d is %v in term %d, but its configuration %v (from %d, committed %v) does not make it a voter, nor the one before it in its log",
				n.id, st.State, st.Term, ms.Membership, ms.Index, ms.Committed)
		}
		return
	}
	if st.State == raft.StateCandidate && n.removed && c.preVote {
		n.candidaciesAfterRemoval++
		if n.candidaciesAfterRemoval > 1 {
			c.violate("removed server disrupts", "node %d, whose removal committed, starts its election #%d since, in term %d (PreVote on); its configuration %v",
				n.id, n.candidaciesAfterRemoval, st.Term, ms.Membership)
		}
	}
}

// confBefore returns the configuration node n's log holds just before index: that of
// the last configuration entry before it, or of its snapshot. (Not the committed one:
// a node cut off from the cluster may hold, below an entry of its own, configuration
// entries that a later leader has since replaced.)
func (c *Cluster) confBefore(n *node, index uint64) raft.Membership {
	first, _ := n.storage.FirstIndex()
	for i := index - 1; i >= first && i > 0; i-- {
		ents, err := n.storage.Entries(i, i+1, 1<<30)
		if err != nil || len(ents) != 1 {
			c.violate("storage", "node %d: Entries(%d, %d): %d entries, %v", n.id, i, i+1, len(ents), err)
			return raft.Membership{}
		}
		if ents[0].Type == raft.EntryConfChange {
			var ce raft.ConfEntry
			if err := ce.Unmarshal(ents[0].Data); err != nil {
				c.violate("configuration", "node %d: configuration entry %d does not decode: %v", n.id, i, err)
			}
			return ce.Membership
		}
	}
	meta, err := n.storage.SnapshotMeta()
	if err != nil {
		c.violate("storage", "node %d: SnapshotMeta: %v", n.id, err)
	}
	switch {
	case !meta.Membership.IsEmpty():
		return meta.Membership
	case n.joined:
		return raft.Membership{} // the bootstrap configuration, which it never knew
	}
	return c.check.bootstrap
}

// checkSnapshotConf runs when node n restores snap: its configuration is the one
// committed at its index (an empty one: the bootstrap one).
func (c *Cluster) checkSnapshotConf(n *node, snap raft.Snapshot) {
	if snap.Index > c.CommittedIndex() {
		return // checkSnapshotState says why
	}
	got := snap.Membership
	if got.IsEmpty() {
		got = c.check.bootstrap
	}
	if want := c.membershipAt(snap.Index); !got.Equal(want) {
		c.violate("snapshot configuration", "node %d: snapshot at %d records %v, the configuration committed there is %v",
			n.id, snap.Index, snap.Membership, want)
	}
}

// AddNode starts a new node that joins the cluster, with the next id, an empty
// storage and no Peers, connected as node near is. It is a member only once a leader
// adds it (ProposeConfChange).
func (c *Cluster) AddNode(near uint64) uint64 {
	id := uint64(len(c.nodes) + 1)
	n := &node{id: id, joined: true}
	if c.opts.Storage == nil {
		n.storage = c.memoryStorage(id)
	} else {
		st, err := c.opts.Storage.Open(id)
		if err != nil {
			panic(fmt.Sprintf("sim: opening storage of node %d: %v", id, err))
		}
		n.storage = st
	}
	c.nodes = append(c.nodes, n)
	c.net.group = append(c.net.group, c.net.group[near-1])
	c.counters.NodesAdded++
	c.tracef("n%d added, near n%d", id, near)
	c.start(n)
	return id
}

// ProposeConfChange proposes cc at node id, as an operator would at the leader, and
// processes the resulting Ready. A change adding a node whose id is the next one
// starts that node first (AddNode), if the leader takes the change.
func (c *Cluster) ProposeConfChange(id uint64, cc raft.ConfChange) (index, term uint64, err error) {
	n := c.node(id)
	if n.rn == nil {
		return 0, 0, raft.ErrStopped
	}
	index, term, err = n.rn.ProposeConfChange(cc)
	c.tracef("n%d propose %v: index=%d term=%d err=%v", id, cc, index, term, err)
	if err != nil {
		return 0, 0, err
	}
	isAdd := cc.Type == raft.ConfChangeAddVoter || cc.Type == raft.ConfChangeAddLearner
	if isAdd && cc.NodeID == uint64(len(c.nodes)+1) {
		c.AddNode(id)
	}
	c.counters.ConfChangesProposed++
	if cc.Type == raft.ConfChangeRemove && cc.NodeID == id {
		c.counters.LeaderRemovals++
	}
	c.confProposals = append(c.confProposals, confProposal{index: index, term: term, membership: n.rn.MembershipStatus().Membership})
	c.handleReady(n)
	return index, term, nil
}

// TransferLeadership asks node id to hand leadership to voter to (None: the most
// up-to-date one) and processes the resulting Ready.
func (c *Cluster) TransferLeadership(id, to uint64) error {
	n := c.node(id)
	if n.rn == nil {
		return raft.ErrStopped
	}
	err := n.rn.TransferLeadership(to)
	c.tracef("n%d transfer leadership to %d: %v", id, to, err)
	if err == nil {
		c.counters.Transfers++
	}
	c.handleReady(n)
	return err
}

// randomMembershipFault asks the leader, if there is one, for a configuration change or
// a leadership transfer drawn from the seed.
func (c *Cluster) randomMembershipFault() {
	lead, ok := c.Leader()
	if !ok {
		return
	}
	m := c.node(lead).rn.MembershipStatus().Membership
	pick := func(ids []uint64) uint64 { return ids[c.rng.IntN(len(ids))] }
	canAdd := len(c.nodes) < maxNodes
	next := uint64(len(c.nodes) + 1)
	var cc raft.ConfChange
	switch roll := c.rng.IntN(100); {
	case c.replacing != 0 && !m.IsMember(c.replacing) && canAdd && roll < 70:
		// The second half of a replacement: its removal went through.
		cc = raft.ConfChange{Type: raft.ConfChangeAddVoter, NodeID: next}
		c.replacing = 0
	case roll < 10:
		to := raft.None
		if c.rng.IntN(2) == 0 {
			to = pick(m.Voters)
		}
		_ = c.TransferLeadership(lead, to)
		return
	case len(m.Voters) < 3 && canAdd && roll < 70:
		// Grow a small cluster back, half the time through a learner.
		cc = raft.ConfChange{Type: raft.ConfChangeAddVoter, NodeID: next}
		if len(m.Learners) > 0 && roll < 40 {
			cc = raft.ConfChange{Type: raft.ConfChangePromote, NodeID: pick(m.Learners)}
		}
	case roll < 35 && canAdd:
		cc = raft.ConfChange{Type: raft.ConfChangeAddLearner, NodeID: next}
	case roll < 47 && canAdd && len(m.Voters) < maxVoters:
		cc = raft.ConfChange{Type: raft.ConfChangeAddVoter, NodeID: next}
	case roll < 65 && len(m.Learners) > 0 && len(m.Voters) < maxVoters:
		cc = raft.ConfChange{Type: raft.ConfChangePromote, NodeID: pick(m.Learners)}
	case roll < 90:
		// Any member, the leader too; voters only while more than two remain, so
		// that most runs keep a cluster with some fault tolerance.
		victims := slices.Clone(m.Learners)
		if len(m.Voters) > 2 {
			victims = append(victims, m.Voters...)
		}
		if len(victims) == 0 {
			return
		}
		cc = raft.ConfChange{Type: raft.ConfChangeRemove, NodeID: pick(victims)}
	default:
		if len(m.Voters) < 2 || !canAdd {
			return
		}
		cc = raft.ConfChange{Type: raft.ConfChangeRemove, NodeID: pick(m.Voters)}
		if _, _, err := c.ProposeConfChange(lead, cc); err == nil {
			c.replacing = cc.NodeID
		}
		return
	}
	cc.Context = fmt.Appendf(nil, "nemesis %v", cc)
	_, _, _ = c.ProposeConfChange(lead, cc)
}

// majorityGroup returns nodes that hold a majority of the voters of every
// configuration that may be in effect, in an order drawn from the seed, with some
// learners of the committed configuration besides.
func (c *Cluster) majorityGroup() []uint64 {
	confs := c.possibleConfs()
	var union []uint64
	for _, m := range confs {
		for _, id := range m.Voters {
			if !slices.Contains(union, id) {
				union = append(union, id)
			}
		}
	}
	slices.Sort(union)
	hasMajorities := func(group []uint64) bool {
		for _, m := range confs {
			n := 0
			for _, id := range m.Voters {
				if slices.Contains(group, id) {
					n++
				}
			}
			if n <= len(m.Voters)/2 {
				return false
			}
		}
		return true
	}
	var group []uint64
	for _, i := range c.rng.Perm(len(union)) {
		if hasMajorities(group) && c.rng.IntN(3) != 0 {
			break
		}
		group = append(group, union[i])
	}
	for _, id := range c.Membership().Learners {
		if !slices.Contains(group, id) && c.rng.IntN(2) == 0 {
			group = append(group, id)
		}
	}
	return group
}
