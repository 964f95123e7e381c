// Package raft is a Raft consensus library: a deterministic core (RawNode) and the
// seed's interface around it (Node), after Ongaro and Ousterhout's paper, sections 5
// and 7, and Ongaro's thesis for configuration changes one server at a time with
// learners (§4.1, §4.2), leadership transfer (§3.10), PreVote (§9.6), CheckQuorum
// (§4.2.3) and ReadIndex (§6.4).
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
// claim nothing about its own disk but its term (thesis §10.2.1), and only once that
// term is durable (a leader elected by its own vote, the only voter, has it written in
// the same Ready that makes it leader). Every other message, of this
// Ready and of later ones, waits until every write queued before it is durable; then
// the driver sends them, in order, and calls AckDurable with the mark of the last
// write made durable (Ready.DurableMark), which is when a leader counts its own copy
// and when any node may hand out the committed entries that write holds.
//
// A leader tells followers of a new commit index in the next append it sends them
// (§5.3), not in an empty append of its own, which would double the messages per
// write at low load. A follower waiting for a proposal it forwarded hears at once;
// for the rest, when HasUnsentCommit is true the driver calls SendCommit a moment
// later (the Node after Config.CommitDelay), and the next heartbeat carries the
// commit index in any case.
//
// New entries likewise go at once only to the followers whose acknowledgements
// completed the last commit's quorum (one of two with 3 voters); the others get
// them with that SendCommit, gathered, so that a write costs one follower a disk
// write and an fsync, not two, and one fewer message each way. While that quorum
// keeps up (it has committed the entry whose deferral began the wait), SendCommit
// holds the others' entries back once more (HoldsAppends), and the driver calls it
// again SendCommitAfter later (the Node after four CommitDelays): at one client
// the others then get one append per ten milliseconds, not one per two. A follower
// of that quorum that goes silent delays commits by CommitDelay, or by five for an
// entry appended during a hold: the others' acknowledgements then complete the
// quorum, and they become the ones sent to first. A follower outside it that asks
// for a read point gets its entries with the answer. Config.AppendToAll sends every
// entry to every follower at once (§5.3).
//
// # The Node
//
// Node runs that loop for you with a real clock (Config.TickInterval), a Storage and a
// Transport, and offers the interface from the lecture notes:
//
//   - Start(cmd) (index, term, isLeader) returns at once; only the leader accepts.
//   - Apply() delivers every committed entry, and every installed snapshot, as an
//     ApplyMsg in index order, exactly once, across restarts too.
//   - Snapshot(index, data) lets the log up to index be discarded.
//   - ReadIndex(ctx) returns a read point confirmed by a heartbeat round: once the
//     application has applied it, a local read is linearizable. One round is in
//     flight per node at a time; reads that arrive during it share the next. The
//     leader asks only the followers that completed the last round's quorum, and
//     the others too once the round has been out for ReadIndexHedgeDelay, should
//     one of them be slow or lost.
//   - ProposeConfChange(ctx, cc) adds a voter or a learner, promotes a learner or
//     removes a member, one at a time; MembershipStatus() shows the configuration
//     and, on the leader, each member's matchIndex; MembershipAt(index) the
//     configuration a snapshot at index records.
//   - TransferLeadership(ctx, to) hands leadership to voter to, or with None to the
//     most up-to-date voter.
//   - Stop stops every goroutine.
//
// NewNode makes the node's Transport itself, by calling the NewTransport function it
// is given with the node as the transport's Handler (Step, ReportUnreachable,
// ReportSnapshot). It does so after the node can take messages and before the node
// sends any, so a transport never needs a node that does not exist yet and the node
// never sends on a transport that does not: no pointer has to be filled in later.
// The example shows a TCP transport written that way.
//
// MemoryStorage is an in-memory Storage and LocalNetwork an in-process Transport; the
// durable Storage is package storage. It is an AsyncStorage, so the Node pipelines
// its writes: the run loop queues each Ready's write and goes on stepping messages
// and proposals, while a second goroutine waits for the fsync (one for every write
// queued meanwhile), then sends what waited for it.
//
// # What the Node promises
//
// Indices. Start returns the index the command will have in the log. Every entry of
// the log takes an index, not only commands: a new leader appends an empty entry at
// the start of its term (§5.4.2, §8), and each configuration change takes one, so the
// indices of commands rise but skip. Apply delivers every index once: commands as
// ApplyCommand, with the bytes given to Start; the leaders' no-ops as ApplyNoOp, with
// no command; configuration changes as ApplyConfChange, with the change as proposed
// (its Context included) and the configuration it leads to; or, for a range of
// indices at once, an ApplySnapshot that replaces the state up to its index and
// carries the configuration as of that index. An application that wants its own
// dense numbering of commands counts the ApplyCommand messages, and keeps that count
// in its state and its snapshots (Example_denseCommandNumbers).
//
// Commitment. A command is committed if and only if the ApplyMsg at the index Start
// returned has the term Start returned: Log Matching (§5.3) makes an entry's index
// and term name it. Any other entry there means leadership was lost first; retry,
// with deduplication if a retry must not apply twice. A command given to Forward has
// no index: recognise it by content. ProposeUntil and ForwardUntil also give up when
// a channel closes, so that many proposals can share one deadline instead of a
// context each. ProposeAsync is ProposeUntil that returns once the command is queued
// and hands the index and term (or the refusal) to a function the run loop calls
// (after a stop, a later ProposeAsync call may), before the entry can commit: the caller waits once, for the application, not
// first for the index.
//
// Durability. When Start returns, the entry is in the leader's memory only; the run
// loop writes it to Storage with the next batch. Start says nothing about this node's
// disk. An entry is durable on a majority once it commits, and in this node's own log
// by the time Apply delivers it (Ready.CommittedEntries stops at what this node's
// write made durable), so the application's state, whenever it makes it durable, is
// never ahead of the log it restarts with. A crash before commitment may lose the
// entry; a crash after may lose only the application's state, which the node
// re-delivers on restart.
//
// Restart. Config.Applied is the last index whose effect the application's durable
// state already holds (0: it holds nothing). The node delivers what that state lacks:
// the stored snapshot if Applied is below it, then every committed entry after it,
// then what commits next. Entries in the log past the commit index last stored are
// delivered once the node learns again that they committed (the commit index is
// written lazily; Figure 2 keeps it volatile).
//
// Configuration. Config.Peers bootstraps a cluster: the voters of its first
// configuration, given to every initial member. From the first change on, the
// configuration lives in the log (configuration entries) and in the snapshots (each
// records the configuration as of its index; storage keeps it), and a restart recovers
// it from them; Peers then no longer matters. A node added later starts with no Peers
// and an empty log, after the leader has proposed its addition: it is caught up by
// the log or a snapshot, and is no member in its own eyes until it learns the change.
// Each node uses the latest configuration in its log from the moment it appends it,
// committed or not (thesis §4.1; confchange.go has the safety argument), so
// ApplyConfChange reports a change the node has obeyed since it appended it. A leader
// takes one change at a time, and only once it has committed an entry of its own
// term: otherwise ProposeConfChange fails with ErrConfChangePending, to retry shortly.
// A change commits like a command: the ApplyConfChange at the index returned, with
// the term returned. Learners receive the log and snapshots but never campaign, and
// neither their votes nor their acknowledgements count towards an election, a commit
// or a ReadIndex round; MembershipStatus on the leader shows how far each has caught
// up (Match against the leader's own) before it is promoted. A leader that removes
// itself goes on leading without counting itself until the change commits, then steps
// down and hands over to the most up-to-date voter. A removed node is told of its
// removal if it is reachable then (ApplyConfChange naming it); once it knows the change
// committed it never campaigns (until then it may, to finish the change: it may hold
// the longest log), and the cluster stops sending to it, so an application that sees
// its own removal should stop the node. One removed without knowing is kept from
// disrupting the cluster by PreVote and CheckQuorum, which are on by default: turning
// both off lets it force elections.
//
// Leadership transfer. TransferLeadership makes the leader refuse proposals
// (ErrProposalDropped), bring the target's log up to its own and tell it to campaign
// at once (thesis §3.10); it returns once this node sees the target lead, or fails
// with ErrTransferFailed after an election timeout, when the leader takes proposals
// again.
//
// The apply goroutine. The application reads Apply on a goroutine of its own and may
// call any method of the Node from it: Snapshot, State, Observe, ReportUnreachable and
// ReportSnapshot never wait; Start, Propose, ProposeUntil, ProposeAsync, Forward,
// ForwardUntil, ReadIndex, Status, Step, ProposeConfChange, TransferLeadership,
// MembershipStatus and MembershipAt wait only for the run loop, which never waits on the application (a full apply queue
// holds back committed entries, never the run loop); Stop closes Apply without
// waiting for it to be read. The one thing that goroutine must not do is wait, in
// itself, for an entry it has yet to apply (for example, the index ReadIndex
// returned). A slow application slows only the delivery of committed entries: the
// node goes on electing, replicating and answering, and a leader refuses proposals
// with ErrTooManyUncommitted once Config.MaxUncommittedEntriesBytes of entries wait to
// be handed to it.
//
// # Limits
//
// Every queue is bounded by Config: bytes per append message (MaxSizePerMsg), appends
// in flight per follower (MaxInflightMsgs, and their bytes with MaxInflightBytes),
// uncommitted bytes at the leader
// (MaxUncommittedEntriesBytes, past which proposals fail with ErrTooManyUncommitted),
// committed bytes per Ready, pending proposals and reads, and unread apply batches.
// Uncommitted configuration changes: one.
package raft
