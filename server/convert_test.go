package server

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

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
