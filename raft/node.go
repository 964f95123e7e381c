package raft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Transport carries messages to other nodes. Send must not block: a message it cannot
// deliver may be dropped, and Raft's retries recover it. It must not keep the msgs
// slice, which the node reuses, but may keep the messages themselves until they are
// sent: the node never modifies a message, its entries or their data once sent. The
// receiving side hands each message to its node's Handler.Step.
type Transport interface {
	Send(msgs []Message)
}

// Handler is what a Transport delivers to: the Node, seen from its transport.
type Handler interface {
	// Step takes a message received from a peer (Node.Step).
	Step(ctx context.Context, m Message) error
	// ReportUnreachable says a message to peer id could not be delivered. It never
	// blocks.
	ReportUnreachable(id uint64)
	// ReportSnapshot says how sending a snapshot to peer id ended. It never blocks.
	ReportSnapshot(id uint64, failed bool)
}

// NewTransport makes a Node's Transport, given the Handler that the messages it
// receives go to. NewNode calls it once, after the Node can take messages and before
// it sends any, so neither side ever sees the other half-built. It may start the
// transport's goroutines and call the Handler at once. The Transport is the caller's
// to close, after Node.Stop.
type NewTransport func(h Handler) (Transport, error)

// Node runs one Raft member: a goroutine that drives the core with a clock, persists
// each Ready to Storage before sending its messages through Transport, and delivers
// committed entries on the Apply channel. It is the seed's interface.
type Node struct {
	rn        *RawNode
	storage   Storage
	transport Transport
	cfg       Config
	logger    loggerFunc

	propc chan proposal
	recvc chan Message
	readc chan chan readResult
	// snapc wakes the run loop to take the request in snapReq (Node.Snapshot).
	snapc   chan struct{}
	snapReq struct {
		sync.Mutex
		snapshotRequest
	}
	statusc chan chan Status
	// queryc carries functions for the run loop to run (Node.onLoop).
	queryc chan func()
	// transferc carries TransferLeadership calls; transfers (run loop only) are
	// those waiting for their outcome.
	transferc chan transferRequest
	transfers []transferWaiter
	// reportc carries transport reports (unreachable peers, snapshot outcomes).
	reportc chan Message

	// applyq carries committed batches from the run loop to the delivery goroutine,
	// which hands them to the application on applyc and pokes applyWake when it takes
	// one from a queue the run loop found full, so the run loop hands out what it held.
	// While the delivery goroutine is idle and applyc has room, the run loop puts a
	// batch on applyc itself (applyQueue.push).
	applyq    applyQueue
	applyWake chan struct{}
	applyc    chan ApplyMsg

	// With an AsyncStorage, writes are queued from the run loop and waited for by
	// the persist goroutine (node_ready.go): persistq carries each write's ticket and
	// the messages that must wait for it; durablec wakes the run loop when a write
	// is durable, and durable holds the last entry it wrote and its ticket.
	// queuedTickets (run loop only) are the writes queued and not yet reported
	// durable, oldest first.
	async    AsyncStorage
	persistq chan persistItem
	durablec chan struct{}
	// persistPending counts the items queued to the persist goroutine that it has
	// not finished with.
	persistPending atomic.Int64
	// inlineDurable is the mark of a write the run loop waited for itself,
	// for AckDurable after AdvanceQueued (run loop only).
	inlineDurable DurableMark
	// persistFailed is closed when the persist goroutine stops on a write error.
	persistFailed chan struct{}
	durable       struct {
		sync.Mutex
		mark   DurableMark
		ticket uint64
		// hardStateTerm is the term of the last HardState made durable.
		hardStateTerm uint64
	}
	// durableTerm is the term of the last HardState known durable (run loop only):
	// a leader's messages go out before its write only in a term already durable.
	durableTerm   uint64
	queuedTickets []uint64
	// sendYield: the run loop's Sends since it last yielded before an fsync or
	// went to wait for input (senderYield). Run loop only.
	sendYield senderYield

	term     atomic.Uint64
	isLeader atomic.Bool
	// observed is what Observe reports (node_observe.go).
	observed observed

	// savedHardState is the last HardState written to storage; pendingHardState one
	// whose only change, the commit index, has not been written yet. Run loop only.
	savedHardState   HardState
	pendingHardState HardState

	stopOnce sync.Once
	stopc    chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	// err is the fatal error that stopped the node, if any.
	err atomic.Pointer[error]
}

