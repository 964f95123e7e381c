package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"raftkv/watch"
)

// openWatch opens a Watch stream on m that ends with the test.
func openWatch(t *testing.T, m *testMember) pb.Watch_WatchClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := pb.NewWatchClient(m.conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func recvWatch(t *testing.T, stream pb.Watch_WatchClient) *pb.WatchResponse {
	t.Helper()
	type result struct {
		resp *pb.WatchResponse
		err  error
	}
	c := make(chan result, 1)
	go func() {
		resp, err := stream.Recv()
		c <- result{resp, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("watch stream: %v", r.err)
		}
		return r.resp
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response within 10s")
	}
	return nil
}

func createWatch(t *testing.T, stream pb.Watch_WatchClient, c *pb.WatchCreateRequest) int64 {
	t.Helper()
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}}); err != nil {
		t.Fatal(err)
	}
	resp := recvWatch(t, stream)
	if !resp.Created || resp.Canceled {
		t.Fatalf("create %v answered %v", c, resp)
	}
	return resp.WatchId
}

// A watch on a follower sees the writes made through the leader, from the
// follower's own apply, with the follower's header.
func TestWatchOnEveryMember(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})
	var streams []pb.Watch_WatchClient
	for _, m := range members {
		s := openWatch(t, m)
		createWatch(t, s, &pb.WatchCreateRequest{Key: []byte("k/"), RangeEnd: []byte("k0"), PrevKv: true})
		streams = append(streams, s)
	}
	for i := range 3 {
		if _, err := members[i].client.Put(context.Background(), &pb.PutRequest{Key: fmt.Appendf(nil, "k/%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := members[1].client.Put(context.Background(), &pb.PutRequest{Key: []byte("k/0"), Value: []byte("w")}); err != nil {
		t.Fatal(err)
	}
	for i, s := range streams {
		var got []string
		for len(got) < 4 {
			resp := recvWatch(t, s)
			if resp.Header.MemberId != members[i].srv.ID() || resp.Header.ClusterId != members[0].srv.ClusterID() {
				t.Fatalf("member %d: header %v", i, resp.Header)
			}
			for _, ev := range resp.Events {
				d := fmt.Sprintf("%s %s=%s@%d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
				if ev.PrevKv != nil {
					d += fmt.Sprintf(" prev=%s", ev.PrevKv.Value)
				}
				got = append(got, d)
			}
		}
		want := "PUT k/0=v@3 PUT k/1=v@4 PUT k/2=v@5 PUT k/0=w@6 prev=v"
		if strings.Join(got, " ") != want {
			t.Fatalf("member %d saw %v, want %s", i, got, want)
		}
	}
}

// With fragment set, a response over the request size limit arrives in pieces,
// each under it, all but the last marked; without, whole.
func TestWatchFragment(t *testing.T) {
	m := startTestCluster(t, 1, nil)[0]
	value := strings.Repeat("x", 900*1024)
	for i := range 4 {
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "f/%d", i), Value: []byte(value)})
			return err
		})
	}
	// From revision 1, one catch-up response holds the four puts: 3.6 MB, over the
	// 2 MiB limit (1.5 MiB and gRPC's overhead).
	limit := m.cfg.withDefaults().MaxRequestBytes + grpcOverheadBytes
	for _, fragment := range []bool{true, false} {
		s := openWatch(t, m)
		createWatch(t, s, &pb.WatchCreateRequest{Key: []byte("f/"), RangeEnd: []byte("f0"), StartRevision: 1, Fragment: fragment})
		var pieces []*pb.WatchResponse
		for events := 0; events < 4; {
			resp := recvWatch(t, s)
			pieces = append(pieces, resp)
			events += len(resp.Events)
		}
		if !fragment {
			if len(pieces) != 1 || pieces[0].Fragment {
				t.Fatalf("without fragment: %d responses", len(pieces))
			}
			continue
		}
		if len(pieces) != 2 {
			t.Fatalf("with fragment: %d pieces, want 2 of 2 events", len(pieces))
		}
		for i, p := range pieces {
			if size := proto.Size(p); size >= limit || len(p.Events) != 2 {
				t.Fatalf("piece %d: %d bytes, %d events; the limit is %d", i, size, len(p.Events), limit)
			}
			if p.Fragment != (i == 0) {
				t.Fatalf("piece %d of %d has fragment=%v", i, len(pieces), p.Fragment)
			}
		}
	}
}

