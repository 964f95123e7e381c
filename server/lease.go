package server

import (
	"context"
	"errors"
	"io"
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"raftkv/kv"
)

// This file serves etcd's Lease service. Grant and revoke are kv commands through
// Raft, like a put; keep-alives and time-to-live need the leader's lessor (lessor.go),
// and a member that does not lead asks the leader's (lease_forward.go).

type leaseService struct {
	pb.UnimplementedLeaseServer
	s *Server
}

// initLeases makes the lessor and the forwarder; call it before the apply loop starts.
func (s *Server) initLeases() {
	cfg := s.cfg
	s.minLeaseTTL = minLeaseTTL(cfg.HeartbeatInterval, cfg.ElectionTimeout)
	s.lessor = newLessor(lessorConfig{
		extend:             cfg.ElectionTimeout,
		checkpointInterval: cfg.LeaseCheckpointInterval,
		revokeRetry:        cfg.RequestTimeout,
	}, realClock{}, leaseProposerOf{s}, s.logger)
	s.leaseFwd = newLeaseForwarder(s.forwardTLS())
}

// registerLeaseForward registers the LeaseForward service the members use among
// themselves (etcd's Lease service is registered with the others, unserved.go).
func (s *Server) registerLeaseForward() {
	s.grpc.RegisterService(&leaseForwardDesc, leaseForwardHandler{s: s})
}

// runLessor runs the lessor until the server stops, then closes the connections to
// other members' lease services.
func (s *Server) runLessor() {
	defer s.leaseFwd.close()
	s.lessor.run(s.stopc)
}

// minLeaseTTL is etcd's minimum TTL: one and a half election timeouts, counted in
// heartbeats as etcd counts them (3*electionTicks/2 of them) and rounded up to whole
// seconds. A lease shorter than that could expire during an election, before any
// leader is there to renew it. With the defaults (100 ms, 1 s) it is 2 s.
func minLeaseTTL(heartbeat, electionTimeout time.Duration) int64 {
	electionTicks := int64(electionTimeout / heartbeat)
	minTTL := time.Duration(3*electionTicks/2) * heartbeat
	return int64(math.Ceil(minTTL.Seconds()))
}

// newLeaseID picks the id of a lease a client did not name one for: positive, as
// etcd's are, and random, so that members pick apart (a grant of an id taken fails,
// and LeaseGrant draws again).
func newLeaseID() int64 {
	return int64(newProposerID() & math.MaxInt64)
}

func (l *leaseService) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if err := l.s.requireUser(ctx); err != nil {
		return nil, err
	}
	ttl := r.TTL
	if ttl <= kv.MaxLeaseTTL {
		ttl = max(ttl, l.s.minLeaseTTL)
	}
	kvs := &kvService{s: l.s}
	for attempt := 1; ; attempt++ {
		id := r.ID
		if id == 0 {
			id = newLeaseID()
		}
		res, err := kvs.write(ctx, r, &kv.Command{LeaseGrant: &kv.LeaseGrantRequest{ID: id, TTL: ttl}})
		if r.ID == 0 && attempt < 3 && errors.Is(err, rpctypes.ErrGRPCLeaseExist) {
			continue // an id we picked is taken: pick another
		}
		if err != nil {
			return nil, err
		}
		g := res.LeaseGrant
		return &pb.LeaseGrantResponse{Header: l.s.header().pb(g.Header.Revision), ID: g.ID, TTL: g.TTL}, nil
	}
}

// LeaseRevoke needs a user here, and write permission on every key of the lease
// where it applies (kv's auth_lease.go), as in etcd.
func (l *leaseService) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if err := l.s.requireUser(ctx); err != nil {
		return nil, err
	}
	res, err := (&kvService{s: l.s}).write(ctx, r, &kv.Command{LeaseRevoke: &kv.LeaseRevokeRequest{ID: r.ID}})
	if err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: l.s.header().pb(res.LeaseRevoke.Header.Revision)}, nil
}

// LeaseKeepAlive renews leases, one request at a time, as etcd's does: a stream holds
// at most one renewal in flight, and what the client sends meanwhile waits in the
// stream's flow-control window (grpcStreamWindowBytes), so a fast client costs no
// memory beyond that. A lease that does not exist is answered with TTL 0. With auth
// enabled each renewal is checked (checkLeaseRenew), and a refused one ends the
// stream with the error, as etcd's does.
func (l *leaseService) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// The header is taken before the renewal, as etcd does, so that its revision
		// is never past one at which the lease was seen revoked.
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID, Header: l.s.header().pb(l.s.sm.store.Revision())}
		if err := l.s.checkLeaseRenew(stream.Context(), req.ID); err != nil {
			return toGRPC(err)
		}
		ttl, err := l.s.leaseRenew(stream.Context(), req.ID)
		switch {
		case errors.Is(err, kv.ErrLeaseNotFound):
		case err != nil:
			return toGRPC(err)
		default:
			resp.TTL = ttl
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// LeaseTimeToLive answers the TTLs from the leader's lessor, and the keys from this
// member's store after a linearizable read, checked first as etcd checks them; a
// lease that does not exist has TTL -1, as in etcd.
func (l *leaseService) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if err := l.s.requireUser(ctx); err != nil {
		return nil, err
	}
	var keys [][]byte
	if r.Keys {
		var err error
		if keys, err = l.s.leaseKeysFor(ctx, r.ID); err != nil {
			return nil, toGRPC(err)
		}
	}
	resp, err := l.s.leaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: r.ID})
	switch {
	case errors.Is(err, kv.ErrLeaseNotFound):
		resp = &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: -1}
	case err != nil:
		return nil, toGRPC(err)
	default:
		resp.Keys = keys
	}
	resp.Header = l.s.header().pb(l.s.sm.store.Revision())
	return resp, nil
}

