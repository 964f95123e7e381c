package server

import (
	"context"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// etcd's "require leader" (clientv3.WithRequireLeader): a call whose metadata says
// hasleader=true is refused with "etcdserver: no leader" by a member that knows no
// leader, and such a stream is ended with that error once its member has known no
// leader for maxNoLeaderTimeouts election timeouts. A client watching through a
// member cut off from the cluster thereby learns it and moves to another member,
// instead of waiting on this one until the partition heals.

// maxNoLeaderTimeouts is how many election timeouts in a row a member must know no
// leader before it ends the streams that require one: etcd's value, long enough for
// an election to run its course.
const maxNoLeaderTimeouts = 3

// requiresLeader reports whether the call's metadata asks for a leader.
func requiresLeader(ctx context.Context) bool {
	v := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataRequireLeaderKey)
	return len(v) > 0 && v[0] == rpctypes.MetadataHasLeader
}

// leaderStreams tracks the streams that require a leader, so that the monitor can end
// them.
type leaderStreams struct {
	mu      sync.Mutex
	streams map[*leaderStream]struct{}
}

// leaderStream is a grpc.ServerStream whose context the monitor cancels.
type leaderStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc
}

func (ls *leaderStream) Context() context.Context { return ls.ctx }

func (s *Server) hasLeader() bool { return s.node.Observe().Lead != 0 }

// requireLeaderUnary refuses a unary call that requires a leader while this member
// knows none.
func (s *Server) requireLeaderUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if s.learner.Load() && !servedByLearner(req) {
		return nil, rpctypes.ErrGRPCNotSupportedForLearner
	}
	// hasLeader first: a few atomic loads, where requiresLeader's lookup scans
	// every header of the call when the key is absent, as it is on most calls.
	if !s.hasLeader() && requiresLeader(ctx) {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	return handler(ctx, req)
}

// requireLeaderStream refuses a stream that requires a leader while this member knows
// none, and otherwise registers it with the monitor; a stream the monitor ended
// returns "no leader", whatever its handler returned.
func (s *Server) requireLeaderStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if s.learner.Load() && info.FullMethod != snapshotMethod && isEtcdService(info.FullMethod) {
		return rpctypes.ErrGRPCNotSupportedForLearner
	}
	if !requiresLeader(ss.Context()) {
		return handler(srv, ss)
	}
	if !s.hasLeader() {
		return rpctypes.ErrGRPCNoLeader
	}
	ctx, cancel := context.WithCancel(ss.Context())
	ls := &leaderStream{ServerStream: ss, ctx: ctx, cancel: cancel}
	s.leaderStreams.mu.Lock()
	if s.leaderStreams.streams == nil {
		s.leaderStreams.streams = map[*leaderStream]struct{}{}
	}
	s.leaderStreams.streams[ls] = struct{}{}
	s.leaderStreams.mu.Unlock()
	defer func() {
		s.leaderStreams.mu.Lock()
		delete(s.leaderStreams.streams, ls)
		s.leaderStreams.mu.Unlock()
		cancel()
	}()
	err := handler(srv, ls)
	if ctx.Err() != nil && ss.Context().Err() == nil {
		return rpctypes.ErrGRPCNoLeader // the monitor ended it
	}
	return err
}

// monitorLeader ends the streams that require a leader once this member has known
// none for maxNoLeaderTimeouts election timeouts in a row.
func (s *Server) monitorLeader() {
	ticker := time.NewTicker(s.cfg.ElectionTimeout)
	defer ticker.Stop()
	noLeader := 0
	for {
		select {
		case <-ticker.C:
		case <-s.stopc:
			return
		}
		if s.hasLeader() {
			noLeader = 0
			continue
		}
		if noLeader++; noLeader < maxNoLeaderTimeouts {
			continue
		}
		s.leaderStreams.mu.Lock()
		for ls := range s.leaderStreams.streams {
			ls.cancel()
			delete(s.leaderStreams.streams, ls)
		}
		s.leaderStreams.mu.Unlock()
	}
}

// A learner serves what etcd's does (v3.4 on): Status, serializable Range and the
// Snapshot stream. Everything else is refused with etcd's "rpc not supported for
// learner", before the other checks, as etcd's interceptors do; a client then uses
// another member. The role is the applied one (Server.learner, noteOwnRole).
func servedByLearner(req any) bool {
	switch r := req.(type) {
	case *pb.StatusRequest:
		return true
	case *pb.RangeRequest:
		return r.Serializable
	}
	return false
}

// isEtcdService reports whether fullMethod belongs to a service of the etcd API. A
// call to any other reaches the unknown-service handler through the stream
// interceptor and is answered Unimplemented there, on a learner too, as etcd's
// gRPC server answers it before any interceptor.
func isEtcdService(fullMethod string) bool {
	service, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	_, ok := servedMethods[service]
	return ok
}

// snapshotMethod is the one stream a learner serves.
const snapshotMethod = "/etcdserverpb.Maintenance/Snapshot"

// noteOwnRole records whether this member is a learner, from its applied member
// list: at start, and after each configuration change or snapshot applies.
func (s *Server) noteOwnRole() {
	m, ok := s.sm.member(s.id)
	s.learner.Store(ok && m.IsLearner)
}
