package server

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"raftkv/kv"
)

// This file converts between etcd's protobuf types and package kv's mirrors of them,
// field by field. Byte slices are shared, not copied: requests are not modified after
// they arrive and responses are read-only.

func rangeFromPB(r *pb.RangeRequest) *kv.RangeRequest {
	return &kv.RangeRequest{
		Key: r.Key, RangeEnd: r.RangeEnd, Limit: r.Limit, Revision: r.Revision,
		SortOrder: kv.SortOrder(r.SortOrder), SortTarget: kv.SortTarget(r.SortTarget),
		Serializable: r.Serializable, KeysOnly: r.KeysOnly, CountOnly: r.CountOnly,
		MinModRevision: r.MinModRevision, MaxModRevision: r.MaxModRevision,
		MinCreateRevision: r.MinCreateRevision, MaxCreateRevision: r.MaxCreateRevision,
	}
}

func putFromPB(r *pb.PutRequest) *kv.PutRequest {
	return &kv.PutRequest{Key: r.Key, Value: r.Value, Lease: r.Lease, PrevKv: r.PrevKv,
		IgnoreValue: r.IgnoreValue, IgnoreLease: r.IgnoreLease}
}

func deleteFromPB(r *pb.DeleteRangeRequest) *kv.DeleteRangeRequest {
	return &kv.DeleteRangeRequest{Key: r.Key, RangeEnd: r.RangeEnd, PrevKv: r.PrevKv}
}

func txnFromPB(r *pb.TxnRequest) *kv.TxnRequest {
	t := &kv.TxnRequest{
		Compare: make([]kv.Compare, len(r.Compare)),
		Success: opsFromPB(r.Success),
		Failure: opsFromPB(r.Failure),
	}
	for i, c := range r.Compare {
		k := kv.Compare{Result: kv.CompareResult(c.Result), Target: kv.CompareTarget(c.Target),
			Key: c.Key, RangeEnd: c.RangeEnd}
		switch u := c.TargetUnion.(type) {
		case *pb.Compare_Version:
			k.Version = u.Version
		case *pb.Compare_CreateRevision:
			k.CreateRevision = u.CreateRevision
		case *pb.Compare_ModRevision:
			k.ModRevision = u.ModRevision
		case *pb.Compare_Value:
			k.Value = u.Value
		case *pb.Compare_Lease:
			k.Lease = u.Lease
		}
		t.Compare[i] = k
	}
	return t
}

func opsFromPB(ops []*pb.RequestOp) []kv.RequestOp {
	out := make([]kv.RequestOp, len(ops))
	for i, op := range ops {
		switch u := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			out[i].Range = rangeFromPB(u.RequestRange)
		case *pb.RequestOp_RequestPut:
			out[i].Put = putFromPB(u.RequestPut)
		case *pb.RequestOp_RequestDeleteRange:
			out[i].DeleteRange = deleteFromPB(u.RequestDeleteRange)
		case *pb.RequestOp_RequestTxn:
			out[i].Txn = txnFromPB(u.RequestTxn)
		}
	}
	return out
}

func kvToPB(k *kv.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: k.Key, CreateRevision: k.CreateRevision, ModRevision: k.ModRevision,
		Version: k.Version, Value: k.Value, Lease: k.Lease}
}

func kvsToPB(kvs []kv.KeyValue) []*mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*mvccpb.KeyValue, len(kvs))
	// One allocation for all of them rather than one each.
	backing := make([]mvccpb.KeyValue, len(kvs))
	for i := range kvs {
		k := &kvs[i]
		backing[i] = mvccpb.KeyValue{Key: k.Key, CreateRevision: k.CreateRevision, ModRevision: k.ModRevision,
			Version: k.Version, Value: k.Value, Lease: k.Lease}
		out[i] = &backing[i]
	}
	return out
}

// header is what every response carries; the server fills it in.
type header struct {
	clusterID, memberID, raftTerm uint64
}

func (h header) pb(revision int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: h.clusterID, MemberId: h.memberID, Revision: revision, RaftTerm: h.raftTerm}
}

func rangeToPB(h header, r *kv.RangeResponse) *pb.RangeResponse {
	if len(r.Kvs) > 1 {
		return &pb.RangeResponse{Header: h.pb(r.Header.Revision), Kvs: kvsToPB(r.Kvs), More: r.More, Count: r.Count}
	}
	// Most reads are of one key or none: one allocation holds the response, its
	// header and the key, instead of four.
	one := &singleRangeResponse{}
	one.header = pb.ResponseHeader{ClusterId: h.clusterID, MemberId: h.memberID, Revision: r.Header.Revision, RaftTerm: h.raftTerm}
	one.resp.Header, one.resp.More, one.resp.Count = &one.header, r.More, r.Count
	if len(r.Kvs) == 1 {
		k := &r.Kvs[0]
		one.kv = mvccpb.KeyValue{Key: k.Key, CreateRevision: k.CreateRevision, ModRevision: k.ModRevision,
			Version: k.Version, Value: k.Value, Lease: k.Lease}
		one.kvs[0] = &one.kv
		one.resp.Kvs = one.kvs[:]
	}
	return &one.resp
}

// singleRangeResponse is a RangeResponse of at most one key with everything it
// points to, allocated together.
type singleRangeResponse struct {
	resp   pb.RangeResponse
	header pb.ResponseHeader
	kvs    [1]*mvccpb.KeyValue
	kv     mvccpb.KeyValue
}

func putToPB(h header, r *kv.PutResponse) *pb.PutResponse {
	out := &pb.PutResponse{Header: h.pb(r.Header.Revision)}
	if r.PrevKv != nil {
		out.PrevKv = kvToPB(r.PrevKv)
	}
	return out
}

func deleteToPB(h header, r *kv.DeleteRangeResponse) *pb.DeleteRangeResponse {
	return &pb.DeleteRangeResponse{Header: h.pb(r.Header.Revision), Deleted: r.Deleted, PrevKvs: kvsToPB(r.PrevKvs)}
}

// txnToPB converts a txn's answer. Only its own header names the cluster, member and
// term: as etcd's, the headers of the responses inside it carry their revision
// alone (a nested txn's none), so h is the zero header below the top.
func txnToPB(h header, r *kv.TxnResponse) *pb.TxnResponse {
	out := &pb.TxnResponse{Header: h.pb(r.Header.Revision), Succeeded: r.Succeeded,
		Responses: make([]*pb.ResponseOp, len(r.Responses))}
	h = header{}
	for i, op := range r.Responses {
		switch {
		case op.Range != nil:
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rangeToPB(h, op.Range)}}
		case op.Put != nil:
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: putToPB(h, op.Put)}}
		case op.DeleteRange != nil:
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: deleteToPB(h, op.DeleteRange)}}
		case op.Txn != nil:
			out.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: txnToPB(h, op.Txn)}}
		default:
			out.Responses[i] = &pb.ResponseOp{}
		}
	}
	return out
}
