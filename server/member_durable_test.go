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

// An addition that never commits: the leader appends it with both followers down,
// and stops. The followers come back, elect one of themselves and write on. The old
// leader, started alone, finds the unapplied addition in its log and dials the
// member it adds; once the followers run again its log is behind theirs (§5.4.1),
// the new leader cuts the entry from it (§5.3), and it must stop dialling a member
// that was never added.
func TestMemberWhoseAdditionWasCutIsNoLongerDialled(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.DisableStrictReconfigCheck = true })
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	oldLeader := leaderOf(t, members)
	followers := followersOf(members, oldLeader)
	known := map[uint64]bool{}
	for _, m := range members {
		known[m.srv.ID()] = true
	}
	for _, f := range followers {
		f.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := pb.NewClusterClient(oldLeader.conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}})
	cancel()
	if err == nil {
		t.Fatal("a voter added with only the leader running was answered as added")
	}
	added := uint64(0)
	for id := range oldLeader.srv.transport.Stats().Peers {
		if !known[id] {
			added = id
		}
	}
	if added == 0 {
		t.Fatal("the leader does not dial the member it is adding")
	}
	oldLeader.stop()

	for _, f := range followers {
		f.start(t)
	}
	retry(t, func(ctx context.Context) error {
		_, err := followers[0].client.Put(ctx, &pb.PutRequest{Key: []byte("after"), Value: []byte("v")})
		return err
	})
	for _, f := range followers {
		f.stop()
	}
	oldLeader.start(t)
	dialled := func() bool { _, ok := oldLeader.srv.transport.Stats().Peers[added]; return ok }
	if err := waitFor(5*time.Second, dialled); err != nil {
		t.Fatal("restarted with the addition unapplied in its log, the old leader does not dial the added member")
	}
	for _, f := range followers {
		f.start(t)
	}
	retry(t, func(ctx context.Context) error {
		resp, err := oldLeader.client.Range(ctx, &pb.RangeRequest{Key: []byte("after"), Serializable: true})
		if err == nil && len(resp.Kvs) == 0 {
			err = fmt.Errorf("the old leader does not have the new leader's write yet")
		}
		return err
	})
	if err := waitFor(5*time.Second, func() bool { return !dialled() }); err != nil {
		t.Fatalf("the old leader still dials member %x, whose addition was cut from its log", added)
	}
}
