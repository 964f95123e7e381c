package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"raftkv/raft"
)

// Options configure a Cluster. The zero value of each field takes the default named in
// its comment.
type Options struct {
	// Nodes is the cluster's initial size; ids are 1..Nodes, its bootstrap
	// configuration. Nodes added later take the next ids. Default 5.
	Nodes int
	// Seed drives every random choice: network delays and faults, election timeouts,
	// client timing. The same Options give the same run.
	Seed int64
	// TickInterval is the virtual length of one raft tick. Default 100ms.
	TickInterval time.Duration
	// Net is the message model at start. Default ReliableNet().
	Net NetConfig
	// SnapshotEvery makes each node's application compact the log every this many
	// applied entries. Zero never compacts.
	SnapshotEvery int
	// Clients is the number of background clients, each with one request outstanding at
	// a time: proposals and, at ReadRate, ReadIndex reads.
	Clients int
	// ReadRate is the fraction of client requests that are reads.
	ReadRate float64
	// ClientTimeout is how long a client waits for its command to apply on the node it
	// proposed to before giving up on it. Default 3s.
	ClientTimeout time.Duration
	// LivenessBound is how long a connected, stable majority may take to elect a leader
	// and commit a fresh proposal on every member. Default 10s.
	LivenessBound time.Duration
	// Configure, if set, adjusts each node's raft.Config before it starts (after the
	// simulator has filled it in: ElectionTicks 10, HeartbeatTicks 1).
	Configure func(*raft.Config)
	// Trace, if set, receives a line for every event and the cores' debug logs.
	Trace io.Writer
	// Storage, if set, gives each node its durable storage, to run the simulator over
	// a real Storage (package storage's tests do, on a crashable file system). Nil
	// means raft.MemoryStorage, whose writes are durable the moment they return.
	Storage StorageFactory
	// AsyncWrites makes each node pipeline its writes as raft.Node does over a
	// raft.AsyncStorage: a write is queued and becomes durable at a later flush of
	// the node's simulated disk, the messages that depend on it wait for that flush,
	// and a crash loses what was not yet durable (see async.go). With a Storage, the
	// storage must implement raft.AsyncStorage.
	AsyncWrites bool
	// ConfChanges makes RunChaos change the configuration among its faults: add
	// learners and voters (new nodes, with empty logs), promote learners, remove
	// members (the leader too), replace a voter, transfer leadership (see
	// membership.go).
	ConfChanges bool
	// StaleRate is the probability that a message in flight when its receiver or its
	// sender crashes is not lost with the crash. Such a message reaches the receiver's
	// next incarnation: at once if the receiver is up again when it arrives (the
	// network delivered it late); if the receiver is down then, once it restarts,
	// with a fresh delay (the sender's transport kept it queued and delivers it on
	// reconnecting), unless the sender crashes first. Zero loses them all.
	StaleRate float64
}

// ErrStorageCrash, wrapped in an error from a storage write, says the storage crashed
// in the middle of that write (a StorageFactory injecting power losses): the
// simulator crashes the node there, as the power loss would have.
var ErrStorageCrash = errors.New("sim: storage crashed mid-write")

// StorageFactory makes and crashes nodes' storage.
type StorageFactory interface {
	// Open returns node id's storage holding what survived its crashes (empty the
	// first time).
	Open(id uint64) (raft.Storage, error)
	// Crash makes node id's storage lose whatever it had not made durable; the
	// simulator then opens it again.
	Crash(id uint64)
}

func (o Options) withDefaults() Options {
	if o.Nodes == 0 {
		o.Nodes = 5
	}
	if o.TickInterval == 0 {
		o.TickInterval = 100 * time.Millisecond
	}
	if o.Net == (NetConfig{}) {
		o.Net = ReliableNet()
	}
	if o.ClientTimeout == 0 {
		o.ClientTimeout = 3 * time.Second
	}
	if o.LivenessBound == 0 {
		o.LivenessBound = 10 * time.Second
	}
	return o
}