type loggerFunc func(msg string, args ...any)

type proposal struct {
	data []byte
	// conf, if set, is a configuration change to propose instead of data.
	conf *ConfChange
	// forward: send to the leader if this node is not it (Node.Forward).
	forward bool
	reply   chan proposalResult
	// done, if set, takes the result instead of reply (ProposeAsync).
	done func(index, term uint64, err error)
	// claim, if set, lets its proposer withdraw the proposal while it is queued
	// (ForwardUntil): the run loop and the proposer each try to set it, and the run
	// loop acts on the proposal only if it sets it first.
	claim *atomic.Bool
}

// answer gives p its result: on reply, or to done.
func (p *proposal) answer(r proposalResult) {
	if p.done != nil {
		p.done(r.index, r.term, r.err)
		return
	}
	p.reply <- r
}

type proposalResult struct {
	index, term uint64
	err         error
}

type readResult struct {
	index uint64
	err   error
}

// maxLeaderWritesInFlight is how many writes a leader queues before it lets
// proposals gather for the next one. Side by side on put-1c/100c/1000c (bench/, 3
// rounds), 1 did as well as 2 with one client and 2-11% better with 100 and 1000.
const maxLeaderWritesInFlight = 1

// NewNode starts a node that resumes from what cfg.Storage holds, with the Transport
// that newTransport makes for it. Stop it with Stop.
//
// The order cannot race: NewNode first reads the storage and makes the Node's queues,
// then calls newTransport with the Node as its Handler (from then on the Node takes
// messages and reports, which wait in its queues), and only then starts the run loop,
// which is what calls Transport.Send. A transport therefore never needs the Node
// before it exists, and the Node never sends on a transport that does not.
func NewNode(cfg Config, newTransport NewTransport) (*Node, error) {
	if newTransport == nil {
		return nil, fmt.Errorf("raft: NewNode needs a NewTransport function to make its transport")
	}
	rn, err := NewRawNode(cfg)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{
		rn:        rn,
		storage:   cfg.Storage,
		cfg:       cfg,
		logger:    cfg.Logger.With("raft_id", fmt.Sprintf("%x", cfg.ID)).Error,
		propc:     make(chan proposal, cfg.MaxPendingProposals),
		recvc:     make(chan Message, cfg.MaxPendingProposals),
		readc:     make(chan chan readResult, cfg.MaxPendingProposals),
		snapc:     make(chan struct{}, 1),
		statusc:   make(chan chan Status),
		queryc:    make(chan func()),
		transferc: make(chan transferRequest),
		reportc:   make(chan Message, 256),
		applyq:    newApplyQueue(cfg.MaxApplyBatches),
		applyWake: make(chan struct{}, 1),
		applyc:    make(chan ApplyMsg, applyBuffer),
		durablec:  make(chan struct{}, 1),
		stopc:     make(chan struct{}),
		done:      make(chan struct{}),
	}
	if as, ok := cfg.Storage.(AsyncStorage); ok {
		n.async = as
		n.persistq = make(chan persistItem, cfg.MaxApplyBatches)
		n.persistFailed = make(chan struct{})
	}
	st := rn.Status()
	n.term.Store(st.Term)
	n.observed.commit.Store(st.Commit)
	if n.savedHardState, err = cfg.Storage.InitialState(); err != nil {
		return nil, fmt.Errorf("raft: reading HardState: %w", err)
	}
	n.durableTerm = n.savedHardState.Term
	first, err := cfg.Storage.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("raft: reading first index: %w", err)
	}
	if cfg.Applied < first-1 {
		// The application's state is older than the stored snapshot (empty, if
		// Applied is 0), and the log before the snapshot is gone: give it the
		// snapshot first. The core delivers the entries after it.
		snap, err := cfg.Storage.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("raft: reading snapshot: %w", err)
		}
		if !snap.IsEmpty() {
			n.applyq.push([]ApplyMsg{n.snapshotMsg(snap)}, n.applyc)
		}
	}
	if n.transport, err = newTransport(n); err != nil {
		return nil, fmt.Errorf("raft: making the transport: %w", err)
	}
	if n.transport == nil {
		return nil, fmt.Errorf("raft: NewTransport returned no Transport and no error")
	}
	n.wg.Add(2)
	go n.run()
	go n.deliver()
	if n.async != nil {
		n.wg.Add(1)
		go n.persist()
	}
	return n, nil
}

