package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"raftkv/kv"
)

// Keep-alives and time-to-live requests need the leader's lessor. A member that does
// not lead asks the leader through a small gRPC service of its own, LeaseForward, on
// the leader's client URL, the way etcd asks over its peer HTTP (leasehttp). gRPC
// rather than the peer transport: the transport carries Raft's one-way messages and
// has no request/response; the client API already has connections, deadlines that
// travel with the request, and flow control, and each member publishes its client
// URLs through the log (so --advertise-client-urls must be reachable from the other
// members). An https:// client URL is dialled with TLS (forwardTLS). Renewals cannot
// go through the log instead: an entry per keep-alive would
// cost a disk write on every member.
//
// The service answers only on the member whose lessor is primary, and never forwards
// itself, so a request is forwarded at most once; the asking member retries (every
// forwardRetry, until its deadline) while the leader is unknown, changing or not yet
// promoted.

const (
	leaseForwardService = "raftkv.LeaseForward"
	// forwardRetry is the pause before asking again after a failed forward.
	forwardRetry = 50 * time.Millisecond
)

// leaseForwardServer is what the LeaseForward service needs of its implementation.
type leaseForwardServer interface {
	forwardedRenew(ctx context.Context, r *pb.LeaseKeepAliveRequest) (*pb.LeaseKeepAliveResponse, error)
	forwardedTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
}

// leaseForwardDesc describes the service by hand: its two methods reuse etcd's request
// and response messages, so there is nothing to generate.
var leaseForwardDesc = grpc.ServiceDesc{
	ServiceName: leaseForwardService,
	HandlerType: (*leaseForwardServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Renew", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(pb.LeaseKeepAliveRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(leaseForwardServer).forwardedRenew(ctx, in)
		}},
		{MethodName: "TimeToLive", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(pb.LeaseTimeToLiveRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(leaseForwardServer).forwardedTimeToLive(ctx, in)
		}},
	},
}

// errNotLeaderForLeases is the LeaseForward service's answer on a member whose
// lessor is not primary.
var errNotLeaderForLeases = status.Error(codes.Unavailable, "raftkv: this member does not lead (or has not yet taken over the leases); ask the leader")

// leaseForwardHandler is the Server's LeaseForward service.
type leaseForwardHandler struct{ s *Server }

func (h leaseForwardHandler) forwardedRenew(ctx context.Context, r *pb.LeaseKeepAliveRequest) (*pb.LeaseKeepAliveResponse, error) {
	if err := h.s.checkForwarded(ctx, r.ID, true); err != nil {
		return nil, toGRPC(err)
	}
	ttl, err := h.s.renewLocal(ctx, r.ID)
	if err != nil {
		return nil, forwardError(err)
	}
	return &pb.LeaseKeepAliveResponse{ID: r.ID, TTL: ttl}, nil
}

func (h leaseForwardHandler) forwardedTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if err := h.s.checkForwarded(ctx, r.ID, false); err != nil {
		return nil, toGRPC(err)
	}
	resp, err := h.s.timeToLiveLocal(ctx, r)
	if err != nil {
		return nil, forwardError(err)
	}
	return resp, nil
}

func forwardError(err error) error {
	switch {
	case errors.Is(err, errNotPrimary):
		return errNotLeaderForLeases
	case errors.Is(err, kv.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	}
	return toGRPC(err)
}

// leaseRenew renews a lease on the leader, this member or another.
func (s *Server) leaseRenew(ctx context.Context, id int64) (int64, error) {
	var ttl int64
	err := s.onLeaseLeader(ctx,
		func(ctx context.Context) (err error) {
			ttl, err = s.renewLocal(ctx, id)
			return err
		},
		func(ctx context.Context, cc *grpc.ClientConn) error {
			resp := &pb.LeaseKeepAliveResponse{}
			err := cc.Invoke(withForwardedToken(ctx), "/"+leaseForwardService+"/Renew", &pb.LeaseKeepAliveRequest{ID: id}, resp)
			ttl = resp.TTL
			return err
		})
	return ttl, err
}

// leaseTimeToLive answers LeaseTimeToLive on the leader, this member or another.
func (s *Server) leaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	var resp *pb.LeaseTimeToLiveResponse
	err := s.onLeaseLeader(ctx,
		func(ctx context.Context) (err error) {
			resp, err = s.timeToLiveLocal(ctx, r)
			return err
		},
		func(ctx context.Context, cc *grpc.ClientConn) error {
			resp = &pb.LeaseTimeToLiveResponse{}
			return cc.Invoke(withForwardedToken(ctx), "/"+leaseForwardService+"/TimeToLive", r, resp)
		})
	return resp, err
}

