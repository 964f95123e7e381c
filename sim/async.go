package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"raftkv/raft"
)

// Asynchronous persistence (Options.AsyncWrites) drives each core the way raft.Node
// drives it over a raft.AsyncStorage (raft/node_ready.go): a Ready's write is queued
// and readable at once, the core is told with AdvanceQueued, and the write becomes
// durable later, at a flush event of the node's simulated disk. A leader's appends,
// heartbeats and snapshots leave at once; every other message waits in the node's
// queue until every write queued before it is durable, even when its own Ready wrote
// nothing. (A leader elected by its own vote alone, the only voter, holds its messages
// too until its term is durable.) A flush makes a prefix of the queued writes durable
// (one or several: a group commit), sends the messages that waited for them, in order,
// and reports the last entry written with AckDurable. A crash loses every write not
// yet durable.

// diskWrite is one Ready's write in a node's disk queue, or, with isWrite false, a
// Ready that wrote nothing but whose messages must wait behind the writes before it.
type diskWrite struct {
	isWrite bool
	hs      raft.HardState
	ents    []raft.Entry
	// mark names the write for AckDurable.
	mark raft.DurableMark
	// ticket is the AsyncStorage's, over a StorageFactory's storage.
	ticket uint64
	held   []heldMessage
}

// heldMessage is a message waiting for the writes queued before it.
type heldMessage struct {
	m raft.Message
	// logTerm is, for an acknowledgement of entries, the term of entry m.Index in the
	// node's log when m was held: the entry it claims to hold durably. Zero if that
	// entry was already compacted into a snapshot.
	logTerm uint64
}

// asyncDisk is the part of a node's storage that AsyncWrites adds: the queue of writes
// not yet durable, and a copy of exactly what is durable.
type asyncDisk struct {
	// store is the node's storage as an AsyncStorage, when a StorageFactory made it;
	// nil over raft.MemoryStorage, whose writes the queue alone makes pending.
	store raft.AsyncStorage
	// durable holds what the node has made durable: HardState, log and snapshot. The
	// checkers judge outgoing messages against it, and over raft.MemoryStorage a crash
	// restarts the node on a copy of it.
	durable *raft.MemoryStorage
	// queue holds the writes in the order queued; queue[:synced] are durable already
	// (a snapshot forced them to be) but their messages have not left yet.
	queue  []diskWrite
	synced int
	// flushScheduled says a flush event is pending; there is at most one at a time.
	flushScheduled bool
}

// newAsyncDisk sets up node n's disk queue on what its storage holds now.
func (c *Cluster) newAsyncDisk(n *node) (*asyncDisk, error) {
	durable, err := copyStorage(n.storage)
	if err != nil {
		return nil, err
	}
	d := &asyncDisk{durable: durable}
	if c.opts.Storage != nil {
		store, ok := n.storage.(raft.AsyncStorage)
		if !ok {
			return nil, fmt.Errorf("Options.AsyncWrites needs a raft.AsyncStorage; node %d's storage is a %T", n.id, n.storage)
		}
		d.store = store
	}
	return d, nil
}

// copyStorage returns a MemoryStorage holding what src holds.
func copyStorage(src raft.Storage) (*raft.MemoryStorage, error) {
	dst := raft.NewMemoryStorage()
	snap, err := src.Snapshot()
	if err != nil {
		return nil, err
	}
	if !snap.IsEmpty() {
		if err := dst.ApplySnapshot(snap); err != nil {
			return nil, err
		}
	}
	hs, err := src.InitialState()
	if err != nil {
		return nil, err
	}
	first, err := src.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := src.LastIndex()
	if err != nil {
		return nil, err
	}
	var ents []raft.Entry
	if last >= first {
		if ents, err = src.Entries(first, last+1, math.MaxUint64); err != nil {
			return nil, err
		}
		if uint64(len(ents)) != last+1-first {
			return nil, fmt.Errorf("Entries(%d, %d) returned %d entries", first, last+1, len(ents))
		}
	}
	if err := dst.Save(hs, ents); err != nil {
		return nil, err
	}
	return dst, nil
}

