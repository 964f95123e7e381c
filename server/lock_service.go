package server

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
)

// etcd's Lock and Election services: the concurrency package's Mutex and Election
// run in the member for clients that cannot run them (the gRPC gateway, clients in
// other languages), on a client of this member's own services (localClient), so
// that they behave exactly as they do in a Go client and as in etcd, and act as the
// calling client. A request's session is orphaned, as in etcd: the member never
// keeps a lease alive, the caller does (a lock taken without a lease gets one of
// 60s, the concurrency package's default, that nobody renews).

type lockService struct {
	v3lockpb.UnimplementedLockServer
	s *Server
}

// session starts a concurrency session on lease, or on a new lease if lease is 0,
// and stops its keep-alives: the caller renews its own lease.
func session(c *clientv3.Client, ctx context.Context, lease int64) (*concurrency.Session, error) {
	s, err := concurrency.NewSession(c, concurrency.WithLease(clientv3.LeaseID(lease)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	s.Orphan()
	return s, nil
}

func (l *lockService) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	c := l.s.localClient(ctx)
	defer c.Close()
	s, err := session(c, ctx, r.Lease)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(s, string(r.Name))
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return &v3lockpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

func (l *lockService) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	c := l.s.localClient(ctx)
	defer c.Close()
	resp, err := c.Delete(ctx, string(r.Key))
	if err != nil {
		return nil, err
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}

// errMissingLeaderKey is etcd's answer to a Proclaim or Resign without a leader.
var errMissingLeaderKey = errors.New(`"leader" field must be provided`)

type electionService struct {
	epb.UnimplementedElectionServer
	s *Server
}

func (e *electionService) Campaign(ctx context.Context, r *epb.CampaignRequest) (*epb.CampaignResponse, error) {
	c := e.s.localClient(ctx)
	defer c.Close()
	s, err := session(c, ctx, r.Lease)
	if err != nil {
		return nil, err
	}
	el := concurrency.NewElection(s, string(r.Name))
	if err := el.Campaign(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	return &epb.CampaignResponse{Header: el.Header(), Leader: &epb.LeaderKey{
		Name: r.Name, Key: []byte(el.Key()), Rev: el.Rev(), Lease: int64(s.Lease()),
	}}, nil
}

func (e *electionService) Proclaim(ctx context.Context, r *epb.ProclaimRequest) (*epb.ProclaimResponse, error) {
	if r.Leader == nil {
		return nil, errMissingLeaderKey
	}
	c := e.s.localClient(ctx)
	defer c.Close()
	s, err := session(c, ctx, r.Leader.Lease)
	if err != nil {
		return nil, err
	}
	el := concurrency.ResumeElection(s, string(r.Leader.Name), string(r.Leader.Key), r.Leader.Rev)
	if err := el.Proclaim(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	return &epb.ProclaimResponse{Header: el.Header()}, nil
}

func (e *electionService) Resign(ctx context.Context, r *epb.ResignRequest) (*epb.ResignResponse, error) {
	if r.Leader == nil {
		return nil, errMissingLeaderKey
	}
	c := e.s.localClient(ctx)
	defer c.Close()
	s, err := session(c, ctx, r.Leader.Lease)
	if err != nil {
		return nil, err
	}
	el := concurrency.ResumeElection(s, string(r.Leader.Name), string(r.Leader.Key), r.Leader.Rev)
	if err := el.Resign(ctx); err != nil {
		return nil, err
	}
	return &epb.ResignResponse{Header: el.Header()}, nil
}

func (e *electionService) Leader(ctx context.Context, r *epb.LeaderRequest) (*epb.LeaderResponse, error) {
	c := e.s.localClient(ctx)
	defer c.Close()
	// No lease: reading the leader needs none (etcd asks for lease -1, which it never
	// finds, and stops at once).
	s, err := session(c, ctx, -1)
	if err != nil {
		return nil, err
	}
	resp, err := concurrency.NewElection(s, string(r.Name)).Leader(ctx)
	if err != nil {
		return nil, err
	}
	return &epb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}, nil
}

func (e *electionService) Observe(r *epb.LeaderRequest, stream epb.Election_ObserveServer) error {
	ctx := stream.Context()
	c := e.s.localClient(ctx)
	defer c.Close()
	s, err := session(c, ctx, -1)
	if err != nil {
		return err
	}
	for resp := range concurrency.NewElection(s, string(r.Name)).Observe(ctx) {
		if err := stream.Send(&epb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}); err != nil {
			return err
		}
	}
	// Observe's channel closes when ctx ends, or when its watch failed.
	return ctx.Err()
}
