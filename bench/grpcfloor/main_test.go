package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestServesPutsGetsAndStatus: the floor answers what the put and get workloads and
// the harness's leader lookup ask, and nothing else.
func TestServesPutsGetsAndStatus(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(2, 100)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() {
		s.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{l.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := cli.Put(ctx, "a", "b"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for _, opts := range [][]clientv3.OpOption{nil, {clientv3.WithSerializable()}} {
		resp, err := cli.Get(ctx, "k9", opts...)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != "k9" || string(resp.Kvs[0].Value) != strings.Repeat("v", 100) || resp.Count != 1 {
			t.Fatalf("Get k9 = %v, want k9 with a 100-byte value", resp.Kvs)
		}
	}
	st, err := cli.Status(ctx, l.Addr().String())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Header.MemberId != 2 || st.Leader != 1 {
		t.Errorf("Status: member %d, leader %d; want member 2, leader 1 (the first member)", st.Header.MemberId, st.Leader)
	}
	_, err = cli.Txn(ctx).Then(clientv3.OpGet("k")).Commit()
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Txn: %v, want Unimplemented: the floor serves puts and ranges only", err)
	}
}

func TestMemberID(t *testing.T) {
	const cluster = "m1=http://127.0.0.1:1,m2=http://127.0.0.1:2,m3=http://127.0.0.1:3"
	for name, want := range map[string]uint64{"m1": 1, "m2": 2, "m3": 3} {
		if got, err := memberID(name, cluster); err != nil || got != want {
			t.Errorf("memberID(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := memberID("m4", cluster); err == nil || !strings.Contains(err.Error(), `"m4"`) {
		t.Errorf("memberID(m4) = %v, want an error naming m4", err)
	}
}

// TestBadFlags: a member started wrongly says what was wrong and exits with 2.
func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--name", "m4", "--initial-cluster", "m1=http://127.0.0.1:1", "--listen-client-urls", "http://127.0.0.1:0"},
		{"--name", "m1", "--initial-cluster", "m1=http://127.0.0.1:1", "--listen-client-urls", "127.0.0.1"},
		{"--name", "m1", "--initial-cluster", "m1=http://127.0.0.1:1", "--listen-client-urls", "http://127.0.0.1:0", "--value-bytes", "-1"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
