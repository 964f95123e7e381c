package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"raftkv/internal/testport"
)

// joiningMember returns the config of a member to add to the cluster of members,
// with fresh ports, joining (state existing) with an --initial-cluster of the running
// members and itself.
func joiningMember(t *testing.T, members []*testMember, name string) *testMember {
	t.Helper()
	ports := testport.Free(t, 2)
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	initial := map[string][]string{name: {peer}}
	for _, m := range members {
		if m.srv != nil {
			initial[m.cfg.Name] = m.cfg.ListenPeerURLs
		}
	}
	cfg := members[0].cfg
	cfg.Name, cfg.DataDir = name, filepath.Join(t.TempDir(), name)
	cfg.ListenClientURLs, cfg.AdvertiseClientURLs, cfg.ListenPeerURLs = []string{client}, []string{client}, []string{peer}
	cfg.InitialCluster, cfg.InitialClusterState = initial, "existing"
	m := &testMember{cfg: cfg}
	t.Cleanup(m.stop)
	return m
}

func memberNamed(list []*pb.Member, id uint64) *pb.Member {
	for _, m := range list {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// The Cluster service end to end in one process: a learner is added (listed with no
// name until it starts), refused promotion until it has caught up, joins with
// --initial-cluster-state existing and gets the data, is promoted, and is removed
// through a follower, after which it stops with ErrRemoved; every error of etcd's on
// the way has etcd's code and text.
func TestMemberAddJoinPromoteRemove(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	ctx := testCtx(t)
	m0 := members[0]
	cluster0 := pb.NewClusterClient(m0.conn)
	for i := range 50 {
		retry(t, func(ctx context.Context) error {
			_, err := m0.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%02d", i), Value: []byte("v")})
			return err
		})
	}

	joiner := joiningMember(t, members, "m1")
	added, err := cluster0.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: joiner.cfg.ListenPeerURLs, IsLearner: true})
	if err != nil {
		t.Fatal(err)
	}
	newID := added.Member.ID
	if !added.Member.IsLearner || len(added.Members) != 2 || added.Header.ClusterId != m0.srv.ClusterID() {
		t.Fatalf("MemberAdd answered %v", added)
	}
	if m := memberNamed(added.Members, newID); m == nil || m.Name != "" || len(m.ClientURLs) != 0 || !m.IsLearner {
		t.Fatalf("the new member is listed as %v; want a learner with no name and no client URLs", m)
	}

	_, err = cluster0.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: newID})
	wantStatus(t, "promote a learner that has not started", err, rpctypes.ErrGRPCLearnerNotReady)
	_, err = cluster0.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: joiner.cfg.ListenPeerURLs})
	wantStatus(t, "add a peer URL in use", err, rpctypes.ErrGRPCPeerURLExist)
	_, err = cluster0.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}, IsLearner: true})
	wantStatus(t, "a second learner", err, rpctypes.ErrGRPCTooManyLearners)
	for _, bad := range [][]string{nil, {"127.0.0.1:1"}, {"ftp://127.0.0.1:1"}, {"http://127.0.0.1"}, {"http://127.0.0.1:1/x"}} {
		_, err = cluster0.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: bad})
		wantStatus(t, fmt.Sprintf("add %q", bad), err, rpctypes.ErrGRPCMemberBadURLs)
	}
	_, err = cluster0.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 12345})
	wantStatus(t, "remove an unknown id", err, rpctypes.ErrGRPCMemberNotFound)
	_, err = cluster0.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: 12345, PeerURLs: []string{"http://127.0.0.1:1"}})
	wantStatus(t, "update an unknown id", err, rpctypes.ErrGRPCMemberNotFound)
	_, err = cluster0.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: 12345})
	wantStatus(t, "promote an unknown id", err, rpctypes.ErrGRPCMemberNotFound)
	_, err = cluster0.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: m0.srv.ID(), PeerURLs: joiner.cfg.ListenPeerURLs})
	wantStatus(t, "update to another member's peer URL", err, rpctypes.ErrGRPCPeerURLExist)

	joiner.start(t)
	if joiner.srv.ID() != newID || joiner.srv.ClusterID() != m0.srv.ClusterID() {
		t.Fatalf("the joiner is member %x of cluster %x; want %x of %x", joiner.srv.ID(), joiner.srv.ClusterID(), newID, m0.srv.ClusterID())
	}
	retry(t, func(ctx context.Context) error {
		resp, err := joiner.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Serializable: true})
		if err == nil && resp.Count != 50 {
			err = fmt.Errorf("the learner holds %d keys, want 50", resp.Count)
		}
		return err
	})
	retry(t, func(ctx context.Context) error {
		list, err := cluster0.MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
		if err == nil {
			if m := memberNamed(list.Members, newID); m == nil || m.Name != "m1" || len(m.ClientURLs) != 1 {
				err = fmt.Errorf("the joiner is listed as %v, want its name and client URL", m)
			}
		}
		return err
	})
	retry(t, func(ctx context.Context) error {
		_, err := cluster0.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: newID})
		return err
	})
	_, err = cluster0.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: newID})
	wantStatus(t, "promote a voter", err, rpctypes.ErrGRPCMemberNotLearner)

	// Through the follower, whichever it is: forwarded to the leader.
	both := []*testMember{m0, joiner}
	leader := leaderOf(t, both)
	follower := m0
	if leader == m0 {
		follower = joiner
	}
	cluster1 := pb.NewClusterClient(follower.conn)
	// The joiner serves what a learner does not once it has applied its own
	// promotion, which the leader answered on its own apply: until then it
	// refuses, as etcd's learner does ("rpc not supported for learner").
	retry(t, func(ctx context.Context) error {
		list, err := cluster1.MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
		if err == nil && (len(list.Members) != 2 || memberNamed(list.Members, newID).IsLearner) {
			err = fmt.Errorf("MemberList on the follower: %v", list)
		}
		return err
	})
	_, err = cluster1.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 999})
	wantStatus(t, "remove an unknown id through the follower", err, rpctypes.ErrGRPCMemberNotFound)
	newPeer := fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t, 1)[0])
	_, err = cluster1.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: 777, PeerURLs: []string{newPeer}})
	wantStatus(t, "update an unknown id through the follower", err, rpctypes.ErrGRPCMemberNotFound)
	removed, err := cluster1.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: newID})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed.Members) != 1 || removed.Members[0].ID != m0.srv.ID() {
		t.Fatalf("after the removal: %v", removed.Members)
	}
	waitStoppedAsRemoved(t, joiner, "the removed member")
	retry(t, func(ctx context.Context) error {
		_, err := m0.client.Put(ctx, &pb.PutRequest{Key: []byte("after"), Value: []byte("v")})
		return err
	})
}