// handleReadyAsync carries out one Ready as raft.Node does over an AsyncStorage. It
// reports whether the node is still up and the run still clean.
func (c *Cluster) handleReadyAsync(n *node, rd raft.Ready) bool {
	wrote, ok := c.queueWrite(n, &rd)
	if !ok {
		return false
	}
	if n.crashAt == crashAfterPersist {
		c.counters.CrashesMidReady++
		c.crash(n)
		return false
	}
	var held []heldMessage
	for _, m := range rd.Messages {
		// A leader's messages claim its term: they leave before the write only in a
		// term already durable (not so for a leader elected by its own vote alone).
		isLeaders := m.Type == raft.MsgApp || m.Type == raft.MsgHeartbeat || m.Type == raft.MsgSnap
		if isLeaders && m.Term <= n.durable.Term {
			c.send(n, m)
		} else {
			held = append(held, c.hold(n, m))
		}
	}
	c.queueMessages(n, wrote, held)
	if n.crashAt == crashAfterSend {
		c.counters.CrashesMidReady++
		c.crash(n)
		return false
	}
	if !c.applyReady(n, &rd) {
		return false
	}
	n.rn.AdvanceQueued(rd)
	return true
}

// queueWrite installs the Ready's snapshot (at once: storage.Storage's ApplySnapshot
// waits for it and for every write before it) and queues its HardState and entries,
// checking them as persist does. It reports whether it queued a write.
func (c *Cluster) queueWrite(n *node, rd *raft.Ready) (wrote, ok bool) {
	d := n.disk
	if !rd.Snapshot.IsEmpty() {
		if err := n.storage.ApplySnapshot(rd.Snapshot); err != nil {
			if c.crashedInStorage(n, err) {
				return false, false
			}
			c.violate("storage", "node %d: ApplySnapshot(index=%d term=%d): %v", n.id, rd.Snapshot.Index, rd.Snapshot.Term, err)
			return false, false
		}
		if !c.syncTo(n, len(d.queue)) {
			return false, false
		}
		if err := d.durable.ApplySnapshot(rd.Snapshot); err != nil {
			c.violate("storage", "node %d: durable copy: ApplySnapshot(%d): %v", n.id, rd.Snapshot.Index, err)
			return false, false
		}
		c.checkSnapshotPersisted(n, rd.Snapshot)
	}
	if rd.HardState.IsEmpty() && len(rd.Entries) == 0 {
		return false, c.err == nil
	}
	c.checkHardState(n, rd.HardState)
	c.checkOverwrite(n, rd.Entries)
	if c.err != nil {
		return false, false
	}
	// The core may reuse the Ready's slice; the write keeps its own.
	w := diskWrite{isWrite: true, hs: rd.HardState, ents: slices.Clone(rd.Entries), mark: rd.DurableMark()}
	if d.store != nil {
		ticket, err := d.store.SaveAsync(rd.HardState, rd.Entries)
		if err != nil {
			if c.crashedInStorage(n, err) {
				return false, false
			}
			c.violate("storage", "node %d: SaveAsync(hs=%+v, %d entries): %v", n.id, rd.HardState, len(rd.Entries), err)
			return false, false
		}
		w.ticket = ticket
	} else if err := n.storage.Save(rd.HardState, rd.Entries); err != nil {
		c.violate("storage", "node %d: Save(hs=%+v, %d entries): %v", n.id, rd.HardState, len(rd.Entries), err)
		return false, false
	}
	d.queue = append(d.queue, w)
	c.counters.WritesQueued++
	if !rd.HardState.IsEmpty() {
		n.written = rd.HardState
		c.checkCommit(n, rd.HardState)
	}
	c.checkLogMatching(n, rd.Entries)
	c.scheduleFlush(n)
	return true, c.err == nil
}

