package server

import (
	"context"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
)

// TestLockAndElectionActAsTheCaller: with auth on, the Lock and Election services
// make their KV, Lease and Watch calls as the caller, as etcd's do: alice, who may
// write app/, locks and campaigns under app/; under other/ she is denied, and a
// caller with no token is refused as etcd refuses it, with nothing written.
func TestLockAndElectionActAsTheCaller(t *testing.T) {
	t.Parallel() // it mostly waits
	m := startTestCluster(t, 1, nil)[0]
	ctx := testCtx(t)
	auth := pb.NewAuthClient(m.conn)
	retry(t, func(ctx context.Context) error {
		_, err := auth.AuthStatus(ctx, &pb.AuthStatusRequest{})
		return err
	})
	setupRootAndAlice(t, ctx, auth)
	alice := withToken(ctx, authenticate(t, ctx, auth, "alice", "alicepw"))
	root := withToken(ctx, authenticate(t, ctx, auth, "root", "rootpw"))
	locks, elections := v3lockpb.NewLockClient(m.conn), epb.NewElectionClient(m.conn)

	lease, err := pb.NewLeaseClient(m.conn).LeaseGrant(alice, &pb.LeaseGrantRequest{TTL: 60})
	if err != nil {
		t.Fatal(err)
	}
	held, err := locks.Lock(alice, &v3lockpb.LockRequest{Name: []byte("app/lock"), Lease: lease.ID})
	if err != nil || !strings.HasPrefix(string(held.Key), "app/lock/") {
		t.Fatalf("alice locks app/lock: %v %v", held, err)
	}
	if _, err := locks.Unlock(alice, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
		t.Fatalf("alice unlocks: %v", err)
	}
	if _, err := elections.Campaign(alice, &epb.CampaignRequest{Name: []byte("app/elect"), Lease: lease.ID, Value: []byte("a")}); err != nil {
		t.Fatalf("alice campaigns under app/: %v", err)
	}

	if _, err := locks.Lock(alice, &v3lockpb.LockRequest{Name: []byte("other/lock"), Lease: lease.ID}); err == nil ||
		!strings.Contains(err.Error(), rpctypes.ErrPermissionDenied.Error()) {
		t.Fatalf("alice locks other/lock: %v, want permission denied", err)
	}
	if _, err := elections.Campaign(alice, &epb.CampaignRequest{Name: []byte("other/elect"), Lease: lease.ID, Value: []byte("a")}); err == nil ||
		!strings.Contains(err.Error(), rpctypes.ErrPermissionDenied.Error()) {
		t.Fatalf("alice campaigns under other/: %v, want permission denied", err)
	}
	if _, err := locks.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("app/lock")}); err == nil ||
		!strings.Contains(err.Error(), rpctypes.ErrUserEmpty.Error()) {
		t.Fatalf("a Lock with no token: %v, want %q", err, rpctypes.ErrUserEmpty)
	}
	r, err := pb.NewKVClient(m.conn).Range(root, &pb.RangeRequest{Key: []byte("other/"), RangeEnd: []byte("other0"), CountOnly: true})
	if err != nil || r.Count != 0 {
		t.Fatalf("keys under other/ after the denied calls: %v %v, want none", r, err)
	}
}