// --strict-reconfig-check: a voter is not added while too few members started or
// are heard from, nor removed when that would leave too few; a member that is down
// can be removed. With the check off, the add goes through.
func TestStrictReconfigCheck(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	ctx := testCtx(t)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	leader := leaderOf(t, members)
	down := followersOf(members, leader)[0]
	downID := down.srv.ID()
	down.stop()
	cluster := pb.NewClusterClient(leader.conn)
	// Wait until the leader notices (RecentActive goes false after an election timeout).
	time.Sleep(500 * time.Millisecond)
	_, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}})
	wantStatus(t, "add a voter with 2 of 3 up", err, rpctypes.ErrGRPCUnhealthy)
	// A learner too, as etcd's check: the leader reaches 2, a quorum of 3+1 is 3.
	_, err = cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}, IsLearner: true})
	wantStatus(t, "add a learner with 2 of 3 up", err, rpctypes.ErrGRPCUnhealthy)
	var third *testMember
	for _, m := range members {
		if m != leader && m != down {
			third = m
		}
	}
	_, err = cluster.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: third.srv.ID()})
	wantStatus(t, "remove a live voter with 2 of 3 up", err, rpctypes.ErrGRPCUnhealthy)
	if _, err := cluster.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: downID}); err != nil {
		t.Fatalf("removing the member that is down: %v", err)
	}
	// Two voters, both up: a learner passes the check (2 reached, a quorum of
	// 2+1); adding a voter that never starts is refused unless the check is off.
	if _, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:2"}, IsLearner: true}); err != nil {
		t.Fatalf("adding a learner: %v", err)
	}
}

