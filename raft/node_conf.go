package raft

import (
	"context"
	"fmt"
)

// The Node's configuration changes and leadership transfer: each call hands its
// request to the run loop and waits for the answer, as Propose does.

type transferRequest struct {
	to    uint64
	reply chan error
}

// transferWaiter is a TransferLeadership call waiting for its outcome (run loop only).
type transferWaiter struct {
	to        uint64
	startTick uint64
	reply     chan error
}

// ProposeConfChange proposes a configuration change and returns at once with the index
// and term it will have if it commits. The change is committed if and only if the
// ApplyMsg at index, an ApplyConfChange, has that term, as for Propose. Only the
// leader accepts; see RawNode.ProposeConfChange for the errors, of which
// ErrConfChangePending asks to retry shortly (one change at a time). It may be called
// from the apply goroutine.
func (n *Node) ProposeConfChange(ctx context.Context, cc ConfChange) (index, term uint64, err error) {
	return n.submit(ctx, nil, proposal{conf: &cc})
}

// TransferLeadership hands leadership to voter to (thesis §3.10): the leader stops
// taking proposals, brings to's log up to its own, and tells it to campaign at once. With
// to None it picks the voter with the most up-to-date log (an application that knows
// which members are reachable, as a stopping server does, may choose to itself). It
// returns nil once this node sees to as leader;
// ErrTransferFailed if the transfer was abandoned (to did not win within an election
// timeout) or another node won; ErrNotLeader, ErrBadTransferee (to is not a voter), or
// ctx's error. A transfer whose caller gave up goes on until it completes or an
// election timeout passes, and the leader refuses proposals until then. It may be
// called from the apply goroutine.
func (n *Node) TransferLeadership(ctx context.Context, to uint64) error {
	reply := make(chan error, 1)
	select {
	case n.transferc <- transferRequest{to: to, reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
}

// MembershipStatus returns the configuration in effect on this node and, on the leader,
// every member's progress (see MembershipStatus). The run loop answers it without
// waiting on the application, so it may be called from the apply goroutine.
func (n *Node) MembershipStatus() MembershipStatus {
	var st MembershipStatus
	n.onLoop(func() { st = n.rn.MembershipStatus() })
	return st
}

// MembershipAt returns the configuration in effect at index, which must be committed
// and not below the storage's snapshot: what a snapshot at index records (the
// application that calls storage's CreateSnapshot itself passes it), the zero
// Membership while no change has been made up to index. Like MembershipStatus, it may
// be called from the apply goroutine.
func (n *Node) MembershipAt(index uint64) (Membership, error) {
	var (
		m   Membership
		err error
	)
	if !n.onLoop(func() { m, err = n.rn.MembershipAt(index) }) {
		return Membership{}, ErrStopped
	}
	return m, err
}

// onLoop runs fn on the run loop, which runs it at once, and returns once it has; it
// returns false if the node has stopped, before fn ran or inside it (a failed read of
// the log panics there, and the run loop stops, stopIfStorageFailed).
func (n *Node) onLoop(fn func()) bool {
	done := make(chan struct{})
	select {
	case n.queryc <- func() { fn(); close(done) }:
		select {
		case <-done:
			return true
		case <-n.done:
			return false
		}
	case <-n.done:
		return false
	}
}

// startTransfer begins a transfer for req, or answers it at once (run loop only).
func (n *Node) startTransfer(req transferRequest, ticks uint64) {
	if err := n.rn.TransferLeadership(req.to); err != nil {
		req.reply <- err
		return
	}
	to := n.rn.raft.leadTransferee
	if to == None {
		req.reply <- nil // to is this node, which leads already
		return
	}
	n.transfers = append(n.transfers, transferWaiter{to: to, startTick: ticks, reply: req.reply})
}

// checkTransfers answers the TransferLeadership calls whose outcome is known (run loop
// only): to leads, the leader gave the transfer up, another node leads, or three
// election timeouts passed without news.
func (n *Node) checkTransfers(ticks uint64) {
	if len(n.transfers) == 0 {
		return
	}
	r := n.rn.raft
	kept := n.transfers[:0]
	for _, w := range n.transfers {
		var err error
		switch {
		case r.lead == w.to:
		case r.state == StateLeader && r.leadTransferee != w.to:
			err = fmt.Errorf("%w: node %d did not become leader within an election timeout", ErrTransferFailed, w.to)
		case r.lead != None && r.lead != n.cfg.ID:
			err = fmt.Errorf("%w: node %d became leader instead of %d", ErrTransferFailed, r.lead, w.to)
		case ticks-w.startTick > 3*uint64(n.cfg.ElectionTicks):
			err = fmt.Errorf("%w: no leader seen within three election timeouts of the transfer to %d", ErrTransferFailed, w.to)
		default:
			kept = append(kept, w)
			continue
		}
		w.reply <- err
	}
	clear(n.transfers[len(kept):])
	n.transfers = kept
}
