package sim

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"raftkv/raft"
)

// Ack is a command a client saw committed, by the seed's rule: the node it proposed to
// applied, at the index Propose returned, an entry carrying exactly that command. An
// acknowledged command must survive every later fault.
type Ack struct {
	Index uint64
	Data  string
	At    time.Duration
}

// Acks returns every command acknowledged so far, in the order the clients saw them.
func (c *Cluster) Acks() []Ack { return slices.Clone(c.acks) }

// client is a closed-loop client: one request outstanding at a time, sent to the node it
// believes is the leader, with a short think time between requests.
type client struct {
	id         int
	seq        int
	leaderHint uint64
}

// proposal is a client command waiting to be applied on the node it was proposed to.
type proposal struct {
	client *client
	node   *node
	index  uint64
	data   string
	done   bool
}

// pendingRead is a ReadIndex request waiting for its read point. minIndex is the highest
// index any node had applied when it was issued: a linearizable read point is at least
// that (thesis §6.4).
type pendingRead struct {
	client   *client
	node     *node
	ctx      string
	minIndex uint64
	done     bool
}

func (c *Cluster) startClient(id int) {
	cl := &client{id: id}
	c.clients = append(c.clients, cl)
	c.clientNext(cl, 100*time.Millisecond)
}

// clientNext schedules the client's next request after a think time of up to maxWait.
func (c *Cluster) clientNext(cl *client, maxWait time.Duration) {
	c.after(time.Duration(c.rng.Int64N(int64(maxWait)))+time.Millisecond, func() { c.clientRequest(cl) })
}

