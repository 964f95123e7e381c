package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// With --strict-reconfig-check off, a voter added while fewer members run than
// the new configuration's quorum is answered once the change is durable on a
// quorum of the voters before it, not on the leader alone: with both followers
// down, the followers could come back without it, elect one of themselves and cut
// it from the leader's log, after the client had been told the member was added.
// With one follower down the leader and the other follower are that quorum, and
// the call answers.
func TestMemberAddWithoutStrictCheckAnswersOnceAQuorumHoldsIt(t *testing.T) {
	for _, down := range []int{1, 2} {
		members := startTestCluster(t, 3, func(c *Config) { c.DisableStrictReconfigCheck = true })
		waitStarted(t, members[0], 3)
		waitConnected(t, members)
		leader := leaderOf(t, members)
		for _, f := range followersOf(members, leader)[:down] {
			f.stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := pb.NewClusterClient(leader.conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}})
		cancel()
		switch {
		case down == 1 && err != nil:
			t.Fatalf("adding a voter with 2 of 3 voters running: %v", err)
		case down == 2 && err == nil:
			t.Fatalf("a voter added with only the leader running was answered as added (member %x); "+
				"the change is durable on 1 of the 3 voters before it", resp.Member.GetID())
		}
		for _, m := range members {
			m.stop()
		}
	}
}

// In a cluster of one the leader alone is the quorum of the voters before the
// change: the addition of a second voter, which cannot commit until that voter
// runs, is answered once durable in the leader's log.
func TestMemberAddToAClusterOfOneAnswersOnceDurable(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	waitStarted(t, members[0], 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := pb.NewClusterClient(members[0].conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("adding a second voter to a cluster of one: %v", err)
	}
	if len(resp.Members) != 2 {
		t.Fatalf("MemberAdd lists %d members, want 2", len(resp.Members))
	}
}

// A voter added while one follower is down is answered once the leader and the
// other follower hold it; if the leader then fails before the addition commits,
// the follower that holds it needs the new member's vote (a quorum of four) and
// had learnt of it only from its log. The new member must still be able to join
// through that follower, and the follower dial it, so that the cluster commits
// the addition and serves again without the old leader.
func TestMemberAddedAsTheLeaderFailsJoinsThroughAFollower(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.DisableStrictReconfigCheck = true })
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	leader := leaderOf(t, members)
	followers := followersOf(members, leader)
	holder, down := followers[0], followers[1]
	down.stop()
	joiner := joiningMember(t, []*testMember{holder, leader}, "m3")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewClusterClient(leader.conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: joiner.cfg.ListenPeerURLs}); err != nil {
		t.Fatalf("adding a voter with 2 of 3 voters running: %v", err)
	}
	leader.stop()
	down.start(t)
	joiner.cfg.InitialCluster = map[string][]string{joiner.cfg.Name: joiner.cfg.ListenPeerURLs, holder.cfg.Name: holder.cfg.ListenPeerURLs}
	joiner.start(t)
	retry(t, func(ctx context.Context) error {
		_, err := holder.client.Put(ctx, &pb.PutRequest{Key: []byte("after"), Value: []byte("v")})
		return err
	})
	retry(t, func(ctx context.Context) error {
		list, err := pb.NewClusterClient(holder.conn).MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
		if err != nil {
			return err
		}
		if m := memberNamed(list.Members, joiner.srv.ID()); m == nil || m.Name != joiner.cfg.Name {
			return fmt.Errorf("the new member is not listed as started: %v", list.Members)
		}
		return nil
	})
}
