package server

import (
	"math"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

// Range skips sizing a request exactly when its key, range end and unknown fields
// leave room for maxRangeRequestFixedBytes; the bound must hold for the largest
// encoding of every other field.
func TestRangeRequestFixedBytesBound(t *testing.T) {
	big := make([]byte, 1<<20)
	r := &pb.RangeRequest{Key: big, RangeEnd: big, Limit: -1, Revision: -1,
		SortOrder: pb.RangeRequest_SortOrder(math.MaxInt32), SortTarget: pb.RangeRequest_SortTarget(math.MinInt32),
		Serializable: true, KeysOnly: true, CountOnly: true,
		MinModRevision: math.MinInt64, MaxModRevision: -1, MinCreateRevision: -1, MaxCreateRevision: math.MinInt64}
	if fixed := proto.Size(r) - 2*len(big); fixed > maxRangeRequestFixedBytes {
		t.Fatalf("a RangeRequest encodes %d bytes besides its key and range end; maxRangeRequestFixedBytes is %d", fixed, maxRangeRequestFixedBytes)
	}
}

// rangeToPB builds answers of one key or none in one allocation; they must be the
// same messages the general path builds.
func TestRangeToPBSingleAllocationSameAnswer(t *testing.T) {
	h := header{clusterID: 1, memberID: 2, raftTerm: 3}
	kvs := []kv.KeyValue{
		{Key: []byte("a"), Value: []byte("x"), CreateRevision: 4, ModRevision: 5, Version: 2, Lease: 7},
		{Key: []byte("b"), Value: []byte("y"), CreateRevision: 6, ModRevision: 6, Version: 1},
	}
	for n := range len(kvs) + 1 {
		r := &kv.RangeResponse{Header: kv.ResponseHeader{Revision: 9}, Kvs: kvs[:n], More: n == 1, Count: int64(n + 1)}
		want := &pb.RangeResponse{Header: h.pb(9), Kvs: kvsToPB(r.Kvs), More: r.More, Count: r.Count}
		if got := rangeToPB(h, r); !proto.Equal(got, want) {
			t.Errorf("%d keys: got %v, want %v", n, got, want)
		}
	}
}
