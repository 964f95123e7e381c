package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/kv"
)

// Writes sent through the followers just after the leader stops succeed within one
// election, not one request timeout (5.2s here), and each applies once: a forwarded
// proposal lost with the old leader is sent again to the new one. Before the fix, the
// followers' forwards went to the stopped leader and waited for the request timeout.
func TestWritesThroughFollowersSurviveLeaderStop(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	for round := range 3 {
		retry(t, func(ctx context.Context) error {
			_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "warm%d", round), Value: []byte("v")})
			return err
		})
		leader := leaderOf(t, members)
		leader.stop()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 30)
		var followers []*testMember
		for _, m := range members {
			if m.srv != nil {
				followers = append(followers, m)
			}
		}
		for _, m := range followers {
			for i := range 10 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					key := fmt.Sprintf("round%d/%s/%d", round, m.cfg.Name, i)
					if _, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte("v")}); err != nil {
						errs <- fmt.Errorf("put %s through %s, %v after the leader stopped: %w", key, m.cfg.Name, time.Since(start).Round(time.Millisecond), err)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("round %d: 20 writes through the followers done %v after the leader stopped", round, time.Since(start).Round(time.Millisecond))
		// Every write applied once, on every live member.
		for _, m := range followers {
			var resp *pb.RangeResponse
			retry(t, func(ctx context.Context) error {
				var err error
				resp, err = m.client.Range(ctx, &pb.RangeRequest{Key: fmt.Appendf(nil, "round%d/", round), RangeEnd: fmt.Appendf(nil, "round%d0", round)})
				return err
			})
			if len(resp.Kvs) != 20 {
				t.Fatalf("round %d: %s has %d keys, want 20", round, m.cfg.Name, len(resp.Kvs))
			}
			for _, kv := range resp.Kvs {
				if kv.Version != 1 {
					t.Fatalf("round %d: %s applied %d times", round, kv.Key, kv.Version)
				}
			}
		}
		leader.start(t)
	}
}

// leaderOf returns the member that leads, waiting for one.
func leaderOf(t *testing.T, members []*testMember) *testMember {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range members {
			if m.srv == nil {
				continue
			}
			if _, isLeader := m.srv.node.State(); isLeader {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader within 10s")
	return nil
}

// Two copies of one forwarded proposal that both commit apply once: the waiter gets
// the first application's result, and the second copy changes nothing.
func TestResentProposalAppliesOnce(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	srv := members[0].srv
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("v")})
		return err
	})
	cmd, err := (&kv.Command{Put: &kv.PutRequest{Key: []byte("k"), Value: []byte("v")}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	seq, wt := srv.waits.register()
	defer srv.waits.cancel(seq)
	data := encodeEnvelope(envelope{kind: kindKV, proposer: srv.proposer, seq: seq, payload: cmd,
		resendable: true, lowestPending: srv.waits.lowestPending()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var indexes []uint64
	for range 2 {
		index, _, err := srv.node.Propose(ctx, data)
		if err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, index)
	}
	res, err := srv.wait(requestContext(ctx), wt, nil)
	if err != nil || res.Err != nil {
		t.Fatalf("waiting for the first copy: %v %v", err, res.Err)
	}
	if err := srv.applied.wait(ctx, indexes[1]); err != nil {
		t.Fatal(err)
	}
	resp, err := members[0].client.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].Version != 1 || resp.Header.Revision != res.Put.Header.Revision {
		t.Fatalf("after two copies at %v: %v at revision %d; want version 1 and the first copy's revision %d",
			indexes, resp.Kvs, resp.Header.Revision, res.Put.Header.Revision)
	}
}