// The strict check counts a peer as connected only once its stream has been up for
// the health interval (etcd's HealthInterval, 5 s; 2 s here): right after the
// streams come up, a learner is refused as etcd refuses it, and taken once the
// interval has passed.
func TestStrictReconfigCheckWantsStreamsUpForTheHealthInterval(t *testing.T) {
	const interval = 2 * time.Second
	members := startTestCluster(t, 3, func(c *Config) { c.StrictReconfigHealthInterval = interval })
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	leader := leaderOf(t, members)
	newest := time.Time{}
	for _, p := range leader.srv.transport.Stats().Peers {
		if p.ConnectedSince.After(newest) {
			newest = p.ConnectedSince
		}
	}
	cluster := pb.NewClusterClient(leader.conn)
	ctx := testCtx(t)
	_, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}, IsLearner: true})
	if time.Since(newest) < interval-100*time.Millisecond { // else this machine was too slow to ask in time
		wantStatus(t, "add a learner right after the streams came up", err, rpctypes.ErrGRPCUnhealthy)
	}
	time.Sleep(time.Until(newest.Add(interval + 100*time.Millisecond)))
	if _, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:2"}, IsLearner: true}); err != nil {
		t.Fatalf("adding a learner with every stream up for the health interval: %v", err)
	}
}

// A member that was added and never started (never published its name) counts
// against the quorum of started members: with two of five voters never started, a
// sixth voter is refused with etcd's "not enough started members" (before the check
// of the members heard from). A member that never started can be removed. (An
// initial member has its name from --initial-cluster, so it counts as started, as in
// etcd.)
func TestNotEnoughStartedMembers(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	ctx := testCtx(t)
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	cluster := pb.NewClusterClient(members[0].conn)
	var neverStarted []uint64
	for i := range 2 {
		resp, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", 20+i)}})
		if err != nil {
			t.Fatalf("adding voter %d of 2: %v", i+1, err)
		}
		neverStarted = append(neverStarted, resp.Member.ID)
	}
	_, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:22"}})
	wantStatus(t, "add a voter with 3 of 6 started", err, rpctypes.ErrGRPCMemberNotEnoughStarted)
	if _, err := cluster.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: neverStarted[0]}); err != nil {
		t.Fatalf("removing a member that never started: %v", err)
	}
}

// waitConnected waits until every running member's peer streams are all up: the
// leader's are what --strict-reconfig-check counts, and right after a start a member
// may still be redialling one it tried before that peer listened.
func waitConnected(t *testing.T, members []*testMember) {
	t.Helper()
	retry(t, func(context.Context) error {
		for _, m := range members {
			if m.srv == nil {
				continue
			}
			for id, p := range m.srv.transport.Stats().Peers {
				if !p.IsConnected {
					return fmt.Errorf("%s has no stream up to %x", m.cfg.Name, id)
				}
			}
		}
		return nil
	})
}

// waitAppliedEverywhere waits until every running member has applied what the
// leader has: a request without a token is checked against the member's own
// applied auth state, as etcd checks it (requireAuthInfo), so a follower that has
// not yet applied an auth enable still takes it, in etcd too.
func waitAppliedEverywhere(t *testing.T, members []*testMember, leader *testMember) {
	t.Helper()
	index := leader.srv.applied.get()
	retry(t, func(context.Context) error {
		for _, m := range members {
			if m.srv != nil && m.srv.applied.get() < index {
				return fmt.Errorf("%s has applied %d of the leader's %d", m.cfg.Name, m.srv.applied.get(), index)
			}
		}
		return nil
	})
}

// waitStarted waits until m lists n members with names.
// waitStoppedAsRemoved waits up to 10 s for m to stop on its own with ErrRemoved.
func waitStoppedAsRemoved(t *testing.T, m *testMember, who string) {
	t.Helper()
	select {
	case <-m.srv.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop", who)
	}
	if err := m.srv.Err(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("%s: Err = %v, want ErrRemoved", who, err)
	}
}

func waitStarted(t *testing.T, m *testMember, n int) {
	t.Helper()
	cluster := pb.NewClusterClient(m.conn)
	retry(t, func(ctx context.Context) error {
		list, err := cluster.MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
		if err != nil {
			return err
		}
		started := 0
		for _, m := range list.Members {
			if m.Name != "" {
				started++
			}
		}
		if started < n {
			return fmt.Errorf("%d members started, want %d", started, n)
		}
		return nil
	})
}

