package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// TestLockAndElectionServices drives etcd's server-side Lock and Election services
// (v3lockpb, v3electionpb: what the gRPC gateway and clients in other languages
// use) with raw gRPC clients, the same steps against an embedded etcd and through a
// follower of three raftkv members, and requires the same transcript: every
// response (headers' ids and terms aside) and every error, including a lock and a
// campaign that wait for the holder to let go, and an Observe stream.
func TestLockAndElectionServices(t *testing.T) {
	t.Parallel()
	etcd := startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })
	members := startRaftkv(t, 3, 0)
	var transcripts [2][]string
	for i, ep := range []string{etcd, hostPort(follower(t, members).clientURL)} {
		conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		transcripts[i] = lockElectionTranscript(t, conn)
	}
	if d := firstDifference(transcripts[0], transcripts[1]); d != "" {
		t.Fatalf("the transcripts differ:\n%s", d)
	}
	t.Logf("%d steps answered the same:\n%s", len(transcripts[0]), strings.Join(transcripts[1], "\n"))
}

// lockElectionTranscript runs the steps against one server and returns what each
// answered. The leases are named by the test, so that keys and revisions are the
// same on both servers.
func lockElectionTranscript(t *testing.T, conn *grpc.ClientConn) []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []string
	record := func(step string, resp proto.Message, err error) {
		t.Helper()
		if err != nil {
			out = append(out, step+": error "+errString(err))
			return
		}
		clearHeaders(resp)
		out = append(out, step+": "+prototext.MarshalOptions{}.Format(resp))
	}
	leases := pb.NewLeaseClient(conn)
	kv := pb.NewKVClient(conn)
	for _, id := range []int64{0x1001, 0x1002} {
		if _, err := leases.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 60}); err != nil {
			t.Fatalf("granting lease %x: %v", id, err)
		}
	}
	// waitKeys waits until prefix holds n keys: a Lock or Campaign that waits has
	// queued its key.
	waitKeys := func(prefix string, n int64) {
		t.Helper()
		err := eventually(10*time.Second, 5*time.Millisecond, func() error {
			resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte(prefix), RangeEnd: []byte(prefixEnd(prefix)), CountOnly: true})
			if err != nil || resp.Count != n {
				return fmt.Errorf("%d keys under %q (%v), want %d", resp.GetCount(), prefix, err, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	locks := v3lockpb.NewLockClient(conn)
	first, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("L"), Lease: 0x1001})
	record("lock L with lease 1001", first, err)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	type lockResult struct {
		resp *v3lockpb.LockResponse
		err  error
	}
	second := make(chan lockResult, 1)
	go func() {
		resp, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("L"), Lease: 0x1002})
		second <- lockResult{resp, err}
	}()
	waitKeys("L/", 2)
	select {
	case r := <-second:
		t.Fatalf("a second Lock of L returned (%v, %v) while the first holds it", r.resp, r.err)
	default:
	}
	resp, err := locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: first.GetKey()})
	record("unlock the first", resp, err)
	r := <-second
	record("the second lock, once the first let go", r.resp, r.err)
	resp, err = locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: r.resp.GetKey()})
	record("unlock the second", resp, err)
	resp, err = locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: []byte("L/none")})
	record("unlock a key nobody holds", resp, err)
	lr, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("L"), Lease: 0x7777})
	record("lock with a lease that does not exist", lr, err)
	// A Lock given up while it waits takes its queued key away.
	held, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("L"), Lease: 0x1001})
	record("lock L again with lease 1001", held, err)
	waitCtx, giveUp := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := locks.Lock(waitCtx, &v3lockpb.LockRequest{Name: []byte("L"), Lease: 0x1002})
		gaveUp <- err
	}()
	waitKeys("L/", 2)
	giveUp()
	if err := <-gaveUp; err == nil {
		t.Fatal("a Lock whose context was canceled while it waited succeeded")
	}
	waitKeys("L/", 1)
	resp, err = locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.GetKey()})
	record("unlock, after a waiter gave up", resp, err)

	elections := epb.NewElectionClient(conn)
	lead, err := elections.Leader(ctx, &epb.LeaderRequest{Name: []byte("E")})
	record("leader of an election nobody campaigned in", lead, err)
	camp, err := elections.Campaign(ctx, &epb.CampaignRequest{Name: []byte("E"), Lease: 0x1001, Value: []byte("v1")})
	record("campaign with lease 1001", camp, err)
	if err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	observeCtx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	observe, err := elections.Observe(observeCtx, &epb.LeaderRequest{Name: []byte("E")})
	if err != nil {
		t.Fatal(err)
	}
	observed := func(step string) {
		t.Helper()
		resp, err := observe.Recv()
		record("observe: "+step, resp, err)
	}
	observed("the first leader")
	lead, err = elections.Leader(ctx, &epb.LeaderRequest{Name: []byte("E")})
	record("leader", lead, err)
	pr, err := elections.Proclaim(ctx, &epb.ProclaimRequest{Leader: camp.Leader, Value: []byte("v2")})
	record("proclaim v2", pr, err)
	observed("the proclaimed value")
	pr, err = elections.Proclaim(ctx, &epb.ProclaimRequest{Value: []byte("v3")})
	record("proclaim without a leader", pr, err)

	type campaignResult struct {
		resp *epb.CampaignResponse
		err  error
	}
	next := make(chan campaignResult, 1)
	go func() {
		resp, err := elections.Campaign(ctx, &epb.CampaignRequest{Name: []byte("E"), Lease: 0x1002, Value: []byte("w")})
		next <- campaignResult{resp, err}
	}()
	waitKeys("E/", 2)
	rs, err := elections.Resign(ctx, &epb.ResignRequest{Leader: camp.Leader})
	record("resign", rs, err)
	c := <-next
	record("the second campaign, once the first resigned", c.resp, c.err)
	observed("the second leader")
	pr, err = elections.Proclaim(ctx, &epb.ProclaimRequest{Leader: camp.Leader, Value: []byte("stale")})
	record("proclaim by the leader that resigned", pr, err)
	rs, err = elections.Resign(ctx, &epb.ResignRequest{})
	record("resign without a leader", rs, err)
	if c.resp != nil {
		rs, err = elections.Resign(ctx, &epb.ResignRequest{Leader: c.resp.Leader})
		record("the second leader resigns", rs, err)
	}
	lead, err = elections.Leader(ctx, &epb.LeaderRequest{Name: []byte("E")})
	record("leader after both resigned", lead, err)
	stopObserving()
	if _, err := observe.Recv(); err == nil || err == io.EOF {
		t.Fatalf("Observe after its context ended: %v; want the cancellation", err)
	}
	return out
}

// clearHeaders clears, in every header of resp, what differs between two servers
// holding the same data: the ids and the term.
func clearHeaders(resp proto.Message) {
	var walk func(m proto.Message)
	walk = func(m proto.Message) {
		switch r := m.(type) {
		case *pb.ResponseHeader:
			if r != nil {
				r.ClusterId, r.MemberId, r.RaftTerm = 0, 0, 0
			}
		case *v3lockpb.LockResponse:
			walk(r.GetHeader())
		case *v3lockpb.UnlockResponse:
			walk(r.GetHeader())
		case *epb.CampaignResponse:
			walk(r.GetHeader())
		case *epb.ProclaimResponse:
			walk(r.GetHeader())
		case *epb.ResignResponse:
			walk(r.GetHeader())
		case *epb.LeaderResponse:
			walk(r.GetHeader())
		}
	}
	if resp != nil && resp.ProtoReflect().IsValid() {
		walk(resp)
	}
}

// prefixEnd is the range end of every key with the prefix, whose last byte is
// below 0xff.
func prefixEnd(prefix string) string {
	return prefix[:len(prefix)-1] + string(rune(prefix[len(prefix)-1]+1))
}