// stopIfStorageFailed, deferred by the run loop, turns the core's panic on a failed
// read of the log into the Node's stop with the Storage's failure, if the Storage
// reports one (FailingStorage); any other panic goes on.
func (n *Node) stopIfStorageFailed() {
	r := recover()
	if r == nil {
		return
	}
	if fs, ok := n.storage.(FailingStorage); ok {
		if err := fs.Err(); err != nil {
			n.fail(fmt.Errorf("raft: reading the log: %w", err))
			return
		}
	}
	panic(r)
}

// Start proposes cmd. It returns at once, without waiting for the command to commit:
// index and term are where it will appear if it commits. A node that is not the
// leader returns isLeader false and does nothing; the caller finds the leader.
//
// The command is committed only if the ApplyMsg at index has Term term (it then
// carries cmd); any other entry there means leadership was lost before the command
// committed, and the caller retries. Indices count every entry of the log, not only
// commands: each new leader's no-op takes one too, so the indices Start returns rise
// but skip (see the package doc for an application that numbers its commands
// densely).
//
// When Start returns, the entry is in the leader's memory only, not yet in its
// Storage: the run loop writes it with the next batch. It is durable on a majority
// (which need not include this node yet) once it commits, that is by the time Apply
// delivers it; a crash before then may lose it.
//
// Start may be called from the apply goroutine: it waits only for the run loop to
// append the entry, and the run loop never waits on the application.
func (n *Node) Start(cmd []byte) (index, term uint64, isLeader bool) {
	index, term, err := n.Propose(context.Background(), cmd)
	return index, term, err == nil
}

// Propose is Start with the reason for a refusal: ErrNotLeader, ErrTooManyUncommitted,
// ErrEntryTooLarge, ErrStopped, or the context's error. Like Start, it may be called
// from the apply goroutine.
func (n *Node) Propose(ctx context.Context, cmd []byte) (index, term uint64, err error) {
	return n.submit(ctx, nil, proposal{data: cmd})
}

// ProposeUntil is Propose that also gives up, with context.DeadlineExceeded, once
// deadline closes: a deadline shared by many proposals, which costs none of them a
// context of its own (the server's RequestTimeout).
func (n *Node) ProposeUntil(ctx context.Context, deadline <-chan struct{}, cmd []byte) (index, term uint64, err error) {
	return n.submit(ctx, deadline, proposal{data: cmd})
}

// ProposeAsync is ProposeUntil that does not wait for the run loop to append the
// command: it returns once the command is queued for the run loop (or with the
// reason it could not be: ErrNotLeader, ErrStopped, the context's error, or
// context.DeadlineExceeded once deadline closes), and the run loop then calls done
// exactly once with the index and term the command was given, or with the error
// Propose would have returned. The caller has a goroutine fewer to wake and one
// blocking select fewer per command (measured: submit's two selects were 4% of a
// leader's CPU under bench's put-1000c, most of it in the locks of the channels
// every proposal shares). done runs on the node's run loop, before the entry can
// be written or sent, so it must return at once and must not call the Node. If the
// node stops with the command still queued, done gets ErrStopped, then perhaps on
// the goroutine of a ProposeAsync call (its own or another's) that found the node
// stopped: done must not take a lock its caller may hold while calling ProposeAsync.
func (n *Node) ProposeAsync(ctx context.Context, deadline <-chan struct{}, cmd []byte, done func(index, term uint64, err error)) error {
	if !n.isLeader.Load() {
		return ErrNotLeader
	}
	if err := n.enqueue(ctx, deadline, proposal{data: cmd, done: done}); err != nil {
		return err
	}
	select {
	case <-n.done:
		// The run loop may have ended, and refused what it found queued, before
		// this command was queued: it is then refused here (see refuseQueued).
		n.refuseQueued()
	default:
	}
	return nil
}

