package server

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// promotedLeader returns the member that leads with its lessor promoted, waiting for one.
func promotedLeader(t *testing.T, members []*testMember) *testMember {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range members {
			if m.srv == nil {
				continue
			}
			if _, primary := m.srv.lessor.isPrimary(); primary {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no member's lessor was promoted within 10s")
	return nil
}

func followersOf(members []*testMember, leader *testMember) []*testMember {
	var out []*testMember
	for _, m := range members {
		if m != leader && m.srv != nil {
			out = append(out, m)
		}
	}
	return out
}

func grant(t *testing.T, m *testMember, id, ttl int64) *pb.LeaseGrantResponse {
	t.Helper()
	var resp *pb.LeaseGrantResponse
	retry(t, func(ctx context.Context) error {
		var err error
		resp, err = pb.NewLeaseClient(m.conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl})
		return err
	})
	return resp
}

// Every Lease call works on a follower as on the leader: grants and revokes through
// Raft, keep-alives and time-to-live forwarded to the leader's lessor.
func TestLeaseServiceOnEveryMember(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	leader := promotedLeader(t, members)
	f := followersOf(members, leader)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	auto := grant(t, f, 0, 0)
	if auto.ID <= 0 || auto.TTL != 1 {
		t.Fatalf("grant without id or TTL: %+v; want a positive id and the minimum TTL 1", auto)
	}
	// A 1s lease may expire at any point below on a loaded machine (under -race it
	// did, before the lease list): it goes now, so the list holds 42 alone.
	if _, err := pb.NewLeaseClient(f.conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: auto.ID}); err != nil && !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("revoke of the lease granted without id: %v", err)
	}
	chosen := grant(t, leader, 42, 60)
	if chosen.ID != 42 || chosen.TTL != 60 {
		t.Fatalf("grant of lease 42: %+v", chosen)
	}
	for _, m := range members {
		_, err := pb.NewLeaseClient(m.conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 42, TTL: 5})
		if !errors.Is(err, rpctypes.ErrGRPCLeaseExist) {
			t.Fatalf("second grant of 42 on %s: %v", m.cfg.Name, err)
		}
		_, err = pb.NewLeaseClient(m.conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 43, TTL: 9_000_000_001})
		if !errors.Is(err, rpctypes.ErrGRPCLeaseTTLTooLarge) {
			t.Fatalf("grant of a too large TTL on %s: %v", m.cfg.Name, err)
		}
	}
	for _, key := range []string{"a", "b", "c"} {
		if _, err := f.client.Put(ctx, &pb.PutRequest{Key: []byte(key), Lease: 42}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.client.Put(ctx, &pb.PutRequest{Key: []byte("x"), Lease: 777}); !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("put to an unknown lease: %v", err)
	}

	for _, m := range members {
		lc := pb.NewLeaseClient(m.conn)
		ttl, err := lc.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 42, Keys: true})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, k := range ttl.Keys {
			keys = append(keys, string(k))
		}
		if ttl.GrantedTTL != 60 || ttl.TTL < 50 || ttl.TTL > 60 || !slices.Equal(keys, []string{"a", "b", "c"}) {
			t.Fatalf("time-to-live of lease 42 on %s: %+v", m.cfg.Name, ttl)
		}
		list, err := lc.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
		if err != nil || len(list.Leases) != 1 || list.Leases[0].ID != 42 {
			t.Fatalf("leases on %s: %+v %v", m.cfg.Name, list, err)
		}
		stream, err := lc.LeaseKeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []int64{42, 4242} {
			if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			wantTTL := int64(60)
			if id == 4242 {
				wantTTL = 0 // etcd's answer for a lease that does not exist
			}
			if err != nil || resp.ID != id || resp.TTL != wantTTL {
				t.Fatalf("keep-alive of %d on %s: %+v %v, want TTL %d", id, m.cfg.Name, resp, err, wantTTL)
			}
		}
		stream.CloseSend()
	}

	revoke, err := pb.NewLeaseClient(f.conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 42})
	if err != nil {
		t.Fatal(err)
	}
	rng, err := f.client.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z")})
	if err != nil || rng.Count != 0 || rng.Header.Revision != revoke.Header.Revision {
		t.Fatalf("after the revoke: %+v %v; want no keys at the revoke's revision %d", rng, err, revoke.Header.Revision)
	}
	// The three deletes share one revision: the one before it still holds all three.
	old, err := f.client.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Revision: revoke.Header.Revision - 1})
	if err != nil || old.Count != 3 {
		t.Fatalf("one revision before the revoke: %+v %v", old, err)
	}
	ttl, err := pb.NewLeaseClient(f.conn).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 42})
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("time-to-live of a revoked lease: %+v %v", ttl, err)
	}
	if _, err := pb.NewLeaseClient(leader.conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 42}); !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}

