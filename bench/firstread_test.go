package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
)

// catchingUpKV answers Range for one key at a revision that grows by one per call, as
// a member that is catching up would.
type catchingUpKV struct {
	pb.UnimplementedKVServer
	key, value []byte
	calls      atomic.Int64
}

func (s *catchingUpKV) Range(_ context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	rev := s.calls.Add(1)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: rev}}
	if string(req.Key) == string(s.key) && req.Serializable {
		resp.Kvs = []*mvccpb.KeyValue{{Key: s.key, Value: s.value, ModRevision: 1}}
	}
	return resp, nil
}

// serveKV serves kv on a loopback port until the test ends and returns a member whose
// client URL names it.
func serveKV(t *testing.T, kv pb.KVServer) *member {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, kv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return &member{name: "m1", clientURL: "http://" + l.Addr().String(), exited: make(chan struct{})}
}

func TestWaitFirstReadWaitsForTheRevision(t *testing.T) {
	kv := &catchingUpKV{key: []byte(bigKey(5)), value: bigValue(5)}
	m := serveKV(t, kv)
	if _, err := waitFirstRead(context.Background(), m, bigKey(5), bigValue(5), 4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := kv.calls.Load(); n != 4 {
		t.Errorf("waitFirstRead returned after %d reads; the member reached revision 4 at the 4th", n)
	}
}

func TestWaitFirstReadRefusesAWrongValue(t *testing.T) {
	m := serveKV(t, &catchingUpKV{key: []byte(bigKey(5)), value: bigValue(6)})
	_, err := waitFirstRead(context.Background(), m, bigKey(5), bigValue(5), 1, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not the one written") {
		t.Errorf("a member serving another value gave %v, want a timeout that says the value is wrong", err)
	}
}

func TestWaitFirstReadStopsWhenTheMemberExits(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: the member never comes up
	m := &member{name: "m1", clientURL: "http://" + addr, exited: make(chan struct{})}
	time.AfterFunc(200*time.Millisecond, func() { close(m.exited) })
	start := time.Now()
	_, err = waitFirstRead(context.Background(), m, bigKey(1), bigValue(1), 1, time.Minute)
	if !errors.Is(err, errMemberExited) {
		t.Errorf("waitFirstRead of an exited member = %v, want errMemberExited", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("waitFirstRead took %v to notice the exit", waited)
	}
}
