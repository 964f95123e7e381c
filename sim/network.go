package sim

import (
	"time"

	"raftkv/raft"
)

// NetConfig says how the simulated network treats each message. Every message that
// crosses between connected, running nodes is lost with probability LossRate; if not,
// it arrives after a delay drawn uniformly from [MinDelay, MaxDelay], plus with
// probability ReorderRate an extra delay drawn from [0, ReorderDelay] so that later
// messages overtake it; with probability DuplicateRate a second copy travels with its
// own delay.
type NetConfig struct {
	MinDelay      time.Duration
	MaxDelay      time.Duration
	LossRate      float64
	DuplicateRate float64
	ReorderRate   float64
	ReorderDelay  time.Duration
}

// ReliableNet is a LAN that neither loses, duplicates nor reorders by much: 1-5 ms.
func ReliableNet() NetConfig {
	return NetConfig{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
}

// UnreliableNet mirrors MIT 6.824's unreliable network: a tenth of messages lost, some
// duplicated, and a fifth held back long enough to arrive after much later traffic.
func UnreliableNet() NetConfig {
	return NetConfig{
		MinDelay:      time.Millisecond,
		MaxDelay:      27 * time.Millisecond,
		LossRate:      0.1,
		DuplicateRate: 0.05,
		ReorderRate:   0.2,
		ReorderDelay:  800 * time.Millisecond,
	}
}

// NetStats counts what the network did since the cluster started.
type NetStats struct {
	// Sent counts messages handed to the network, by raft.MessageType.
	Sent [32]int
	// Delivered counts messages stepped into a receiver (duplicates included).
	Delivered int
	// Dropped counts messages lost to a partition, a crash or LossRate.
	Dropped int
	// Duplicated counts the extra copies the network made.
	Duplicated int
	// StaleDelivered counts, by raft.MessageType, messages stepped into a node
	// although their sender or receiver crashed since they were sent
	// (Options.StaleRate); StaleParked those held for a receiver that was down.
	StaleDelivered [32]int
	StaleParked    int
}

// TotalSent is the number of messages of every type handed to the network.
func (s NetStats) TotalSent() int {
	total := 0
	for _, n := range s.Sent {
		total += n
	}
	return total
}

// network holds the fault state: which group each node is in and the message model.
// Two nodes can talk when they are in the same group; a partition is any assignment of
// nodes to groups.
type network struct {
	cfg NetConfig
	// group[id-1] is the partition group of node id.
	group     []int
	nextGroup int
	stats     NetStats
}

func (n *network) connected(a, b uint64) bool { return n.group[a-1] == n.group[b-1] }

// Partition splits the cluster into the given groups; nodes in the same group can talk,
// nodes in different groups cannot. A node listed in no group is cut off from everyone.
func (c *Cluster) Partition(groups ...[]uint64) {
	for i := range c.net.group {
		c.net.group[i] = c.freshGroup()
	}
	for _, g := range groups {
		id := c.freshGroup()
		for _, member := range g {
			c.net.group[member-1] = id
		}
	}
	c.tracef("net: partition %v", groups)
}

// Heal reconnects every node with every other.
func (c *Cluster) Heal() {
	for i := range c.net.group {
		c.net.group[i] = 0
	}
	c.tracef("net: heal")
}

// Disconnect cuts node id off from every other node (MIT 6.824's disconnect).
func (c *Cluster) Disconnect(id uint64) {
	c.net.group[id-1] = c.freshGroup()
	c.tracef("net: disconnect %d", id)
}

// Connect puts node id back into the main group, the one Heal puts everyone in.
func (c *Cluster) Connect(id uint64) {
	c.net.group[id-1] = 0
	c.tracef("net: connect %d", id)
}

// Connected reports whether nodes a and b can currently exchange messages.
func (c *Cluster) Connected(a, b uint64) bool { return c.net.connected(a, b) }

// SetNet changes the message model from now on; messages in flight keep their delay.
func (c *Cluster) SetNet(cfg NetConfig) {
	c.net.cfg = cfg
	c.tracef("net: %+v", cfg)
}

// Intercept lets fn see, and rewrite, every message before the network decides its
// fate; a message for which fn returns false is dropped. nil removes the hook. Tests
// use it to stage exact scenarios: fn may drop a message or shorten its Entries (the
// result must still be a message the sender could have sent), never write into them.
func (c *Cluster) Intercept(fn func(m *raft.Message) bool) { c.intercept = fn }

// Stats returns the network counters.
func (c *Cluster) Stats() NetStats { return c.net.stats }

func (c *Cluster) freshGroup() int {
	c.net.nextGroup++
	return c.net.nextGroup
}

// delay draws one message's transit time.
func (c *Cluster) delay() time.Duration {
	cfg := &c.net.cfg
	d := cfg.MinDelay
	if cfg.MaxDelay > cfg.MinDelay {
		d += time.Duration(c.rng.Int64N(int64(cfg.MaxDelay - cfg.MinDelay + 1)))
	}
	if cfg.ReorderRate > 0 && cfg.ReorderDelay > 0 && c.rng.Float64() < cfg.ReorderRate {
		d += time.Duration(c.rng.Int64N(int64(cfg.ReorderDelay) + 1))
	}
	return d
}

// send hands one message from node from to the network. Messages to a node that is down
// or cut off are dropped at once and the sender hears that the peer is unreachable, as a
// real transport notices a broken stream; a dropped snapshot is reported as failed.
func (c *Cluster) send(from *node, m raft.Message) { c.transmit(from, m, false) }

// transmit is send; held says the message waited for a write in AsyncWrites mode, and
// what it claims was checked when that write became durable.
func (c *Cluster) transmit(from *node, m raft.Message, held bool) {
	c.checkOutgoing(from, m, held)
	if m.Type.IsLocal() || m.To == raft.None || m.To > uint64(len(c.nodes)) {
		c.violate("message", "node %d sent %v: a local type or an unknown recipient", from.id, m)
		return
	}
	c.net.stats.Sent[m.Type%32]++
	if c.onSend != nil {
		c.onSend(m)
	}
	if c.intercept != nil && !c.intercept(&m) {
		c.net.stats.Dropped++
		c.tracef("drop %v (filtered)", m)
		c.reportLater(from, m.To, false, snapReportFor(m, true))
		return
	}
	to := c.nodes[m.To-1]
	if to.rn == nil || !c.net.connected(from.id, to.id) {
		c.reportLater(from, m.To, true, snapReportFor(m, true))
		if to.rn == nil && c.keepStale() {
			// The sender's transport keeps it queued for the peer that is down.
			c.park(to, copyMessage(m), from.incarnation)
			return
		}
		c.net.stats.Dropped++
		c.tracef("drop %v (unreachable)", m)
		return
	}
	if c.net.cfg.LossRate > 0 && c.rng.Float64() < c.net.cfg.LossRate {
		c.net.stats.Dropped++
		c.tracef("drop %v (lost)", m)
		c.reportLater(from, m.To, false, snapReportFor(m, true))
		return
	}
	for i := range c.copies() {
		c.enqueue(copyMessage(m), from.incarnation, to.incarnation, i == 0, false)
	}
}

// enqueue puts one copy of m on the wire, to arrive after a delay drawn from the
// message model. fromInc and toInc are the incarnations it was sent from and to;
// report says the sender's transport tells the sender how a snapshot went (the first
// copy of a message the sender's current incarnation sent); parked says it was held
// for toInc while that incarnation's node was down.
func (c *Cluster) enqueue(m raft.Message, fromInc, toInc uint64, report, parked bool) {
	c.queue.push(c.now+c.delay(), func() { c.deliver(m, fromInc, toInc, report, parked) })
}

// deliver steps a message into its recipient, unless a partition now separates them.
// A message whose sender or receiver crashed since it was sent is lost, unless it is
// kept (Options.StaleRate): then it reaches the receiver's current incarnation if that
// is up, as a late message from the network would; if the receiver is down, the
// sender's transport holds it until the receiver restarts (park), and loses it if the
// sender crashes first.
func (c *Cluster) deliver(m raft.Message, fromInc, toInc uint64, report, parked bool) {
	from, to := c.nodes[m.From-1], c.nodes[m.To-1]
	senderCrashed, receiverCrashed := from.incarnation != fromInc, to.incarnation != toInc
	isSnap := m.Type == raft.MsgSnap && report && !senderCrashed
	stale := parked || senderCrashed || receiverCrashed
	if senderCrashed || receiverCrashed {
		if isSnap {
			// The sender's transport saw the stream break when the receiver went down.
			c.reportLater(from, to.id, false, snapFailed)
			isSnap = false
		}
		if !c.keepStale() {
			c.net.stats.Dropped++
			if senderCrashed {
				// The sender crashed after sending: the crash takes its in-flight messages.
				c.tracef("drop %v (sender crashed)", m)
			} else {
				c.tracef("drop %v (receiver crashed)", m)
			}
			return
		}
		if to.rn == nil {
			if senderCrashed {
				c.net.stats.Dropped++
				c.tracef("drop %v (sender crashed, receiver down)", m)
				return
			}
			c.park(to, m, fromInc)
			return
		}
	}
	if to.rn == nil || !c.net.connected(from.id, to.id) {
		c.net.stats.Dropped++
		c.tracef("drop %v (receiver down or cut off)", m)
		if isSnap {
			c.reportLater(from, to.id, false, snapFailed)
		}
		return
	}
	c.net.stats.Delivered++
	if stale {
		c.net.stats.StaleDelivered[m.Type%32]++
		c.tracef("recv %v (stale: sender incarnation %d, now %d; receiver incarnation %d, now %d; parked %v)",
			m, fromInc, from.incarnation, toInc, to.incarnation, parked)
	} else {
		c.tracef("recv %v", m)
	}
	if err := to.rn.Step(m); err != nil {
		c.tracef("n%d step %v: %v", to.id, m.Type, err)
	}
	c.handleReady(to)
	if isSnap {
		c.reportLater(from, to.id, false, snapDone)
	}
}

// keepStale draws whether a message in flight when one of its ends crashed survives.
// It draws nothing when Options.StaleRate is 0, so that such runs replay as before.
func (c *Cluster) keepStale() bool {
	rate := c.opts.StaleRate
	return rate > 0 && (rate >= 1 || c.rng.Float64() < rate)
}

// parkedMsg is a message for a node that is down, held by its sender's transport:
// fromInc is the sender's incarnation, whose crash loses it.
type parkedMsg struct {
	m       raft.Message
	fromInc uint64
}

// parkedPerSender bounds how many messages one sender's transport keeps for a peer
// that is down; the rest are dropped, as from a full send buffer.
const parkedPerSender = 64

// park holds m for node to, down, until it restarts.
func (c *Cluster) park(to *node, m raft.Message, fromInc uint64) {
	held := 0
	for _, p := range to.parked {
		if p.m.From == m.From {
			held++
		}
	}
	if held >= parkedPerSender {
		c.net.stats.Dropped++
		c.tracef("drop %v (receiver down, sender's queue for it full)", m)
		return
	}
	c.net.stats.StaleParked++
	c.tracef("park %v (receiver down)", m)
	to.parked = append(to.parked, parkedMsg{m: m, fromInc: fromInc})
}

// releaseParked runs as node n restarts: every message parked for it whose sender has
// not crashed since goes back on the wire, each with its own delay (so reordering
// applies) and, at DuplicateRate, a second copy, as a transport reconnecting and
// flushing its queue through the network would.
func (c *Cluster) releaseParked(n *node) {
	parked := n.parked
	n.parked = nil
	for _, p := range parked {
		from := c.nodes[p.m.From-1]
		if from.incarnation != p.fromInc {
			c.net.stats.Dropped++
			c.tracef("drop %v (parked, sender crashed)", p.m)
			continue
		}
		for i := range c.copies() {
			m := p.m
			if i > 0 {
				m = copyMessage(p.m)
			}
			c.enqueue(m, p.fromInc, n.incarnation, false, true)
		}
	}
}

// copies draws how many copies of a message the network delivers: two at
// DuplicateRate, else one.
func (c *Cluster) copies() int {
	if c.net.cfg.DuplicateRate > 0 && c.rng.Float64() < c.net.cfg.DuplicateRate {
		c.net.stats.Duplicated++
		return 2
	}
	return 1
}

// snapReport is what the transport tells a leader about a snapshot it sent.
type snapReport uint8

const (
	noSnapReport snapReport = iota
	snapFailed
	snapDone
)

func snapReportFor(m raft.Message, failed bool) snapReport {
	switch {
	case m.Type != raft.MsgSnap:
		return noSnapReport
	case failed:
		return snapFailed
	}
	return snapDone
}

// reportLater tells node from, a moment from now and if it has not crashed meanwhile,
// that its messages to peer cannot get through and how a snapshot to peer went.
func (c *Cluster) reportLater(from *node, peer uint64, unreachable bool, snap snapReport) {
	if !unreachable && snap == noSnapReport {
		return
	}
	inc := from.incarnation
	c.queue.push(c.now+time.Millisecond, func() {
		if from.incarnation != inc || from.rn == nil {
			return
		}
		if unreachable {
			from.rn.ReportUnreachable(peer)
		}
		if snap != noSnapReport {
			from.rn.ReportSnapshot(peer, snap == snapFailed)
		}
		c.handleReady(from)
	})
}

// copyMessage deep-copies m, as serialising it onto a wire would: the receiver must
// never share memory with the sender's log.
func copyMessage(m raft.Message) raft.Message {
	if len(m.Entries) > 0 {
		ents := make([]raft.Entry, len(m.Entries))
		for i, e := range m.Entries {
			e.Data = cloneBytes(e.Data)
			ents[i] = e
		}
		m.Entries = ents
	}
	if m.Snapshot != nil {
		snap := *m.Snapshot
		snap.Data = cloneBytes(snap.Data)
		m.Snapshot = &snap
	}
	m.Context = cloneBytes(m.Context)
	return m
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
