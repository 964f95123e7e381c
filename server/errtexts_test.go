package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"raftkv/kv"
	"raftkv/storage"
)

// The errors a write or read gets when its wait ends are etcd 3.7's
// (etcdserver.parseProposeCtxErr, read.requestCurrentIndex, raft.Node.Propose,
// v3rpc.togRPCError).

// startWithLeader starts three members and returns them and their leader, once a
// write has gone through.
func startWithLeader(t *testing.T, mutate func(*Config)) ([]*testMember, *testMember) {
	t.Helper()
	members := startTestCluster(t, 3, mutate)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	lead := leaderOf(t, members)
	return members, lead
}

// loneMember starts three members, stops two followers, and returns the third once it
// knows no leader.
func loneMember(t *testing.T, mutate func(*Config)) *testMember {
	t.Helper()
	members, lead := startWithLeader(t, mutate)
	lone := followersOf(members, lead)[0]
	// Followers first, so that the leader has no one to hand leadership to.
	for _, m := range followersOf(members, lead) {
		if m != lone {
			m.stop()
		}
	}
	lead.stop()
	retry(t, func(ctx context.Context) error {
		if _, l := lone.srv.leader(); l != 0 {
			return errors.New("the lone member still knows a leader")
		}
		return nil
	})
	return lone
}

// loneLeader starts three members, writes once, stops the leader's followers and
// returns the leader, which still leads until its election timeout passes.
func loneLeader(t *testing.T, mutate func(*Config)) *testMember {
	t.Helper()
	members, lead := startWithLeader(t, mutate)
	for _, m := range followersOf(members, lead) {
		m.stop()
	}
	return lead
}

// A member that knows no leader hands a write to no one: as etcd's raft.Node.Propose
// while no leader is known, the write ends with its context's error, DeadlineExceeded
// once RequestTimeout passes and Canceled if its client goes, not "no leader".
func TestWriteWithoutLeaderEndsWithContextError(t *testing.T) {
	const requestTimeout = 500 * time.Millisecond
	lone := loneMember(t, func(c *Config) { c.RequestTimeout = requestTimeout })

	start := time.Now()
	_, err := lone.client.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("w")})
	if st, _ := status.FromError(err); st.Code() != codes.DeadlineExceeded || st.Message() != context.DeadlineExceeded.Error() {
		t.Errorf("write on a member without a leader: got %v, want code DeadlineExceeded, %q", err, context.DeadlineExceeded)
	}
	if took := time.Since(start); took < requestTimeout {
		t.Errorf("write on a member without a leader failed after %v, before RequestTimeout %v", took, requestTimeout)
	}

	payload, err := (&kv.Command{Put: &kv.PutRequest{Key: []byte("k"), Value: []byte("c")}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	_, err = lone.srv.propose(ctx, kindKV, payload)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("write canceled while no leader is known: got %v, want %v", err, context.Canceled)
	}
	if took := time.Since(start); took >= requestTimeout {
		t.Errorf("write canceled after 100ms returned after %v, the whole RequestTimeout", took)
	}
}

