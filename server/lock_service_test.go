package server

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/metadata"
)

// TestLockServiceIgnoresExactlyOnceMetadata: a Lock without a lease is two writes
// (a grant, then the txn that queues the key), made in process with the caller's
// context; the exactly-once metadata it carries must not make the second look like
// a retry of the first.
func TestLockServiceIgnoresExactlyOnceMetadata(t *testing.T) {
	m := startTestCluster(t, 1, nil)[0]
	locks := v3lockpb.NewLockClient(m.conn)
	for seq := 1; seq <= 3; seq++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, MetadataClientID, "77", MetadataSequence, fmt.Sprint(seq))
		resp, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("L")})
		if err == nil && !strings.HasPrefix(string(resp.Key), "L/") {
			err = fmt.Errorf("key %q", resp.Key)
		}
		if err == nil {
			_, err = locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: resp.Key})
		}
		cancel()
		if err != nil {
			t.Fatalf("Lock and Unlock with %s 77 and %s %d: %v", MetadataClientID, MetadataSequence, seq, err)
		}
	}
}

// TestLockAndElectionLeaveNoGoroutine: each request's in-process client, its watch
// and keep-alive streams end with the request, a canceled Observe and a Lock given
// up while it waits included.
func TestLockAndElectionLeaveNoGoroutine(t *testing.T) {
	m := startTestCluster(t, 1, nil)[0]
	locks, elections := v3lockpb.NewLockClient(m.conn), epb.NewElectionClient(m.conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	grant, err := pb.NewLeaseClient(m.conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
	if err != nil {
		t.Fatal(err)
	}
	round := func() {
		t.Helper()
		held, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("L"), Lease: grant.ID})
		if err != nil {
			t.Fatal(err)
		}
		// A second Lock waits for the first, and is given up.
		waitCtx, giveUp := context.WithTimeout(ctx, 50*time.Millisecond)
		if _, err := locks.Lock(waitCtx, &v3lockpb.LockRequest{Name: []byte("L")}); err == nil {
			t.Fatal("a second Lock of a held lock succeeded")
		}
		giveUp()
		if _, err := locks.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
			t.Fatal(err)
		}
		camp, err := elections.Campaign(ctx, &epb.CampaignRequest{Name: []byte("E"), Lease: grant.ID, Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		observeCtx, stop := context.WithCancel(ctx)
		obs, err := elections.Observe(observeCtx, &epb.LeaderRequest{Name: []byte("E")})
		if err == nil {
			_, err = obs.Recv()
		}
		if err != nil {
			t.Fatal(err)
		}
		stop()
		if _, err := elections.Leader(ctx, &epb.LeaderRequest{Name: []byte("E")}); err != nil {
			t.Fatal(err)
		}
		if _, err := elections.Resign(ctx, &epb.ResignRequest{Leader: camp.Leader}); err != nil {
			t.Fatal(err)
		}
	}
	round() // the connection's and the services' own goroutines start here
	time.Sleep(200 * time.Millisecond)
	before := runtime.NumGoroutine()
	const rounds = 20
	for range rounds {
		round()
	}
	// Each round's requests start a dozen goroutines; a leak of one per request
	// would leave a hundred more.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+rounds/2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines after %d rounds, %d before:\n%s", runtime.NumGoroutine(), rounds, before, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
