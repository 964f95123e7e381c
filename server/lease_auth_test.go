package server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// keepAliveOnce sends one keep-alive on a new stream and returns its answer.
func keepAliveOnce(ctx context.Context, m *testMember, id int64) (*pb.LeaseKeepAliveResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewLeaseClient(m.conn).LeaseKeepAlive(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return nil, err
	}
	return stream.Recv()
}

// setupLeasesForAuth grants, as root through the leader, lease 1 holding app/a
// (alice may write it) and lease 2 holding app/b and other (alice may not write
// other), and returns root's context.
func setupLeasesForAuth(t *testing.T, ctx context.Context, leader *testMember) context.Context {
	t.Helper()
	root := withToken(ctx, authenticate(t, ctx, pb.NewAuthClient(leader.conn), "root", "rootpw"))
	lc := pb.NewLeaseClient(leader.conn)
	for _, id := range []int64{1, 2} {
		if _, err := lc.LeaseGrant(root, &pb.LeaseGrantRequest{ID: id, TTL: 600}); err != nil {
			t.Fatalf("root grants lease %d: %v", id, err)
		}
	}
	for key, id := range map[string]int64{"app/a": 1, "app/b": 2, "other": 2} {
		if _, err := leader.client.Put(root, &pb.PutRequest{Key: []byte(key), Lease: id}); err != nil {
			t.Fatalf("root puts %s with lease %d: %v", key, id, err)
		}
	}
	return root
}

// With auth enabled, every Lease call is checked on every member as etcd 3.7
// checks it: a call without a user gets "user name is empty"; a keep-alive needs
// write permission on every key of the lease and a refused one ends the stream; a
// time-to-live with keys and the lease list need read permission on the keys they
// name; a put naming a lease and a revoke need write permission on the lease's keys
// where they apply, and a denied one changes nothing. Through a follower the
// keep-alive and the time-to-live are forwarded to the leader with the user's token.
func TestLeaseCallsCheckedOnEveryMember(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.BcryptCost = 4 })
	leader := promotedLeader(t, members)
	ctx := testCtx(t)
	// One follower is down while auth is set up, and behind when it comes back (a
	// follower behind the auth enable once failed this test in CI).
	lagging := followersOf(members, leader)[1]
	lagging.stop()
	setupRootAndAlice(t, ctx, pb.NewAuthClient(leader.conn))
	setupLeasesForAuth(t, ctx, leader)
	alice := withToken(ctx, authenticate(t, ctx, pb.NewAuthClient(leader.conn), "alice", "alicepw"))
	lagging.start(t)
	// The calls without a user below are checked against each member's applied
	// auth state, as etcd checks them: a follower still behind the auth enable
	// takes them, in etcd too. So they are made once every member has caught up.
	waitAppliedEverywhere(t, members, leader)

	for i, m := range append([]*testMember{leader}, followersOf(members, leader)...) {
		what := func(s string) string { return fmt.Sprintf("member %d (leader: %v): %s", i, m == leader, s) }
		lc := pb.NewLeaseClient(m.conn)
		// No user.
		_, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 600})
		wantStatus(t, what("grant without a user"), err, rpctypes.ErrGRPCUserEmpty)
		_, err = lc.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 1})
		wantStatus(t, what("revoke without a user"), err, rpctypes.ErrGRPCUserEmpty)
		_, err = lc.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1})
		wantStatus(t, what("time-to-live without a user"), err, rpctypes.ErrGRPCUserEmpty)
		_, err = lc.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
		wantStatus(t, what("leases without a user"), err, rpctypes.ErrGRPCUserEmpty)
		_, err = keepAliveOnce(ctx, m, 1)
		wantStatus(t, what("keep-alive without a user"), err, rpctypes.ErrGRPCUserEmpty)
		_, err = keepAliveOnce(withToken(ctx, "forged.5"), m, 1)
		wantStatus(t, what("keep-alive with a forged token"), err, rpctypes.ErrGRPCInvalidAuthToken)

		// alice: allowed on lease 1, refused on lease 2.
		own := int64(100 + i)
		if g, err := lc.LeaseGrant(alice, &pb.LeaseGrantRequest{ID: own, TTL: 600}); err != nil || g.ID != own {
			t.Fatalf("%s: %+v %v", what("alice grants"), g, err)
		}
		if resp, err := keepAliveOnce(alice, m, 1); err != nil || resp.TTL != 600 {
			t.Fatalf("%s: %+v %v", what("alice keeps lease 1 alive"), resp, err)
		}
		_, err = keepAliveOnce(alice, m, 2)
		wantStatus(t, what("alice keeps lease 2 alive"), err, rpctypes.ErrGRPCPermissionDenied)
		if resp, err := keepAliveOnce(alice, m, 404); err != nil || resp.TTL != 0 {
			t.Fatalf("%s: %+v %v", what("alice keeps a missing lease alive"), resp, err)
		}
		ttl, err := lc.LeaseTimeToLive(alice, &pb.LeaseTimeToLiveRequest{ID: 1, Keys: true})
		if err != nil || ttl.GrantedTTL != 600 || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "app/a" {
			t.Fatalf("%s: %+v %v", what("alice's time-to-live of lease 1 with keys"), ttl, err)
		}
		_, err = lc.LeaseTimeToLive(alice, &pb.LeaseTimeToLiveRequest{ID: 2, Keys: true})
		wantStatus(t, what("alice's time-to-live of lease 2 with keys"), err, rpctypes.ErrGRPCPermissionDenied)
		if ttl, err := lc.LeaseTimeToLive(alice, &pb.LeaseTimeToLiveRequest{ID: 2}); err != nil || ttl.GrantedTTL != 600 || len(ttl.Keys) != 0 {
			t.Fatalf("%s: %+v %v", what("alice's time-to-live of lease 2 without keys"), ttl, err)
		}
		if ttl, err := lc.LeaseTimeToLive(alice, &pb.LeaseTimeToLiveRequest{ID: 404, Keys: true}); err != nil || ttl.TTL != -1 {
			t.Fatalf("%s: %+v %v", what("alice's time-to-live of a missing lease"), ttl, err)
		}
		_, err = lc.LeaseLeases(alice, &pb.LeaseLeasesRequest{})
		wantStatus(t, what("alice lists the leases"), err, rpctypes.ErrGRPCPermissionDenied)
		_, err = m.client.Put(alice, &pb.PutRequest{Key: []byte("app/c"), Lease: 2})
		wantStatus(t, what("alice attaches app/c to lease 2"), err, rpctypes.ErrGRPCPermissionDenied)
		_, err = lc.LeaseRevoke(alice, &pb.LeaseRevokeRequest{ID: 2})
		wantStatus(t, what("alice revokes lease 2"), err, rpctypes.ErrGRPCPermissionDenied)
		if _, err := m.client.Put(alice, &pb.PutRequest{Key: []byte("app/own"), Lease: own}); err != nil {
			t.Fatalf("%s: %v", what("alice attaches app/own to her lease"), err)
		}
		if _, err := lc.LeaseRevoke(alice, &pb.LeaseRevokeRequest{ID: own}); err != nil {
			t.Fatalf("%s: %v", what("alice revokes her lease"), err)
		}
	}
	// The denied requests changed nothing: lease 2 holds its keys.
	root := withToken(ctx, authenticate(t, ctx, pb.NewAuthClient(leader.conn), "root", "rootpw"))
	ttl, err := pb.NewLeaseClient(leader.conn).LeaseTimeToLive(root, &pb.LeaseTimeToLiveRequest{ID: 2, Keys: true})
	if err != nil || len(ttl.Keys) != 2 || string(ttl.Keys[0]) != "app/b" || string(ttl.Keys[1]) != "other" {
		t.Fatalf("root's time-to-live of lease 2: %+v %v", ttl, err)
	}
	leases, err := pb.NewLeaseClient(leader.conn).LeaseLeases(root, &pb.LeaseLeasesRequest{})
	if err != nil || len(leases.Leases) != 2 {
		t.Fatalf("root lists the leases: %+v %v", leases, err)
	}
}

