// Package sim simulates whole raftkv clusters deterministically: every core of a cluster,
// its storage, application, clients and the network between them run in one goroutine in
// virtual time, so a seed names a run and replays it exactly.
//
// # The model
//
// A Cluster holds N raft.RawNodes (ids 1..N) over raft.MemoryStorage. One event queue,
// ordered by virtual time and then by scheduling order, drives everything: each node
// ticks every TickInterval (100 ms by default) out of phase with the others; every
// message a node sends becomes a delivery event after a delay; clients and faults are
// events too. After any event that touches a node, the simulator carries out the node's
// Ready exactly as raft/rawnode.go demands: persist (snapshot, HardState, entries), send,
// apply, Advance.
//
// The network (NetConfig) loses, duplicates, delays and reorders messages, and
// partitions the nodes into arbitrary groups. A crash drops the RawNode, the application
// and every message to or from the node still in flight, and keeps its MemoryStorage,
// which holds exactly what the node made durable; a crash can also hit in the middle of
// a Ready, after persisting but before sending, or after sending but before applying.
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
// # What is checked
//
// After every event, incrementally (O(1) per entry or message): at most one leader per
// term and no vote changed within a term (Election Safety); every (index, term) ever
// persisted always holds the same entry after the same previous term (Log Matching); a
// new leader holds the latest committed entry (Leader Completeness); no two nodes apply
// different entries or reach different states at an index, and each application applies
// every index exactly once, in order, across snapshots and restarts (State Machine
// Safety); nothing durably committed is overwritten, terms and commit indexes never go
// back; every message leaves only after what it claims is durable (persist before you
// speak); a ReadIndex read point is at least every index applied anywhere before the
// read was issued (linearizable reads). Liveness: whenever a majority is connected and
// stable, a leader among it must commit a fresh proposal on every member within
// Options.LivenessBound (10 virtual seconds). At the end of a run every fault is healed,
// the whole cluster must pass the same liveness check, and every acknowledged command
// must be in every node's log at its index.
//
// # Running it
//
// TestSimulate runs Simulate for many seeds: 5 nodes, mixed faults (RunChaos), at
// least 100 virtual seconds each. Its flags:
//
//	go test ./sim -run TestSimulate                       # 100 seeds; 16 under -race or -short
//	go test ./sim -run TestSimulate -seeds=300            # what CI runs
//	go test ./sim -run TestSimulate -seeds=10000 -timeout=0   # the long run
//	go test ./sim -run TestSimulate -seeds=1000 -seedstart=5000
//	go test ./sim -run TestSimulate -seed=42 -simtrace      # replay one seed with a full trace
//	go test ./sim -run TestSimulate -duration=300s        # longer runs per seed
//
// A failing seed prints its violation and the command that replays it. The scenario
// tests (TestInitialElection, TestFigure8Unreliable, ...) mirror the MIT 6.824 Raft lab
// tests, made deterministic; -seed and -simtrace apply to them as well.
package sim