// Cluster is a whole Raft cluster simulated in one goroutine: Nodes cores, their
// storage and applications, the network between them and the clients in front of them,
// all driven by one event queue in virtual time. Every event is followed by the
// invariant checks; the first violation stops the run and is returned by Err.
//
// A Cluster is not safe for concurrent use; run many clusters in parallel instead.
type Cluster struct {
	opts Options
	rng  *rand.Rand
	// hedgeRng draws the read hedges' delays (scheduleHedge), apart from rng so that
	// every other draw of a seed is what it was before hedges were simulated.
	hedgeRng *rand.Rand
	now      time.Duration
	queue    eventQueue
	// nodes[id-1] is node id: the bootstrap members 1..Options.Nodes, then every node
	// added since, removed ones included (they keep running, to show they disrupt
	// nothing). peers are the bootstrap members.
	nodes []*node
	peers []uint64
	net   network
	check checker
	// confProposals are the configuration changes proposed whose index is not yet
	// applied anywhere: each may be in effect somewhere (membership.go).
	confProposals []confProposal
	// replacing is a voter whose removal was proposed to replace it: a voter is
	// added once it is gone.
	replacing uint64
	// preVote says the cores run PreVote (Options.Configure may turn it off).
	preVote bool

	clients []*client
	acks    []Ack
	// clientsStopped: clients send no new requests. acksFrozen: no more commands are
	// acknowledged, so that CheckFinal sees a fixed set.
	clientsStopped bool
	acksFrozen     bool
	probe          *livenessProbe
	readSeq        uint64
	// readResults holds the answers to reads issued through ReadIndex.
	readResults map[string]uint64
	readsServed int

	counters Counters

	onSend    func(raft.Message)
	intercept func(*raft.Message) bool
	err       error
	trace     io.Writer
}

// node is one member: its durable storage, which survives crashes, and everything
// volatile, which does not.
type node struct {
	id      uint64
	storage raft.Storage
	// rn is nil while the node is down.
	rn *raft.RawNode
	// incarnation changes at every crash and restart; events and messages that belong
	// to an older incarnation are discarded.
	incarnation uint64
	app         appState
	// durable is the HardState last made durable, the one a restart reads back;
	// written is the last one written, which in AsyncWrites mode may still be queued.
	durable, written raft.HardState
	// disk holds the writes queued and not yet durable, in AsyncWrites mode.
	disk *asyncDisk
	// crashAt, if set, crashes the node at that point of its next Ready.
	crashAt crashPoint
	// parked holds, while the node is down, messages sent to an earlier incarnation
	// that its peers' transports keep for it (Options.StaleRate).
	parked []parkedMsg
	// pendingProposals maps an index to the client command proposed there.
	pendingProposals map[uint64]*proposal
	// pendingReads maps a ReadIndex request context to the read waiting for it.
	pendingReads map[string]*pendingRead
	// lastState and leaderTerm are the role last seen and the last term it was seen
	// leading in, so that each term's leader is checked once.
	lastState  raft.StateType
	leaderTerm uint64
	// commitScheduled: a SendCommit is due, as the Node's commit timer would run it.
	commitScheduled bool
	// hedgeFor is the read a HedgeReadIndex is due for (RawNode.ReadToHedge), as the
	// Node's hedge timer would run it; nil for none.
	hedgeFor []byte
	// joined: the node was added to a running cluster; it starts with no Peers.
	joined bool
	// removed: a committed configuration entry removed it. candidaciesAfterRemoval
	// counts the elections it started since (see checkCampaign).
	removed                 bool
	candidaciesAfterRemoval int
}

// crashPoint names a place inside Ready handling where a node can crash.
type crashPoint uint8

const (
	noCrash crashPoint = iota
	// crashAfterPersist: the Ready's state is durable, its messages never leave.
	crashAfterPersist
	// crashAfterSend: messages left, nothing was applied and Advance never ran.
	crashAfterSend
	// crashBeforeRelease (AsyncWrites): at the node's next flush, its writes are
	// durable but the messages waiting for them never leave and AckDurable never runs.
	crashBeforeRelease
)

