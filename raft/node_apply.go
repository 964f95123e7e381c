package raft

import (
	"fmt"
	"sync"
)

// The Node's side facing the application: the apply queue, the delivery goroutine,
// and the snapshots the application hands back.
//
// The rule that keeps the Node live: the run loop never waits on the application.
// Handing committed entries over never blocks it (the queue has no blocking send; its
// bound is kept by holding entries back in the core instead), and nothing the
// application calls from its apply goroutine can hold the run loop up, so whatever
// the application does, the run loop goes on stepping messages, ticking and
// answering. Issue 10 was the cycle this rule breaks: the run loop blocked handing a
// leader's snapshot to a full queue while the application, which would have drained
// it, blocked in Snapshot waiting for the run loop.

// ApplyType says what an ApplyMsg carries.
type ApplyType uint8

const (
	// ApplyCommand: Command is a committed command, to be executed.
	ApplyCommand ApplyType = iota
	// ApplyNoOp: the empty entry a new leader appends at the start of its term
	// (§5.4.2, §8). It holds an index, so the application sees every index once, but
	// there is nothing to execute.
	ApplyNoOp
	// ApplySnapshot: Snapshot holds the application state up to and including Index,
	// and Membership the configuration as of Index; replace the state with it. The
	// entries it covers are not delivered one by one.
	ApplySnapshot
	// ApplyConfChange: a committed configuration change. ConfChange is the change as
	// proposed (its Context included) and Membership the configuration it leads to.
	// The node has used that configuration since it appended the entry (thesis §4.1);
	// the application records it, say in its member list, and acts on it: a node that
	// finds itself removed may stop, since the cluster no longer sends it anything.
	ApplyConfChange
)

func (t ApplyType) String() string {
	switch t {
	case ApplyCommand:
		return "Command"
	case ApplyNoOp:
		return "NoOp"
	case ApplySnapshot:
		return "Snapshot"
	case ApplyConfChange:
		return "ConfChange"
	}
	return fmt.Sprintf("ApplyType(%d)", uint8(t))
}

// ApplyMsg is one committed log entry, or an installed snapshot, handed to the
// application in index order, exactly once (see the package doc, "What the Node
// promises").
type ApplyMsg struct {
	Type  ApplyType
	Index uint64
	Term  uint64
	// Command is the command given to Start, Propose or Forward (ApplyCommand only).
	Command []byte
	// Snapshot is the data given to Snapshot, on this node or the leader
	// (ApplySnapshot only).
	Snapshot []byte
	// ConfChange is the committed change (ApplyConfChange only).
	ConfChange ConfChange
	// Membership is the configuration after the change (ApplyConfChange), or as of
	// the snapshot's index (ApplySnapshot: for a node that joined the cluster, empty
	// if the snapshot predates every change, when it cannot know the bootstrap one).
	Membership Membership
}

// applyBuffer is the room in the Apply channel. Unbuffered, it cost a hand-off
// between the Node and the application per entry; with room for a batch, the
// application takes a batch's entries without waiting on the Node for each.
const applyBuffer = 256

// Apply returns the channel of committed entries and installed snapshots, in index
// order, exactly once. The channel is closed when the node stops. The goroutine that
// reads it, the apply goroutine, may call any method of the Node (each says what it
// waits for); a slow reader holds back only the delivery of committed entries, never
// elections, replication or the other calls.
func (n *Node) Apply() <-chan ApplyMsg { return n.applyc }

// Snapshot tells the node that the application's state up to and including index is
// in data, so the log up to index may be discarded. index must have been applied. It
// never blocks, so it may be called from the apply goroutine: the run loop takes the
// request when it next can, and a request not yet taken is replaced by one of a
// higher index (whose data covers it). The node keeps data until it is stored; do not
// modify it.
func (n *Node) Snapshot(index uint64, data []byte) {
	n.snapReq.Lock()
	if index > n.snapReq.index {
		n.snapReq.snapshotRequest = snapshotRequest{index: index, data: data}
	}
	n.snapReq.Unlock()
	select {
	case n.snapc <- struct{}{}:
	default: // the run loop is already woken for the request
	}
}