// hold records what message m claims about the node's log as the node stands now.
func (c *Cluster) hold(n *node, m raft.Message) heldMessage {
	h := heldMessage{m: m}
	if m.Type == raft.MsgAppResp && !m.Reject {
		t, err := n.storage.Term(m.Index)
		switch {
		case err == nil:
			h.logTerm = t
		case !errors.Is(err, raft.ErrCompacted):
			c.violate("persist before speak", "node %d acknowledges entries through %d, which its log does not hold: %v", n.id, m.Index, err)
		}
	}
	return h
}

// queueMessages puts a Ready's held messages behind the writes queued before them: on
// its own write if it wrote, else in a queue entry of their own. With nothing queued
// they leave at once, as the Node's persist goroutine sends them without a wait.
func (c *Cluster) queueMessages(n *node, wrote bool, held []heldMessage) {
	if len(held) == 0 {
		return
	}
	d := n.disk
	switch {
	case wrote:
		last := &d.queue[len(d.queue)-1]
		last.held = held
	case len(d.queue) > 0:
		d.queue = append(d.queue, diskWrite{held: held})
	default:
		for _, h := range held {
			c.send(n, h.m)
		}
		return
	}
	c.counters.MessagesHeld += len(held)
}

// diskLatency draws how long a flush takes: mostly 0.1-5 ms, now and then up to 100.
func (c *Cluster) diskLatency() time.Duration {
	if c.rng.IntN(20) == 0 {
		return randDuration(c.rng, 5*time.Millisecond, 100*time.Millisecond)
	}
	return randDuration(c.rng, 100*time.Microsecond, 5*time.Millisecond)
}

// scheduleFlush makes sure a flush event is coming while writes are queued.
func (c *Cluster) scheduleFlush(n *node) {
	d := n.disk
	if d.flushScheduled || len(d.queue) == 0 {
		return
	}
	d.flushScheduled = true
	inc := n.incarnation
	c.after(c.diskLatency(), func() {
		if n.incarnation != inc || n.rn == nil {
			return
		}
		d.flushScheduled = false
		c.flush(n)
		if n.incarnation == inc && n.rn != nil {
			c.scheduleFlush(n)
		}
	})
}

// flush is one flush of node n's disk: it makes a prefix of the queued writes durable
// (all of them, or at random fewer: writes queued during a flush wait for the next),
// then sends what waited for them and tells the core.
func (c *Cluster) flush(n *node) {
	d := n.disk
	cut := len(d.queue)
	if cut > d.synced+1 && c.rng.IntN(2) == 0 {
		cut = d.synced + 1 + c.rng.IntN(cut-d.synced)
	}
	if !c.syncTo(n, cut) {
		return
	}
	if n.crashAt == crashBeforeRelease {
		c.counters.CrashesMidReady++
		c.crash(n)
		return
	}
	c.release(n)
	c.handleReady(n)
}

// syncTo makes the writes queue[:cut] durable: over a StorageFactory's storage by
// waiting for them, and in the durable copy by applying them to it.
func (c *Cluster) syncTo(n *node, cut int) bool {
	d := n.disk
	if cut <= d.synced {
		return true
	}
	if d.store != nil {
		var ticket uint64
		for _, w := range d.queue[d.synced:cut] {
			ticket = max(ticket, w.ticket)
		}
		if ticket != 0 {
			if err := d.store.WaitDurable(ticket); err != nil {
				if c.crashedInStorage(n, err) {
					return false
				}
				c.violate("storage", "node %d: WaitDurable(%d): %v", n.id, ticket, err)
				return false
			}
		}
	}
	writes := 0
	for _, w := range d.queue[d.synced:cut] {
		if w.isWrite {
			writes++
			if err := d.durable.Save(w.hs, w.ents); err != nil {
				c.violate("storage", "node %d: durable copy: Save: %v", n.id, err)
				return false
			}
			if !w.hs.IsEmpty() {
				n.durable = w.hs
			}
		}
		// The durable copy is now what the node held when it made these messages.
		c.checkHeld(n, w.held)
	}
	if writes > 1 {
		c.counters.GroupCommits++
	}
	c.tracef("n%d durable: %d writes, %d still queued", n.id, writes, len(d.queue)-cut)
	d.synced = cut
	return true
}