// NewCluster starts a cluster with every node up and connected.
func NewCluster(opts Options) *Cluster {
	opts = opts.withDefaults()
	c := &Cluster{
		opts:        opts,
		rng:         rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed5eed)),
		hedgeRng:    rand.New(rand.NewPCG(uint64(opts.Seed), 0x4ed9e)),
		trace:       opts.Trace,
		readResults: map[string]uint64{},
	}
	c.net = network{cfg: opts.Net, group: make([]int, opts.Nodes)}
	for i := range opts.Nodes {
		c.peers = append(c.peers, uint64(i+1))
	}
	c.check = newChecker(raft.Membership{Voters: c.peers})
	probe := raft.Config{}
	if opts.Configure != nil {
		opts.Configure(&probe)
	}
	c.preVote = !probe.DisablePreVote
	for _, id := range c.peers {
		n := &node{id: id}
		if opts.Storage == nil {
			n.storage = c.memoryStorage(id)
		} else {
			st, err := opts.Storage.Open(id)
			if err != nil {
				panic(fmt.Sprintf("sim: opening storage of node %d: %v", id, err))
			}
			n.storage = st
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		c.start(n)
	}
	for i := range opts.Clients {
		c.startClient(i + 1)
	}
	return c
}

// Now is the virtual time since the cluster started.
func (c *Cluster) Now() time.Duration { return c.now }

// Seed is the seed the cluster runs with.
func (c *Cluster) Seed() int64 { return c.opts.Seed }

// Size is the number of nodes, removed ones included.
func (c *Cluster) Size() int { return len(c.nodes) }

// Err returns the first invariant violation, or nil.
func (c *Cluster) Err() error { return c.err }

// OnSend registers fn to see every message a node hands to the network, before the
// network decides its fate. Tests use it to count messages.
func (c *Cluster) OnSend(fn func(raft.Message)) { c.onSend = fn }

// RunFor runs every event in the next d of virtual time and returns the first
// violation, if any. A d of zero or less runs nothing: the clock never goes back
// (RunChaos's last span, end minus now, is negative after a liveness probe that ran
// past the end; it set the clock back 5.5 s in seed 92003237, and so cut the next
// probe's bound short).
func (c *Cluster) RunFor(d time.Duration) error {
	end := c.now + max(d, 0)
	for c.err == nil && c.queue.len() > 0 && c.queue.peekTime() <= end {
		c.step()
	}
	if c.err == nil {
		c.now = end
	}
	return c.err
}

// RunUntil runs until cond holds (checked after every event) or limit of virtual time
// has passed. It reports whether cond held; the error is the first violation.
func (c *Cluster) RunUntil(limit time.Duration, cond func() bool) (bool, error) {
	end := c.now + max(limit, 0)
	for c.err == nil {
		if cond() {
			return true, nil
		}
		if c.queue.len() == 0 || c.queue.peekTime() > end {
			c.now = end
			return cond(), c.err
		}
		c.step()
	}
	return false, c.err
}

func (c *Cluster) step() {
	ev := c.queue.pop()
	c.now = ev.at
	ev.run()
}

// after schedules fn at d from now.
func (c *Cluster) after(d time.Duration, fn func()) { c.queue.push(c.now+d, fn) }

func (c *Cluster) node(id uint64) *node {
	if id == 0 || id > uint64(len(c.nodes)) {
		panic(fmt.Sprintf("sim: no node %d in a cluster of %d", id, len(c.nodes)))
	}
	return c.nodes[id-1]
}

