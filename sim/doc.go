// Package sim simulates whole raftkv clusters deterministically: every core of a cluster,
// its storage, application, clients and the network between them run in one goroutine in
// virtual time, so a seed names a run and replays it exactly.
//
// # The model
//
// A Cluster holds N raft.RawNodes (ids 1..N, the bootstrap configuration) over
// raft.MemoryStorage, and every node added since (the next ids). One event queue,
// ordered by virtual time and then by scheduling order, drives everything: each node
// ticks every TickInterval (100 ms by default) out of phase with the others; every
// message a node sends becomes a delivery event after a delay; clients and faults are
// events too. After any event that touches a node, the simulator carries out the node's
// Ready exactly as raft/rawnode.go demands: persist (snapshot, HardState, entries), send,
// apply, Advance; or, with asynchronous writes (below), as raft.Node pipelines it.
//
// The network (NetConfig) loses, duplicates, delays and reorders messages, and
// partitions the nodes into arbitrary groups. A crash drops the RawNode and the
// application, and keeps its MemoryStorage, which holds exactly what the node made
// durable; a crash can also hit in the middle of a Ready, after persisting but before
// sending, or after sending but before applying. A message in flight to or from the
// node when it crashes is lost with it, or, with probability Options.StaleRate, is not:
// it reaches the receiver's next incarnation, late from the network if the receiver
// is up again when it arrives, or, if the receiver is down, from the queue of the
// sender's transport once the receiver restarts (unless the sender crashed first). A
// message sent to a node that is down is queued the same way at that rate (up to 64
// per sender). Queued messages leave on the restart with fresh delays, so they may be
// reordered and duplicated like any other.
// A restart is raft.NewRawNode on the same storage, with the application rebuilt from
// the storage's snapshot.
//
// Each node's application folds every command into a running hash; its snapshot is
// (index, hash), taken every Options.SnapshotEvery applied entries, so lagging and
// restarted followers are brought up to date by InstallSnapshot. Clients propose unique
// commands to the node they believe leads and record a command as acknowledged when, by
// the seed's rule, that node applies it at the index Propose returned. They also issue
// ReadIndex reads.
//
// # Asynchronous writes
//
// With Options.AsyncWrites (half of TestSimulate's seeds) each node pipelines its
// writes the way raft.Node does over a raft.AsyncStorage (raft/node_ready.go). A
// Ready's snapshot is installed at once, which makes every earlier write durable; its
// HardState and entries are queued, readable at once, and the core is told with
// AdvanceQueued. The leader's appends, heartbeats and snapshots leave at once, once its
// term is durable; every other message waits in the node's queue behind every write
// queued before it, even
// when its own Ready wrote nothing. Committed entries are applied without waiting. A
// flush event of the node's simulated disk, 0.1-5 ms after a write is queued (now and
// then up to 100 ms), makes a prefix of the queue durable (all of it, or at random a
// shorter one: a group commit of one or more writes, never out of order), then sends
// the messages that waited for it, in order, and calls AckDurable with the last entry
// written. An application's compaction, like storage.Storage's CreateSnapshot, makes
// every queued write durable first. (Unlike the Node, the simulator writes a HardState
// whose commit index alone changed, as it does with synchronous writes.)
//
// # Configuration changes
//
// With Options.ConfChanges (half of TestSimulate's seeds) a fifth of the faults ask the
// leader for a configuration change: add a learner or a voter (a new node, started
// with an empty log and no Peers, caught up by the log or a snapshot), promote a
// learner, remove a member (the leader too), replace a voter (remove it, then add a
// new node), or transfer leadership. Ids are never reused; removed nodes keep running,
// crashing and restarting, and must disrupt nothing. Calm phases pick a group that
// holds a majority of every configuration that may be in effect (the committed one
// and those proposed but not yet applied anywhere); see membership.go for what the
// checkers add.
//
// A copy of each node's durable state (a MemoryStorage fed each write as it becomes
// durable) is what the node restarts from after a crash, so a crash loses every
// queued write; it can hit with writes queued, after queueing and before sending, after
// sending and before applying, or at a flush between the write becoming durable and
// its messages leaving (CrashBeforeRelease). With a StorageFactory the node's storage
// must be a raft.AsyncStorage: writes go through SaveAsync, a flush calls WaitDurable,
// and the crash is the storage's own; what recovers must hold at least the HardState
// the node waited for.
//
// # What is checked
//
// After every event, incrementally (O(1) per entry or message): at most one leader per
// term, whatever the configurations, and no vote changed within a term (Election
// Safety); every (index, term) ever persisted always holds the same entry after the
// same previous term (Log Matching); a new leader holds the latest committed entry
// (Leader Completeness); no two nodes apply different entries or reach different
// states at an index, and each application applies every index exactly once, in
// order, across snapshots and restarts (State Machine Safety); nothing durably
// committed is overwritten, terms and commit indexes never go back; every message
// leaves only after what it claims is durable (persist before you speak: with
// asynchronous writes, a held message is judged against the durable copy as the write
// it waits for becomes durable, so that a vote needs a durable vote and an
// acknowledgement the durable entry it names, with the same term); a ReadIndex read
// point is at least every index applied anywhere before the read was issued
// (linearizable reads). With configuration changes besides: every committed change is
// a single-server change of the configuration before it; only a voter of its own
// configuration campaigns or leads (or one removed by a change it does not know
// committed); a removed node that never learned of it starts at most one election
// after its removal committed; a snapshot records the configuration committed at its
// index. Liveness: whenever a majority (of every configuration that may be in effect)
// is connected and stable, a leader among it must commit a fresh proposal on every
// member within Options.LivenessBound (10 virtual seconds; 300 for the tenth of
// TestSimulate's seeds that turn PreVote off, where candidates that cannot win
// still raise terms: RandomOptions says why). At the end of a run every
// fault is healed, the whole cluster must pass the same liveness check, and every
// acknowledged command must be in the log of every member of the final configuration
// at its index.
//
// # Running it
//
// TestSimulate runs Simulate for many seeds: 5 nodes at first, mixed faults
// (RunChaos), at least 100 virtual seconds each. Its flags:
//
//	go test ./sim -run TestSimulate                       # 100 seeds; 16 under -race or -short
//	go test ./sim -run TestSimulate -seeds=1000           # what CI runs
//	go test ./sim -run TestSimulate -seeds=10000 -timeout=0   # the long run
//	go test ./sim -run TestSimulate -seeds=1000 -seedstart=5000
//	go test ./sim -run TestSimulate -seed=42 -simtrace      # replay one seed with a full trace
//	go test ./sim -run TestSimulate -duration=300s        # longer runs per seed
//	go test ./sim -run TestSimulate -writes=async         # every seed with AsyncWrites (or sync)
//	go test ./sim -run TestSimulate -confchanges=on       # every seed with configuration changes (or off)
//	go test ./sim -run TestSimulate -stale=0              # every message in flight lost with a crash (drawn per seed: 0.25, 0.5 or 1)
//
// A failing seed prints its violation and the command that replays it. The scenario
// tests (TestInitialElection, TestFigure8Unreliable, ...) mirror the MIT 6.824 Raft lab
// tests, made deterministic; -seed, -simtrace and -writes apply to them as well (but for
// the two that are staged on the timing or durability of synchronous writes).
package sim
