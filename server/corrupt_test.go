package server

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"

	"raftkv/kv"
)

// flipValueByte is the test's disk error: it flips one bit of the last value of the
// first key in s's store, keeping every revision, as a bad sector under a value
// would. (Export and Import: the store's own ends, not its internals.)
func flipValueByte(t *testing.T, s *Server) {
	t.Helper()
	view, err := s.sm.store.SnapshotView()
	if err != nil {
		t.Fatal(err)
	}
	leases, err := view.Leases()
	if err != nil {
		t.Fatal(err)
	}
	hdr := kv.ImportHeader{AppliedIndex: s.sm.store.AppliedIndex(), Revision: view.Revision(),
		CompactRevision: view.CompactRevision(), Leases: leases, AuthState: view.AuthState()}
	var keys []*kv.KeyHistory
	if err := view.EachKey(func(h *kv.KeyHistory) error { keys = append(keys, h); return nil }); err != nil {
		t.Fatal(err)
	}
	view.Release()
	g := keys[0].Generations[len(keys[0].Generations)-1]
	g.Revisions[len(g.Revisions)-1].Value[0] ^= 1
	i := 0
	if err := s.sm.store.Import(hdr, func() (*kv.KeyHistory, error) {
		if i == len(keys) {
			return nil, nil
		}
		i++
		return keys[i-1], nil
	}, nil); err != nil {
		t.Fatal(err)
	}
}

// A member whose store differs from the others' (one bit of one value) is found by
// the periodic check, which raises CORRUPT for it alone, on every member; from then
// on writes fail with etcd's "corrupt cluster" and reads go on.
func TestCorruptionCheckRaisesAlarm(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.CorruptCheckTime = 100 * time.Millisecond })
	var rev int64
	for _, k := range []string{"a", "b", "c"} {
		retry(t, func(ctx context.Context) error {
			resp, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte("value-" + k)})
			if err == nil {
				rev = resp.Header.Revision
			}
			return err
		})
	}
	// Healthy: checks run and find nothing.
	time.Sleep(500 * time.Millisecond)
	alarmsOn(t, members[1], nil)
	victim := members[2]
	hashKVEventually(t, victim, rev) // it has applied every put
	flipValueByte(t, victim.srv)
	want := []*pb.AlarmMember{{MemberID: victim.srv.ID(), Alarm: pb.AlarmType_CORRUPT}}
	for _, m := range members {
		alarmsOn(t, m, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range members {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("d"), Value: []byte("x")})
		wantCodeMsg(t, "put on "+m.cfg.Name+" after CORRUPT", err, codes.DataLoss, "etcdserver: corrupt cluster")
		_, err = m.client.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("a")})
		wantCodeMsg(t, "delete on "+m.cfg.Name+" after CORRUPT", err, codes.DataLoss, "etcdserver: corrupt cluster")
	}
	if got, err := members[0].client.Range(ctx, &pb.RangeRequest{Key: []byte("a")}); err != nil || len(got.Kvs) != 1 {
		t.Fatalf("read after CORRUPT: %v, %v", got, err)
	}
}

// The start-up check (InitialCorruptCheck) passes on healthy members, raising
// nothing; the same check started by a follower whose store diverged names that
// follower alone.
func TestInitialCorruptCheck(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.InitialCorruptCheck = true })
	var rev int64
	retry(t, func(ctx context.Context) error {
		resp, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")})
		if err == nil {
			rev = resp.Header.Revision
		}
		return err
	})
	time.Sleep(300 * time.Millisecond) // the start-up checks have run by now
	alarmsOn(t, members[0], nil)
	var follower *testMember
	leader := leaderOf(t, members)
	for _, m := range members {
		if m != leader {
			follower = m
		}
	}
	hashKVEventually(t, follower, rev)
	flipValueByte(t, follower.srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alarmed, err := follower.srv.checkCorruption(ctx)
	if err != nil || len(alarmed) != 1 || alarmed[0] != follower.srv.ID() {
		t.Fatalf("check from the diverged follower alarmed %x (%v), want only %x", alarmed, err, follower.srv.ID())
	}
	alarmsOn(t, leader, []*pb.AlarmMember{{MemberID: follower.srv.ID(), Alarm: pb.AlarmType_CORRUPT}})
}