// release sends, in order, the messages of every durable write and of the entries
// behind them that wrote nothing, and reports the last entry written to the core.
func (c *Cluster) release(n *node) {
	d := n.disk
	var mark raft.DurableMark
	k := 0
	for ; k < len(d.queue) && (k < d.synced || !d.queue[k].isWrite); k++ {
		w := &d.queue[k]
		if k >= d.synced {
			// Nothing was queued between these messages and the last durable write.
			c.checkHeld(n, w.held)
		}
		for _, h := range w.held {
			c.transmit(n, h.m, true)
		}
		if len(w.ents) > 0 {
			mark = w.mark
		}
	}
	clear(d.queue[:k])
	d.queue = d.queue[k:]
	d.synced = max(d.synced-k, 0)
	if mark.Index != 0 && c.err == nil {
		n.rn.AckDurable(mark)
	}
}

// checkHeld runs as the write that held messages wait for becomes durable, when the
// durable copy is what the node held as it made them: what they claim must be durable
// then (persist before you speak, judged against what is durable, not what is merely
// queued). They may leave after later writes made durable in the same flush changed
// the node's state again; what they claim was durable, which is what counts.
func (c *Cluster) checkHeld(n *node, held []heldMessage) {
	for _, h := range held {
		c.checkClaims(n, h.m, h.logTerm)
	}
}

// checkAckDurable checks an acknowledgement of the log through index, whose entry
// there had logTerm (0: compacted) when it was made, against the durable copy.
func (c *Cluster) checkAckDurable(n *node, index, logTerm uint64) {
	durable := n.disk.durable
	if first, _ := durable.FirstIndex(); logTerm == 0 || index < first-1 {
		return // under the durable snapshot: committed, and durable
	}
	if t, err := durable.Term(index); err != nil || t != logTerm {
		last, _ := durable.LastIndex()
		c.violate("persist before speak", "node %d acknowledges entry %d (term %d) but its durable log has term %d there (err %v, durable through %d)",
			n.id, index, logTerm, t, err, last)
	}
}

// compactDurable mirrors a compaction of node n's storage in its durable copy. Like
// storage.Storage's CreateSnapshot, it makes every queued write durable first.
func (c *Cluster) compactDurable(n *node, index uint64, membership raft.Membership, data []byte) {
	if n.disk == nil || !c.syncTo(n, len(n.disk.queue)) {
		return
	}
	if _, err := n.disk.durable.CreateSnapshot(index, membership, data); err != nil {
		c.violate("storage", "node %d: durable copy: CreateSnapshot(%d): %v", n.id, index, err)
	}
}

// loseQueued drops node n's queued writes at a crash. Over raft.MemoryStorage the node
// will restart on a copy of its durable state; a StorageFactory's storage loses them
// itself.
func (c *Cluster) loseQueued(n *node) {
	d := n.disk
	if d == nil {
		return
	}
	for _, w := range d.queue[d.synced:] {
		if w.isWrite {
			c.counters.WritesLost++
		}
	}
	if c.opts.Storage == nil {
		st, err := copyStorage(d.durable)
		if err != nil {
			c.violate("storage", "node %d: copying its durable state: %v", n.id, err)
			return
		}
		n.storage = st
	}
	n.disk = nil
}

// checkRecovered runs when a StorageFactory's storage reopens after a crash in
// AsyncWrites mode: it must hold at least what the node waited for, durable: no older
// term or vote, no lower commit index, the committed entries unchanged.
func (c *Cluster) checkRecovered(n *node, durable raft.HardState, st raft.Storage) {
	hs, err := st.InitialState()
	if err != nil {
		c.violate("storage", "node %d: InitialState after a crash: %v", n.id, err)
		return
	}
	lost := hs.Term < durable.Term || hs.Commit < durable.Commit ||
		(hs.Term == durable.Term && durable.Vote != raft.None && hs.Vote != durable.Vote)
	if lost {
		c.violate("durability", "node %d waited for HardState %+v to be durable, but recovered %+v after a crash", n.id, durable, hs)
	}
}