// start brings node n up on what its storage holds: a new core, and an application
// rebuilt from the storage's snapshot.
func (c *Cluster) start(n *node) {
	snap, err := n.storage.Snapshot()
	if err != nil {
		c.violate("storage", "node %d: Snapshot: %v", n.id, err)
		return
	}
	n.app = appState{hash: initialHash}
	if !snap.IsEmpty() {
		if !c.restoreApp(n, snap) {
			return
		}
	}
	hs, err := n.storage.InitialState()
	if err != nil {
		c.violate("storage", "node %d: InitialState: %v", n.id, err)
		return
	}
	n.durable, n.written = hs, hs
	if c.opts.AsyncWrites {
		disk, err := c.newAsyncDisk(n)
		if err != nil {
			c.violate("storage", "node %d: %v", n.id, err)
			return
		}
		n.disk = disk
	}
	peers := c.peers
	if n.joined {
		peers = nil
	}
	cfg := raft.Config{
		ID:             n.id,
		Peers:          peers,
		ElectionTicks:  10,
		HeartbeatTicks: 1,
		Storage:        n.storage,
		Applied:        snap.Index,
		RandSeed:       c.rng.Int64N(1<<62) + 1,
	}
	if c.trace != nil {
		cfg.Logger = c.logger(n.id)
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	rn, err := raft.NewRawNode(cfg)
	if err != nil {
		c.violate("restart", "node %d: NewRawNode on its own storage (hs=%+v snap=%d): %v", n.id, hs, snap.Index, err)
		return
	}
	n.rn = rn
	n.incarnation++
	n.crashAt = noCrash
	n.pendingProposals = map[uint64]*proposal{}
	n.pendingReads = map[string]*pendingRead{}
	n.lastState = raft.StateFollower
	n.leaderTerm = 0
	n.commitScheduled = false
	n.hedgeFor = nil
	c.tracef("n%d up: hs=%+v snapshot=%d applied=%d", n.id, hs, snap.Index, n.app.applied)
	// Nodes tick at the same rate but out of phase, as real clocks would.
	inc := n.incarnation
	c.after(time.Duration(c.rng.Int64N(int64(c.opts.TickInterval)))+1, func() { c.tick(n, inc) })
	c.releaseParked(n)
	c.handleReady(n)
}

func (c *Cluster) tick(n *node, inc uint64) {
	if n.incarnation != inc || n.rn == nil {
		return
	}
	n.rn.Tick()
	c.handleReady(n)
	c.after(c.opts.TickInterval, func() { c.tick(n, inc) })
}

// IsUp reports whether node id is running.
func (c *Cluster) IsUp(id uint64) bool { return c.node(id).rn != nil }

// Status returns node id's core status; a node that is down reports only its ID and
// durable HardState.
func (c *Cluster) Status(id uint64) raft.Status {
	n := c.node(id)
	if n.rn == nil {
		return raft.Status{ID: id, Term: n.durable.Term, Vote: n.durable.Vote, Commit: n.durable.Commit}
	}
	return n.rn.Status()
}

// Leader returns the leader with the highest term among running nodes.
func (c *Cluster) Leader() (uint64, bool) {
	var leader, term uint64
	for _, n := range c.nodes {
		if n.rn == nil {
			continue
		}
		if st := n.rn.Status(); st.State == raft.StateLeader && st.Term >= term {
			leader, term = n.id, st.Term
		}
	}
	return leader, leader != 0
}

// Propose proposes data at node id and processes the resulting Ready.
func (c *Cluster) Propose(id uint64, data []byte) (index, term uint64, err error) {
	n := c.node(id)
	if n.rn == nil {
		return 0, 0, raft.ErrStopped
	}
	index, term, err = n.rn.Propose(data)
	c.tracef("n%d propose %q: index=%d term=%d err=%v", id, data, index, term, err)
	c.handleReady(n)
	return index, term, err
}

// Campaign makes node id start an election now.
func (c *Cluster) Campaign(id uint64) error {
	n := c.node(id)
	if n.rn == nil {
		return raft.ErrStopped
	}
	err := n.rn.Campaign()
	c.handleReady(n)
	return err
}

// AppliedIndex is the last index node id's application has applied (0 when down).
func (c *Cluster) AppliedIndex(id uint64) uint64 { return c.node(id).app.applied }

// Command returns the command committed at index, as the first node to apply it saw it
// (the checker makes sure every other node saw the same), and whether any node has
// applied that index yet. A no-op entry returns nil, true.
func (c *Cluster) Command(index uint64) ([]byte, bool) {
	if index == 0 || index >= uint64(len(c.check.committed)) {
		return nil, false
	}
	rec := c.check.committed[index]
	if rec.entryType != raft.EntryCommand {
		return nil, true
	}
	return []byte(rec.data), true
}

// CommittedIndex is the highest index any node has applied.
func (c *Cluster) CommittedIndex() uint64 { return uint64(len(c.check.committed) - 1) }

// handleReady drives node n through every Ready it has, in the order the contract in
// raft/rawnode.go demands, checking invariants at each stage.
func (c *Cluster) handleReady(n *node) {
	defer c.scheduleHedge(n)
	defer c.scheduleSendCommit(n)
	for c.err == nil && n.rn != nil && n.rn.HasReady() {
		rd := n.rn.Ready()
		c.tracef("n%d ready: %s", n.id, describeReady(&rd))
		if n.disk != nil {
			if !c.handleReadyAsync(n, rd) {
				return
			}
			c.maybeCompact(n)
			continue
		}
		if !c.persist(n, &rd) {
			return
		}
		if n.crashAt == crashAfterPersist {
			c.counters.CrashesMidReady++
			c.crash(n)
			return
		}
		for _, m := range rd.Messages {
			c.send(n, m)
		}
		if n.crashAt == crashAfterSend {
			c.counters.CrashesMidReady++
			c.crash(n)
			return
		}
		if !c.applyReady(n, &rd) {
			return
		}
		n.rn.Advance(rd)
		c.maybeCompact(n)
	}
}

// scheduleSendCommit does what the Node's commit timer does: a leader holding a
// commit index back from a follower sends it a moment later (raft.Config.CommitDelay),
// here up to a tenth of a tick, drawn from the seed (RawNode.SendCommitAfter of it,
// which is longer after a SendCommit that held appends back).
func (c *Cluster) scheduleSendCommit(n *node) {
	if c.err != nil || n.rn == nil || n.commitScheduled || !n.rn.HasUnsentCommit() {
		return
	}
	n.commitScheduled = true
	inc := n.incarnation
	delay := time.Duration(c.rng.Int64N(int64(c.opts.TickInterval)/10)) + 1
	c.after(n.rn.SendCommitAfter(delay), func() {
		if n.incarnation != inc || n.rn == nil {
			return
		}
		n.commitScheduled = false
		n.rn.SendCommit()
		c.handleReady(n)
	})
}

// scheduleHedge does what the Node's hedge timer does: a leader whose oldest waiting
// read could be completed sooner by a hedge (RawNode.ReadToHedge), whichever node it
// came from, hedges it a moment later if it still waits (raft.Config.
// ReadIndexHedgeDelay), here after up to a tenth of a tick drawn from hedgeRng. The
// node's Ready is handled after the hedge only if the hedge alone made one, so that a
// hedge with nothing to send changes nothing else of the run.
func (c *Cluster) scheduleHedge(n *node) {
	if c.err != nil || n.rn == nil {
		return
	}
	ctx := n.rn.ReadToHedge()
	if ctx == nil || bytes.Equal(ctx, n.hedgeFor) {
		return
	}
	n.hedgeFor = bytes.Clone(ctx)
	due := n.hedgeFor
	inc := n.incarnation
	c.after(time.Duration(c.hedgeRng.Int64N(int64(c.opts.TickInterval)/10))+1, func() {
		if n.incarnation != inc || n.rn == nil || !bytes.Equal(n.rn.ReadToHedge(), due) {
			return
		}
		had := n.rn.HasReady()
		n.rn.HedgeReadIndex()
		if !had && n.rn.HasReady() {
			c.tracef("n%d hedges its read round", n.id)
			c.handleReady(n)
		}
	})
}

// applyReady checks the node's role, then hands the Ready's snapshot, committed
// entries and read states to the application and the clients.
func (c *Cluster) applyReady(n *node, rd *raft.Ready) bool {
	c.checkRole(n)
	if !rd.Snapshot.IsEmpty() {
		if !c.restoreApp(n, rd.Snapshot) {
			return false
		}
		c.counters.SnapshotsInstalled++
		if n.joined {
			c.counters.SnapshotsToJoined++
		}
	}
	if n.disk != nil {
		// A node applies only entries durable in its own log (raft.Ready): an
		// application's state may be durable at any moment, and must never be ahead
		// of the log it restarts with.
		for _, e := range rd.CommittedEntries {
			term, err := n.disk.durable.Term(e.Index)
			if errors.Is(err, raft.ErrCompacted) {
				continue // in the durable snapshot
			}
			if err != nil || term != e.Term {
				c.violate("durability", "node %d: committed entry %d of term %d handed out for applying while its own durable log holds term %d (%v)",
					n.id, e.Index, e.Term, term, err)
				return false
			}
		}
	}
	for _, e := range rd.CommittedEntries {
		if !c.applyEntry(n, e) {
			return false
		}
	}
	for _, rs := range rd.ReadStates {
		c.readDone(n, rs)
	}
	return c.err == nil
}

// persist makes the Ready's snapshot, HardState and entries durable, checking first
// that nothing durable is about to be broken and then that the log still matches.
func (c *Cluster) persist(n *node, rd *raft.Ready) bool {
	if !rd.Snapshot.IsEmpty() {
		if err := n.storage.ApplySnapshot(rd.Snapshot); err != nil {
			if c.crashedInStorage(n, err) {
				return false
			}
			c.violate("storage", "node %d: ApplySnapshot(index=%d term=%d): %v", n.id, rd.Snapshot.Index, rd.Snapshot.Term, err)
			return false
		}
		c.checkSnapshotPersisted(n, rd.Snapshot)
	}
	c.checkHardState(n, rd.HardState)
	c.checkOverwrite(n, rd.Entries)
	if c.err != nil {
		return false
	}
	if err := n.storage.Save(rd.HardState, rd.Entries); err != nil {
		if c.crashedInStorage(n, err) {
			return false
		}
		c.violate("storage", "node %d: Save(hs=%+v, %d entries): %v", n.id, rd.HardState, len(rd.Entries), err)
		return false
	}
	if !rd.HardState.IsEmpty() {
		n.durable, n.written = rd.HardState, rd.HardState
		c.checkCommit(n, rd.HardState)
	}
	c.checkLogMatching(n, rd.Entries)
	return c.err == nil
}

func describeReady(rd *raft.Ready) string {
	s := ""
	if rd.SoftState != nil {
		s += fmt.Sprintf("soft=%+v ", *rd.SoftState)
	}
	if !rd.HardState.IsEmpty() {
		s += fmt.Sprintf("hs=%+v ", rd.HardState)
	}
	if len(rd.Entries) > 0 {
		s += fmt.Sprintf("entries=[%d..%d] ", rd.Entries[0].Index, rd.Entries[len(rd.Entries)-1].Index)
	}
	if !rd.Snapshot.IsEmpty() {
		s += fmt.Sprintf("snapshot=%d/%d ", rd.Snapshot.Index, rd.Snapshot.Term)
	}
	if len(rd.CommittedEntries) > 0 {
		s += fmt.Sprintf("committed=[%d..%d] ", rd.CommittedEntries[0].Index, rd.CommittedEntries[len(rd.CommittedEntries)-1].Index)
	}
	if len(rd.ReadStates) > 0 {
		s += fmt.Sprintf("reads=%d ", len(rd.ReadStates))
	}
	s += fmt.Sprintf("msgs=%d", len(rd.Messages))
	return s
}
