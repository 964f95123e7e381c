package raft

import "fmt"

// The RawNode's configuration changes and leadership transfer (confchange.go,
// transfer.go).

// MembershipStatus is a node's configuration and, at a leader, how far each member's
// log is known to match its own: what an operator's tools need to decide whether a
// learner has caught up (etcd refuses to promote one whose Match is under 90% of the
// leader's) or which follower to hand leadership to.
type MembershipStatus struct {
	// Membership is the configuration in effect on this node: the latest in its log,
	// committed or not (thesis §4.1).
	Membership
	// Index is the index of the configuration entry Membership comes from; 0 if it
	// comes from a snapshot or Config.Peers.
	Index uint64
	// Committed says this node knows that entry committed. A leader takes no new
	// change until it has.
	Committed bool
	// Progress is, at a leader, one entry per node it replicates to, itself
	// included, ascending by ID; nil elsewhere.
	Progress []PeerProgress
}

// PeerProgress is the leader's view of one node's log (Figure 2's matchIndex and
// nextIndex).
type PeerProgress struct {
	ID uint64
	// IsVoter and IsLearner say the node's role; neither, for a member whose removal
	// has not committed yet.
	IsVoter, IsLearner bool
	// Match is the highest index known to be in the node's log (for the leader
	// itself: durable in its own storage). Next is the next index to send it.
	Match, Next uint64
	// RecentActive says the node was heard from within the last election timeout.
	RecentActive bool
	// State is how the leader replicates to it: "Probe", "Replicate" or "Snapshot".
	State string
	// PendingSnapshot is the index of the snapshot sent to it in state Snapshot,
	// from the moment the leader chose it (the log after it must stay until the
	// node has it); 0 in the other states.
	PendingSnapshot uint64
}

// ProposeConfChange appends a configuration change to the leader's log and returns the
// index and term it will have if it commits, as Propose does for a command. The change
// is in effect on this node at once (thesis §4.1). Errors: ErrNotLeader;
// ErrProposalDropped while leadership is being transferred; ErrConfChangePending while
// an earlier change is uncommitted or this leader has not committed an entry of its
// term yet (retry shortly); an error wrapping ErrInvalidConfChange for a change that
// does not fit the configuration; ErrEntryTooLarge, ErrTooManyUncommitted.
func (rn *RawNode) ProposeConfChange(cc ConfChange) (index, term uint64, err error) {
	return rn.raft.proposeConfChange(cc)
}

// TransferLeadership starts handing leadership to voter to (thesis §3.10), or, with
// to None, to the voter with the most up-to-date log. The leader takes no proposals
// until the transfer ends: the target becomes leader (this node then steps down on
// hearing its term) or an election timeout passes. Errors: ErrNotLeader, and
// ErrBadTransferee for a target that is not a voter or a cluster without another
// voter. Transferring to the leader itself does nothing.
func (rn *RawNode) TransferLeadership(to uint64) error { return rn.raft.transferLeadership(to) }

// MembershipStatus returns the configuration in effect and, at a leader, each node's
// progress.
func (rn *RawNode) MembershipStatus() MembershipStatus {
	r := rn.raft
	latest, index := r.confs.latest()
	conf := r.resolve(latest)
	st := MembershipStatus{Membership: conf.Clone(), Index: index, Committed: index <= r.log.committed}
	if r.state != StateLeader {
		return st
	}
	st.Progress = make([]PeerProgress, 0, len(r.progressIDs))
	for _, id := range r.progressIDs {
		pr := r.progress[id]
		st.Progress = append(st.Progress, PeerProgress{
			ID: id, IsVoter: conf.IsVoter(id), IsLearner: conf.IsLearner(id),
			Match: pr.match, Next: pr.next, RecentActive: pr.recentActive, State: pr.state.String(),
		})
		if pr.state == progressSnapshot {
			st.Progress[len(st.Progress)-1].PendingSnapshot = pr.pendingSnapshot
		}
	}
	return st
}

// MembershipAt returns the configuration in effect at index, which must be committed
// and not below the latest snapshot: what a snapshot taken at index records. That is
// the zero Membership while no change has been made up to index: the bootstrap
// configuration, whatever Config.Peers says when the node starts.
func (rn *RawNode) MembershipAt(index uint64) (Membership, error) {
	r := rn.raft
	if index > r.log.committed {
		return Membership{}, fmt.Errorf("raft: configuration at %d asked for, past the commit index %d", index, r.log.committed)
	}
	if first := r.log.firstIndex(); index+1 < first {
		return Membership{}, fmt.Errorf("%w: configuration at %d asked for, the log starts after %d", ErrCompacted, index, first-1)
	}
	return r.membershipAt(index).Clone(), nil
}

// ResolveMembership returns the configuration a Snapshot's Membership stands for on
// this node: itself, or, if empty, the bootstrap one (Config.Peers).
func (rn *RawNode) ResolveMembership(m Membership) Membership { return rn.raft.resolve(m).Clone() }