func TestSendFragments(t *testing.T) {
	ev := func(n int) *mvccpb.Event {
		return &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("k"), Value: make([]byte, n)}}
	}
	wr := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 9}, WatchId: 3,
		Events: []*mvccpb.Event{ev(400), ev(400), ev(1500), ev(10), ev(10)}}
	var sent []*pb.WatchResponse
	if err := sendFragments(wr, 1000, func(r *pb.WatchResponse) error { sent = append(sent, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var shape []string
	for _, r := range sent {
		shape = append(shape, fmt.Sprintf("%d%v", len(r.Events), r.Fragment))
		if r.WatchId != 3 || r.Header.Revision != 9 {
			t.Fatalf("piece %v lost the id or header", r)
		}
		if size := proto.Size(r); size >= 1000 && len(r.Events) > 1 {
			t.Fatalf("piece of %d events is %d bytes", len(r.Events), size)
		}
	}
	// 400+400 fit; 1500 alone; the two small ones together.
	if got := strings.Join(shape, " "); got != "2true 1true 2false" {
		t.Fatalf("pieces %s, want 2true 1true 2false", got)
	}
	sent = nil
	small := &pb.WatchResponse{Events: []*mvccpb.Event{ev(1), ev(1)}}
	_ = sendFragments(small, 1000, func(r *pb.WatchResponse) error { sent = append(sent, r); return nil })
	if len(sent) != 1 || sent[0] != small {
		t.Fatal("a response under the limit was not sent whole")
	}
}

// A compaction right after writes does not take events from a watcher (the apply
// loop flushes the hub first), and stopping the member ends its streams with
// Unavailable, which clientv3 retries elsewhere.
func TestWatchCompactionAndStop(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	m := members[0]
	s := openWatch(t, m)
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})
	createWatch(t, s, &pb.WatchCreateRequest{Key: []byte("c")})
	var last int64
	for i := range 50 {
		resp, err := m.client.Put(context.Background(), &pb.PutRequest{Key: []byte("c"), Value: fmt.Appendf(nil, "%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
		if _, err := m.client.Compact(context.Background(), &pb.CompactionRequest{Revision: last}); err != nil {
			t.Fatal(err)
		}
	}
	var revs []int64
	for len(revs) < 50 {
		resp := recvWatch(t, s)
		if resp.CompactRevision != 0 || resp.Canceled {
			t.Fatalf("the watch was compacted: %v", resp)
		}
		for _, ev := range resp.Events {
			revs = append(revs, ev.Kv.ModRevision)
		}
	}
	if revs[49] != last {
		t.Fatalf("last event at %d, want %d", revs[49], last)
	}
	m.srv.Stop() // the client connection stays open
	_, err := s.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("after the member stopped, the stream ended with %v, want Unavailable", err)
	}
}

// A client that stops reading: the writes and another client's watch go on, the
// member holds a bounded queue for the stalled stream (gRPC's flow-control window
// fills first, then the hub's queue), and when the client reads again it gets every
// event in order.
func TestWatchClientStopsReading(t *testing.T) {
	t.Parallel() // it mostly waits
	m := startTestCluster(t, 1, nil)[0]
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})
	stalled, live := openWatch(t, m), openWatch(t, m)
	createWatch(t, stalled, &pb.WatchCreateRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), PrevKv: true})
	createWatch(t, live, &pb.WatchCreateRequest{Key: []byte("s/"), RangeEnd: []byte("s0")})
	liveRevs := make(chan []int64, 1)
	const writes = 1500
	go func() {
		var revs []int64
		for len(revs) < writes {
			resp, err := live.Recv()
			if err != nil {
				break
			}
			for _, ev := range resp.Events {
				revs = append(revs, ev.Kv.ModRevision)
			}
		}
		liveRevs <- revs
	}()
	value := []byte(strings.Repeat("v", 4096))
	var first, last int64
	maxStream := 0
	for i := range writes {
		resp, err := m.client.Put(context.Background(), &pb.PutRequest{Key: fmt.Appendf(nil, "s/%d", i%50), Value: value})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = resp.Header.Revision
		}
		last = resp.Header.Revision
		maxStream = max(maxStream, m.srv.watches.Stats().MaxStreamBytes)
	}
	revs := <-liveRevs
	if len(revs) != writes || revs[0] != first || revs[len(revs)-1] != last {
		t.Fatalf("the reading client got %d events (%v..), want %d from %d to %d", len(revs), revs[:min(3, len(revs))], writes, first, last)
	}
	// 1,500 events of 8 KiB with prev_kv are 12 MiB; the member held at most its
	// queue's 4 MiB plus one revision's event.
	if limit := watch.DefaultMaxQueuedBytes + 2*len(value) + 1000; maxStream > limit {
		t.Fatalf("the stalled stream's queue reached %d bytes, over %d", maxStream, limit)
	}
	if st := m.srv.watches.Stats(); st.Unsynced != 1 {
		t.Fatalf("hub %+v: want the stalled watch unsynced", st)
	}
	next := first
	for next <= last {
		resp := recvWatch(t, stalled)
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision != next {
				t.Fatalf("the stalled client, reading again, got revision %d, want %d", ev.Kv.ModRevision, next)
			}
			if ev.Kv.Version > 1 && (ev.PrevKv == nil || ev.PrevKv.ModRevision != ev.Kv.ModRevision-50) {
				t.Fatalf("event at %d has prev_kv %v", next, ev.PrevKv)
			}
			next++
		}
	}
}