// LeaseLeases lists the leases after a ReadIndex round: unlike etcd, which lists what
// its member has applied, it lists every lease granted before the call on whichever
// member it reaches. The leader, once its lessor is promoted, lists them as etcd's
// does, the soonest to expire first; other members, which do not track expiry, in id
// order, where etcd's order is unspecified (lessor.orderByExpiry).
// With auth enabled it needs read permission on every key of every lease, as etcd's.
func (l *leaseService) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	if err := l.s.linearizableRead(ctx); err != nil {
		return nil, toGRPC(err)
	}
	sender, err := l.s.sender(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	leases, err := l.s.sm.store.LeasesAs(sender)
	if err != nil {
		return nil, toGRPC(err)
	}
	l.s.lessor.orderByExpiry(leases)
	resp := &pb.LeaseLeasesResponse{Header: l.s.header().pb(l.s.sm.store.Revision()), Leases: make([]*pb.LeaseStatus, len(leases))}
	for i, info := range leases {
		resp.Leases[i] = &pb.LeaseStatus{ID: info.ID}
	}
	return resp, nil
}

// renewLocal renews a lease with this member's lessor. A lease it does not know may
// have been granted by an entry committed but not yet applied here, so it looks
// again after a ReadIndex round before answering kv.ErrLeaseNotFound.
func (s *Server) renewLocal(ctx context.Context, id int64) (int64, error) {
	ttl, err := s.lessor.renew(ctx, id)
	if !errors.Is(err, kv.ErrLeaseNotFound) {
		return ttl, err
	}
	if err := s.linearizableRead(ctx); err != nil {
		return 0, err
	}
	return s.lessor.renew(ctx, id)
}

// timeToLiveLocal answers LeaseTimeToLive's TTLs from this member's lessor. It
// never answers keys: they are read and checked where the client's call arrived
// (LeaseTimeToLive), so the LeaseForward service names none.
func (s *Server) timeToLiveLocal(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if _, primary := s.lessor.isPrimary(); !primary {
		return nil, errNotPrimary
	}
	if err := s.linearizableRead(ctx); err != nil {
		return nil, err
	}
	remaining, ttl, err := s.lessor.remaining(r.ID)
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: int64(remaining.Seconds()), GrantedTTL: ttl}, nil
}

// leaderApplied is the apply loop's hook for an entry that is not a command: the first
// entry of a leader's term, applied on the leader, promotes its lessor.
func (s *Server) leaderApplied(entryTerm uint64) {
	if term, isLeader := s.node.State(); isLeader && term == entryTerm {
		s.lessor.promote(term, s.sm.store.Leases())
	}
}

// leaseApplied is the apply loop's hook for an applied command's result.
func (s *Server) leaseApplied(res *kv.Result) {
	s.lessor.applied(res, func(id int64) bool {
		_, ok := s.sm.store.Lease(id)
		return ok
	})
}

// leasesRestored is the apply loop's hook after a snapshot is installed.
func (s *Server) leasesRestored() {
	s.lessor.restored(s.sm.store.Leases())
}

// leaseProposerOf is the Server as the lessor's leaseProposer.
type leaseProposerOf struct{ s *Server }

func (p leaseProposerOf) isLeader(term uint64) bool {
	t, isLeader := p.s.node.State()
	return isLeader && t == term
}

// proposeLease proposes cmd on this member and waits until it applies here. Unlike
// propose, it does not forward: the lessor's revokes and checkpoints are decisions of
// this leader's term (see lessor), and must not be carried out by another leader. A
// member that does not lead gets raft.ErrNotLeader. The command is the member's own,
// which no permission check stops (an expired lease is revoked whatever its keys).
func (p leaseProposerOf) proposeLease(ctx context.Context, cmd *kv.Command) (kv.Result, error) {
	s := p.s
	cmd.Sender = kv.AuthInfo{Member: true}
	payload, err := cmd.Encode()
	if err != nil {
		return kv.Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	seq, wt := s.waits.register()
	defer s.waits.cancel(seq)
	data := encodeEnvelope(envelope{kind: kindKV, proposer: s.proposer, seq: seq, payload: payload})
	index, _, err := s.node.Propose(ctx, data)
	if err != nil {
		return kv.Result{}, s.raftError(err)
	}
	s.waits.expectAt(seq, index)
	res, err := s.wait(requestContext(ctx), wt, nil)
	if err != nil {
		return kv.Result{}, err
	}
	return res, res.Err
}