// onLeaseLeader runs local if this member's lessor is primary, else remote against
// the leader's LeaseForward service, retrying until one of them answers other than
// "not the leader" or RequestTimeout passes. Errors come back as kv and server
// errors: kv.ErrLeaseNotFound for a lease the leader does not know.
func (s *Server) onLeaseLeader(ctx context.Context, local func(context.Context) error,
	remote func(context.Context, *grpc.ClientConn) error) error {
	// On the leader, the common case, local answers at once (each of its waits has a
	// bound of its own): the timeout below, and its timer, is for the slow path only.
	// Side by side on bench/'s lease-keepalive it took a sixth of the leader's CPU.
	err := local(ctx)
	if !errors.Is(err, errNotPrimary) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	for {
		if cc := s.leaderLeaseConn(); cc != nil {
			err := remote(ctx, cc)
			if st, ok := status.FromError(err); err == nil || (ok && st.Code() == codes.NotFound) {
				if err != nil {
					return kv.ErrLeaseNotFound
				}
				return nil
			}
			if refusal := forwardRefused(err); refusal != nil {
				return refusal
			}
			s.logger.Debug("forwarding a lease request to the leader failed; retrying", "err", err)
		}
		select {
		case <-time.After(forwardRetry):
		case <-ctx.Done():
			return s.contextError(ctx)
		case <-s.stopc:
			return errStopped
		}
		if err := local(ctx); !errors.Is(err, errNotPrimary) {
			return err
		}
	}
}

// leaderLeaseConn returns a connection to the leader's client URL, or nil if no other
// member is known to lead or its URL is not known yet.
func (s *Server) leaderLeaseConn() *grpc.ClientConn {
	_, lead := s.leader()
	if lead == 0 || lead == s.id {
		return nil
	}
	for _, m := range s.sm.members() {
		if m.ID == lead && len(m.ClientURLs) > 0 {
			cc, err := s.leaseFwd.conn(lead, m.ClientURLs[0])
			if err != nil {
				s.logger.Warn("cannot reach the leader's client URL for leases", "leader", fmt.Sprintf("%x", lead), "err", err)
				return nil
			}
			return cc
		}
	}
	return nil
}

// leaseForwarder holds one client connection per member asked, kept until the server
// stops (at most one per member of the cluster).
type leaseForwarder struct {
	// tls dials https:// client URLs; nil if this member has no client TLS.
	tls *tls.Config
	mu  struct {
		sync.Mutex
		conns  map[uint64]forwardConn
		closed bool
	}
}

type forwardConn struct {
	url string
	cc  *grpc.ClientConn
}

func newLeaseForwarder(tlsConfig *tls.Config) *leaseForwarder {
	f := &leaseForwarder{tls: tlsConfig}
	f.mu.conns = map[uint64]forwardConn{}
	return f
}

// conn returns the connection to member id at url, dialling it (lazily: gRPC connects
// on first use) if there is none or the member's URL changed.
func (f *leaseForwarder) conn(id uint64, url string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	c, ok := f.mu.conns[id]
	closed := f.mu.closed
	f.mu.Unlock()
	switch {
	case closed:
		return nil, errStopped
	case ok && c.url == url:
		return c.cc, nil
	}
	addr, err := hostPort(url)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if strings.HasPrefix(url, "https://") {
		if f.tls == nil {
			return nil, fmt.Errorf("the leader's client URL %s is https://, and this member has no client TLS settings to dial it with", url)
		}
		creds = credentials.NewTLS(f.tls)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	old, hadOld := f.mu.conns[id]
	closed = f.mu.closed
	if !closed {
		f.mu.conns[id] = forwardConn{url: url, cc: cc}
	}
	f.mu.Unlock()
	// A failed close of a connection no longer used loses nothing.
	if closed {
		_ = cc.Close()
		return nil, errStopped
	}
	if hadOld && old.cc != cc {
		_ = old.cc.Close()
	}
	return cc, nil
}

// close closes every connection; conn fails afterwards.
func (f *leaseForwarder) close() {
	f.mu.Lock()
	f.mu.closed = true
	conns := f.mu.conns
	f.mu.conns = nil
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.cc.Close()
	}
}

// forwardTLS is the TLS this member dials another member's https:// client URL with:
// it presents its own client-side certificate (the one its client URLs serve), which
// the leader asks for when it requires client certificates, so that certificate must
// allow client authentication, as etcd's member certificates commonly do; it verifies
// the leader's with the client side's trusted CAs (--trusted-ca-file), else the
// system's roots, or not at all with --auto-tls, whose self-signed certificates allow
// no verification (etcd skips it likewise). nil if this member serves no https://
// client URL.
func (s *Server) forwardTLS() *tls.Config {
	serve := s.tls.client
	if serve == nil {
		return nil
	}
	cfg := &tls.Config{
		MinVersion:   serve.MinVersion,
		MaxVersion:   serve.MaxVersion,
		CipherSuites: serve.CipherSuites,
		RootCAs:      serve.ClientCAs, // nil: the system's roots
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return serve.GetCertificate(nil)
		},
	}
	if info := s.cfg.ClientTLS; info.isEmpty() && info.AutoTLS {
		cfg.InsecureSkipVerify = true
	}
	return cfg
}