type snapshotRequest struct {
	index uint64
	data  []byte
}

// takeSnapshotRequest returns the pending snapshot request and clears it.
func (n *Node) takeSnapshotRequest() snapshotRequest {
	n.snapReq.Lock()
	defer n.snapReq.Unlock()
	s := n.snapReq.snapshotRequest
	n.snapReq.snapshotRequest = snapshotRequest{}
	return s
}

func (n *Node) createSnapshot(s snapshotRequest) error {
	if s.index == 0 {
		return nil
	}
	// The current snapshot's index is FirstIndex-1; asking Storage for the snapshot
	// itself could mean reading its data back from disk.
	first, err := n.storage.FirstIndex()
	if err != nil {
		return fmt.Errorf("raft: reading first index: %w", err)
	}
	if s.index < first {
		return nil
	}
	if applied := n.rn.Status().Applied; s.index > applied {
		n.logger("raft: ignoring snapshot past the applied index", "index", s.index, "applied", applied)
		return nil
	}
	membership, err := n.rn.MembershipAt(s.index)
	if err != nil {
		n.logger("raft: ignoring snapshot whose configuration is unknown", "index", s.index, "err", err)
		return nil
	}
	n.sendYield.beforeFsync() // the writes below fsync
	if hs := n.pendingHardState; !hs.IsEmpty() {
		// A snapshot is of committed entries; storage may check that against the
		// commit index it holds, so write the one not yet written.
		if err := n.storage.Save(hs, nil); err != nil {
			return fmt.Errorf("raft: persisting HardState %+v: %w", hs, err)
		}
		n.savedHardState, n.pendingHardState = hs, HardState{}
	}
	if _, err := n.storage.CreateSnapshot(s.index, membership, s.data); err != nil {
		return fmt.Errorf("raft: saving snapshot at index %d: %w", s.index, err)
	}
	return nil
}

// applyQueue holds the batches the run loop has handed over and the delivery
// goroutine has not taken yet. push never blocks. The bound, Config.MaxApplyBatches,
// is kept by the run loop, which holds committed entries back in the core while the
// queue is full (applyQueue.hold): they stay in the log, where they are anyway. A
// snapshot from the leader cannot be held back (the core installs it as it steps the
// message), so it is queued even when the queue is full; if a snapshot is still
// queued when another arrives, the newer replaces it and the batches after it, which
// it covers. The queue thus holds at most MaxApplyBatches+1 batches.
type applyQueue struct {
	limit int
	// ready has a token while batches wait: the delivery goroutine's wake-up.
	ready chan struct{}
	mu    struct {
		sync.Mutex
		batches [][]ApplyMsg
		// holding: the run loop found the queue full (hold) and holds committed
		// entries back until pop makes room and wakes it.
		holding bool
		// delivering: the delivery goroutine holds a batch that pop gave it and
		// may not have put all of on the Apply channel yet.
		delivering bool
	}
}

func newApplyQueue(limit int) applyQueue {
	return applyQueue{limit: limit, ready: make(chan struct{}, 1)}
}

// hold reports whether the run loop must hold committed entries back (the queue is
// full), and if so records that it does, so that the pop that makes room says to
// wake it. The delivery goroutine used to wake the run loop after every batch it
// took, full queue or not: a wake-up of the run loop per committed batch that almost
// never found anything held.
func (q *applyQueue) hold() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mu.holding = len(q.mu.batches) >= q.limit
	return q.mu.holding
}

