package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"raftkv/kv"
)

// Proposals that start within one window share a deadline context; the next
// window's is another, with a later deadline; each deadline is RequestTimeout after
// its window's end, so a proposal waits at least RequestTimeout and at most one
// window more.
func TestRequestDeadlinesShareAWindow(t *testing.T) {
	const timeout = 7 * time.Second
	d := newRequestDeadlines(timeout)
	defer d.stop()
	start := time.Now()
	first := d.get(start)
	if same := d.get(start.Add(deadlineWindow / 2)); same != first {
		t.Fatal("a proposal half a window later got a context of its own")
	}
	dl, ok := first.Deadline()
	if !ok {
		t.Fatal("the shared context has no deadline")
	}
	if got := dl.Sub(start); got < timeout || got > timeout+deadlineWindow {
		t.Fatalf("deadline %v after the start, want between %v and %v", got, timeout, timeout+deadlineWindow)
	}
	// The proposal that started last in the window waits RequestTimeout too.
	if got := dl.Sub(start.Add(deadlineWindow - time.Nanosecond)); got < timeout {
		t.Fatalf("deadline %v after the window's last start, want at least %v", got, timeout)
	}
	next := d.get(start.Add(deadlineWindow))
	if next == first {
		t.Fatal("a proposal a window later shared the earlier window's context")
	}
	if dl2, _ := next.Deadline(); !dl2.After(dl) {
		t.Fatalf("the next window's deadline %v is not after the first's %v", dl2, dl)
	}
	// Many proposals starting together make one context between them.
	var wg sync.WaitGroup
	ctxs := make([]context.Context, 64)
	now := start.Add(3 * deadlineWindow)
	for i := range ctxs {
		wg.Go(func() { ctxs[i] = d.get(now) })
	}
	wg.Wait()
	for i, c := range ctxs {
		if c != ctxs[0] {
			t.Fatalf("proposal %d of 64 starting at the same time got a context of its own", i)
		}
	}
}

// A write that cannot commit (its leader alone, the others stopped) fails with
// etcd's "request timed out, possibly due to connection lost" once RequestTimeout has
// passed, not before and not much after: the leader's streams to a quorum were not up
// for the whole wait (parseProposeCtxErr). A proposal whose request is canceled stops
// waiting at once, with etcd's "request cancelled". The
// election timeout is long (3 s), so that the lone leader stays leader while its
// proposals wait for a commit that cannot come.
func TestWriteWithoutQuorumTimesOut(t *testing.T) {
	t.Parallel() // it mostly waits
	const requestTimeout = 700 * time.Millisecond
	lone := loneLeader(t, func(c *Config) {
		c.RequestTimeout = requestTimeout
		c.HeartbeatInterval = 100 * time.Millisecond
		c.ElectionTimeout = 3 * time.Second
	})

	payload, err := (&kv.Command{Put: &kv.PutRequest{Key: []byte("k"), Value: []byte("gone")}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = lone.srv.propose(ctx, kindKV, payload)
	if took := time.Since(start); took >= requestTimeout {
		t.Errorf("a proposal whose request was canceled after 100ms returned after %v, the whole RequestTimeout", took)
	}
	if !errors.Is(err, errCanceled) {
		t.Errorf("a proposal whose request was canceled: got %v, want %v", err, errCanceled)
	}
	if _, isLeader := lone.srv.node.State(); !isLeader {
		t.Fatal("the lone member stepped down while its proposal waited; the test checked the forwarding path, not the wait")
	}

	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			start := time.Now()
			_, err := lone.client.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte{byte(i)}})
			took := time.Since(start)
			if st, _ := status.FromError(err); st.Code() != codes.Unavailable ||
				st.Message() != rpctypes.ErrorDesc(rpctypes.ErrGRPCTimeoutDueToConnectionLost) {
				t.Errorf("write without a quorum: got %v, want %v", err, rpctypes.ErrGRPCTimeoutDueToConnectionLost)
			}
			if took < requestTimeout || took > 3*requestTimeout {
				t.Errorf("write without a quorum failed after %v, want between %v and %v", took, requestTimeout, 3*requestTimeout)
			}
		})
	}
	wg.Wait()
}
