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

// pagedKV serves Range over keys 0..n-1 of the big data set, in key order with limit
// and more, leaving out the keys in missing and answering a wrong value for those in
// wrong.
type pagedKV struct {
	pb.UnimplementedKVServer
	n              int
	missing, wrong map[int]bool
}

func (s *pagedKV) Range(_ context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 1}}
	for i := range s.n {
		k := bigKey(i)
		if k < string(req.Key) || k >= string(req.RangeEnd) || s.missing[i] {
			continue
		}
		if req.Limit > 0 && int64(len(resp.Kvs)) == req.Limit {
			resp.More = true
			break
		}
		v := bigValue(i)
		if s.wrong[i] {
			v = bigValue(i + 1)
		}
		resp.Kvs = append(resp.Kvs, &mvccpb.KeyValue{Key: []byte(k), Value: v})
	}
	return resp, nil
}

func TestVerifyBigCountsMissingAndWrongKeys(t *testing.T) {
	const n = 1234 // three pages of verifyPageKeys
	m := serveKV(t, &pagedKV{n: n, missing: map[int]bool{0: true, 500: true, 501: true, n - 1: true}, wrong: map[int]bool{7: true}})
	got, err := verifyBig(context.Background(), m.endpoint(), n)
	if err != nil {
		t.Fatal(err)
	}
	if got.ok != n-5 || got.wrong != 1 || got.missing != 4 {
		t.Errorf("verifyBig = %v, want %d intact, 1 wrong, 4 missing", got, n-5)
	}
	if got.pages != 3 || got.slowestPage <= 0 || got.slowestPage < got.firstPage || got.slowestPage < got.lastPage {
		t.Errorf("verifyBig timed %d pages (first %v, last %v, slowest %v); want 3, the slowest at least as long as the others",
			got.pages, got.firstPage, got.lastPage, got.slowestPage)
	}
	all, err := verifyBig(context.Background(), serveKV(t, &pagedKV{n: n}).endpoint(), n)
	if err != nil || all.ok != n || all.wrong+all.missing != 0 {
		t.Errorf("verifyBig of a whole data set = %v, %v; want all %d intact", all, err, n)
	}
}