// A lease nobody keeps alive is revoked by the leader, its keys with it, within its
// TTL and a little; one kept alive through a follower is not.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel() // it mostly waits
	members := startTestCluster(t, 3, nil)
	leader := promotedLeader(t, members)
	f := followersOf(members, leader)[0]
	// The lease kept alive has 5s, so that a stalled machine does not expire it
	// between two keep-alives; the other has the minimum, 1s.
	kept := grant(t, f, 1, 5)
	start := time.Now() // before the 1s lease is granted: it cannot expire before start+1s
	dropped := grant(t, f, 2, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []int64{kept.ID, dropped.ID} {
		if _, err := f.client.Put(ctx, &pb.PutRequest{Key: []byte{'k', byte('0' + id)}, Lease: id}); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := pb.NewLeaseClient(f.conn).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: 1}); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); err != nil || resp.TTL != 5 {
			t.Fatalf("keep-alive: %+v %v", resp, err)
		}
		rng, err := f.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		if err != nil {
			t.Fatal(err)
		}
		if rng.Count == 1 {
			if string(rng.Kvs[0].Key) != "k1" {
				t.Fatalf("the lease kept alive lost its key; left: %q", rng.Kvs[0].Key)
			}
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the key of a 1s lease nobody kept alive is still there after %v", time.Since(start))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if elapsed := time.Since(start); elapsed < time.Second || dropped.TTL != 1 {
		t.Fatalf("a lease granted %ds was revoked after %v", dropped.TTL, elapsed)
	}
}

// Leases, their keys and their checkpoints survive a restart of every member, with a
// snapshot in between, and a restarted cluster keeps the lease alive and revokes it.
func TestLeasesSurviveRestart(t *testing.T) {
	t.Parallel() // it mostly waits
	members := startTestCluster(t, 3, func(c *Config) {
		c.SnapshotCount = 10
		c.LeaseCheckpointInterval = time.Second
	})
	leader := promotedLeader(t, members)
	grant(t, leader, 5, 3600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 30 {
		if _, err := leader.client.Put(ctx, &pb.PutRequest{Key: []byte{'k', byte('a' + i%26)}, Lease: 5}); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for a checkpoint to apply everywhere (1s interval).
	retry(t, func(ctx context.Context) error {
		for _, m := range members {
			if info, _ := m.srv.sm.store.Lease(5); info.RemainingTTL == 0 {
				return errors.New("no checkpoint yet")
			}
		}
		return nil
	})
	for _, m := range members {
		m.stop()
	}
	for _, m := range members {
		m.start(t)
	}
	leader = promotedLeader(t, members)
	ttl, err := pb.NewLeaseClient(leader.conn).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 5, Keys: true})
	if err != nil || ttl.GrantedTTL != 3600 || len(ttl.Keys) != 26 {
		t.Fatalf("lease 5 after a restart: %+v %v", ttl, err)
	}
	// Counted down from its checkpoint (at most 3599s) plus the election timeout.
	if ttl.TTL > 3599 || ttl.TTL < 3500 {
		t.Fatalf("lease 5 has %ds left after a restart, want its checkpoint", ttl.TTL)
	}
	if _, err := pb.NewLeaseClient(leader.conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 5}); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		retry(t, func(ctx context.Context) error {
			rng, err := m.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Serializable: true})
			if err == nil && rng.Count != 0 {
				return errors.New("keys left")
			}
			return err
		})
	}
}

