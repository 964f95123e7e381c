package server

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"raftkv/internal/testport"
)

// With client certificates only (no token), a membership change sent to a follower
// reaches the leader as its caller: root's certificate adds, updates, promotes
// (refused as not ready, with the leader's own error) and removes a learner through
// a follower, while alice's certificate (no root role) and mallory's (no user) are
// refused there, as on the leader. The follower used to forward the call to the
// leader's client URL on its own certificate, where the caller's identity was lost
// and the leader refused root's change.
func TestMembershipChangeThroughAFollowerUnderCertAuth(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	members := startHTTPSCluster(t, 3, pki.clientTLS(t, "root"), func(i int, c *Config) {
		c.ClientTLS = pki.mutualTLS(t, c.Name)
		c.PeerTLS = pki.mutualTLS(t, c.Name)
		c.BcryptCost = 4
	})
	leader := promotedLeader(t, members)
	ctx := testCtx(t)
	setupRootAndAlice(t, ctx, pb.NewAuthClient(leader.conn))
	follower := followersOf(members, leader)[0]
	// root's certificate, on the follower, after the auth setup applied there.
	if _, err := follower.client.Range(ctx, &pb.RangeRequest{Key: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	for _, cn := range []string{"alice", "mallory"} {
		conn := dialTLS(t, follower.cfg.ListenClientURLs[0], pki.clientTLS(t, cn))
		defer conn.Close()
		_, err := pb.NewClusterClient(conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"https://127.0.0.1:1"}, IsLearner: true})
		want := rpctypes.ErrGRPCPermissionDenied
		if cn == "mallory" {
			want = rpctypes.ErrGRPCUserNotFound
		}
		wantStatus(t, cn+"'s certificate adds a member through a follower", err, want)
	}

	cluster := pb.NewClusterClient(follower.conn)
	ports := testport.Free(t, 2)
	add, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{fmt.Sprintf("https://127.0.0.1:%d", ports[0])}, IsLearner: true})
	if err != nil {
		t.Fatalf("root's certificate adds a learner through a follower: %v", err)
	}
	id := add.Member.ID
	if len(add.Members) != 4 || !add.Member.IsLearner {
		t.Fatalf("MemberAdd answered %+v; want 4 members, the new one a learner", add)
	}
	// As etcd's: the header names the member that served the call, not the leader
	// it forwarded the change to, and no revision.
	if h := add.Header; h.MemberId != follower.srv.ID() || h.Revision != 0 || h.ClusterId != follower.srv.ClusterID() {
		t.Fatalf("MemberAdd through a follower: header %v, want member %x, cluster %x, no revision", h, follower.srv.ID(), follower.srv.ClusterID())
	}
	newURL := fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	if _, err := cluster.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: id, PeerURLs: []string{newURL}}); err != nil {
		t.Fatalf("root's certificate updates the learner through a follower: %v", err)
	}
	_, err = cluster.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: id})
	wantStatus(t, "promote a learner that never started, through a follower", err, rpctypes.ErrGRPCLearnerNotReady)
	list, err := pb.NewClusterClient(leader.conn).MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
	if err != nil {
		t.Fatal(err)
	}
	var updated bool
	for _, m := range list.Members {
		updated = updated || (m.ID == id && len(m.PeerURLs) == 1 && m.PeerURLs[0] == newURL)
	}
	if !updated {
		t.Fatalf("the leader lists %+v; want member %x at %s", list.Members, id, newURL)
	}
	if _, err := cluster.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: id}); err != nil {
		t.Fatalf("root's certificate removes the learner through a follower: %v", err)
	}
	_, err = cluster.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: id})
	wantStatus(t, "remove the removed learner again, through a follower", err, rpctypes.ErrGRPCMemberNotFound)
}
