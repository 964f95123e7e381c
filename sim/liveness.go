package sim

import (
	"fmt"
	"strings"
	"time"

	"raftkv/raft"
)

// livenessProbe checks that a group of nodes makes progress: within the bound, some
// leader among them must commit a fresh proposal that every member then applies.
type livenessProbe struct {
	id           int
	group        []uint64
	deadline     time.Duration
	proposals    []probeProposal
	lastProposal time.Duration
	lastErr      error
	done         bool
}

type probeProposal struct {
	index uint64
	data  string
}

// probeRetry is how long the probe waits on a proposal before proposing another: the
// first may have gone to a leader that lost its term.
const probeRetry = time.Second

// AwaitLiveness checks liveness for group, a set of running nodes that can all talk to
// each other: it runs the cluster until a leader in group has committed a fresh
// proposal and every node of group that is a member of the committed configuration has
// applied it. Taking longer than Options.LivenessBound is a violation.
func (c *Cluster) AwaitLiveness(group []uint64) error {
	p := c.startProbe(group)
	_, err := c.RunUntil(c.opts.LivenessBound+time.Second, func() bool { return p.done })
	return err
}

// Settle ends every fault and the clients' traffic: it heals the network, makes it
// reliable, restarts every crashed node and then requires the whole cluster to make
// progress (AwaitLiveness). Every command acknowledged before the fresh proposal
// committed sits below it, so all of them are then applied everywhere; later
// acknowledgements are not counted, which fixes the set CheckFinal checks.
func (c *Cluster) Settle() error {
	c.clientsStopped = true
	c.Heal()
	c.SetNet(ReliableNet())
	all := make([]uint64, 0, len(c.nodes))
	for _, n := range c.nodes {
		c.Restart(n.id)
		n.crashAt = noCrash
		all = append(all, n.id)
	}
	err := c.AwaitLiveness(all)
	c.acksFrozen = true
	return err
}

func (c *Cluster) startProbe(group []uint64) *livenessProbe {
	if c.probe != nil {
		c.probe.done = true
	}
	id := 1
	if c.probe != nil {
		id = c.probe.id + 1
	}
	p := &livenessProbe{id: id, group: group, deadline: c.now + c.opts.LivenessBound}
	c.probe = p
	c.tracef("liveness probe %d: group %v must commit by %v", p.id, group, p.deadline)
	c.probeStep(p)
	return p
}

func (c *Cluster) probeStep(p *livenessProbe) {
	if p.done || c.err != nil {
		return
	}
	if c.probeCommitted(p) {
		p.done = true
		c.counters.LivenessChecks++
		c.tracef("liveness probe %d: ok", p.id)
		return
	}
	if c.now >= p.deadline {
		c.violate("liveness", "group %v was connected and stable for %v but did not commit a fresh proposal on every member (%d proposed, last refusal: %v); %s",
			p.group, c.opts.LivenessBound, len(p.proposals), p.lastErr, c.describeNodes())
		return
	}
	if len(p.proposals) == 0 || c.now-p.lastProposal >= probeRetry {
		if lead := c.leaderIn(p.group); lead != nil {
			data := fmt.Sprintf("probe%d.%d", p.id, len(p.proposals)+1)
			if index, _, err := lead.rn.Propose([]byte(data)); err == nil {
				p.proposals = append(p.proposals, probeProposal{index: index, data: data})
				p.lastProposal = c.now
				c.tracef("liveness probe %d: n%d proposed %q at %d", p.id, lead.id, data, index)
			} else {
				p.lastErr = err
			}
			c.handleReady(lead)
		}
	}
	c.after(20*time.Millisecond, func() { c.probeStep(p) })
}

// probeCommitted reports whether every member of the group has applied one of the
// probe's proposals.
func (c *Cluster) probeCommitted(p *livenessProbe) bool {
	for _, prop := range p.proposals {
		if data, ok := c.Command(prop.index); !ok || string(data) != prop.data {
			continue
		}
		all := true
		for _, id := range p.group {
			if !c.isMember(id) {
				continue // not in the cluster (yet, or any more): not held to it
			}
			if n := c.node(id); n.rn == nil || n.app.applied < prop.index {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// leaderIn returns the running leader with the highest term in group, or nil.
func (c *Cluster) leaderIn(group []uint64) *node {
	var best *node
	var bestTerm uint64
	for _, id := range group {
		n := c.node(id)
		if n.rn == nil {
			continue
		}
		if st := n.rn.Status(); st.State == raft.StateLeader && st.Term >= bestTerm {
			best, bestTerm = n, st.Term
		}
	}
	return best
}

// describeNodes summarises every node for a failure message.
func (c *Cluster) describeNodes() string {
	var b strings.Builder
	for i, n := range c.nodes {
		if i > 0 {
			b.WriteString("; ")
		}
		if n.rn == nil {
			fmt.Fprintf(&b, "n%d down (hs=%+v)", n.id, n.durable)
			continue
		}
		st := n.rn.Status()
		fmt.Fprintf(&b, "n%d %v term=%d vote=%d lead=%d commit=%d applied=%d last=%d group=%d",
			n.id, st.State, st.Term, st.Vote, st.Lead, st.Commit, n.app.applied, st.LastIndex, c.net.group[i])
		if c.opts.ConfChanges {
			ms := n.rn.MembershipStatus()
			fmt.Fprintf(&b, " conf=%v@%d", ms.Membership, ms.Index)
		}
	}
	if c.opts.ConfChanges {
		fmt.Fprintf(&b, "; committed configuration %v, possible %v", c.Membership(), c.possibleConfs())
	}
	return b.String()
}
