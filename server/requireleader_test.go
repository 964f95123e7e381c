package server

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestRequireLeader: a call that carries etcd's "hasleader" metadata (clientv3's
// WithRequireLeader) is refused with "etcdserver: no leader" by a member that knows
// no leader, and a watch stream that carries it ends with that error once its member
// has had no leader for three election timeouts, so the client moves to another
// member instead of waiting on a cut-off one. Without the metadata the stream stays.
func TestRequireLeader(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	survivor := members[2]
	requireLeader := metadata.AppendToOutgoingContext(context.Background(),
		rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)

	// While there is a leader, the metadata changes nothing. The put above may have
	// committed before the survivor heard from the leader (its first append or
	// heartbeat can be in flight), so wait until the survivor itself knows one.
	retry(t, func(ctx context.Context) error {
		if _, lead := survivor.srv.leader(); lead == 0 {
			return errors.New("the survivor knows no leader yet")
		}
		return nil
	})
	if _, err := survivor.client.Range(requireLeader, &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Fatalf("a range with hasleader while a leader exists: %v", err)
	}
	required := openWatchCtx(t, survivor, requireLeader)
	createWatch(t, required, &pb.WatchCreateRequest{Key: []byte("k")})
	plain := openWatch(t, survivor)
	createWatch(t, plain, &pb.WatchCreateRequest{Key: []byte("k")})

	members[0].stop()
	members[1].stop()
	stopped := time.Now()

	ended := make(chan error, 1)
	go func() {
		_, err := required.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unavailable || !errors.Is(rpctypes.Error(err), rpctypes.ErrNoLeader) {
			t.Fatalf("the hasleader watch ended with %v, want etcd's no-leader error", err)
		}
		t.Logf("the hasleader watch ended %v after its quorum stopped", time.Since(stopped).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the hasleader watch did not end within 20 s of its member losing the leader")
	}

	// The member now knows no leader: a unary call with the metadata is refused at
	// once, one without it waits (and times out here).
	_, err := survivor.client.Range(requireLeader, &pb.RangeRequest{Key: []byte("k"), Serializable: true})
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrNoLeader) {
		t.Fatalf("a serializable range with hasleader on a member without a leader: %v, want no leader", err)
	}
	if _, err := survivor.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), Serializable: true}); err != nil {
		t.Fatalf("a serializable range without hasleader: %v", err)
	}
	// The watch without the metadata is still open: a progress request is answered.
	if err := plain.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
		t.Fatal(err)
	}
	recvWatch(t, plain)
}

// openWatchCtx opens a Watch stream on m with ctx's metadata; it ends with the test.
func openWatchCtx(t *testing.T, m *testMember, ctx context.Context) pb.Watch_WatchClient {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	stream, err := pb.NewWatchClient(m.conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}
