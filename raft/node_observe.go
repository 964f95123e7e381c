package raft

import (
	"sync/atomic"
	"time"
)

// Observation is what a Node's run loop last published about itself, for monitoring:
// the leader it knows, its commitIndex, and how often the leader changed. Unlike
// Status it never waits for the run loop, so a metrics scrape or a health probe
// answers at once even while the run loop waits on a slow disk; the price is that it
// may lag the core by one Ready.
type Observation struct {
	// Term is the current term, as State returns it.
	Term uint64
	// Lead is the leader this node knows of in Term, 0 if none.
	Lead uint64
	// IsLeader: this node is the leader.
	IsLeader bool
	// Commit is the commitIndex (§5.3): the highest log index known to be committed.
	Commit uint64
	// LeaderChanges counts the times this node learned of a leader different from
	// the one it knew before, a first leader included: a leader lost and found
	// again counts once more. It is etcd's leader_changes_seen_total.
	LeaderChanges uint64
	// ElectedAt is when this node last became leader (its run loop published the
	// change), the zero time if it never did; it keeps its value after the node
	// steps down. It is etcd's leadElectedTime, which tells a request that timed
	// out whether it started while the previous leader was failing.
	ElectedAt time.Time
}

// observed holds what Observe returns, written by the run loop only.
type observed struct {
	lead, commit, leaderChanges atomic.Uint64
	// electedAt is ElectedAt, nil for never. A time.Time, not Unix nanoseconds: it
	// keeps the monotonic clock reading, so comparing it with a request's start is
	// not fooled by a step of the wall clock.
	electedAt atomic.Pointer[time.Time]
}

// publish records what a Ready says about the leader and the commitIndex.
func (o *observed) publish(soft *SoftState, hard HardState) {
	if soft != nil {
		if soft.Lead != 0 && soft.Lead != o.lead.Load() {
			o.leaderChanges.Add(1)
			if soft.State == StateLeader {
				now := time.Now()
				o.electedAt.Store(&now)
			}
		}
		o.lead.Store(soft.Lead)
	}
	if !hard.IsEmpty() {
		o.commit.Store(hard.Commit)
	}
}

// Observe returns what the run loop last published. It never blocks.
func (n *Node) Observe() Observation {
	return Observation{
		Term:          n.term.Load(),
		Lead:          n.observed.lead.Load(),
		IsLeader:      n.isLeader.Load(),
		Commit:        n.observed.commit.Load(),
		LeaderChanges: n.observed.leaderChanges.Load(),
		ElectedAt:     n.observed.electedAtTime(),
	}
}

// electedAtTime is ElectedAt: the zero time if this node never led.
func (o *observed) electedAtTime() time.Time {
	if t := o.electedAt.Load(); t != nil {
		return *t
	}
	return time.Time{}
}
