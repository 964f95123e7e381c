package server

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"raftkv/raft"
)

// Leadership transfer (thesis §3.10) as an operator sees it: Maintenance.MoveLeader,
// and the hand-off a leader makes before it stops. The raft Node does the transfer
// (it brings the target's log up to its own, then sends MsgTimeoutNow); this file
// picks the target, bounds the wait, and answers with etcd's errors.

// errTimeoutLeaderTransfer is etcd's answer when the target has not become leader
// before the caller's deadline. etcd maps it to no gRPC code of its own, so a client
// sees it as Unknown with this text.
var errTimeoutLeaderTransfer = status.Error(codes.Unknown, "etcdserver: request timed out, leader transfer took too long")

// MoveLeader hands leadership to the voting member r.TargetID. As in etcd only the
// leader takes it (etcdctl move-leader finds the leader and asks it); a follower
// answers "etcdserver: not leader" rather than forwarding, a target that is not a
// voting member "etcdserver: bad leader transferee". It returns once this member
// sees the target lead, or fails with etcd's timeout error at the caller's deadline.
func (m *maintenanceService) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := m.s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := m.s.moveLeader(ctx, r.TargetID); err != nil {
		return nil, err
	}
	return &pb.MoveLeaderResponse{}, nil // no header, as etcd's
}

func (s *Server) moveLeader(ctx context.Context, target uint64) error {
	if _, isLeader := s.node.State(); !isLeader {
		return rpctypes.ErrGRPCNotLeader
	}
	if !s.isVoter(target) {
		return rpctypes.ErrGRPCBadLeaderTransferee
	}
	if target == s.id {
		return nil // etcd's loop ends at once: the target leads already
	}
	err := s.node.TransferLeadership(ctx, target)
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrNotLeader):
		return rpctypes.ErrGRPCNotLeader
	case errors.Is(err, raft.ErrBadTransferee):
		return rpctypes.ErrGRPCBadLeaderTransferee
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errTimeoutLeaderTransfer
	case errors.Is(err, raft.ErrTransferFailed):
		// The node gave up (the target did not win within an election timeout).
		// etcd keeps waiting for the target until the caller's deadline; so do we,
		// which ends the same way unless the target wins an election on its own.
	default:
		return s.raftError(err)
	}
	// The node answers once it sees the target lead; wait like etcd until the
	// target is the leader this member knows, polled every heartbeat.
	for {
		if _, lead := s.leader(); lead == target {
			return nil
		}
		select {
		case <-ctx.Done():
			return errTimeoutLeaderTransfer
		case <-s.stopc:
			return errStopped
		case <-time.After(s.cfg.HeartbeatInterval):
		}
	}
}

// isVoter says whether id is a voting member in the configuration in effect here.
func (s *Server) isVoter(id uint64) bool {
	return s.node.MembershipStatus().IsVoter(id)
}

// handOffLeadership is what a leader does before it stops (as etcd's Stop does): it
// hands leadership to a live voter (handOffTarget), so the cluster gets a new leader
// at once rather than one election timeout after the old one goes quiet. It does
// nothing unless this member leads and some other voter is live (a transfer to a
// dead member would only delay the stop), and it waits at most three election
// timeouts: then the member stops anyway.
func (s *Server) handOffLeadership() {
	if s.node == nil {
		return
	}
	if _, isLeader := s.node.State(); !isLeader {
		return
	}
	// The run loop answers MembershipStatus and the transfer; if it is stuck (a
	// storage write that does not return), the stop must not be: the wait is bounded
	// here too, and the goroutine ends when Stop stops the node.
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handOff()
	}()
	select {
	case <-done:
	case <-time.After(3*s.cfg.ElectionTimeout + time.Second):
		s.logger.Warn("leadership hand-off before stopping did not finish; stopping anyway")
	}
}

// handOff is handOffLeadership's work, on a goroutine of its own.
func (s *Server) handOff() {
	to := s.handOffTarget()
	if to == raft.None {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.cfg.ElectionTimeout)
	defer cancel()
	// The target going away ends the wait: a member stopped a moment ago can still
	// read as connected when the target is picked (its connection's close not yet
	// seen), and raft gives up a transfer to it only after an election timeout.
	// Gone is a stream that is down and a dial that failed since the pick, not a
	// stream that is down alone: a live target's stream may break and be dialed
	// again (a write deadline), and raft resends the transfer on the target's
	// next reply. Ending the wait does not end raft's transfer: the leader refuses
	// proposals until the node stops, as it would have.
	picked := s.transport.Stats().Peers[to].DialFailures
	var targetGone atomic.Bool
	go func() {
		tick := time.NewTicker(s.cfg.HeartbeatInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if p := s.transport.Stats().Peers[to]; !p.IsConnected && p.DialFailures > picked {
					targetGone.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	started := time.Now()
	if err := s.node.TransferLeadership(ctx, to); err != nil {
		if targetGone.Load() {
			s.logger.Info("leadership hand-off before stopping abandoned: the member it went to is gone; stopping",
				"to", hexID(to), "took", time.Since(started))
			return
		}
		s.logger.Warn("leadership hand-off before stopping failed; stopping anyway", "err", err,
			"took", time.Since(started))
		return
	}
	_, lead := s.leader()
	s.logger.Info("handed leadership off before stopping", "to", lead, "took", time.Since(started))
}

// handOffTarget is the voter to hand leadership to before stopping: of the others
// heard from in the last election timeout and whose stream from this member is up
// now, the one with the longest log; raft.None if there is none. Heard from alone
// would not do: a member stopped a moment ago still counts as heard from, and a
// transfer to it only failed after three election timeouts (every member of
// "raftkv cluster" stopped one after another: the last leader standing waited 3 s
// and warned).
func (s *Server) handOffTarget() uint64 {
	peers := s.transport.Stats().Peers
	to, match := raft.None, uint64(0)
	for _, p := range s.node.MembershipStatus().Progress {
		if p.ID == s.id || !p.IsVoter || !p.RecentActive || !peers[p.ID].IsConnected {
			continue
		}
		if to == raft.None || p.Match > match {
			to, match = p.ID, p.Match
		}
	}
	return to
}
