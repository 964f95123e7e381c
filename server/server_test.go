package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"raftkv/internal/testport"
)

type testMember struct {
	cfg    Config
	srv    *Server
	client pb.KVClient
	conn   *grpc.ClientConn
}

// startTestCluster starts n members in this process on loopback.
func startTestCluster(t testing.TB, n int, mutate func(*Config)) []*testMember {
	t.Helper()
	ports := testport.Free(t, 2*n)
	dir := t.TempDir()
	initial := map[string][]string{}
	for i := range n {
		initial[fmt.Sprintf("m%d", i)] = []string{fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])}
	}
	members := make([]*testMember, n)
	for i := range n {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		cfg := Config{
			Name:                         fmt.Sprintf("m%d", i),
			DataDir:                      filepath.Join(dir, fmt.Sprintf("m%d", i)),
			ListenClientURLs:             []string{client},
			AdvertiseClientURLs:          []string{client},
			ListenPeerURLs:               initial[fmt.Sprintf("m%d", i)],
			InitialCluster:               initial,
			HeartbeatInterval:            10 * time.Millisecond,
			ElectionTimeout:              100 * time.Millisecond,
			StrictReconfigHealthInterval: time.Nanosecond, // a stream up counts at once
		}
		if mutate != nil {
			mutate(&cfg)
		}
		members[i] = &testMember{cfg: cfg}
	}
	for _, m := range members {
		m.start(t)
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.stop()
		}
	})
	return members
}

func (m *testMember) start(t testing.TB) {
	t.Helper()
	srv, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.connect(t, srv)
}

// connect makes srv m's running server, with a client to it.
func (m *testMember) connect(t testing.TB, srv *Server) {
	t.Helper()
	conn, err := grpc.NewClient(m.cfg.ListenClientURLs[0][len("http://"):], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	m.srv, m.conn, m.client = srv, conn, pb.NewKVClient(conn)
}

func (m *testMember) stop() {
	if m.srv != nil {
		m.conn.Close()
		m.srv.Stop()
		m.srv = nil
	}
}

// retry runs op until it succeeds or 10s pass; writes may fail while no leader exists.
func retry(t testing.TB, op func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterPutGetOnEveryMember(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	for i, m := range members {
		key := fmt.Appendf(nil, "k%d", i)
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: key, Value: []byte("v")})
			return err
		})
	}
	// A linearizable read on any member sees every acknowledged write.
	for _, m := range members {
		resp, err := m.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 3 || resp.Count != 3 {
			t.Fatalf("member %s sees %d keys, want 3", m.cfg.Name, len(resp.Kvs))
		}
		if resp.Header.ClusterId != members[0].srv.ClusterID() || resp.Header.MemberId != m.srv.ID() || resp.Header.RaftTerm == 0 {
			t.Fatalf("header %+v lacks cluster id, member id or term", resp.Header)
		}
	}
}

// --max-request-bytes bounds what is proposed through Raft, as in etcd: a Range or
// a read-only Txn larger than it is served (gRPC's limit, grpcOverheadBytes above
// it, still applies), a write of that size is refused.
func TestReadsAreNotHeldToMaxRequestBytes(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes = 4096 })
	c := members[0].client
	ctx := testCtx(t)
	key := make([]byte, 8192)
	if _, err := c.Range(ctx, &pb.RangeRequest{Key: key}); err != nil {
		t.Fatalf("Range with an 8 KiB key, --max-request-bytes 4096: %v", err)
	}
	txn := &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: key, Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key}}}},
	}
	if resp, err := c.Txn(ctx, txn); err != nil || !resp.Succeeded {
		t.Fatalf("read-only Txn with an 8 KiB key, --max-request-bytes 4096: %v, %v", resp, err)
	}
	txn.Success = []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}}
	if _, err := c.Txn(ctx, txn); status.Convert(err).Message() != status.Convert(rpctypes.ErrGRPCRequestTooLarge).Message() {
		t.Fatalf("Txn with a put and an 8 KiB compare key: %v, want %v", err, rpctypes.ErrGRPCRequestTooLarge)
	}
}

