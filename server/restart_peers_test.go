package server

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// A member restarted after a member was added dials the new member: its
// member/cluster.json names only the members its data dir was made with, and the
// addition is in the store, below the applied index the log restarts after, so the
// log does not apply it again. Here the added member and the restarted one are a
// quorum of three only if they reach each other.
func TestRestartedMemberDialsAMemberAddedSinceItsDataDirWasMade(t *testing.T) {
	members := startTestCluster(t, 2, func(c *Config) { c.SnapshotCount = 5 })
	ctx := testCtx(t)
	waitStarted(t, members[0], 2)
	waitConnected(t, members)
	joiner := joiningMember(t, members, "m2")
	if _, err := pb.NewClusterClient(members[0].conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: joiner.cfg.ListenPeerURLs}); err != nil {
		t.Fatal(err)
	}
	joiner.start(t)
	all := append(members, joiner)
	waitStarted(t, members[0], 3)
	waitConnected(t, all)
	// Enough writes for a snapshot past the addition, so that the store holds it
	// and the restart does not replay it from the log.
	for i := range 12 {
		retry(t, func(ctx context.Context) error {
			_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte{'k', byte('a' + i)}, Value: []byte("v")})
			return err
		})
	}
	waitAppliedEverywhere(t, all, leaderOf(t, all))

	restarted, stopped := members[0], members[1]
	restarted.stop()
	restarted.start(t)
	stopped.stop()
	retry(t, func(ctx context.Context) error {
		_, err := restarted.client.Put(ctx, &pb.PutRequest{Key: []byte("after"), Value: []byte("v")})
		return err
	})
	if _, ok := restarted.srv.transport.Stats().Peers[joiner.srv.ID()]; !ok {
		t.Fatalf("the restarted member's transport has no peer %x (the added member)", joiner.srv.ID())
	}
}

// A member removed while down is refused when it comes back, even after the members
// that removed it have restarted: they learn whom to refuse from their store, not
// only from the removal entry as it applies.
func TestRemovedMemberIsRefusedByMembersRestartedSinceItsRemoval(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.SnapshotCount = 5 })
	ctx := testCtx(t)
	waitStarted(t, members[0], 3)
	leader := leaderOf(t, members)
	victim := followersOf(members, leader)[0]
	victimID := victim.srv.ID()
	victim.stop()
	time.Sleep(300 * time.Millisecond) // the leader notices it is down
	if _, err := pb.NewClusterClient(leader.conn).MemberRemove(ctx, &pb.MemberRemoveRequest{ID: victimID}); err != nil {
		t.Fatalf("removing the member that is down: %v", err)
	}
	var survivors []*testMember
	for _, m := range members {
		if m != victim {
			survivors = append(survivors, m)
		}
	}
	// A snapshot past the removal, so that the restarts find it in the store.
	for i := range 12 {
		retry(t, func(ctx context.Context) error {
			_, err := leader.client.Put(ctx, &pb.PutRequest{Key: []byte{'k', byte('a' + i)}, Value: []byte("v")})
			return err
		})
	}
	waitAppliedEverywhere(t, survivors, leader)
	for _, m := range survivors {
		m.stop()
	}
	for _, m := range survivors {
		m.start(t)
	}
	for _, m := range survivors {
		if _, ok := m.srv.transport.Stats().Peers[victimID]; ok {
			t.Fatalf("restarted member %s dials the removed member %x", m.cfg.Name, victimID)
		}
	}
	victim.start(t)
	waitStoppedAsRemoved(t, victim, "the removed member, started after the others restarted,")
}
