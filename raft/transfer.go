package raft

import (
	"errors"
	"fmt"
)

// Leadership transfer (thesis §3.10). The leader stops taking proposals, brings the
// target's log up to its own, then sends it MsgTimeoutNow: the target campaigns at
// once, skipping PreVote, with vote requests marked LeaderTransfer that voters answer
// even within a live leader's CheckQuorum lease. Having the longest log, the target
// wins unless another server times out first. The leader gives up after an election
// timeout and takes proposals again.
//
// Safety is untouched: the target's election is an ordinary one (one vote per term,
// the up-to-date check of §5.4.1), only started early and let through the lease, and
// the lease protects availability, not safety.

var (
	// ErrBadTransferee: the node named for a leadership transfer cannot take it: it
	// is not a voter, or there is no other voter.
	ErrBadTransferee = errors.New("raft: bad leadership transferee")
	// ErrTransferFailed: the leadership transfer did not complete: the target did not
	// become leader within an election timeout, or another node did. The old leader,
	// if still leader, takes proposals again; retry.
	ErrTransferFailed = errors.New("raft: leadership transfer failed")
)

// transferLeadership starts handing leadership to voter to, or, if to is None, to the
// voter whose log is the most up to date.
func (r *raft) transferLeadership(to uint64) error {
	if r.state != StateLeader {
		return ErrNotLeader
	}
	if to == None {
		if to = r.bestTransferTarget(); to == None {
			return fmt.Errorf("%w: no voter but this node in %v", ErrBadTransferee, r.conf)
		}
	}
	if to == r.id {
		return nil // it leads already
	}
	if !r.isVoter(to) {
		return fmt.Errorf("%w: node %d is not a voter in %v", ErrBadTransferee, to, r.conf)
	}
	if r.leadTransferee == to {
		return nil
	}
	r.leadTransferee, r.transferElapsed = to, 0
	pr := r.progress[to]
	r.logger.Info("raft: transferring leadership", "term", r.term, "to", to, "match", pr.match, "last_index", r.log.lastIndex())
	if pr.match == r.log.lastIndex() {
		r.sendTimeoutNow(to)
	} else {
		r.sendAppend(to)
	}
	return nil
}

// bestTransferTarget returns the voter other than this node with the longest log
// known to match the leader's (preferring one heard from lately, then the lowest id),
// or None if there is none.
func (r *raft) bestTransferTarget() uint64 {
	best := None
	for _, id := range r.conf.Voters {
		if id == r.id {
			continue
		}
		pr := r.progress[id]
		if best == None {
			best = id
			continue
		}
		b := r.progress[best]
		if pr.match > b.match || (pr.match == b.match && pr.recentActive && !b.recentActive) {
			best = id
		}
	}
	return best
}

// maybeSendTimeoutNow sends MsgTimeoutNow to from if it is the transfer's target and
// holds the whole log. It repeats on every acknowledgement while the transfer lasts,
// since the message can be lost; a target already campaigning ignores the repeats
// (they carry the old term).
func (r *raft) maybeSendTimeoutNow(from uint64) {
	if from == r.leadTransferee && r.progress[from].match == r.log.lastIndex() {
		r.sendTimeoutNow(from)
	}
}

func (r *raft) sendTimeoutNow(to uint64) {
	r.send(Message{To: to, Type: MsgTimeoutNow})
}

// tickTransfer abandons a transfer that has not completed in an election timeout.
func (r *raft) tickTransfer() {
	if r.leadTransferee == None {
		return
	}
	r.transferElapsed++
	if r.transferElapsed >= r.electionTicks {
		r.logger.Info("raft: leadership transfer abandoned after an election timeout", "term", r.term, "to", r.leadTransferee)
		r.leadTransferee, r.transferElapsed = None, 0
	}
}

// handleTimeoutNow is a follower's answer to MsgTimeoutNow: campaign now, if it may.
func (r *raft) handleTimeoutNow(m Message) {
	if !r.promotable() {
		r.logger.Info("raft: ignoring MsgTimeoutNow, not a voter", "term", r.term, "from", m.From)
		return
	}
	r.logger.Info("raft: campaigning at once for a leadership transfer", "term", r.term, "from", m.From)
	r.campaign(MsgVote, true)
}