func TestBadRequestsRefusedWithEtcdErrors(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes = 4096 })
	c := members[0].client
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"empty key", func() error { _, err := c.Put(ctx, &pb.PutRequest{Value: []byte("v")}); return err }, rpctypes.ErrGRPCEmptyKey},
		{"too large", func() error {
			_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 8192)})
			return err
		}, rpctypes.ErrGRPCRequestTooLarge},
		{"too many ops", func() error {
			txn := &pb.TxnRequest{}
			for i := range 129 {
				txn.Success = append(txn.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
					RequestPut: &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i)}}})
			}
			_, err := c.Txn(ctx, txn)
			return err
		}, rpctypes.ErrGRPCTooManyOps},
	} {
		err := tc.call()
		if status.Code(err) != status.Code(tc.want) || status.Convert(err).Message() != status.Convert(tc.want).Message() {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// Nothing above was applied: the store is still at revision 1.
	resp, err := c.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != 1 || len(resp.Kvs) != 0 {
		t.Fatalf("after refused requests: revision %d, %d keys; want 1 and 0", resp.Header.Revision, len(resp.Kvs))
	}
}

// A retried request with the same client id and sequence is applied once.
func TestExactlyOnceSessions(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	c := members[0].client
	ctx := metadata.AppendToOutgoingContext(context.Background(), MetadataClientID, "7", MetadataSequence, "1")
	var first *pb.PutResponse
	retry(t, func(context.Context) error {
		var err error
		first, err = c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	again, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	if again.Header.Revision != first.Header.Revision {
		t.Fatalf("retry applied again: revision %d then %d", first.Header.Revision, again.Header.Revision)
	}
	resp, err := c.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Kvs[0].Version != 1 {
		t.Fatalf("key version %d after a retried put, want 1", resp.Kvs[0].Version)
	}
}

// A sequence number reused for a request of another kind (a put's for a delete) is
// refused: the session table holds the put's answer, which is no delete's answer.
// (It crashed the member with a nil dereference.)
func TestExactlyOnceSequenceReusedForAnotherRequest(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	c := members[0].client
	ctx := metadata.AppendToOutgoingContext(context.Background(), MetadataClientID, "9", MetadataSequence, "1")
	retry(t, func(context.Context) error {
		_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	_, err := c.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("k")})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "raftkv-seq 1 of raftkv-client-id 9 was a put") {
		t.Fatalf("a delete with the sequence of a put: %v; want InvalidArgument naming the reuse", err)
	}
	_, err = c.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a txn with the sequence of a put: %v; want InvalidArgument", err)
	}
	resp, err := c.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")})
	if err != nil || resp.Count != 1 || resp.Kvs[0].Version != 1 {
		t.Fatalf("after the refused requests: %v, %v; want k at version 1", resp, err)
	}
}

// A write with half a session, or one that is not a number, is refused with
// InvalidArgument and applies nothing.
func TestSessionMetadataRefused(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	c := members[0].client
	retry(t, func(ctx context.Context) error {
		_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("v")})
		return err
	})
	for _, md := range [][]string{
		{MetadataClientID, "7"},
		{MetadataClientID, "7", MetadataClientID, "8", MetadataSequence, "1"},
		{MetadataClientID, "seven", MetadataSequence, "1"},
		{MetadataClientID, "7", MetadataSequence, "0"},
	} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("metadata %q: got %v, want InvalidArgument", md, err)
		}
	}
	resp, err := c.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("a refused write applied: %d keys", resp.Count)
	}
}

// Restarting every member on its data dir keeps every acknowledged write, across a
// snapshot too.
func TestRestartKeepsAcknowledgedWrites(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.SnapshotCount = 20 })
	for i := range 50 {
		retry(t, func(ctx context.Context) error {
			_, err := members[i%3].client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%02d", i), Value: []byte("v")})
			if ferr := members[i%3].srv.Err(); ferr != nil {
				t.Fatalf("member %s stopped: %v", members[i%3].cfg.Name, ferr)
			}
			return err
		})
	}
	for _, m := range members {
		m.stop()
	}
	checkNoValueFiles(t, filepath.Dir(members[0].cfg.DataDir))
	for _, m := range members {
		m.start(t)
	}
	for _, m := range members {
		var resp *pb.RangeResponse
		retry(t, func(ctx context.Context) error {
			if err := m.srv.Err(); err != nil {
				t.Fatalf("member %s stopped: %v", m.cfg.Name, err)
			}
			var err error
			resp, err = m.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
			return err
		})
		if err := m.srv.Err(); err != nil {
			t.Fatalf("member %s stopped: %v", m.cfg.Name, err)
		}
		if resp.Count != 50 {
			t.Fatalf("member %s has %d keys after restart, want 50", m.cfg.Name, resp.Count)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Value) != "v" {
				t.Fatalf("member %s reads %q=%q after restart, want \"v\"", m.cfg.Name, kv.Key, kv.Value)
			}
		}
	}
}

// checkNoValueFiles fails if a kv value file is left in dir, or still open in this
// process, once every member under dir has stopped.
func checkNoValueFiles(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "kv-values") {
			t.Errorf("value file %s left behind", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open files: %v", err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir) {
			t.Errorf("file %s is still open after every member stopped", target)
		}
	}
}

func TestStoppedLeaderIsReplaced(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")})
		return err
	})
	var leader *testMember
	for _, m := range members {
		if _, isLeader := m.srv.node.State(); isLeader {
			leader = m
		}
	}
	if leader == nil {
		t.Fatal("no leader after a committed write")
	}
	leader.stop()
	for _, m := range members {
		if m == leader {
			continue
		}
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("b"), Value: []byte("2")})
			if errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return err
		})
	}
}

func TestSnapshotDue(t *testing.T) {
	for _, tc := range []struct {
		entries uint64
		want    bool
	}{{0, false}, {9999, false}, {10000, true}, {25000, true}} {
		if got := snapshotDue(tc.entries, 10000); got != tc.want {
			t.Errorf("snapshotDue(%d entries, every 10000) = %v, want %v", tc.entries, got, tc.want)
		}
	}
}

func TestExistingClusterStateNeedsData(t *testing.T) {
	ports := testport.Free(t, 2)
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	_, err := New(Config{
		Name: "a", DataDir: t.TempDir(), ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
		ListenPeerURLs: []string{peer}, InitialCluster: map[string][]string{"a": {peer}}, InitialClusterState: "existing",
	})
	if err == nil || !strings.Contains(err.Error(), "holds no state") {
		t.Fatalf("New with state existing on an empty data dir: %v, want a refusal", err)
	}
}
