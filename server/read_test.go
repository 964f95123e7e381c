package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Concurrent linearizable reads share ReadIndex rounds; each must still see every
// write acknowledged before it started, on the leader and on followers alike.
func TestConcurrentReadsSeeEarlierWrites(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	key := []byte("counter")
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("0")})
		return err
	})
	var acked atomic.Int64 // the revision of the newest acknowledged put
	// Every request has a deadline of its own, far off: one running out means a read
	// or write that hung.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	wg.Go(func() {
		for time.Now().Before(end) {
			resp, err := members[0].client.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("v")})
			if err == nil {
				acked.Store(resp.Header.Revision)
			}
		}
	})
	var reads atomic.Int64
	for i := range 30 {
		m := members[i%len(members)]
		wg.Go(func() {
			for time.Now().Before(end) {
				before := acked.Load()
				resp, err := m.client.Range(ctx, &pb.RangeRequest{Key: key})
				if err != nil {
					t.Errorf("read on %s: %v", m.cfg.Name, err)
					return
				}
				if len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision < before {
					t.Errorf("read on %s started after revision %d was acknowledged but saw %v", m.cfg.Name, before, resp.Kvs)
					return
				}
				reads.Add(1)
			}
		})
	}
	wg.Wait()
	if reads.Load() == 0 || acked.Load() == 0 {
		t.Fatalf("%d reads and %d as the last acknowledged revision; the test checked nothing", reads.Load(), acked.Load())
	}
}

// A member cut off from the others cannot confirm a read point: its linearizable
// reads fail within RequestTimeout with etcd's error, and its serializable ones still
// answer.
func TestReadWithoutQuorumFails(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.RequestTimeout = 500 * time.Millisecond })
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	members[1].stop()
	members[2].stop()
	lone := members[0]
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			start := time.Now()
			_, err := lone.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")})
			// etcd's requestCurrentIndex: "request timed out", leader or not.
			if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != rpctypes.ErrorDesc(rpctypes.ErrGRPCTimeout) {
				t.Errorf("linearizable read without a quorum: got %v, want %v", err, rpctypes.ErrGRPCTimeout)
			}
			// One round may be in flight when a read arrives; the read waits for it and
			// then for its own, each bounded by RequestTimeout.
			if took := time.Since(start); took > 3*lone.cfg.RequestTimeout {
				t.Errorf("linearizable read without a quorum took %v, want under %v", took, 3*lone.cfg.RequestTimeout)
			}
		})
	}
	wg.Wait()
	resp, err := lone.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), Serializable: true})
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("serializable read without a quorum: %v, %v; want the key", resp, err)
	}
}