// Changes are made one at a time: of two learners added at once, one is added and
// the other refused because the first is there (etcd's one-learner limit), which a
// check that read the list before the first applied would have missed.
func TestMembershipChangesOneAtATime(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cluster := pb.NewClusterClient(members[i].conn)
			_, errs[i] = cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", 10+i)}, IsLearner: true})
		}()
	}
	wg.Wait()
	var added, refused int
	for _, err := range errs {
		switch {
		case err == nil:
			added++
		case strings.Contains(err.Error(), "too many learner"):
			refused++
		default:
			t.Fatalf("concurrent MemberAdd: %v", err)
		}
	}
	if added != 1 || refused != 1 {
		t.Fatalf("%d added, %d refused; want one of each (%v)", added, refused, errs)
	}
}

// Under auth, membership changes need the root role, as etcd's
// checkMembershipOperationPermission; MemberList needs a user.
func TestMembershipChangesNeedRoot(t *testing.T) {
	t.Parallel() // it mostly waits
	members := startTestCluster(t, 1, nil)
	ctx := testCtx(t)
	auth := pb.NewAuthClient(members[0].conn)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	setupRootAndAlice(t, ctx, auth)
	cluster := pb.NewClusterClient(members[0].conn)
	alice := withToken(ctx, authenticate(t, ctx, auth, "alice", "alicepw"))
	root := withToken(ctx, authenticate(t, ctx, auth, "root", "rootpw"))
	_, err := cluster.MemberAdd(alice, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:3"}, IsLearner: true})
	wantStatus(t, "MemberAdd as alice", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = cluster.MemberRemove(alice, &pb.MemberRemoveRequest{ID: 5})
	wantStatus(t, "MemberRemove as alice", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = cluster.MemberList(ctx, &pb.MemberListRequest{})
	wantStatus(t, "MemberList with no user", err, rpctypes.ErrGRPCUserEmpty)
	if _, err := cluster.MemberList(alice, &pb.MemberListRequest{}); err != nil {
		t.Fatalf("MemberList as alice: %v", err)
	}
	if _, err := cluster.MemberAdd(root, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:3"}, IsLearner: true}); err != nil {
		t.Fatalf("MemberAdd as root: %v", err)
	}
}

// A voter added to a cluster of one cannot commit without the new member (the
// configuration is in effect from its append, §4.1), so MemberAdd answers once the
// change is durable in the leader's log, listing the new member; the joiner learns
// of itself from the leader before the change commits, and once it runs the change
// commits and writes go on, on both.
func TestAddVoterToClusterOfOne(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	ctx := testCtx(t)
	m0 := members[0]
	retry(t, func(ctx context.Context) error {
		_, err := m0.client.Put(ctx, &pb.PutRequest{Key: []byte("before"), Value: []byte("v")})
		return err
	})
	joiner := joiningMember(t, members, "m1")
	began := time.Now()
	resp, err := pb.NewClusterClient(m0.conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: joiner.cfg.ListenPeerURLs})
	if err != nil {
		t.Fatalf("MemberAdd of a voter to a cluster of one: %v", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("MemberAdd took %v; it must answer before the change can commit", took)
	}
	if len(resp.Members) != 2 || memberNamed(resp.Members, resp.Member.ID) == nil || resp.Member.IsLearner {
		t.Fatalf("MemberAdd answered %v", resp)
	}
	joiner.start(t)
	for _, m := range []*testMember{m0, joiner} {
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("after/" + m.cfg.Name), Value: []byte("v")})
			return err
		})
	}
	waitStarted(t, m0, 2)

	// Restarted on its data, the joined member keeps its identity whatever
	// --initial-cluster now says (member/cluster.json), as etcd ignores it.
	id, clusterID := joiner.srv.ID(), joiner.srv.ClusterID()
	joiner.stop()
	joiner.cfg.InitialCluster = map[string][]string{"m1": joiner.cfg.ListenPeerURLs}
	joiner.cfg.InitialClusterState = "new"
	joiner.start(t)
	if joiner.srv.ID() != id || joiner.srv.ClusterID() != clusterID {
		t.Fatalf("restarted with another --initial-cluster, the member is %x of %x; want %x of %x",
			joiner.srv.ID(), joiner.srv.ClusterID(), id, clusterID)
	}
	retry(t, func(ctx context.Context) error {
		_, err := joiner.client.Put(ctx, &pb.PutRequest{Key: []byte("after/restart"), Value: []byte("v")})
		return err
	})
}