// enqueue hands p to the run loop's queue, until ctx is done or deadline closes.
func (n *Node) enqueue(ctx context.Context, deadline <-chan struct{}, p proposal) error {
	return sendToLoop(n, n.propc, p, ctx, deadline)
}

// sendToLoop puts v on ch, a queue the run loop empties: at once if ch has room,
// even when ctx has ended (the common case, and a select that locks ch alone);
// otherwise it waits for room until ctx is done, deadline closes (nil: never) or
// the node stops.
func sendToLoop[T any](n *Node, ch chan<- T, v T, ctx context.Context, deadline <-chan struct{}) error {
	select {
	case ch <- v:
		return nil
	default:
	}
	select {
	case ch <- v:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-deadline:
		return context.DeadlineExceeded
	case <-n.done:
		return ErrStopped
	}
}

// refuseQueued answers every proposal still queued with ErrStopped, once the run
// loop has ended (n.done is closed). The run loop calls it as it ends, and
// ProposeAsync after queueing one when it finds the loop ended: a proposal queued
// before the loop's call ended is taken by that call, and one queued after it is
// taken by its sender's, so none waits for an answer that never comes.
func (n *Node) refuseQueued() {
	for {
		select {
		case p := <-n.propc:
			p.answer(proposalResult{err: ErrStopped})
		default:
			return
		}
	}
}

// submit hands p to the run loop and waits for its index and term, until ctx is done
// or deadline closes; a follower refuses at once with ErrNotLeader (and its term).
func (n *Node) submit(ctx context.Context, deadline <-chan struct{}, p proposal) (index, term uint64, err error) {
	if !n.isLeader.Load() {
		return 0, n.term.Load(), ErrNotLeader
	}
	reply := make(chan proposalResult, 1)
	p.reply = reply
	if err := n.enqueue(ctx, deadline, p); err != nil {
		return 0, 0, err
	}
	res := n.awaitReply(ctx, deadline, reply)
	return res.index, res.term, res.err
}

// awaitReply waits for the run loop's answer to a queued proposal, or for ctx, the
// deadline or the node to end first; those answer with no index.
func (n *Node) awaitReply(ctx context.Context, deadline <-chan struct{}, reply <-chan proposalResult) proposalResult {
	select {
	case res := <-reply:
		return res
	case <-ctx.Done():
		return proposalResult{err: ctx.Err()}
	case <-deadline:
		return proposalResult{err: context.DeadlineExceeded}
	case <-n.done:
		return proposalResult{err: ErrStopped}
	}
}

// Forward proposes cmd from any node, leader or not: a follower sends it to the leader
// through Raft. It returns once the command is handed over, with no index: the caller
// recognises its command in Apply by content, and must retry (with deduplication) if
// it does not appear, since a forwarded proposal can be lost. ErrProposalDropped
// means no leader is known yet. It may be called from the apply goroutine: it waits
// only for the run loop to hand the command over.
func (n *Node) Forward(ctx context.Context, cmd []byte) error {
	return n.ForwardUntil(ctx, nil, cmd)
}

// ForwardUntil is Forward that also gives up, with context.DeadlineExceeded, once
// deadline closes (see ProposeUntil). A context error alone means the command will
// never be forwarded: it was not queued, or it was withdrawn from the queue before
// the run loop took it, or the run loop refused it (no leader known, too large).
// One that wraps ErrProposalPending too means the run loop handed it to the leader
// as the wait ended, so it may still commit. (etcd's Node.Propose waits on an
// unbuffered channel, so a proposal whose context ended before the run loop took
// it is not taken; the withdrawal gives the queue that rule, and is stricter: etcd
// can still answer the context's error for one its run loop took.)
func (n *Node) ForwardUntil(ctx context.Context, deadline <-chan struct{}, cmd []byte) error {
	reply := make(chan proposalResult, 1)
	claim := new(atomic.Bool)
	if err := n.enqueue(ctx, deadline, proposal{data: cmd, forward: true, reply: reply, claim: claim}); err != nil {
		return err
	}
	err := n.awaitReply(ctx, deadline, reply).err
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if claim.CompareAndSwap(false, true) {
		return err // withdrawn: the run loop will skip it
	}
	// The run loop took it and answers at once: propose does not block. Any error
	// it answers means nothing was appended or sent.
	var r proposalResult
	select {
	case r = <-reply:
	default:
		select {
		case r = <-reply:
		case <-n.done:
			return fmt.Errorf("%w: %w", ErrProposalPending, err)
		}
	}
	if r.err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrProposalPending, err)
}

