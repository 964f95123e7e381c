package raft

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

// The Node's handling of one Ready: what it persists, in which order it sends, and
// what it queues for the application.

// handleReady persists, sends and queues for applying, in the order Ready requires,
// with two overlaps that keep Figure 2's guarantees:
//   - a leader's appends and heartbeats go out before its own disk write (thesis
//     §10.2.1): they depend on nothing this Ready persists, and the leader counts its
//     own copy only after Advance. They do claim the leader's term, which is durable
//     before any of them leaves: a leader that needed others' votes made it durable
//     before asking for them, and one elected by its own vote alone (the only voter,
//     with learners to send to) holds them back, with the rest, until it is;
//   - committed entries go to the application before this Ready's write: the core
//     hands out only entries already durable in this node's log (written by an
//     earlier Ready; RawNode.AckDurable), so applying them does not wait for this
//     batch's fsync, and the application's state, which it may make durable at any
//     time, is never ahead of the log after a crash. A received snapshot goes to
//     the application only once persisted, for the same reason.
//
// Votes and acknowledgements still leave only after the write.
func (n *Node) handleReady(rd Ready) error {
	early, late := splitLeaderMessages(rd.Messages, n.durableTerm)
	if len(early) > 0 {
		n.send(early)
	}
	if !rd.Snapshot.IsEmpty() {
		n.sendYield.beforeFsync()
		if err := n.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("raft: persisting snapshot at index %d: %w", rd.Snapshot.Index, err)
		}
	}
	n.queueApply(rd)
	hs, ok := n.hardStateToSave(rd)
	write := ok || len(rd.Entries) > 0
	if n.async != nil {
		return n.queueWrite(hs, write, rd.Entries, rd.DurableMark(), late)
	}
	if write {
		n.sendYield.beforeFsync()
		if err := n.storage.Save(hs, rd.Entries); err != nil {
			return fmt.Errorf("raft: persisting %d entries and HardState %+v: %w", len(rd.Entries), hs, err)
		}
		if !hs.IsEmpty() {
			n.savedHardState = hs
			n.durableTerm = hs.Term
		}
	}
	if len(late) > 0 {
		n.send(late)
	}
	return nil
}

// send hands msgs to the transport from the run loop, which yields before its next
// fsync (senderYield).
func (n *Node) send(msgs []Message) {
	n.transport.Send(msgs)
	n.sendYield.sent()
}

// senderYield is kept by each goroutine that both hands messages to the transport and
// waits for fsyncs (the run loop, persist): it lets the goroutines that its last Sends
// woke run before it blocks in an fsync, if any Send came since it last yielded or
// went to wait for input. A Transport commonly writes on a goroutine of its own per
// peer, which Send wakes and Go's scheduler queues on this processor (P), the last one
// woken next in line; a goroutine that went straight into the fsync would leave them
// there until the system monitor took the P back or an idle thread woke to steal them.
// Yielding puts it on the global queue, so the P runs them first, and the appends (or
// the acknowledgements) leave before the fsync instead of after it. On bench's put-1c,
// a leader's append reached the socket about 100 µs after Send without the yield and
// about 30 µs with it. Side by side (bench/, 3 rounds each), the yields did 14% more
// requests on put-1c, 18% on put-100c, 11% on put-1000c and 9% on get-lin-100c than
// none. A yield is a scheduling hint only: what is written and sent before and after
// each fsync does not change.
type senderYield struct {
	pending bool // a Send since the last yield or wait for input
}

// sent records a Send.
func (y *senderYield) sent() { y.pending = true }

// waiting records that the goroutine is about to block for input: the writers its
// Sends woke run meanwhile, and a yield before the next fsync would be wasted (Gosched
// wakes an idle thread; on put-1c a follower's stale yield cost 14 µs between its step
// and its fsync).
func (y *senderYield) waiting() { y.pending = false }

// beforeFsync yields if a Send is pending.
func (y *senderYield) beforeFsync() {
	if y.pending {
		y.pending = false
		runtime.Gosched()
	}
}

// persistItem is one queued write and the messages that wait for it.
type persistItem struct {
	ticket uint64
	msgs   []Message
	// mark names the entries written, if any (Ready.DurableMark); hardStateTerm is
	// the term of the HardState written, if any.
	mark          DurableMark
	hardStateTerm uint64
}

// queueWrite queues a Ready's write with an AsyncStorage and hands the persist
// goroutine what waits for it. Every late message goes through the queue, even with
// nothing to write: an acknowledgement may name entries that an earlier, queued write
// holds, so it may leave only once that write is durable.
func (n *Node) queueWrite(hs HardState, write bool, ents []Entry, mark DurableMark, late []Message) error {
	var item persistItem
	if write {
		t, err := n.async.SaveAsync(hs, ents)
		if err != nil {
			return fmt.Errorf("raft: persisting %d entries and HardState %+v: %w", len(ents), hs, err)
		}
		if !hs.IsEmpty() {
			n.savedHardState = hs
			item.hardStateTerm = hs.Term
		}
		item.ticket = t
		if t != 0 {
			n.queuedTickets = append(n.queuedTickets, t)
		}
		item.mark = mark
	}
	if item.ticket == 0 && item.mark.Index == 0 && len(late) == 0 {
		return nil
	}
	if n.persistPending.Load() == 0 && len(n.recvc) == 0 && len(n.propc) == 0 {
		// Nothing queued earlier and no input waiting: there is nothing to step
		// while the fsync runs, so wait for it here, which saves handing the write
		// and its messages to the persist goroutine and back. Side by side
		// (bench/, 3 rounds) this did as well with one client and 5-20% better
		// with 100 and 1000 clients and on linearizable reads.
		if item.ticket != 0 {
			n.sendYield.beforeFsync()
			if err := n.async.WaitDurable(item.ticket); err != nil {
				return fmt.Errorf("raft: waiting for a write to be durable: %w", err)
			}
		}
		if len(late) > 0 {
			n.send(late)
		}
		n.queuedTickets = n.queuedTickets[:0]
		n.durableTerm = max(n.durableTerm, item.hardStateTerm)
		if item.mark.Index != 0 {
			n.inlineDurable = item.mark
		}
		return nil
	}
	item.msgs = late
	n.persistPending.Add(1)
	select {
	case n.persistq <- item:
	case <-n.persistFailed:
		return n.Err()
	case <-n.stopc:
	}
	return nil
}

