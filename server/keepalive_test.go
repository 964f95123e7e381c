package server

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// TestClientKeepalivePingsAreAllowed: a client that pings every 10 s on an open
// stream, as Kubernetes' etcd client does every 30 s, keeps its connection. gRPC's
// default server policy allows a ping every 5 minutes and answers the third early one
// with GOAWAY ("too_many_pings"), which drops every stream on the connection; etcd
// allows one every 5 s (--grpc-keepalive-min-time), and so must we.
func TestClientKeepalivePingsAreAllowed(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 35 s: three of the client's 10 s keepalive pings")
	}
	t.Parallel()
	m := startTestCluster(t, 1, nil)[0]
	conn, err := grpc.NewClient(m.cfg.ListenClientURLs[0][len("http://"):],
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// 10 s is the shortest interval a gRPC client may ask for.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	createWatch(t, stream, &pb.WatchCreateRequest{Key: []byte("k")})

	// A server that refuses the pings sends GOAWAY (too_many_pings) and closes the
	// connection, which ends the watch stream; so the stream must still deliver an
	// event after three pings. The channel's state is only logged: gRPC's client may
	// report CONNECTING for a moment without the connection closing (seen once under
	// the race detector, 3 µs after the watch was created).
	deadline := time.Now().Add(35 * time.Second)
	for state := conn.GetState(); time.Now().Before(deadline); state = conn.GetState() {
		if state != connectivity.Ready {
			t.Logf("channel state %v after %v", state, 35*time.Second-time.Until(deadline))
		}
		waitCtx, waitCancel := context.WithDeadline(ctx, deadline)
		conn.WaitForStateChange(waitCtx, state)
		waitCancel()
	}
	// The stream still works: the connection it was opened on was never closed.
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	if resp := recvWatch(t, stream); len(resp.Events) != 1 {
		t.Fatalf("want the put's event on the watch after the pings, got %v", resp)
	}
}