// State returns the current term and whether this node believes it is the leader. It
// never blocks (it reads what the run loop last published), so it may be called from
// the apply goroutine.
func (n *Node) State() (term uint64, isLeader bool) {
	return n.term.Load(), n.isLeader.Load()
}

// ReadIndex returns a linearizable read point (thesis §6.4): once the application has
// applied the returned index, reading its state is linearizable. It confirms
// leadership with a heartbeat round and writes nothing to the log. Concurrent calls
// share heartbeat rounds.
//
// It may be called from the apply goroutine, since the round needs only the run loop
// and the peers; but that goroutine must not then wait for the index to be applied,
// since it is the one that applies.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	reply := make(chan readResult, 1)
	select {
	case n.readc <- reply:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.done:
		return 0, ErrStopped
	}
	select {
	case res := <-reply:
		return res.index, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.done:
		return 0, ErrStopped
	}
}

// Step hands the node a message from a peer. If the inbox has room the message is
// taken, even when ctx has ended; otherwise Step waits for room until ctx ends. The run
// loop empties the inbox without waiting on the application, so Step may be called
// from the apply goroutine (a transport does not usually need to).
func (n *Node) Step(ctx context.Context, m Message) error {
	return sendToLoop(n, n.recvc, m, ctx, nil)
}

// ReportUnreachable tells the node that a message to peer id could not be sent, so
// the leader stops streaming to it optimistically. It never blocks.
func (n *Node) ReportUnreachable(id uint64) {
	select {
	case n.reportc <- Message{Type: MsgUnreachable, From: id}:
	default:
	}
}

// ReportSnapshot tells the node how sending a snapshot to peer id ended. It never
// blocks.
func (n *Node) ReportSnapshot(id uint64, failed bool) {
	select {
	case n.reportc <- Message{Type: MsgSnapStatus, From: id, Reject: failed}:
	default:
	}
}

// Status returns the core's state. The run loop answers it, and never waits on the
// application to do so, so it may be called from the apply goroutine. Applied in it
// counts the entries handed over for applying (queued, or on the Apply channel),
// which the application may not have read yet.
func (n *Node) Status() Status {
	reply := make(chan Status, 1)
	select {
	case n.statusc <- reply:
		select {
		case st := <-reply:
			return st
		case <-n.done: // the run loop stopped inside the call (see onLoop)
			return Status{ID: n.cfg.ID}
		}
	case <-n.done:
		return Status{ID: n.cfg.ID}
	}
}

// Stop stops the node and waits until every goroutine it started has returned. It is
// safe to call more than once, and from the apply goroutine: the Apply channel is
// closed then, without waiting for the application to read what it still holds.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	n.wg.Wait()
}

// Done is closed once the node has stopped, by Stop or by a fatal error.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns the fatal error that stopped the node, or nil.
func (n *Node) Err() error {
	if p := n.err.Load(); p != nil {
		return *p
	}
	return nil
}