// pickNode returns the node the client believes is the leader, or a random running
// node, or nil if every node is down.
func (c *Cluster) pickNode(cl *client) *node {
	if cl.leaderHint != 0 {
		if n := c.node(cl.leaderHint); n.rn != nil {
			return n
		}
	}
	var up []*node
	for _, n := range c.nodes {
		if n.rn != nil {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return nil
	}
	return up[c.rng.IntN(len(up))]
}

// redirect updates the client's guess of the leader after node n turned it away.
func (c *Cluster) redirect(cl *client, n *node) {
	cl.leaderHint = 0
	if lead := n.rn.Status().Lead; lead != n.id {
		cl.leaderHint = lead
	}
	c.clientNext(cl, 50*time.Millisecond)
}

func (c *Cluster) clientRequest(cl *client) {
	if c.err != nil || c.clientsStopped {
		return
	}
	n := c.pickNode(cl)
	if n == nil {
		c.clientNext(cl, 200*time.Millisecond)
		return
	}
	if c.opts.ReadRate > 0 && c.rng.Float64() < c.opts.ReadRate {
		c.issueRead(cl, n)
		return
	}
	cl.seq++
	data := fmt.Sprintf("c%d.%d", cl.id, cl.seq)
	index, _, err := n.rn.Propose([]byte(data))
	c.tracef("client %d -> n%d propose %q: index=%d err=%v", cl.id, n.id, data, index, err)
	if err != nil {
		c.handleReady(n)
		c.redirect(cl, n)
		return
	}
	p := &proposal{client: cl, node: n, index: index, data: data}
	if old := n.pendingProposals[index]; old != nil {
		// The node lost leadership and won again: the old proposal's entry was
		// overwritten, so it can never be applied at that index.
		c.abandonProposal(old, "index reused")
	}
	n.pendingProposals[index] = p
	c.after(c.opts.ClientTimeout, func() { c.abandonProposal(p, "timeout") })
	c.handleReady(n)
}

// resolveProposal runs when p's node applies the entry at p's index: the command is
// acknowledged if that entry is p's own, lost otherwise.
func (c *Cluster) resolveProposal(p *proposal, e raft.Entry) {
	if p.done {
		return
	}
	p.done = true
	delete(p.node.pendingProposals, p.index)
	if e.Type == raft.EntryCommand && string(e.Data) == p.data && !c.acksFrozen {
		c.acks = append(c.acks, Ack{Index: p.index, Data: p.data, At: c.now})
		c.tracef("client %d ack %q at %d", p.client.id, p.data, p.index)
		p.client.leaderHint = p.node.id
		c.clientNext(p.client, 50*time.Millisecond)
		return
	}
	c.tracef("client %d lost %q: index %d holds %q", p.client.id, p.data, p.index, e.Data)
	p.client.leaderHint = 0
	c.clientNext(p.client, 50*time.Millisecond)
}

// abandonProposal gives up on p without learning its fate; it may still commit.
func (c *Cluster) abandonProposal(p *proposal, why string) {
	if p.done {
		return
	}
	p.done = true
	if p.node.pendingProposals[p.index] == p {
		delete(p.node.pendingProposals, p.index)
	}
	c.tracef("client %d gives up on %q at n%d index %d: %s", p.client.id, p.data, p.node.id, p.index, why)
	p.client.leaderHint = 0
	c.clientNext(p.client, 100*time.Millisecond)
}

// abandonAll gives up on every request waiting at node n, in a fixed order so that a
// seed replays exactly.
func (c *Cluster) abandonAll(n *node, why string) {
	for _, index := range slices.Sorted(maps.Keys(n.pendingProposals)) {
		c.abandonProposal(n.pendingProposals[index], why)
	}
	for _, ctx := range slices.Sorted(maps.Keys(n.pendingReads)) {
		c.finishRead(n.pendingReads[ctx])
	}
}

func (c *Cluster) issueRead(cl *client, n *node) {
	c.readSeq++
	r := &pendingRead{client: cl, node: n, ctx: fmt.Sprintf("r%d", c.readSeq), minIndex: c.CommittedIndex()}
	err := n.rn.ReadIndex([]byte(r.ctx))
	c.tracef("client %d -> n%d read %s (min %d): err=%v", cl.id, n.id, r.ctx, r.minIndex, err)
	if err != nil {
		c.handleReady(n)
		c.redirect(cl, n)
		return
	}
	n.pendingReads[r.ctx] = r
	c.after(c.opts.ClientTimeout, func() { c.finishRead(r) })
	c.handleReady(n)
}

// readDone checks a read point against the reads waiting for it.
func (c *Cluster) readDone(n *node, rs raft.ReadState) {
	r := n.pendingReads[string(rs.RequestCtx)]
	if r == nil {
		return
	}
	if rs.Index == 0 {
		// The core's refusal: the leader had not yet committed an entry of its term.
		c.tracef("n%d read %s refused", n.id, r.ctx)
		if r.client == nil {
			c.readResults[r.ctx] = 0
		}
		c.finishRead(r)
		return
	}
	if rs.Index < r.minIndex {
		c.violate("linearizable read", "node %d: read %s got read point %d, but index %d was applied before it was issued",
			n.id, r.ctx, rs.Index, r.minIndex)
		return
	}
	c.tracef("n%d read %s at %d", n.id, r.ctx, rs.Index)
	c.readsServed++
	if r.client == nil {
		c.readResults[r.ctx] = rs.Index
	}
	c.finishRead(r)
}

func (c *Cluster) finishRead(r *pendingRead) {
	if r.done {
		return
	}
	r.done = true
	if r.node.pendingReads != nil {
		delete(r.node.pendingReads, r.ctx)
	}
	if r.client != nil {
		c.clientNext(r.client, 50*time.Millisecond)
	}
}

// ReadIndex asks node id for a linearizable read point, as a client would, and returns
// the request's name for ReadResult. The answer is checked like every client read: it
// must be at least every index applied anywhere before now.
func (c *Cluster) ReadIndex(id uint64) (string, error) {
	n := c.node(id)
	if n.rn == nil {
		return "", raft.ErrStopped
	}
	c.readSeq++
	r := &pendingRead{node: n, ctx: fmt.Sprintf("t%d", c.readSeq), minIndex: c.CommittedIndex()}
	err := n.rn.ReadIndex([]byte(r.ctx))
	c.tracef("n%d read %s (min %d): err=%v", id, r.ctx, r.minIndex, err)
	if err == nil {
		n.pendingReads[r.ctx] = r
	}
	c.handleReady(n)
	return r.ctx, err
}

// ReadsServed counts the read points delivered and checked so far.
func (c *Cluster) ReadsServed() int { return c.readsServed }

// ReadResult returns the read point that answered the ReadIndex request named ctx, and
// whether an answer came; a read point of 0 is the core's refusal (its leader had not
// committed an entry of its term yet).
func (c *Cluster) ReadResult(ctx string) (index uint64, answered bool) {
	index, answered = c.readResults[ctx]
	return index, answered
}