// The LeaseForward service the members use among themselves is on the client URL,
// where a client could call it: with auth enabled it takes a call only with a token
// (a keep-alive then checked as its user) or a verified client certificate, and it
// never answers a lease's keys, which the member that took the client's call reads
// and checks itself.
func TestLeaseForwardServiceChecksItsCaller(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.BcryptCost = 4 })
	leader := promotedLeader(t, members)
	ctx := testCtx(t)
	setupRootAndAlice(t, ctx, pb.NewAuthClient(leader.conn))
	root := setupLeasesForAuth(t, ctx, leader)
	alice := withToken(ctx, authenticate(t, ctx, pb.NewAuthClient(leader.conn), "alice", "alicepw"))
	renew := func(ctx context.Context, id int64) (*pb.LeaseKeepAliveResponse, error) {
		resp := &pb.LeaseKeepAliveResponse{}
		return resp, leader.conn.Invoke(ctx, "/"+leaseForwardService+"/Renew", &pb.LeaseKeepAliveRequest{ID: id}, resp)
	}
	_, err := renew(ctx, 2)
	wantStatus(t, "a forwarded renew without credentials", err, rpctypes.ErrGRPCUserEmpty)
	_, err = renew(alice, 2)
	wantStatus(t, "a forwarded renew of lease 2 with alice's token", err, rpctypes.ErrGRPCPermissionDenied)
	if resp, err := renew(alice, 1); err != nil || resp.TTL != 600 {
		t.Fatalf("a forwarded renew of lease 1 with alice's token: %+v %v", resp, err)
	}
	resp := &pb.LeaseTimeToLiveResponse{}
	err = leader.conn.Invoke(ctx, "/"+leaseForwardService+"/TimeToLive", &pb.LeaseTimeToLiveRequest{ID: 2, Keys: true}, resp)
	wantStatus(t, "a forwarded time-to-live without credentials", err, rpctypes.ErrGRPCUserEmpty)
	err = leader.conn.Invoke(root, "/"+leaseForwardService+"/TimeToLive", &pb.LeaseTimeToLiveRequest{ID: 2, Keys: true}, resp)
	if err != nil || resp.GrantedTTL != 600 || len(resp.Keys) != 0 {
		t.Fatalf("a forwarded time-to-live with keys, as root: %+v %v (want no keys)", resp, err)
	}
}

// A lease expires and its keys go with auth enabled, whoever may write them: the
// lessor's revoke is the member's own command, not a user's.
func TestLeaseExpiresWithAuthEnabled(t *testing.T) {
	t.Parallel() // it mostly waits
	members := startTestCluster(t, 3, func(c *Config) { c.BcryptCost = 4 })
	leader := promotedLeader(t, members)
	ctx := testCtx(t)
	setupRootAndAlice(t, ctx, pb.NewAuthClient(leader.conn))
	root := withToken(ctx, authenticate(t, ctx, pb.NewAuthClient(leader.conn), "root", "rootpw"))
	if _, err := pb.NewLeaseClient(leader.conn).LeaseGrant(root, &pb.LeaseGrantRequest{ID: 9, TTL: 1}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"app/x", "other"} {
		if _, err := leader.client.Put(root, &pb.PutRequest{Key: []byte(key), Lease: 9}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := leader.client.Range(root, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range r.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if !slices.Contains(keys, "app/x") && !slices.Contains(keys, "other") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the keys of a 1s lease are still there after 10s: %v", keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