// run is the node's one goroutine that touches the core.
func (n *Node) run() {
	defer n.wg.Done()
	defer n.refuseQueued() // after done closes: deferred calls run last first
	defer close(n.done)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	// commitTimer runs while the core holds a commit index back from a follower
	// (RawNode.SendCommit); commitc is its channel then, else nil.
	commitTimer := time.NewTimer(time.Hour)
	commitTimer.Stop()
	defer commitTimer.Stop()
	var commitc <-chan time.Time
	// hedgeTimer runs while the leader's core waits on a read that a hedge could
	// complete sooner (RawNode.ReadToHedge), from any member: hedgeFor is that read's
	// context, and hedgec the timer's channel then, else nil.
	hedgeTimer := time.NewTimer(time.Hour)
	hedgeTimer.Stop()
	defer hedgeTimer.Stop()
	var hedgec <-chan time.Time
	var hedgeFor []byte

	var (
		// readSeq numbers the read rounds; it starts anywhere, so that a round's
		// answer that reaches a later run of this node (sent to the run before a
		// restart, or released by a heartbeat answer of the new run) matches none
		// of its rounds: its index may predate writes acknowledged since.
		readSeq = rand.Uint64()
		ticks   uint64
		// readsWaiting have asked but not yet been given to the core. At most one
		// round is in flight (readsInFlight, from readSeq, started at tick
		// roundStarted): reads that arrive meanwhile wait and share the next round,
		// so a heartbeat round serves every read that arrived during the last one.
		readsWaiting  []chan readResult
		readsInFlight []chan readResult
		roundStarted  uint64
	)
	answerReads := func(rs []chan readResult, res readResult) {
		for _, r := range rs {
			r <- res
		}
	}
	failReads := func(err error) {
		answerReads(readsWaiting, readResult{err: err})
		answerReads(readsInFlight, readResult{err: err})
		readsWaiting, readsInFlight = readsWaiting[:0], nil
	}
	defer failReads(ErrStopped)
	defer n.stopIfStorageFailed()

	for {
		if len(readsWaiting) > 0 && readsInFlight == nil {
			readSeq++
			// The node id makes the context unique in the leader's queue, which
			// holds requests from every member.
			rctx := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, n.cfg.ID), readSeq)
			if err := n.rn.ReadIndex(rctx); err != nil {
				if err == ErrProposalDropped {
					err = ErrNotLeader
				}
				answerReads(readsWaiting, readResult{err: err})
			} else {
				readsInFlight, roundStarted = readsWaiting, ticks
			}
			readsWaiting = nil
		}

		n.rn.holdCommitted = n.applyq.hold()
		if n.rn.HasReady() {
			rd := n.rn.Ready()
			if err := n.handleReady(rd); err != nil {
				n.fail(err)
				return
			}
			for _, rs := range rd.ReadStates {
				if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx) != n.cfg.ID ||
					binary.BigEndian.Uint64(rs.RequestCtx[8:]) != readSeq || readsInFlight == nil {
					continue // an answer to a round already given up on
				}
				res := readResult{index: rs.Index}
				if rs.Index == 0 {
					res.err = ErrReadIndexNotReady
				}
				answerReads(readsInFlight, res)
				readsInFlight = nil
			}
			n.observed.publish(rd.SoftState, rd.HardState)
			if rd.SoftState != nil {
				n.isLeader.Store(rd.SoftState.State == StateLeader)
				// Reads waiting on a round led by a lost leadership will never be
				// answered: fail them so callers retry.
				failReads(ErrLeadershipLost)
			}
			if !rd.HardState.IsEmpty() {
				n.term.Store(rd.HardState.Term)
			}
			n.checkTransfers(ticks)
			if n.async != nil {
				n.rn.AdvanceQueued(rd)
				if d := n.inlineDurable; d.Index != 0 {
					n.inlineDurable = DurableMark{}
					n.rn.AckDurable(d)
				}
			} else {
				n.rn.Advance(rd)
			}
			continue
		}

		if commitc == nil && n.rn.HasUnsentCommit() {
			commitTimer.Reset(n.rn.SendCommitAfter(n.cfg.CommitDelay))
			commitc = commitTimer.C
		}
		propc := n.propc
		if len(n.queuedTickets) >= maxLeaderWritesInFlight && n.isLeader.Load() && len(propc) < cap(propc)/2 {
			// A leader with writes in flight lets proposals gather while it waits:
			// they then share the next Ready, with one write and one append per
			// follower, instead of one each. Acknowledgements, reads and commits go
			// on meanwhile.
			propc = nil
		}
		// A read waiting on a round that asked only the last round's quorum is
		// hedged once it has waited ReadIndexHedgeDelay, whichever member it came
		// from; the timer starts again for the next such read.
		if ctx := n.rn.ReadToHedge(); ctx == nil {
			if hedgec != nil {
				hedgeTimer.Stop()
				hedgec = nil
			}
		} else if hedgec == nil || !bytes.Equal(ctx, hedgeFor) {
			hedgeFor = append(hedgeFor[:0], ctx...)
			hedgeTimer.Reset(n.cfg.ReadIndexHedgeDelay)
			hedgec = hedgeTimer.C
		}
		if len(propc) == 0 && len(n.recvc) == 0 && len(n.readc) == 0 && len(n.durablec) == 0 && len(n.applyWake) == 0 {
			// The select below is likely to block.
			n.sendYield.waiting()
		}
		select {
		case <-commitc:
			commitc = nil
			n.rn.SendCommit()
		case <-hedgec:
			hedgec = nil
			if bytes.Equal(n.rn.ReadToHedge(), hedgeFor) {
				n.rn.HedgeReadIndex()
			}
		case <-ticker.C:
			n.rn.Tick()
			ticks++
			n.checkTransfers(ticks)
			if readsInFlight != nil && ticks-roundStarted > uint64(n.cfg.ElectionTicks) {
				// The round's request or its answer was lost (a forwarded read
				// whose leader went away): give up on it, so later reads are not
				// held behind it, and let the callers retry.
				answerReads(readsInFlight, readResult{err: errReadRoundLost})
				readsInFlight = nil
			}
		case p := <-propc:
			n.propose(p)
			// Take every proposal already queued, so they share one Ready: one
			// write, one fsync and one append message per follower.
			for drained := false; !drained; {
				select {
				case p := <-n.propc:
					n.propose(p)
				default:
					drained = true
				}
			}
		case m := <-n.recvc:
			_ = n.rn.Step(m)
			for drained := false; !drained; {
				select {
				case m := <-n.recvc:
					_ = n.rn.Step(m)
				default:
					drained = true
				}
			}
		case r := <-n.readc:
			readsWaiting = append(readsWaiting, r)
			for drained := false; !drained; {
				select {
				case r := <-n.readc:
					readsWaiting = append(readsWaiting, r)
				default:
					drained = true
				}
			}
		case <-n.snapc:
			if err := n.createSnapshot(n.takeSnapshotRequest()); err != nil {
				n.fail(err)
				return
			}
		case m := <-n.reportc:
			if m.Type == MsgUnreachable {
				n.rn.ReportUnreachable(m.From)
			} else {
				n.rn.ReportSnapshot(m.From, m.Reject)
			}
		case reply := <-n.statusc:
			reply <- n.rn.Status()
		case fn := <-n.queryc:
			fn()
		case req := <-n.transferc:
			n.startTransfer(req, ticks)
		case <-n.applyWake:
		case <-n.durablec:
			if n.Err() != nil {
				return // the persist goroutine's write failed
			}
			n.durable.Lock()
			mark := n.durable.mark
			durableTicket := n.durable.ticket
			n.durableTerm = max(n.durableTerm, n.durable.hardStateTerm)
			n.durable.Unlock()
			n.rn.AckDurable(mark)
			k := 0
			for k < len(n.queuedTickets) && n.queuedTickets[k] <= durableTicket {
				k++
			}
			n.queuedTickets = append(n.queuedTickets[:0], n.queuedTickets[k:]...)
		case <-n.stopc:
			return
		}
	}
}

func (n *Node) propose(p proposal) {
	if p.claim != nil && !p.claim.CompareAndSwap(false, true) {
		return // withdrawn by its proposer
	}
	if p.conf != nil {
		index, term, err := n.rn.ProposeConfChange(*p.conf)
		p.answer(proposalResult{index: index, term: term, err: err})
		return
	}
	if p.forward {
		p.answer(proposalResult{err: n.rn.Forward(p.data)})
		return
	}
	index, term, err := n.rn.Propose(p.data)
	p.answer(proposalResult{index: index, term: term, err: err})
}