// A member removed while it was down never applies its removal; restarted on its
// data dir, it is refused by the others' transports as removed, stops with
// ErrRemoved, and never disturbs them: their term does not move.
func TestRemovedWhileDownStopsOnRestartAndDisturbsNobody(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	waitStarted(t, members[0], 3)
	leader := leaderOf(t, members)
	victim := followersOf(members, leader)[0]
	victimID := victim.srv.ID()
	victim.stop()
	ctx := testCtx(t)
	time.Sleep(300 * time.Millisecond) // the leader notices it is down
	if _, err := pb.NewClusterClient(leader.conn).MemberRemove(ctx, &pb.MemberRemoveRequest{ID: victimID}); err != nil {
		t.Fatalf("removing the member that is down: %v", err)
	}
	termBefore, _ := leader.srv.leader()
	victim.start(t)
	waitStoppedAsRemoved(t, victim, "the removed member, restarted,")
	// Give it the time of several elections to do harm, had it not stopped.
	time.Sleep(time.Second)
	for _, m := range members {
		if m == victim {
			continue
		}
		if term, _ := m.srv.leader(); term != termBefore {
			t.Fatalf("member %s's term moved from %d to %d after the removed member came back", m.cfg.Name, termBefore, term)
		}
	}
	retry(t, func(ctx context.Context) error {
		_, err := leader.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
}

// --force-new-cluster after membership changes (a member added, another removed, in
// the log and in snapshots): the survivor commits its own configuration of one, keeps
// every key, lists only itself, and stays a cluster of one when restarted without the
// flag.
func TestForceNewClusterAfterMembershipChanges(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.SnapshotCount = 20 })
	ctx := testCtx(t)
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	joiner := joiningMember(t, members, "m3")
	cluster := pb.NewClusterClient(members[0].conn)
	if _, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: joiner.cfg.ListenPeerURLs}); err != nil {
		t.Fatal(err)
	}
	joiner.start(t)
	waitStarted(t, members[0], 4)
	waitConnected(t, append(members, joiner))
	if _, err := cluster.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: members[2].srv.ID()}); err != nil {
		t.Fatal(err)
	}
	members[2].stop()
	for i := range 50 {
		retry(t, func(ctx context.Context) error {
			_, err := members[i%2].client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%02d", i), Value: []byte("v")})
			return err
		})
	}
	for _, m := range []*testMember{members[0], members[1], joiner} {
		m.stop()
	}
	survivor := joiner
	survivor.cfg.ForceNewCluster = true
	for restart := range 2 {
		survivor.start(t)
		retry(t, func(ctx context.Context) error {
			_, err := survivor.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "after%d", restart), Value: []byte("v")})
			return err
		})
		resp, err := survivor.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		if err != nil || resp.Count != 50 {
			t.Fatalf("start %d after losing quorum: %v keys of 50 (%v)", restart, resp.GetCount(), err)
		}
		list, err := pb.NewClusterClient(survivor.conn).MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
		if err != nil || len(list.Members) != 1 || list.Members[0].ID != survivor.srv.ID() {
			t.Fatalf("start %d: member list %v (%v), want only the survivor %x", restart, list.GetMembers(), err, survivor.srv.ID())
		}
		survivor.stop()
		survivor.cfg.ForceNewCluster = false
	}
}

// Removing the leader through a follower: the follower forwards the removal, the
// leader commits it and stops before it answers (members.go), and the follower's
// retry reaches the new leader, which no longer knows the member. The caller is told
// the removal is made, with the two members left, not "member not found" (CI failed
// once in e2e TestMemberRemoveTheLeader on exactly that).
func TestRemoveTheLeaderThroughAFollowerAnswersOK(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	ctx := testCtx(t)
	leader := leaderOf(t, members)
	follower := followersOf(members, leader)[0]
	resp, err := pb.NewClusterClient(follower.conn).MemberRemove(ctx, &pb.MemberRemoveRequest{ID: leader.srv.ID()})
	if err != nil {
		t.Fatalf("removing the leader %x through follower %x: %v", leader.srv.ID(), follower.srv.ID(), err)
	}
	if len(resp.Members) != 2 || memberNamed(resp.Members, leader.srv.ID()) != nil {
		t.Fatalf("after removing the leader %x, the answer lists %v; want the two others", leader.srv.ID(), resp.Members)
	}
}
