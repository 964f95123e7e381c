// Package raft is a Raft consensus library: a deterministic core (RawNode) and the
// seed's interface around it (Node), after Ongaro and Ousterhout's paper, sections 5
// and 7, and Ongaro's thesis for PreVote (§9.6), CheckQuorum (§4.2.3) and ReadIndex
// (§6.4).
//
// # The model
//
// The core is a state machine with no goroutines, clock, disk or network. Its inputs
// are Tick (one unit of logical time), Step (a message from a peer) and Propose (a
// new command, leader only). Its output is data: a Ready value saying what to persist,
// what to send and what to apply. The same inputs and Config.RandSeed always give the
// same outputs, which is what lets package sim replay any failure from a seed.
//
// # The Ready loop
//
// A driver of RawNode repeats:
//
//	for {
//		// feed inputs: rn.Tick() on each clock tick, rn.Step(m) for each message
//		if rn.HasReady() {
//			rd := rn.Ready()
//			storage.ApplySnapshot(rd.Snapshot)         // if not empty
//			storage.Save(rd.HardState, rd.Entries)     // durable before anything is sent
//			transport.Send(rd.Messages)
//			apply(rd.Snapshot, rd.CommittedEntries)    // in index order
//			rn.Advance(rd)
//		}
//	}
//
// Persisting before sending is Figure 2's rule: a vote or an acknowledged entry must
// survive a crash. A leader counts its own copy of an entry towards a majority only
// after Advance reports it durable.
//
// A driver whose storage writes are asynchronous (AsyncStorage) may go on stepping
// while a write is in flight: it queues the write, calls AdvanceQueued instead of
// Advance, and sends at once only a leader's appends, heartbeats and snapshots, which
// claim nothing about its own disk (thesis §10.2.1). Every other message, of this
// Ready and of later ones, waits until every write queued before it is durable; then
// the driver sends them, in order, and calls AckDurable with the last entry written,
// which is when a leader counts its own copy.
//
// A leader tells followers of a new commit index in the next append it sends them
// (§5.3), not in an empty append of its own, which would double the messages per
// write at low load. A follower waiting for a proposal it forwarded hears at once;
// for the rest, when HasUnsentCommit is true the driver calls SendCommit a moment
// later (the Node after Config.CommitDelay), and the next heartbeat carries the
// commit index in any case.
//
// # The Node
//
// Node runs that loop for you with a real clock (Config.TickInterval), a Storage and a
// Transport, and offers the interface from the lecture notes:
//
//   - Start(cmd) (index, term, isLeader) returns at once; only the leader accepts.
//   - Apply() delivers every committed entry, and every installed snapshot, as an
//     ApplyMsg in index order, exactly once, across restarts too. A command proposed by
//     Start committed only if the ApplyMsg at the index Start returned carries it;
//     otherwise leadership was lost and the client should retry.
//   - Snapshot(index, data) lets the log up to index be discarded.
//   - ReadIndex(ctx) returns a read point confirmed by a heartbeat round: once the
//     application has applied it, a local read is linearizable. One round is in
//     flight per node at a time; reads that arrive during it share the next.
//   - Step(ctx, msg) takes messages from the transport; Stop stops every goroutine.
//
// MemoryStorage is an in-memory Storage and LocalNetwork an in-process Transport; the
// durable Storage is package storage. It is an AsyncStorage, so the Node pipelines
// its writes: the run loop queues each Ready's write and goes on stepping messages
// and proposals, while a second goroutine waits for the fsync (one for every write
// queued meanwhile), then sends what waited for it.
//
// # Limits
//
// Every queue is bounded by Config: bytes per append message (MaxSizePerMsg), appends
// in flight per follower (MaxInflightMsgs), uncommitted bytes at the leader
// (MaxUncommittedEntriesBytes, past which proposals fail with ErrTooManyUncommitted),
// committed bytes per Ready, pending proposals and reads, and unread apply batches.
package raft
