package server

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"
)

// A change is checked against the member list of the configuration in effect,
// not the one applied so far: here the leader's apply loop is held while a
// voter's addition commits (the strict check off, so that a voter that never
// starts may be added), its answer is lost to the client's deadline, and the
// client sends it again. etcd, which checks a change as it applies, refuses the
// second with "Peer URLs already exists"; so must this leader, which checks before
// proposing, so it waits until the change before has applied.
func TestMemberChangeIsCheckedAgainstCommittedChanges(t *testing.T) {
	var held atomic.Value
	held.Store("")
	members := startTestCluster(t, 3, func(c *Config) {
		c.DisableStrictReconfigCheck = true
		name := c.Name
		c.applyHook = func(uint64) {
			for held.Load().(string) == name {
				time.Sleep(2 * time.Millisecond)
			}
		}
	})
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	leader := leaderOf(t, members)
	cluster := pb.NewClusterClient(leader.conn)
	const url = "http://127.0.0.1:1"

	held.Store(leader.cfg.Name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{url}})
	cancel()
	if err == nil {
		t.Fatal("MemberAdd answered while the leader's apply loop was held")
	}
	go func() {
		time.Sleep(500 * time.Millisecond)
		held.Store("")
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	resp, err := cluster.MemberAdd(ctx2, &pb.MemberAddRequest{PeerURLs: []string{url}})
	if err == nil {
		t.Fatalf("the second addition on %s was accepted (member %x)", url, resp.Member.GetID())
	}
	if got, want := status.Convert(err), status.Convert(rpctypes.ErrGRPCPeerURLExist); got.Code() != want.Code() || got.Message() != want.Message() {
		t.Fatalf("second addition: %v, want %v", err, rpctypes.ErrGRPCPeerURLExist)
	}
	list, err := cluster.MemberList(ctx2, &pb.MemberListRequest{Linearizable: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range list.Members {
		if slices.Contains(m.PeerURLs, url) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d members on %s, want 1: %v", n, url, list.Members)
	}
}