// A linearizable read that gets no read point within RequestTimeout fails with
// "request timed out", leader or not (etcd's requestCurrentIndex); one whose own
// context ends first returns that context's error (LinearizableReadNotify).
func TestReadWithoutLeaderTimesOut(t *testing.T) {
	lone := loneMember(t, func(c *Config) { c.RequestTimeout = 500 * time.Millisecond })

	_, err := lone.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")})
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != rpctypes.ErrorDesc(rpctypes.ErrGRPCTimeout) {
		t.Errorf("linearizable read on a member without a leader: got %v, want %v", err, rpctypes.ErrGRPCTimeout)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := lone.srv.linearizableRead(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("linearizable read whose own deadline passed: got %v, want %v", err, context.DeadlineExceeded)
	}
}

// A write that raft took, whose leader then stepped down with no successor, times out
// with "request timed out" (etcd's parseProposeCtxErr with no leader known), not
// "no leader".
func TestWriteTimesOutAfterLeaderStepsDown(t *testing.T) {
	const requestTimeout = 1500 * time.Millisecond
	lone := loneLeader(t, func(c *Config) {
		c.RequestTimeout = requestTimeout
		c.HeartbeatInterval = 20 * time.Millisecond
		c.ElectionTimeout = 200 * time.Millisecond
	})
	// Proposed while this member still leads (it steps down one election timeout
	// after it last heard from a quorum: CheckQuorum).
	_, err := lone.client.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("gone")})
	if _, l := lone.srv.leader(); l != 0 {
		t.Fatalf("the lone member still knows leader %d after RequestTimeout; the test checked nothing", l)
	}
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != rpctypes.ErrorDesc(rpctypes.ErrGRPCTimeout) {
		t.Errorf("write whose leader stepped down: got %v, want %v", err, rpctypes.ErrGRPCTimeout)
	}
}

