package raft

import (
	"fmt"
	"log/slog"
	"time"
)

// Config holds everything a core or a Node needs to start. Zero values of the limits
// take the defaults below; Validate rejects values that cannot work, with a message that
// names the field, the value and what to do.
type Config struct {
	// ID is this node's id; it must be non-zero, and appear in Peers if Peers is set.
	ID uint64
	// Peers bootstraps the cluster: the voters of its first configuration, this node
	// included, the same list on every initial member. It is read only while the
	// storage holds no configuration of its own (a snapshot's, or a configuration
	// entry); from the first change on, the configuration lives in the log and the
	// snapshots (ProposeConfChange), and Peers no longer matters.
	//
	// A node that joins a running cluster has no Peers: it starts with no
	// configuration, is no member in its own eyes (it never campaigns), and learns the
	// membership from the leader, which must have proposed its addition first.
	Peers []uint64

	// ElectionTicks is the election timeout in ticks. Each time a follower's timer is
	// reset it draws a fresh timeout at random from [ElectionTicks, 2*ElectionTicks)
	// (design rule 3). It must be well above HeartbeatTicks: broadcastTime ≪
	// electionTimeout. Default 10.
	ElectionTicks int
	// HeartbeatTicks is how often a leader sends heartbeats, in ticks. Default 1.
	HeartbeatTicks int
	// TickInterval is the length of one tick in wall time; used by Node only.
	// Default 100ms.
	TickInterval time.Duration

	// Storage is the node's stable storage. Required.
	Storage Storage
	// Applied is the last index whose effect the application's own durable state
	// already holds, when it restarts with that state; zero means it holds nothing.
	// The Node delivers on Apply only what the application lacks: Storage's snapshot
	// if Applied is below it (always, if Applied is 0), then every committed entry
	// after the later of Applied and the snapshot, in order. Entries the log holds
	// past the stored commit index are delivered once the node learns they committed,
	// from the leader or by leading. Applied must not be past the stored log's last
	// index, and the entries up to it must have committed (they were applied).
	// An application that keeps no durable state passes 0 and rebuilds from the
	// snapshot and the log at every start.
	Applied uint64

	// RandSeed seeds the randomized election timeouts. The same seed and inputs give
	// the same behaviour (design rule 2). Zero means seed from ID.
	RandSeed int64

	// DisablePreVote turns PreVote (thesis §9.6) off. It is on by default so that a
	// node rejoining after a partition does not raise the term of a healthy leader.
	DisablePreVote bool
	// DisableCheckQuorum turns CheckQuorum off. It is on by default: a leader that has
	// not heard from a majority within an election timeout steps down, and followers
	// that hear from a live leader ignore vote requests (thesis §4.2.3).
	DisableCheckQuorum bool
	// ReadIndexToAll has every ReadIndex round's heartbeats go to all followers, as
	// etcd's raft does. By default a round asks only the followers that completed
	// the last round's quorum (one of two with 3 voters), and the Node's hedge
	// (ReadIndexHedgeDelay) or the next regular heartbeat asks the rest if one of
	// them does not answer; with ReadIndexToAll a round waits for the fastest
	// majority instead of a fixed one, at a heartbeat and an answer more per extra
	// follower. The raftkv member sets it with --raft-read-index-to-all
	// (server.Config.ReadIndexToAll).
	ReadIndexToAll bool
	// AppendToAll sends each new entry to every follower at once, as the Raft paper
	// does (§5.3). By default a leader sends new entries at once only to the
	// followers whose acknowledgements completed the last commit's quorum (one of
	// two with 3 voters), and to the others a CommitDelay later, gathered, with the
	// commit index (RawNode.SendCommit): a write then costs one follower, not two,
	// a message, a disk write and an fsync, and the other does them once for what
	// arrived in the delay, or in five CommitDelays while the quorum keeps up (a
	// SendCommit then holds them back once, RawNode.HoldsAppends). Commits need no
	// more than that quorum; a follower of it that is slow or lost delays them by a
	// CommitDelay (five for an entry appended during a hold), since the others get
	// the entries then and their acknowledgements complete the quorum (and make
	// them the new one). The followers out of the quorum lag by up to five
	// CommitDelays. The raftkv member sets it with --raft-append-to-all
	// (server.Config.AppendToAll).
	AppendToAll bool
	// ReadIndexHedgeDelay is how long a leader's Node lets a read wait on a round
	// that asked only the last round's quorum (see ReadIndexToAll), its own read or
	// one a follower forwarded, before asking the other followers too
	// (RawNode.ReadToHedge, HedgeReadIndex): a follower of that quorum that is slow
	// or lost then delays reads by this much rather than until the next heartbeat. Default TickInterval/20 (5ms at the default tick), at least 1µs.
	// Node only.
	ReadIndexHedgeDelay time.Duration

	// MaxSizePerMsg limits the bytes of entries in one append message. Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs limits the append messages in flight to one follower. Default 256.
	MaxInflightMsgs int
	// MaxInflightBytes, if not 0, also limits the bytes of entries in flight to one
	// follower; at least MaxSizePerMsg. The leader reads the entries it sends on its
	// run loop, from disk with a durable Storage: a follower far behind (a learner
	// catching up after a snapshot) had it read MaxInflightMsgs x MaxSizePerMsg, 400
	// MB, in one go, past the election timeout. Default 0: no limit but the count
	// (etcd-io/raft's MaxInflightBytes).
	MaxInflightBytes uint64
	// MaxUncommittedEntriesBytes limits the bytes of entries a leader holds that have not
	// committed; proposals past it fail with ErrTooManyUncommitted. Default 64 MiB.
	MaxUncommittedEntriesBytes uint64
	// MaxCommittedBytesPerReady limits the committed entries handed out in one Ready.
	// Default 16 MiB.
	MaxCommittedBytesPerReady uint64

	// MaxPendingProposals bounds the Node's queue of proposals waiting for the core.
	// Default 4096. Node only.
	MaxPendingProposals int
	// MaxApplyBatches bounds the Node's queue of committed batches the application has
	// not read yet; while it is full the Node holds further committed entries back.
	// Default 64. Node only.
	MaxApplyBatches int

	// CommitDelay is how long a leader's Node waits to send followers a commit index
	// that no append has carried to them yet (RawNode.SendCommit): under load the
	// next append carries it, and an idle follower learns it this much later.
	// Default TickInterval/50, at most 2ms. Node only.
	CommitDelay time.Duration

	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Defaults for zero-valued Config fields.
const (
	DefaultElectionTicks              = 10
	DefaultHeartbeatTicks             = 1
	DefaultTickInterval               = 100 * time.Millisecond
	DefaultMaxSizePerMsg              = 1 << 20
	DefaultMaxInflightMsgs            = 256
	DefaultMaxUncommittedEntriesBytes = 64 << 20
	DefaultMaxCommittedBytesPerReady  = 16 << 20
	DefaultMaxPendingProposals        = 4096
	DefaultMaxApplyBatches            = 64
)

// defaultCommitDelay is CommitDelay's default for a tick: a fiftieth of it, at most
// 2ms, at least 1µs.
func defaultCommitDelay(tick time.Duration) time.Duration {
	return max(min(tick/50, 2*time.Millisecond), time.Microsecond)
}

// defaultReadIndexHedgeDelay is ReadIndexHedgeDelay's default for a tick: a
// twentieth of it, at least 1µs. A round on loopback or a LAN takes well under a
// millisecond, and a heartbeat interval is meant to be many round trips long.
func defaultReadIndexHedgeDelay(tick time.Duration) time.Duration {
	return max(tick/20, time.Microsecond)
}

// withDefaults returns a copy of c with zero limits replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = DefaultMaxSizePerMsg
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxUncommittedEntriesBytes == 0 {
		c.MaxUncommittedEntriesBytes = DefaultMaxUncommittedEntriesBytes
	}
	if c.MaxCommittedBytesPerReady == 0 {
		c.MaxCommittedBytesPerReady = DefaultMaxCommittedBytesPerReady
	}
	if c.MaxPendingProposals == 0 {
		c.MaxPendingProposals = DefaultMaxPendingProposals
	}
	if c.MaxApplyBatches == 0 {
		c.MaxApplyBatches = DefaultMaxApplyBatches
	}
	if c.CommitDelay == 0 {
		c.CommitDelay = defaultCommitDelay(c.TickInterval)
	}
	if c.ReadIndexHedgeDelay == 0 {
		c.ReadIndexHedgeDelay = defaultReadIndexHedgeDelay(c.TickInterval)
	}
	if c.RandSeed == 0 {
		c.RandSeed = int64(c.ID)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first setting that cannot work. Zero limits are fine: they take
// the defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.ID == None {
		return fmt.Errorf("raft config: ID is 0; give every node a distinct non-zero id")
	}
	seen := make(map[uint64]bool, len(c.Peers))
	isMember := len(c.Peers) == 0 // a node joining a running cluster
	for _, p := range c.Peers {
		if p == None {
			return fmt.Errorf("raft config: Peers %v holds id 0; ids must be non-zero", c.Peers)
		}
		if seen[p] {
			return fmt.Errorf("raft config: Peers %v lists id %d twice; list each member once", c.Peers, p)
		}
		seen[p] = true
		isMember = isMember || p == c.ID
	}
	if !isMember {
		return fmt.Errorf("raft config: ID %d is not in Peers %v; list this node among the initial members, or give no Peers to a node that joins a running cluster", c.ID, c.Peers)
	}
	if c.HeartbeatTicks < 0 || c.ElectionTicks < 0 {
		return fmt.Errorf("raft config: HeartbeatTicks %d and ElectionTicks %d must be positive", c.HeartbeatTicks, c.ElectionTicks)
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		return fmt.Errorf("raft config: ElectionTicks %d must be greater than HeartbeatTicks %d (several heartbeats should fit in one election timeout; 10x is usual)",
			c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.TickInterval < 0 {
		return fmt.Errorf("raft config: TickInterval %v is negative", c.TickInterval)
	}
	if c.CommitDelay < 0 || c.CommitDelay > c.TickInterval {
		return fmt.Errorf("raft config: CommitDelay %v must be between 0 (the default, %v) and TickInterval %v: a heartbeat carries the commit index anyway",
			c.CommitDelay, defaultCommitDelay(c.TickInterval), c.TickInterval)
	}
	if c.ReadIndexHedgeDelay < 0 || c.ReadIndexHedgeDelay > c.TickInterval {
		return fmt.Errorf("raft config: ReadIndexHedgeDelay %v must be between 0 (the default, %v) and TickInterval %v: the next heartbeat asks every follower anyway",
			c.ReadIndexHedgeDelay, defaultReadIndexHedgeDelay(c.TickInterval), c.TickInterval)
	}
	if c.Storage == nil {
		return fmt.Errorf("raft config: Storage is nil; pass raft.NewMemoryStorage() or a durable storage")
	}
	if c.MaxInflightBytes != 0 && c.MaxInflightBytes < c.MaxSizePerMsg {
		return fmt.Errorf("raft config: MaxInflightBytes %d is below MaxSizePerMsg %d; one append must fit in flight", c.MaxInflightBytes, c.MaxSizePerMsg)
	}
	if c.MaxInflightMsgs < 0 || c.MaxPendingProposals < 0 || c.MaxApplyBatches < 0 {
		return fmt.Errorf("raft config: MaxInflightMsgs %d, MaxPendingProposals %d and MaxApplyBatches %d must not be negative",
			c.MaxInflightMsgs, c.MaxPendingProposals, c.MaxApplyBatches)
	}
	if c.MaxUncommittedEntriesBytes < c.MaxSizePerMsg {
		return fmt.Errorf("raft config: MaxUncommittedEntriesBytes %d is below MaxSizePerMsg %d; a single full message could never be proposed",
			c.MaxUncommittedEntriesBytes, c.MaxSizePerMsg)
	}
	return nil
}