// push queues batch, which begins with a snapshot or holds only entries. If nothing
// is queued, the delivery goroutine holds no batch and out (the Apply channel) has
// room for the whole batch, push puts it on out itself: the order is kept, since
// every earlier batch is on out already, and nothing blocks, since only the delivery
// goroutine, which is idle, sends there too. That saves waking the delivery
// goroutine, a hand-off on the way from commit to the application, whenever the
// application keeps up. With one client (bench's put-1c), commit to apply took
// about 10 µs through it.
func (q *applyQueue) push(batch []ApplyMsg, out chan<- ApplyMsg) {
	q.mu.Lock()
	if len(q.mu.batches) == 0 && !q.mu.delivering && cap(out)-len(out) >= len(batch) {
		for _, msg := range batch {
			out <- msg
		}
		q.mu.Unlock()
		return
	}
	if batch[0].Type == ApplySnapshot {
		for i, queued := range q.mu.batches {
			if queued[0].Type == ApplySnapshot {
				clear(q.mu.batches[i:])
				q.mu.batches = q.mu.batches[:i]
				break
			}
		}
	}
	q.mu.batches = append(q.mu.batches, batch)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop takes the oldest batch, or returns nil if none is queued. The delivery goroutine
// pops until nil after each wake-up, so a token left by a batch it already took only
// costs a look at an empty queue. wake says the run loop holds committed entries back
// (hold) and there is room for them now: the caller must wake it.
func (q *applyQueue) pop() (batch []ApplyMsg, wake bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mu.delivering = len(q.mu.batches) > 0
	if len(q.mu.batches) == 0 {
		return nil, false
	}
	batch = q.mu.batches[0]
	q.mu.batches[0] = nil
	q.mu.batches = q.mu.batches[1:]
	if q.mu.holding && len(q.mu.batches) < q.limit {
		q.mu.holding, wake = false, true
	}
	return batch, wake
}

// queueApply hands rd's snapshot and committed entries to the delivery goroutine, or
// puts them on the Apply channel itself when it can (applyQueue.push).
func (n *Node) queueApply(rd Ready) {
	size := len(rd.CommittedEntries)
	if !rd.Snapshot.IsEmpty() {
		size++
	}
	if size == 0 {
		return
	}
	// Sized once: appended to from empty, a batch's ApplyMsgs (160 bytes each)
	// were 5.6% of the bytes a leader allocated under bench's put-1000c.
	batch := make([]ApplyMsg, 0, size)
	if !rd.Snapshot.IsEmpty() {
		batch = append(batch, n.snapshotMsg(rd.Snapshot))
	}
	for _, e := range rd.CommittedEntries {
		msg := ApplyMsg{Type: ApplyCommand, Index: e.Index, Term: e.Term, Command: e.Data}
		switch e.Type {
		case EntryCommand:
		case EntryConfChange:
			ce := mustDecodeConfEntry(&e)
			msg.Type, msg.Command, msg.ConfChange, msg.Membership = ApplyConfChange, nil, ce.Change, ce.Membership
		default:
			msg.Type, msg.Command = ApplyNoOp, nil
		}
		batch = append(batch, msg)
	}
	n.applyq.push(batch, n.applyc)
}

// snapshotMsg is the ApplyMsg that delivers snap.
func (n *Node) snapshotMsg(snap Snapshot) ApplyMsg {
	return ApplyMsg{Type: ApplySnapshot, Index: snap.Index, Term: snap.Term, Snapshot: snap.Data,
		Membership: n.rn.ResolveMembership(snap.Membership)}
}

// deliver hands batches of committed entries to the application, so that a slow
// application never stalls the consensus loop. It is the only goroutine that waits on
// the application.
func (n *Node) deliver() {
	defer n.wg.Done()
	defer close(n.applyc)
	for {
		select {
		case <-n.applyq.ready:
		case <-n.done:
			return
		}
		for {
			batch, wake := n.applyq.pop()
			if batch == nil {
				break
			}
			if wake {
				// The queue has room again: let the run loop hand out what it held.
				select {
				case n.applyWake <- struct{}{}:
				default:
				}
			}
			for _, msg := range batch {
				select {
				case n.applyc <- msg:
				case <-n.done:
					return
				}
			}
		}
	}
}
