package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"raftkv/kv"
)

// A member that has not yet applied the AuthEnable another member answered still
// sends a request with a token on as its user's: it waits for the entry that
// issued the token, which comes after the AuthEnable. (It used to send it on as
// nobody's, and the request failed where it applied with "user name is empty".)
// The lagging member here was stopped while auth was enabled and a token issued,
// and is asked the moment it restarts.
func TestTokenServedByMemberBehindAuthEnable(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.BcryptCost = 4 })
	leader := promotedLeader(t, members)
	lagging := followersOf(members, leader)[0]
	ctx := testCtx(t)
	retry(t, func(ctx context.Context) error {
		_, err := lagging.client.Put(ctx, &pb.PutRequest{Key: []byte("app/0"), Value: []byte("v")})
		return err
	})
	lagging.stop()
	setupRootAndAlice(t, ctx, pb.NewAuthClient(leader.conn))
	alice := withToken(ctx, authenticate(t, ctx, pb.NewAuthClient(leader.conn), "alice", "alicepw"))
	lagging.start(t)
	for {
		_, err := lagging.client.Put(alice, &pb.PutRequest{Key: []byte("app/1"), Value: []byte("v")})
		if err == nil {
			break
		}
		// The restarted member may not know a leader yet: that is worth a retry,
		// any other answer is not.
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			t.Fatalf("alice's put on the member that was behind: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// With --client-cert-auth the certificate's user is named whether or not this
// member has auth enabled (a member behind an AuthEnable must not send the
// request on as nobody's), as etcd names it.
func TestCertificateUserNamedWithAuthDisabled(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	members := startHTTPSCluster(t, 1, pki.clientTLS(t, "root"), func(i int, c *Config) {
		c.ClientTLS = pki.mutualTLS(t, c.Name)
		c.PeerTLS = pki.mutualTLS(t, c.Name)
	})
	s := members[0].srv
	if enabled, _ := s.sm.store.AuthStatus(); enabled {
		t.Fatal("auth is enabled on a new member")
	}
	cert := pki.ca.Issue(t, "alice").Cert(t)
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}}})
	sender, err := s.sender(ctx)
	if err != nil || sender.User != "alice" || sender.Revision != 1 {
		t.Fatalf("sender of alice's certificate with auth disabled: %+v %v", sender, err)
	}
	if sender, err := s.sender(context.Background()); err != nil || sender != (kv.AuthInfo{}) {
		t.Fatalf("sender of a call without credentials: %+v %v", sender, err)
	}
}
