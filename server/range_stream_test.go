package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// rangeStreamChunks reads a whole RangeStream and returns its chunks.
func rangeStreamChunks(ctx context.Context, t *testing.T, kvc pb.KVClient, r *pb.RangeRequest) ([]*pb.RangeResponse, error) {
	t.Helper()
	stream, err := kvc.RangeStream(ctx, r)
	if err != nil {
		return nil, err
	}
	var chunks []*pb.RangeResponse
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return chunks, nil
		}
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, resp.RangeResponse)
	}
}

// RangeStream's chunks, merged, are Range's answer at the revision the stream read
// (the last chunk's header): for a range larger than one chunk, with and without
// limits, keys only, count only, at an older revision. Only the last chunk carries
// the header, More and Count, and writes made while a stream runs are not seen.
func TestRangeStreamMergesToRange(t *testing.T) {
	// A small --max-request-bytes makes the chunks aim at 64 KiB.
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes = 4096 })
	kvc := members[0].client
	ctx := testCtx(t)
	value := []byte(strings.Repeat("v", 1000))
	for i := range 400 {
		if _, err := kvc.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%04d", i), Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	end := []byte("l")
	for _, tc := range []struct {
		name      string
		req       *pb.RangeRequest
		minChunks int
	}{
		{"every key", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end}, 3},
		{"limit 25", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, Limit: 25}, 2},
		{"limit 400, all of them", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, Limit: 400}, 3},
		{"limit 1000", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, Limit: 1000}, 3},
		{"limit -1", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, Limit: -1}, 3},
		{"keys only", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, KeysOnly: true}, 2},
		{"count only", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, CountOnly: true}, 1},
		{"serializable, sorted by key ascending", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, Serializable: true,
			SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_KEY}, 3},
		{"at revision 100", &pb.RangeRequest{Key: []byte("k"), RangeEnd: end, Revision: 100}, 3},
		{"one key", &pb.RangeRequest{Key: []byte("k0007")}, 1},
		{"no key", &pb.RangeRequest{Key: []byte("nothing")}, 1},
	} {
		chunks, err := rangeStreamChunks(ctx, t, kvc, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(chunks) < tc.minChunks {
			t.Errorf("%s: %d chunks, want at least %d", tc.name, len(chunks), tc.minChunks)
		}
		merged := &pb.RangeResponse{}
		for i, c := range chunks {
			if last := i == len(chunks)-1; (c.Header != nil) != last || (!last && (c.More || c.Count != 0)) {
				t.Errorf("%s: chunk %d of %d has header %v, more %v, count %d; only the last carries them", tc.name, i, len(chunks), c.Header, c.More, c.Count)
			}
			proto.Merge(merged, c)
		}
		want := proto.Clone(tc.req).(*pb.RangeRequest)
		if want.Revision == 0 {
			want.Revision = merged.GetHeader().GetRevision()
		}
		got, err := kvc.Range(ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		// The header names the store's revision, as Range's does, whatever the
		// revision read; no write came between the two.
		if got.Header.Revision != merged.Header.Revision {
			t.Errorf("%s: the stream's header names revision %d, Range's %d", tc.name, merged.Header.Revision, got.Header.Revision)
		}
		got.Header = merged.Header // both name this member and term
		if !proto.Equal(merged, got) {
			t.Errorf("%s: merged stream (%d keys, count %d, more %v) differs from Range (%d keys, count %d, more %v)",
				tc.name, len(merged.Kvs), merged.Count, merged.More, len(got.Kvs), got.Count, got.More)
		}
	}

	// Writes while the stream runs: the first chunk is read, keys are added and
	// changed, and the rest still answers at the stream's first revision.
	stream, err := kvc.RangeStream(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: end})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	before, err := kvc.Range(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: end})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"k0200", "k0399", "k5"} {
		if _, err := kvc.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte("new")}); err != nil {
			t.Fatal(err)
		}
	}
	merged := proto.Clone(first.RangeResponse).(*pb.RangeResponse)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		proto.Merge(merged, resp.RangeResponse)
	}
	if merged.Header.Revision != before.Header.Revision || merged.Count != 400 || !proto.Equal(&pb.RangeResponse{Kvs: merged.Kvs}, &pb.RangeResponse{Kvs: before.Kvs}) {
		t.Fatalf("stream with writes while it ran: revision %d, %d keys, count %d; want revision %d and the 400 keys as they were",
			merged.Header.Revision, len(merged.Kvs), merged.Count, before.Header.Revision)
	}
}