// persist waits for queued writes to become durable, in order, then sends what waited
// for them and tells the run loop how far the log is durable. One wait covers every
// write queued so far (the storage commits them as a group). After Stop it starts no
// new wait: nothing reads what the writes still queued would make durable, and the
// storage keeps or drops them as a crash would.
func (n *Node) persist() {
	defer n.wg.Done()
	var (
		batch []persistItem
		msgs  []Message
		yield senderYield
	)
	for {
		select {
		case <-n.stopc:
			return
		default:
		}
		select {
		case item := <-n.persistq:
			batch = append(batch[:0], item)
		default:
			yield.waiting()
			select {
			case item := <-n.persistq:
				batch = append(batch[:0], item)
			case <-n.stopc:
				return
			}
		}
		for drained := false; !drained; {
			select {
			case item := <-n.persistq:
				batch = append(batch, item)
			default:
				drained = true
			}
		}
		var ticket, hardStateTerm uint64
		var mark DurableMark
		for _, it := range batch {
			ticket = max(ticket, it.ticket)
			if it.mark.Index != 0 {
				mark = it.mark
			}
			hardStateTerm = max(hardStateTerm, it.hardStateTerm)
		}
		if ticket != 0 {
			yield.beforeFsync()
			if err := n.async.WaitDurable(ticket); err != nil {
				n.fail(fmt.Errorf("raft: waiting for a write to be durable: %w", err))
				close(n.persistFailed)
				n.wakeRun()
				return
			}
		}
		msgs = msgs[:0]
		for _, it := range batch {
			msgs = appendCoalescingAcks(msgs, it.msgs)
		}
		if len(msgs) > 0 {
			n.transport.Send(msgs)
			yield.sent()
		}
		if ticket != 0 {
			n.durable.Lock()
			if mark.Index != 0 {
				n.durable.mark = mark
			}
			n.durable.ticket = ticket
			n.durable.hardStateTerm = max(n.durable.hardStateTerm, hardStateTerm)
			n.durable.Unlock()
			n.wakeRun()
		}
		n.persistPending.Add(-int64(len(batch)))
		clear(batch) // drop the messages for the collector
		clear(msgs)
	}
}

// appendCoalescingAcks appends msgs to dst, in order, except that a successful
// MsgAppResp replaces one to the same peer in the same term that is still the last
// message in dst: acknowledgements are cumulative (the leader frees everything up to
// the index acknowledged), so only the newest of a run of them needs to leave.
func appendCoalescingAcks(dst, msgs []Message) []Message {
	for _, m := range msgs {
		if k := len(dst); k > 0 && m.Type == MsgAppResp && !m.Reject {
			if last := &dst[k-1]; last.Type == MsgAppResp && !last.Reject && last.To == m.To &&
				last.Term == m.Term && last.Index <= m.Index {
				*last = m
				continue
			}
		}
		dst = append(dst, m)
	}
	return dst
}

// wakeRun pokes the run loop to read n.durable (or n.err).
func (n *Node) wakeRun() {
	select {
	case n.durablec <- struct{}{}:
	default:
	}
}

// hardStateToSave returns the HardState to persist with rd, and whether it must be
// written even with no entries. A change of the commit index alone is not written
// (and so costs no fsync on the commit path): Figure 2 keeps commitIndex volatile, a
// restart learns it again from the leader, and it rides along with the next write of
// entries or of term and vote.
func (n *Node) hardStateToSave(rd Ready) (HardState, bool) {
	hs := rd.HardState
	if hs.IsEmpty() {
		hs = n.pendingHardState
	}
	if hs.IsEmpty() {
		return hs, false
	}
	n.pendingHardState = HardState{}
	if hs.Term == n.savedHardState.Term && hs.Vote == n.savedHardState.Vote && len(rd.Entries) == 0 {
		n.pendingHardState = hs
		return HardState{}, false
	}
	return hs, true
}

// splitLeaderMessages separates the messages only a leader sends (appends, heartbeats,
// snapshots), which may leave before the Ready is persisted, from the answers (votes,
// acknowledgements) that must wait for it. It keeps each group's order. The leader's
// may leave early only if they claim no term above durableTerm, the term known
// durable here: otherwise every message waits.
func splitLeaderMessages(msgs []Message, durableTerm uint64) (early, late []Message) {
	for _, m := range msgs {
		if m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap {
			early = append(early, m)
		} else {
			late = append(late, m)
		}
	}
	// One Ready may hold a leader's messages of two terms (a lone voter that
	// stepped down and won again in one batch): all wait if any term is not durable.
	for _, m := range early {
		if m.Term > durableTerm {
			return nil, msgs
		}
	}
	return early, late
}

// fail stops the node after a storage error: it must not run on state it could not
// persist (design rule 6).
func (n *Node) fail(err error) {
	n.err.Store(&err)
	if errors.Is(err, syscall.ENOSPC) {
		// A full disk is the operator's to fix, and the application says what to
		// free when it reports Err as its stop: logging it here would say it twice.
		return
	}
	n.logger("raft: fatal storage error, node stopping", "err", err)
}