// A watcher sees a revoke's deletes of the lease's keys in one response, at one
// revision, as it sees a DeleteRange's.
func TestLeaseRevokeSeenByWatchers(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	leader := promotedLeader(t, members)
	f := followersOf(members, leader)[0]
	grant(t, leader, 9, 60)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := pb.NewWatchClient(f.conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	create := &pb.WatchCreateRequest{Key: []byte("w/"), RangeEnd: []byte("w0")}
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: create}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || !resp.Created {
		t.Fatalf("watch create: %+v %v", resp, err)
	}
	for _, k := range []string{"w/c", "w/a", "w/b"} {
		if _, err := leader.client.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: 9}); err != nil {
			t.Fatal(err)
		}
	}
	revoke, err := pb.NewLeaseClient(leader.conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 9})
	if err != nil {
		t.Fatal(err)
	}
	// A response may carry several revisions' events (a follower that lags applies
	// several entries at once): the puts may come with the revoke's deletes, but the
	// deletes, one revision, must come together.
	var puts int
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, ev := range resp.Events {
			switch {
			case ev.Type == mvccpb.PUT && len(keys) == 0:
				puts++
			case ev.Type == mvccpb.DELETE && ev.Kv.ModRevision == revoke.Header.Revision:
				keys = append(keys, string(ev.Kv.Key))
			default:
				t.Fatalf("after %d puts and the revoke's deletes of %v, a response holds %+v", puts, keys, ev)
			}
		}
		if len(keys) == 0 {
			continue
		}
		if puts != 3 || !slices.Equal(keys, []string{"w/a", "w/b", "w/c"}) {
			t.Fatalf("after %d puts, one response deleted %v; want w/a, w/b and w/c together", puts, keys)
		}
		return
	}
}

// With TLS on the client API, mutual or self-signed, a follower still reaches the
// leader's lessor: it dials the leader's https:// client URL with its own client-side
// certificate.
func TestLeaseForwardingOverTLS(t *testing.T) {
	t.Run("mutual", func(t *testing.T) {
		pki := newTestPKI(t, "cluster CA")
		checkLeaseForwarding(t, startHTTPSCluster(t, 3, pki.clientTLS(t, "alice"), func(i int, c *Config) {
			c.ClientTLS = pki.mutualTLS(t, c.Name)
			c.PeerTLS = pki.mutualTLS(t, c.Name)
		}))
	})
	t.Run("auto", func(t *testing.T) {
		checkLeaseForwarding(t, startHTTPSCluster(t, 3, &tls.Config{InsecureSkipVerify: true}, func(i int, c *Config) {
			c.ClientTLS = TLSInfo{AutoTLS: true}
			c.PeerTLS = TLSInfo{AutoTLS: true}
		}))
	})
}

// checkLeaseForwarding grants a lease and asks a follower its time to live and a
// keep-alive.
func checkLeaseForwarding(t *testing.T, members []*testMember) {
	leader := promotedLeader(t, members)
	f := followersOf(members, leader)[0]
	grant(t, f, 77, 60)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ttl, err := pb.NewLeaseClient(f.conn).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 77})
	if err != nil || ttl.GrantedTTL != 60 || ttl.TTL <= 0 {
		t.Fatalf("time-to-live through a follower over TLS: %+v %v", ttl, err)
	}
	stream, err := pb.NewLeaseClient(f.conn).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: 77}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.TTL != 60 {
		t.Fatalf("keep-alive through a follower over TLS: %+v %v", resp, err)
	}
}

// LeaseLeases on the leader lists the leases as etcd's does, the soonest to expire
// first (etcd's lessor.Leases), and a keep-alive moves a lease back; a follower,
// which does not track expiry, lists them in id order.
func TestLeaseLeasesSoonestExpiryFirst(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	leader := promotedLeader(t, members)
	// Granted in this order: the TTLs, not the ids or the order of grants, decide.
	for _, g := range []struct{ id, ttl int64 }{{1, 300}, {2, 100}, {3, 200}, {4, 100}} {
		grant(t, leader, g.id, g.ttl)
	}
	list := func(m *testMember) []int64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := pb.NewLeaseClient(m.conn).LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
		if err != nil {
			t.Fatalf("LeaseLeases on %s: %v", m.cfg.Name, err)
		}
		var ids []int64
		for _, l := range resp.Leases {
			ids = append(ids, l.ID)
		}
		return ids
	}
	if got, want := list(leader), []int64{2, 4, 3, 1}; !slices.Equal(got, want) {
		t.Fatalf("leases on the leader: %v, want %v (by expiry)", got, want)
	}
	// Renewed, lease 2 now expires after lease 4, granted later with the same TTL.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := keepAliveOnce(ctx, leader, 2); err != nil || resp.TTL != 100 {
		t.Fatalf("keep-alive of lease 2: %+v %v", resp, err)
	}
	if got, want := list(leader), []int64{4, 2, 3, 1}; !slices.Equal(got, want) {
		t.Fatalf("leases on the leader after renewing 2: %v, want %v", got, want)
	}
	for _, f := range followersOf(members, leader) {
		if got, want := list(f), []int64{1, 2, 3, 4}; !slices.Equal(got, want) {
			t.Fatalf("leases on follower %s: %v, want %v (by id)", f.cfg.Name, got, want)
		}
	}
}