// What RangeStream does not serve is refused as etcd 3.7 refuses it, after Range's
// own checks.
func TestRangeStreamRefusesWhatEtcdRefuses(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	kvc := members[0].client
	ctx := testCtx(t)
	if _, err := kvc.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  *pb.RangeRequest
		want error
	}{
		{"empty key", &pb.RangeRequest{SortOrder: pb.RangeRequest_DESCEND}, rpctypes.ErrGRPCEmptyKey},
		{"sort order 9", &pb.RangeRequest{Key: []byte("a"), SortOrder: 9}, rpctypes.ErrGRPCInvalidSortOption},
		{"sort target 9", &pb.RangeRequest{Key: []byte("a"), SortTarget: 9}, rpctypes.ErrGRPCInvalidSortOption},
		{"sorted by value", &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_VALUE},
			status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")},
		{"keys descending", &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_DESCEND},
			status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")},
		{"min mod revision", &pb.RangeRequest{Key: []byte("a"), MinModRevision: 1},
			status.Error(codes.Unimplemented, "RangeStream does not support revision filters")},
		{"future revision", &pb.RangeRequest{Key: []byte("a"), Revision: 100}, rpctypes.ErrGRPCFutureRev},
	} {
		_, err := rangeStreamChunks(ctx, t, kvc, tc.req)
		if got, want := status.Convert(err), status.Convert(tc.want); got.Code() != want.Code() || got.Message() != want.Message() {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestNextRangeStreamChunk(t *testing.T) {
	for _, tc := range []struct {
		last, keys    int64
		bytes, target int
		want          int64
	}{
		{10, 10, 10_000, 1 << 20, 40},     // small keys: at most four times the last
		{40, 40, 40_000_000, 1 << 20, 1},  // huge keys: at least one
		{100, 100, 100_000, 200_000, 200}, // 1,000 bytes a key, 200,000 aimed at
		{100, 0, 0, 1 << 20, 100},         // nothing read: unchanged
		{1000, 1000, 1 << 20, 1 << 20, 1000},
	} {
		if got := nextRangeStreamChunk(tc.last, tc.keys, tc.bytes, tc.target); got != tc.want {
			t.Errorf("nextRangeStreamChunk(%d, %d, %d, %d) = %d, want %d", tc.last, tc.keys, tc.bytes, tc.target, got, tc.want)
		}
	}
}

// A stream's permission is checked once, as etcd checks it: an auth change made
// while the stream runs lets every chunk through and fails the stream after the
// last one with "revision of auth store is old", as etcd's does. It failed at the
// next chunk, with part of the range sent.
func TestRangeStreamChecksPermissionOnce(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes = 64 << 10 })
	m := members[0]
	ctx := testCtx(t)
	value := []byte(strings.Repeat("v", 1000))
	const keys = 3000 // 3 MB: more than the client's flow-control window, so the stream waits on it
	for i := 0; i < keys; i += 50 {
		txn := &pb.TxnRequest{}
		for j := i; j < i+50; j++ {
			txn.Success = append(txn.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
				RequestPut: &pb.PutRequest{Key: fmt.Appendf(nil, "app/k%05d", j), Value: value}}})
		}
		if _, err := m.client.Txn(ctx, txn); err != nil {
			t.Fatal(err)
		}
	}
	auth := pb.NewAuthClient(m.conn)
	setupRootAndAlice(t, ctx, auth)
	alice := withToken(ctx, authenticate(t, ctx, auth, "alice", "alicepw"))
	root := withToken(ctx, authenticate(t, ctx, auth, "root", "rootpw"))

	stream, err := m.client.RangeStream(alice, &pb.RangeRequest{Key: []byte("app/"), RangeEnd: []byte("app0")})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := len(first.RangeResponse.Kvs)
	if _, err := auth.UserAdd(root, &pb.AuthUserAddRequest{Name: "bob", Password: "bobpw"}); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if got != keys {
				t.Fatalf("the stream ended with %v after %d of %d keys; want every key, then the error", err, got, keys)
			}
			wantStatus(t, "the stream's end after an auth change", err, rpctypes.ErrGRPCAuthOldRevision)
			return
		}
		got += len(resp.RangeResponse.Kvs)
	}
}
