package server

import (
	"context"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
)

// With --client-cert-auth, a call without a token is from the user named by the
// common name of the client's verified certificate, as in etcd: alice's
// certificate gets alice's role's permissions, and nothing else, on every member
// with no token and no password (lease keep-alives through a follower included);
// root's gets the root role; a certificate of the cluster's CA naming no user gets
// "permission denied" on keys and "user name not found" on admin calls; a token,
// when there is one, names the user instead; and a role revoked from alice is gone
// from her certificate at once.
func TestClientCertCommonNameIsTheUser(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	members := startHTTPSCluster(t, 3, pki.clientTLS(t, "root"), func(i int, c *Config) {
		c.ClientTLS = pki.mutualTLS(t, c.Name)
		c.PeerTLS = pki.mutualTLS(t, c.Name)
		c.BcryptCost = 4
	})
	leader := promotedLeader(t, members)
	ctx := testCtx(t)
	retry(t, func(ctx context.Context) error {
		_, err := leader.client.Put(ctx, &pb.PutRequest{Key: []byte("other"), Value: []byte("before")})
		return err
	})
	// root (password rootpw, root role), role app (readwrite on app/), alice (app).
	setupRootAndAlice(t, ctx, pb.NewAuthClient(leader.conn))

	dial := func(m *testMember, cn string) *grpc.ClientConn {
		conn := dialTLS(t, m.cfg.ListenClientURLs[0], pki.clientTLS(t, cn))
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	for i, m := range members {
		what := func(s string) string { return fmt.Sprintf("member %d (leader: %v): %s", i, m == leader, s) }
		alice := dial(m, "alice")
		akv, alc := pb.NewKVClient(alice), pb.NewLeaseClient(alice)
		key := fmt.Appendf(nil, "app/%d", i)
		// A linearizable read (as root, m.client's certificate) first: a member that
		// has not applied the auth setup yet stamps alice's put with the old auth
		// revision, and the put fails with "revision of auth store is old", as
		// etcd's does (failed once this way).
		if _, err := m.client.Range(ctx, &pb.RangeRequest{Key: []byte("x")}); err != nil {
			t.Fatalf("%s: %v", what("root's linearizable read"), err)
		}
		if _, err := akv.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("alice")}); err != nil {
			t.Fatalf("%s: %v", what("alice's certificate puts in app/"), err)
		}
		if r, err := akv.Range(ctx, &pb.RangeRequest{Key: []byte("app/"), RangeEnd: []byte("app0")}); err != nil || r.Count != int64(i+1) {
			t.Fatalf("%s: %v %v", what("alice's certificate reads app/"), r, err)
		}
		_, err := akv.Put(ctx, &pb.PutRequest{Key: []byte("other"), Value: []byte("alice")})
		wantStatus(t, what("alice's certificate puts other"), err, rpctypes.ErrGRPCPermissionDenied)
		_, err = akv.Range(ctx, &pb.RangeRequest{Key: []byte("other")})
		wantStatus(t, what("alice's certificate reads other"), err, rpctypes.ErrGRPCPermissionDenied)
		_, err = pb.NewAuthClient(alice).UserList(ctx, &pb.AuthUserListRequest{})
		wantStatus(t, what("alice's certificate lists users"), err, rpctypes.ErrGRPCPermissionDenied)
		if _, err := pb.NewMaintenanceClient(alice).Status(ctx, &pb.StatusRequest{}); err != nil {
			t.Fatalf("%s: %v", what("alice's certificate asks for status"), err)
		}

		// Leases: through a follower, the keep-alive and the time-to-live reach the
		// leader on the follower's own certificate.
		id := int64(50 + i)
		if _, err := alc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 600}); err != nil {
			t.Fatalf("%s: %v", what("alice's certificate grants a lease"), err)
		}
		if _, err := akv.Put(ctx, &pb.PutRequest{Key: key, Lease: id}); err != nil {
			t.Fatalf("%s: %v", what("alice's certificate attaches her key"), err)
		}
		stream, err := alc.LeaseKeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); err != nil || resp.TTL != 600 {
			t.Fatalf("%s: %+v %v", what("alice's certificate keeps her lease alive"), resp, err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		ttl, err := alc.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: id, Keys: true})
		if err != nil || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != string(key) {
			t.Fatalf("%s: %+v %v", what("alice's certificate asks her lease's time to live"), ttl, err)
		}

		// root's certificate is root; one naming no user is nobody's.
		if r, err := pb.NewAuthClient(m.conn).UserList(ctx, &pb.AuthUserListRequest{}); err != nil || len(r.Users) != 2 {
			t.Fatalf("%s: %v %v", what("root's certificate lists users"), r, err)
		}
		mallory := dial(m, "mallory")
		_, err = pb.NewKVClient(mallory).Put(ctx, &pb.PutRequest{Key: []byte("app/m"), Value: []byte("m")})
		wantStatus(t, what("mallory's certificate puts in app/"), err, rpctypes.ErrGRPCPermissionDenied)
		_, err = pb.NewAuthClient(mallory).UserList(ctx, &pb.AuthUserListRequest{})
		wantStatus(t, what("mallory's certificate lists users"), err, rpctypes.ErrGRPCUserNotFound)
	}

	// A token names the user, whatever the certificate.
	aliceConn := dial(leader, "alice")
	rootToken := withToken(ctx, authenticate(t, ctx, pb.NewAuthClient(leader.conn), "root", "rootpw"))
	if _, err := pb.NewKVClient(aliceConn).Put(rootToken, &pb.PutRequest{Key: []byte("other"), Value: []byte("root")}); err != nil {
		t.Fatalf("root's token on alice's certificate puts other: %v", err)
	}
	// alice loses her role: her certificate loses its permissions with it.
	if _, err := pb.NewAuthClient(leader.conn).UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: "alice", Role: "app"}); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		if _, err := m.client.Range(ctx, &pb.RangeRequest{Key: []byte("x")}); err != nil { // the revoke applied here
			t.Fatal(err)
		}
		_, err := pb.NewKVClient(dial(m, "alice")).Put(ctx, &pb.PutRequest{Key: []byte("app/after"), Value: []byte("v")})
		wantStatus(t, fmt.Sprintf("member %d: alice's certificate after her role was revoked", i), err, rpctypes.ErrGRPCPermissionDenied)
	}
}