// proposeCtxError gives etcd's variants of a timeout: "possibly due to previous
// leader failure" for a request that started within two election timeouts before
// this member was elected, "possibly due to connection lost" when the stream to the
// leader (or, on the leader, to a quorum) was not up for the whole wait; and etcd's
// "request cancelled" for a request whose client went away.
func TestProposeCtxErrorVariants(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	lead := leaderOf(t, members)
	follower := followersOf(members, lead)[0]
	et := lead.cfg.ElectionTimeout
	retry(t, func(ctx context.Context) error {
		for _, m := range []*testMember{lead, follower} {
			if _, l := m.srv.leader(); l != lead.srv.id {
				return errors.New("a member does not know the leader yet")
			}
		}
		for _, m := range members {
			if m == lead {
				continue
			}
			if p := lead.srv.transport.Stats().Peers[m.srv.id]; !p.IsConnected {
				return errors.New("the leader's streams are not all up yet")
			}
		}
		if p := follower.srv.transport.Stats().Peers[lead.srv.id]; !p.IsConnected {
			return errors.New("the follower's stream to the leader is not up yet")
		}
		return nil
	})
	elected := lead.srv.node.Observe().ElectedAt
	if elected.IsZero() {
		t.Fatal("the leader's ElectedAt is zero")
	}
	dl := context.DeadlineExceeded
	longAgo := time.Now().Add(-time.Hour) // before any stream was up, and any election
	for _, c := range []struct {
		name   string
		m      *testMember
		err    error
		start  time.Time
		want   error
		status error
	}{
		{"canceled", follower, context.Canceled, time.Now(), errCanceled, rpctypes.ErrGRPCCanceled},
		{"leader, started just before its election", lead, dl, elected.Add(-et), errTimeoutDueToLeaderFail, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
		{"leader, connected to a quorum throughout", lead, dl, time.Now(), errTimeout, rpctypes.ErrGRPCTimeout},
		{"leader, started before its streams were up", lead, dl, longAgo, errTimeoutDueToConnectionLost, rpctypes.ErrGRPCTimeoutDueToConnectionLost},
		{"follower, connected to the leader throughout", follower, dl, time.Now(), errTimeout, rpctypes.ErrGRPCTimeout},
		{"follower, started before its stream to the leader was up", follower, dl, longAgo, errTimeoutDueToConnectionLost, rpctypes.ErrGRPCTimeoutDueToConnectionLost},
	} {
		got := c.m.srv.proposeCtxError(c.err, c.start)
		if !errors.Is(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		if g := toGRPC(got); g != c.status {
			t.Errorf("%s: gRPC status %v, want %v", c.name, g, c.status)
		}
	}
}

// A write forwarded by a follower whose WAL sync does not return either still waits
// in the Node's queue when RequestTimeout ends its wait, or was forwarded (the run
// loop goes on while a persist goroutine waits for the sync, unless nothing else is
// queued). Queued, it is withdrawn (raft's ForwardUntil) and ends with its context's
// DeadlineExceeded, as etcd's raft.Node.Propose does, and never applies: clientv3
// may send it again on that code, and it must not apply twice. Forwarded, the leader
// commits it while the follower cannot apply it, and it ends with "request timed
// out" (Unavailable, not resent). Which one happens depends on the run loop's
// timing; raft's TestNodeForwardUntilQueuedIsWithdrawn holds the run loop to test
// the withdrawal itself. Either way the write applies at most once, and not at
// all after DeadlineExceeded.
func TestForwardedWriteStillQueuedIsWithdrawn(t *testing.T) {
	const requestTimeout = 500 * time.Millisecond
	gates := map[string]*syncGate{}
	members, lead := startWithLeader(t, func(c *Config) {
		c.RequestTimeout = requestTimeout
		g := &syncGate{FS: storage.NewOSFS(), open: make(chan struct{})}
		close(g.open)
		gates[c.Name] = g
		c.files = &memberFiles{log: g}
	})
	follower := followersOf(members, lead)[0]
	gate := gates[follower.cfg.Name]
	gate.close()
	released := false
	release := func() {
		if !released {
			released = true
			gate.release()
		}
	}
	defer release()

	// The follower's next append blocks its run loop in the sync.
	if _, err := lead.client.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(5*time.Second, func() bool { return gate.blocked.Load() > 0 }); err != nil {
		t.Fatal("the follower's WAL sync never blocked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := follower.client.Put(ctx, &pb.PutRequest{Key: []byte("queued"), Value: []byte("x")})
	st, _ := status.FromError(err)
	withdrawn := st.Code() == codes.DeadlineExceeded && st.Message() == context.DeadlineExceeded.Error()
	forwarded := st.Code() == codes.Unavailable && strings.HasPrefix(st.Message(), "etcdserver: request timed out")
	if !withdrawn && !forwarded {
		t.Fatalf("write on a follower whose WAL sync is held: got %v, want DeadlineExceeded (withdrawn) or Unavailable, etcdserver: request timed out (forwarded)", err)
	}
	t.Logf("withdrawn %v, forwarded %v: %v", withdrawn, forwarded, err)
	release()
	// A write the follower forwards after the sync returns applies; the withdrawn
	// one, queued before it, does not.
	retry(t, func(ctx context.Context) error {
		_, err := follower.client.Put(ctx, &pb.PutRequest{Key: []byte("later"), Value: []byte("y")})
		return err
	})
	resp, err := lead.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("queued")})
	if err != nil {
		t.Fatal(err)
	}
	if withdrawn && resp.Count != 0 {
		t.Fatalf("the withdrawn write, answered DeadlineExceeded, applied: %v", resp.Kvs)
	}
	if resp.Count != 0 && resp.Kvs[0].Version != 1 {
		t.Fatalf("the write applied more than once: %v", resp.Kvs)
	}
}

// syncGate is a log file system whose files' Sync waits while the gate is closed.
type syncGate struct {
	storage.FS
	mu      sync.Mutex
	open    chan struct{}
	blocked atomic.Int64
}

func (g *syncGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *syncGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

func (g *syncGate) wait() {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	g.blocked.Add(1)
	defer g.blocked.Add(-1)
	<-open
}

func (g *syncGate) Create(name string) (storage.File, error) {
	f, err := g.FS.Create(name)
	return g.wrap(f, err)
}

func (g *syncGate) OpenReadWrite(name string) (storage.File, error) {
	f, err := g.FS.OpenReadWrite(name)
	return g.wrap(f, err)
}

func (g *syncGate) wrap(f storage.File, err error) (storage.File, error) {
	if err != nil {
		return nil, err
	}
	return gatedFile{File: f, g: g}, nil
}

type gatedFile struct {
	storage.File
	g *syncGate
}

func (f gatedFile) Sync() error {
	f.g.wait()
	return f.File.Sync()
}
