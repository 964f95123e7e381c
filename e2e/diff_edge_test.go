package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// The edge differential tests send request shapes that the seeded generators
// (diffgen_test.go, lease_diffgen_test.go, watchShape) never produce, most of them
// through the raw gRPC clients because clientv3 cannot express them: sort options
// outside the enums, SortByKey/ASCEND (clientv3 turns it into NONE), negative
// limits and revision filters, an empty key with range end "\x00", empty and
// mismatched txn ops and compare unions, nested txns at the op budget, duplicate
// keys across nested txns, compacts and reads at math.MaxInt64, negative lease ids,
// lease 0, put flags that keep or drop a lease, reads and writes with 1.6 and 2.2
// MiB keys, Maintenance alarms raised and cleared by hand (NOSPACE, an unknown
// member) with writes under them, clientv3's GetStream (etcd 3.7's RangeStream),
// and a raw watch stream with client-chosen, negative and duplicate watch ids,
// empty and inverted ranges, unknown filters, empty requests, unknown cancels,
// progress requests and fragmented replays. Each case's answer (normalized as the
// other differential tests do) or gRPC error must be etcd's; -diff.log prints the
// transcripts that matched.

// edgeCase is one request (or a short sequence whose transcript is the answer).
type edgeCase struct {
	name string
	call func(ctx context.Context, cli *clientv3.Client) (proto.Message, error)
	// transcript, if set instead of call, returns a text to compare (raw watch streams).
	transcript func(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string
}

func edgeKV(cli *clientv3.Client) pb.KVClient       { return pb.NewKVClient(cli.ActiveConnection()) }
func edgeLease(cli *clientv3.Client) pb.LeaseClient { return pb.NewLeaseClient(cli.ActiveConnection()) }

func edgeRange(r *pb.RangeRequest) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeKV(cli).Range(ctx, r, grpc.WaitForReady(true))
	}
}

func edgePut(r *pb.PutRequest) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeKV(cli).Put(ctx, r, grpc.WaitForReady(true))
	}
}

func edgeDel(r *pb.DeleteRangeRequest) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeKV(cli).DeleteRange(ctx, r, grpc.WaitForReady(true))
	}
}

func edgeTxn(r *pb.TxnRequest) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeKV(cli).Txn(ctx, r, grpc.WaitForReady(true))
	}
}

func edgeCompact(r *pb.CompactionRequest) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeKV(cli).Compact(ctx, r, grpc.WaitForReady(true))
	}
}

func edgeOpRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func edgeOpPut(key, value string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte(value)}}}
}

func edgeOpDel(key, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end)}}}
}

func edgeOpTxn(r *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
}

func edgeCmpVersion(key, end string, result pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), RangeEnd: []byte(end), Target: pb.Compare_VERSION, Result: result,
		TargetUnion: &pb.Compare_Version{Version: v}}
}

func edgeGets(n int, key string) []*pb.RequestOp {
	var ops []*pb.RequestOp
	for range n {
		ops = append(ops, edgeOpRange(&pb.RangeRequest{Key: []byte(key), KeysOnly: true}))
	}
	return ops
}

func edgeCmps(n int) []*pb.Compare {
	var cs []*pb.Compare
	for range n {
		cs = append(cs, edgeCmpVersion("a", "", pb.Compare_GREATER, -1))
	}
	return cs
}

func cmpVersionBytes(key string) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 0}}
}

// edgeGetStream reads through clientv3's GetStream (the RangeStream RPC, new in
// etcd 3.7) and merges the chunks as clientv3's GetStreamToGetResponse does.
func edgeGetStream(key string, opts ...clientv3.OpOption) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		ch, err := cli.GetStream(ctx, key, opts...)
		if err != nil {
			return nil, err
		}
		resp, err := clientv3.GetStreamToGetResponse(ch)
		if err != nil {
			return nil, err
		}
		return (*pb.RangeResponse)(resp), nil
	}
}

// edgeSetup writes the same starting state on both sides: keys with several
// versions, a deleted key, and lease 100 (TTL 600s) holding "lease/1".
var edgeSetup = []edgeCase{
	{name: "setup put a", call: edgePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("v1")})},
	{name: "setup put a again", call: edgePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("v2")})},
	{name: "setup put a/1", call: edgePut(&pb.PutRequest{Key: []byte("a/1"), Value: []byte("z")})},
	{name: "setup put b", call: edgePut(&pb.PutRequest{Key: []byte("b"), Value: []byte("m")})},
	{name: "setup put c", call: edgePut(&pb.PutRequest{Key: []byte("c"), Value: []byte("a")})},
	{name: "setup put gone", call: edgePut(&pb.PutRequest{Key: []byte("gone"), Value: []byte("x")})},
	{name: "setup delete gone", call: edgeDel(&pb.DeleteRangeRequest{Key: []byte("gone")})},
	{name: "setup put \\xff\\xff", call: edgePut(&pb.PutRequest{Key: []byte("\xff\xff"), Value: []byte("hi")})},
	{name: "setup grant lease 100", call: func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeLease(cli).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 100, TTL: 600}, grpc.WaitForReady(true))
	}},
	{name: "setup put lease/1 with lease 100", call: edgePut(&pb.PutRequest{Key: []byte("lease/1"), Value: []byte("l"), Lease: 100})},
	{name: "setup put lease/2 with lease 100", call: edgePut(&pb.PutRequest{Key: []byte("lease/2"), Value: []byte("l"), Lease: 100})},
}

func edgeTimeToLive(id int64, keys bool) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeLease(cli).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys}, grpc.WaitForReady(true))
	}
}

func edgeGrant(id, ttl int64) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeLease(cli).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl}, grpc.WaitForReady(true))
	}
}

func edgeRevoke(id int64) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		return edgeLease(cli).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id}, grpc.WaitForReady(true))
	}
}

func edgeKeepAlive(id int64) func(context.Context, *clientv3.Client) (proto.Message, error) {
	return func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := edgeLease(cli).LeaseKeepAlive(ctx, grpc.WaitForReady(true))
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			return nil, err
		}
		return stream.Recv()
	}
}

var edgeAll = []byte("\x00")

// edgeCases are the cases both servers answer alike (as of this commit).
func edgeCases() []edgeCase {
	return []edgeCase{
		// Range.
		{name: "range empty key with range_end \\x00", call: edgeRange(&pb.RangeRequest{Key: nil, RangeEnd: edgeAll})},
		{name: "range sort_order 7", call: edgeRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: 7})},
		{name: "range sort_target 9", call: edgeRange(&pb.RangeRequest{Key: []byte("a"), SortTarget: 9})},
		{name: "range sort_order -1", call: edgeRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: -1})},
		{name: "range empty key and bad sort (which error first)", call: edgeRange(&pb.RangeRequest{SortOrder: 7, SortTarget: 9})},
		{name: "range all, sort KEY/ASCEND limit 2 (raw)", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll,
			SortTarget: pb.RangeRequest_KEY, SortOrder: pb.RangeRequest_ASCEND, Limit: 2})},
		{name: "range all, sort KEY/DESCEND limit 2", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll,
			SortTarget: pb.RangeRequest_KEY, SortOrder: pb.RangeRequest_DESCEND, Limit: 2})},
		{name: "range all, limit -1", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, Limit: -1})},
		{name: "range all, limit -1, sort VALUE/DESCEND", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, Limit: -1,
			SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_DESCEND})},
		{name: "range all, limit math.MaxInt64", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, Limit: math.MaxInt64})},
		{name: "range all, max_mod_revision -1", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, MaxModRevision: -1})},
		{name: "range all, min_mod_revision -1", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, MinModRevision: -1})},
		{name: "range all, max_create_revision -5 count_only", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, MaxCreateRevision: -5, CountOnly: true})},
		{name: "range all, min_create_revision MaxInt64", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, MinCreateRevision: math.MaxInt64})},
		{name: "range all, min_mod 4 > max_mod 3", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, MinModRevision: 4, MaxModRevision: 3})},
		{name: "range all, min_mod 3 limit 1", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, MinModRevision: 3, Limit: 1})},
		{name: "range stream of every key at revision 3 (the header names the store's)", call: edgeGetStream("", clientv3.WithPrefix(), clientv3.WithRev(3))},
		{name: "range stream of every key, keys only, limit 3, at revision 6", call: edgeGetStream("", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(3), clientv3.WithRev(6))},
		{name: "range stream count only at revision 4", call: edgeGetStream("", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(4))},
		{name: "range revision MaxInt64", call: edgeRange(&pb.RangeRequest{Key: []byte("a"), Revision: math.MaxInt64})},
		{name: "range revision MaxInt64 serializable", call: edgeRange(&pb.RangeRequest{Key: []byte("a"), Revision: math.MaxInt64, Serializable: true})},
		{name: "range revision MinInt64", call: edgeRange(&pb.RangeRequest{Key: []byte("a"), Revision: math.MinInt64})},
		{name: "range \\xff\\xff from key", call: edgeRange(&pb.RangeRequest{Key: []byte("\xff\xff"), RangeEnd: edgeAll})},
		{name: "range \\xff from key, keys_only count_only limit 1", call: edgeRange(&pb.RangeRequest{Key: []byte("\xff"), RangeEnd: edgeAll, KeysOnly: true, CountOnly: true, Limit: 1})},
		{name: "range count_only limit 1 sort VERSION/DESCEND", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, CountOnly: true, Limit: 1,
			SortTarget: pb.RangeRequest_VERSION, SortOrder: pb.RangeRequest_DESCEND})},
		{name: "range keys_only sort VALUE/ASCEND limit 3", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, KeysOnly: true, Limit: 3,
			SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_ASCEND})},
		{name: "range \\x00 single key", call: edgeRange(&pb.RangeRequest{Key: edgeAll})},
		{name: "range key with range_end equal to it", call: edgeRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("a")})},
		{name: "range revision 1 (before any write)", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, Revision: 1})},
		{name: "range deleted key at the revision it was live", call: edgeRange(&pb.RangeRequest{Key: []byte("gone"), Revision: 7})},

		// Put.
		{name: "put empty key with ignore_value and lease (which error first)", call: edgePut(&pb.PutRequest{IgnoreValue: true, Lease: 5, Value: []byte("x")})},
		{name: "put ignore_value with value and ignore_lease with lease", call: edgePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("x"), IgnoreValue: true, IgnoreLease: true, Lease: 5})},
		{name: "put with lease that does not exist, prev_kv", call: edgePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("x"), Lease: 999, PrevKv: true})},
		{name: "put with negative lease that does not exist", call: edgePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("x"), Lease: -7})},
		{name: "put ignore_value on a key deleted earlier", call: edgePut(&pb.PutRequest{Key: []byte("gone"), IgnoreValue: true})},
		{name: "put ignore_lease on a key never written", call: edgePut(&pb.PutRequest{Key: []byte("never"), Value: []byte("x"), IgnoreLease: true})},
		{name: "put ignore_value on a leased key without lease (drops the lease?)", call: edgePut(&pb.PutRequest{Key: []byte("lease/1"), IgnoreValue: true, PrevKv: true})},
		{name: "get lease/1 after ignore_value put", call: edgeRange(&pb.RangeRequest{Key: []byte("lease/1")})},
		{name: "put ignore_lease with new value on leased key", call: edgePut(&pb.PutRequest{Key: []byte("lease/2"), Value: []byte("new"), IgnoreLease: true, PrevKv: true})},
		{name: "put ignore_value and ignore_lease together", call: edgePut(&pb.PutRequest{Key: []byte("lease/2"), IgnoreValue: true, IgnoreLease: true, PrevKv: true})},
		{name: "time-to-live 100 with keys after the ignore puts", call: edgeTimeToLive(100, true)},
		{name: "put prev_kv on a key deleted earlier", call: edgePut(&pb.PutRequest{Key: []byte("gone"), Value: []byte("back"), PrevKv: true})},
		{name: "put key \\x00", call: edgePut(&pb.PutRequest{Key: edgeAll, Value: []byte("nul"), PrevKv: true})},

		// DeleteRange.
		{name: "delete empty key with range_end \\x00", call: edgeDel(&pb.DeleteRangeRequest{RangeEnd: edgeAll})},
		{name: "delete inverted range with prev_kv", call: edgeDel(&pb.DeleteRangeRequest{Key: []byte("z"), RangeEnd: []byte("a"), PrevKv: true})},
		{name: "delete range_end equal to key", call: edgeDel(&pb.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("b"), PrevKv: true})},
		{name: "delete a key that does not exist with prev_kv", call: edgeDel(&pb.DeleteRangeRequest{Key: []byte("nothing"), PrevKv: true})},
		{name: "delete \\x00 single", call: edgeDel(&pb.DeleteRangeRequest{Key: edgeAll, PrevKv: true})},

		// Txn compares.
		{name: "txn compare version over [a, \\x00) > 0", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{edgeCmpVersion("a", "\x00", pb.Compare_GREATER, 0)},
			Success: []*pb.RequestOp{edgeOpRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: edgeAll, CountOnly: true})}})},
		{name: "txn compare version over [a, \\x00) = 0 (some missing keys)", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{edgeCmpVersion("a", "\x00", pb.Compare_EQUAL, 0)}})},
		{name: "txn compare target VERSION with a value union", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER,
				TargetUnion: &pb.Compare_Value{Value: []byte("zzz")}}}})},
		{name: "txn compare target VALUE with a mod union", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_GREATER,
				TargetUnion: &pb.Compare_ModRevision{ModRevision: 99}}}})},
		{name: "txn compare target VALUE no union on existing key", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_GREATER}}})},
		{name: "txn compare result 9 (unknown)", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VERSION, Result: 9,
				TargetUnion: &pb.Compare_Version{Version: 1000}}}})},
		{name: "txn compare target 9 (unknown) EQUAL", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: 9, Result: pb.Compare_EQUAL}}})},
		{name: "txn compare target 9 (unknown) on a missing key", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("missing"), Target: 9, Result: pb.Compare_EQUAL}}})},
		{name: "txn compare VALUE != on a missing key", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("missing"), Target: pb.Compare_VALUE, Result: pb.Compare_NOT_EQUAL,
				TargetUnion: &pb.Compare_Value{Value: []byte("x")}}}})},
		{name: "txn compare VALUE < over a range with a missing key", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), RangeEnd: []byte("d"), Target: pb.Compare_VALUE, Result: pb.Compare_LESS,
				TargetUnion: &pb.Compare_Value{Value: []byte("zzzz")}}}})},
		{name: "txn compare LEASE > 0 over lease/", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("lease/"), RangeEnd: []byte("lease0"), Target: pb.Compare_LEASE, Result: pb.Compare_GREATER,
				TargetUnion: &pb.Compare_Lease{Lease: 0}}}})},
		{name: "txn compare LEASE = 100 on lease/2", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("lease/2"), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_Lease{Lease: 100}}}})},
		{name: "txn compare CREATE < 0 on a missing key", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("missing"), Target: pb.Compare_CREATE, Result: pb.Compare_LESS,
				TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}}}})},
		{name: "txn compare MOD over an inverted range", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("z"), RangeEnd: []byte("a"), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_ModRevision{ModRevision: 0}}}})},
		{name: "txn compare with empty key and range_end \\x00", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{{RangeEnd: edgeAll, Target: pb.Compare_VERSION, Result: pb.Compare_GREATER}}})},

		// Txn ops.
		{name: "txn empty RequestOp in success", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{{}}})},
		{name: "txn empty RequestOp in the branch not taken", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{edgeCmpVersion("a", "", pb.Compare_GREATER, 0)}, Failure: []*pb.RequestOp{{}}})},
		{name: "txn empty RequestOp in a nested txn", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{{}}})}})},
		{name: "txn range with bad sort in a nested txn", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: 4})}})}})},
		{name: "txn empty compare key in a nested txn", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VERSION}}})}})},
		{name: "txn 100 compares with a nested txn of 28 gets", call: edgeTxn(&pb.TxnRequest{Compare: edgeCmps(100),
			Success: []*pb.RequestOp{edgeOpTxn(&pb.TxnRequest{Success: edgeGets(28, "a")})}})},
		{name: "txn 100 compares with a nested txn of 29 gets", call: edgeTxn(&pb.TxnRequest{Compare: edgeCmps(100),
			Success: []*pb.RequestOp{edgeOpTxn(&pb.TxnRequest{Success: edgeGets(29, "a")})}})},
		{name: "txn 128 gets in success and 129 in failure", call: edgeTxn(&pb.TxnRequest{Success: edgeGets(128, "a"), Failure: edgeGets(129, "a")})},
		{name: "txn nested 6 deep", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpTxn(&pb.TxnRequest{
				Success: []*pb.RequestOp{edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpPut("deep", "6")}})}})}})}})}})}})},
		{name: "txn same key put in two nested txns of one branch", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpPut("dup", "1")}}),
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpPut("dup", "2")}})}})},
		{name: "txn same key put in then and else of one nested txn", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpPut("dup", "1")}, Failure: []*pb.RequestOp{edgeOpPut("dup", "2")}})}})},
		{name: "txn put in nested txn and delete covering it at the outer level", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpPut("dup", "1")}}), edgeOpDel("d", "e")}})},
		{name: "txn delete in nested txn and put at the outer level", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("dup", "")}}), edgeOpPut("dup", "1")}})},
		{name: "txn put in an earlier nested txn, delete in a later one", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpPut("sib", "1")}}),
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("sib", "")}})}})},
		{name: "txn delete [a, c) and put b", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("a", "c"), edgeOpPut("b", "x")}})},
		{name: "txn delete inverted [c, a) and put b", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("c", "a"), edgeOpPut("b", "x")}})},
		{name: "txn delete [b, b) and put b", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("b", "b"), edgeOpPut("b", "y")}})},
		{name: "txn delete [b, b\\x00) and put b", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("b", "b\x00"), edgeOpPut("b", "z")}})},
		{name: "txn put then range then delete then range of one key through nested txns", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpPut("seq", "1")}}),
			edgeOpRange(&pb.RangeRequest{Key: []byte("seq")}),
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("seq", "")}}),
			edgeOpRange(&pb.RangeRequest{Key: []byte("seq")})}})},
		{name: "txn put with lease 999 in the branch not taken", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{edgeCmpVersion("a", "", pb.Compare_GREATER, 0)},
			Success: []*pb.RequestOp{edgeOpPut("t1", "x")},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t2"), Lease: 999}}}}})},
		{name: "txn put ignore_value on a missing key in a nested txn", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
			edgeOpPut("t3", "x"),
			edgeOpTxn(&pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}}}}})}})},
		{name: "txn range at revision MaxInt64", call: edgeTxn(&pb.TxnRequest{Success: []*pb.RequestOp{edgeOpRange(&pb.RangeRequest{Key: []byte("a"), Revision: math.MaxInt64})}})},
		{name: "txn with nothing", call: edgeTxn(&pb.TxnRequest{})},
		{name: "txn with only a failing compare and no ops", call: edgeTxn(&pb.TxnRequest{Compare: []*pb.Compare{edgeCmpVersion("a", "", pb.Compare_LESS, 0)}})},

		// Lease.
		{name: "grant lease -5", call: edgeGrant(-5, 600)},
		{name: "put with lease -5", call: edgePut(&pb.PutRequest{Key: []byte("neg"), Value: []byte("x"), Lease: -5})},
		{name: "time-to-live -5 with keys", call: edgeTimeToLive(-5, true)},
		{name: "keep-alive -5", call: edgeKeepAlive(-5)},
		{name: "revoke -5", call: edgeRevoke(-5)},
		{name: "get neg after revoking -5", call: edgeRange(&pb.RangeRequest{Key: []byte("neg")})},
		{name: "grant lease math.MinInt64", call: edgeGrant(math.MinInt64, 600)},
		{name: "revoke 0", call: edgeRevoke(0)},
		{name: "time-to-live 0", call: edgeTimeToLive(0, true)},
		{name: "keep-alive 0", call: edgeKeepAlive(0)},
		{name: "keep-alive of a lease that does not exist", call: edgeKeepAlive(12345)},
		{name: "grant lease 100 again", call: edgeGrant(100, 5)},
		{name: "grant lease 200 TTL 0", call: edgeGrant(200, 0)},
		{name: "revoke 200", call: edgeRevoke(200)},
		{name: "grant lease 201 TTL -10", call: edgeGrant(201, -10)},
		{name: "revoke 201", call: edgeRevoke(201)},
		{name: "grant lease 202 TTL MaxInt64", call: edgeGrant(202, math.MaxInt64)},
		{name: "time-to-live 100 without keys", call: edgeTimeToLive(100, false)},
		{name: "revoke 100 (deletes lease/2 at one revision)", call: edgeRevoke(100)},
		{name: "range lease/ after revoke", call: edgeRange(&pb.RangeRequest{Key: []byte("lease/"), RangeEnd: []byte("lease0")})},
		{name: "time-to-live 100 after revoke", call: edgeTimeToLive(100, true)},

		// Compact.
		{name: "compact MaxInt64", call: edgeCompact(&pb.CompactionRequest{Revision: math.MaxInt64})},
		{name: "compact MinInt64", call: edgeCompact(&pb.CompactionRequest{Revision: math.MinInt64})},
		{name: "compact 5 physical", call: edgeCompact(&pb.CompactionRequest{Revision: 5, Physical: true})},
		{name: "compact 5 again", call: edgeCompact(&pb.CompactionRequest{Revision: 5})},
		{name: "compact 4", call: edgeCompact(&pb.CompactionRequest{Revision: 4})},
		{name: "range at the compacted revision, count_only", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, Revision: 5, CountOnly: true})},
		{name: "range just above the compaction", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll, Revision: 6})},
		{name: "range below the compaction with bad sort (which error first)", call: edgeRange(&pb.RangeRequest{Key: edgeAll, Revision: 2, SortOrder: 9})},
		{name: "range below the compaction, serializable", call: edgeRange(&pb.RangeRequest{Key: edgeAll, Revision: 2, Serializable: true})},
		{name: "txn range below the compaction in the branch not taken", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{edgeCmpVersion("a", "", pb.Compare_GREATER, 0)},
			Failure: []*pb.RequestOp{edgeOpRange(&pb.RangeRequest{Key: []byte("a"), Revision: 2})}})},
		// Sizes: a read is never proposed, so etcd does not hold it to
		// --max-request-bytes (1.5 MiB), only to gRPC's limit 512 KiB above it.
		{name: "range with a 2.2 MiB key (over gRPC's limit)", call: edgeRange(&pb.RangeRequest{Key: []byte(strings.Repeat("k", 2_200_000))})},
		{name: "delete with a 1.6 MiB key", call: edgeDel(&pb.DeleteRangeRequest{Key: []byte(strings.Repeat("k", 1_600_000))})},
		{name: "txn writing with a 1.6 MiB compare key", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{cmpVersionBytes(strings.Repeat("k", 1_600_000))}, Success: []*pb.RequestOp{edgeOpPut("t4", "x")}})},
		{name: "watch with a 1.6 MiB key", transcript: watchLargeKey},
		{name: "watch fragment of 3.2 MiB of replayed events", transcript: watchFragment},
		{name: "alarm transcript", transcript: alarmTranscript},
		{name: "watch stream transcript", transcript: watchTranscript},
		{name: "range with a 1.6 MiB key (under gRPC's limit, over --max-request-bytes)", call: edgeRange(&pb.RangeRequest{Key: []byte(strings.Repeat("k", 1_600_000))})},
		{name: "read-only txn with a 1.6 MiB compare key", call: edgeTxn(&pb.TxnRequest{
			Compare: []*pb.Compare{cmpVersionBytes(strings.Repeat("k", 1_600_000))}, Success: []*pb.RequestOp{edgeOpRange(&pb.RangeRequest{Key: []byte("a")})}})},
		{name: "alarm: activate an alarm already raised", transcript: alarmActivateTwice},
		{name: "alarm: an alarm type outside the enum", transcript: alarmUnknownType},
		{name: "range stream (clientv3 GetStream) of every key", call: edgeGetStream("", clientv3.WithPrefix())},
		{name: "range stream with limit 2", call: edgeGetStream("", clientv3.WithPrefix(), clientv3.WithLimit(2))},
		{name: "range stream sorted by value", call: edgeGetStream("", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend))},
		{name: "range stream with min_mod_revision", call: edgeGetStream("", clientv3.WithPrefix(), clientv3.WithMinModRev(3))},
		{name: "range stream of one key at a compacted revision", call: edgeGetStream("a", clientv3.WithRev(2))},
		{name: "watch: progress request on a stream holding a compacted watch", transcript: watchProgressWithCompactedWatch},
		{name: "watch: progress request while a watch starts in the future, then that watch canceled", transcript: watchProgressDeferred},
		{name: "final whole store", call: edgeRange(&pb.RangeRequest{Key: edgeAll, RangeEnd: edgeAll})},
	}
}

// watchScript is one raw watch stream: each request is sent, then what the stream
// answers until it is quiet for a while is written to the transcript.
type watchScript struct {
	t      *testing.T
	ctx    context.Context
	cli    *clientv3.Client
	side   string
	stream pb.Watch_WatchClient
	resps  chan *pb.WatchResponse
	out    []string
	now    int64 // the store's revision when the stream opened
	// brief writes each response as its flags and its events' revisions, for
	// events too large to print.
	brief bool
}

func newWatchScript(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) *watchScript {
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("%s: opening a watch stream: %v", side, err)
	}
	w := &watchScript{t: t, ctx: ctx, cli: cli, side: side, stream: stream, resps: make(chan *pb.WatchResponse, 100)}
	go func() {
		defer close(w.resps)
		for {
			r, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					w.resps <- &pb.WatchResponse{CancelReason: "stream error: " + errString(err)}
				}
				return
			}
			w.resps <- r
		}
	}()
	resp, err := cli.Get(ctx, "a")
	if err != nil {
		t.Fatalf("%s: %v", side, err)
	}
	w.now = resp.Header.Revision
	return w
}

func (w *watchScript) collect(step string) {
	var got []string
	quiet := time.NewTimer(400 * time.Millisecond)
	defer quiet.Stop()
loop:
	for {
		select {
		case r, ok := <-w.resps:
			if !ok {
				break loop
			}
			if r.Header != nil {
				r.Header.ClusterId, r.Header.MemberId, r.Header.RaftTerm = 0, 0, 0
			}
			if w.brief {
				var evs []string
				for _, ev := range r.Events {
					evs = append(evs, fmt.Sprintf("%s %q@%d (%d bytes)", ev.Type, ev.Kv.Key, ev.Kv.ModRevision, len(ev.Kv.Value)))
				}
				got = append(got, fmt.Sprintf("id=%d created=%v canceled=%v fragment=%v compact=%d events=[%s]",
					r.WatchId, r.Created, r.Canceled, r.Fragment, r.CompactRevision, strings.Join(evs, ", ")))
				quiet.Reset(400 * time.Millisecond)
				continue
			}
			got = append(got, strings.ReplaceAll(format(r), "\n", " "))
			quiet.Reset(400 * time.Millisecond)
		case <-quiet.C:
			break loop
		}
	}
	// Responses to different watches may come in either order.
	slices.Sort(got)
	w.out = append(w.out, step+":")
	for _, g := range got {
		w.out = append(w.out, "  "+g)
	}
}

func (w *watchScript) send(step string, req *pb.WatchRequest) {
	if err := w.stream.Send(req); err != nil {
		// The stream ended; what it said is in the responses collected.
		w.out = append(w.out, fmt.Sprintf("%s: send: %v", step, err))
	}
	w.collect(step)
}

func (w *watchScript) create(step string, c *pb.WatchCreateRequest) {
	w.send(step, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
}

func (w *watchScript) cancel(step string, id int64) {
	w.send(step, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}

func (w *watchScript) progress(step string) {
	w.send(step, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

func (w *watchScript) put(step, key, value string) {
	if _, err := edgeKV(w.cli).Put(w.ctx, &pb.PutRequest{Key: []byte(key), Value: []byte(value)}); err != nil {
		w.t.Fatalf("%s: %s: %v", w.side, step, err)
	}
	w.collect(step)
}

func (w *watchScript) compact(step string, rev int64) {
	_, err := edgeKV(w.cli).Compact(w.ctx, &pb.CompactionRequest{Revision: rev})
	w.out = append(w.out, fmt.Sprintf("%s: %s", step, orNone(errString(err))))
}

func (w *watchScript) transcript() string { return strings.Join(w.out, "\n") }

// watchTranscript sends create, cancel and progress requests clientv3 never sends
// on one raw watch stream, with writes between them.
func watchTranscript(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	w := newWatchScript(ctx, t, cli, side)
	w.progress("progress request with no watch")
	w.cancel("cancel of a watch id never used", 77)
	w.send("create request with no body", &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{}})
	w.send("cancel request with no body", &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{}})
	w.send("progress request with no body", &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{}})
	w.send("request with nothing", &pb.WatchRequest{})
	w.create("create with empty key", &pb.WatchCreateRequest{})
	w.create("create with empty key and range_end \\x00", &pb.WatchCreateRequest{RangeEnd: edgeAll})
	w.create("create with watch_id 5", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: 5})
	w.create("create with watch_id 5 again", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: 5})
	w.create("create with auto id (2)", &pb.WatchCreateRequest{Key: []byte("w")})
	w.create("create with watch_id 3", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: 3})
	w.create("create with auto id (4)", &pb.WatchCreateRequest{Key: []byte("w")})
	w.create("create with auto id (5 taken: 6)", &pb.WatchCreateRequest{Key: []byte("w")})
	w.create("create with watch_id -5", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: -5, PrevKv: true})
	w.create("create with watch_id -1", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: -1})
	w.create("create inverted range", &pb.WatchCreateRequest{Key: []byte("z"), RangeEnd: []byte("a")})
	w.create("create range_end equal to key", &pb.WatchCreateRequest{Key: []byte("w"), RangeEnd: []byte("w"), WatchId: 40})
	w.create("create start_revision -3", &pb.WatchCreateRequest{Key: []byte("w"), StartRevision: -3, WatchId: 41})
	w.create("create compacted start_revision 2", &pb.WatchCreateRequest{Key: []byte("w"), StartRevision: 2, WatchId: 42})
	w.cancel("cancel the compacted watch", 42)
	w.create("create unknown filter 5 and both filters", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: 43,
		Filters: []pb.WatchCreateRequest_FilterType{5, pb.WatchCreateRequest_NOPUT, pb.WatchCreateRequest_NODELETE}})
	w.create("create progress_notify fragment prev_kv", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: 44, ProgressNotify: true, Fragment: true, PrevKv: true})
	w.put("put w", "w", "1")
	w.progress("progress request, all synced")
	w.cancel("cancel 5", 5)
	w.cancel("cancel 5 again", 5)
	w.cancel("cancel -5", -5)
	w.cancel("cancel -1", -1)
	w.create("create with watch_id 5 after its cancel, from the last write", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: 5, StartRevision: w.now + 1})
	w.create("create start_revision in the future", &pb.WatchCreateRequest{Key: []byte("w"), WatchId: 50, StartRevision: w.now + 100})
	w.cancel("cancel the future watch", 50)
	w.progress("progress request, all synced again")
	w.put("put w again", "w", "2")
	return w.transcript()
}

// watchLargeKey: a watch create request is not proposed either.
func watchLargeKey(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	w := newWatchScript(ctx, t, cli, side)
	w.create("create on a 1.6 MiB key", &pb.WatchCreateRequest{Key: []byte(strings.Repeat("k", 1_600_000))})
	return w.transcript()
}

// watchFragment: events of 3 MiB in all, replayed to a watch from a past revision,
// with and without fragment.
func watchFragment(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	w := newWatchScript(ctx, t, cli, side)
	w.brief = true
	for i := range 4 {
		w.put(fmt.Sprintf("put big/%d", i), fmt.Sprintf("big/%d", i), strings.Repeat("v", 800_000))
	}
	w.create("create from before the puts, fragment", &pb.WatchCreateRequest{Key: []byte("big/"), RangeEnd: []byte("big0"),
		StartRevision: w.now + 1, Fragment: true, WatchId: 1})
	w.create("create from before the puts, no fragment", &pb.WatchCreateRequest{Key: []byte("big/"), RangeEnd: []byte("big0"),
		StartRevision: w.now + 1, WatchId: 2})
	r, err := edgeKV(cli).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{edgeOpDel("big/", "big0")}})
	if err != nil {
		t.Fatalf("%s: %v", side, err)
	}
	_ = r
	w.collect("delete every big/ key in one txn")
	return w.transcript()
}

// alarmScript is a sequence of Maintenance Alarm requests and other calls on one
// side, written out with the member's own id as 1.
type alarmScript struct {
	ctx  context.Context
	cli  *clientv3.Client
	self uint64
	out  []string
}

func newAlarmScript(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) *alarmScript {
	st, err := cli.Get(ctx, "a")
	if err != nil {
		t.Fatalf("%s: %v", side, err)
	}
	return &alarmScript{ctx: ctx, cli: cli, self: st.Header.MemberId}
}

func (a *alarmScript) say(step string, m proto.Message, err error) {
	if err != nil {
		a.out = append(a.out, fmt.Sprintf("%s: %s", step, errString(err)))
		return
	}
	if r, ok := m.(*pb.AlarmResponse); ok {
		for _, al := range r.Alarms {
			if al.MemberID == a.self {
				al.MemberID = 1
			}
		}
		// etcd lists alarms from a map: their order is not part of the answer.
		slices.SortFunc(r.Alarms, func(x, y *pb.AlarmMember) int {
			return cmp.Or(cmp.Compare(x.MemberID, y.MemberID), cmp.Compare(x.Alarm, y.Alarm))
		})
		if r.Header != nil {
			r.Header.ClusterId, r.Header.MemberId, r.Header.RaftTerm = 0, 0, 0
		}
	}
	normalizeLeaseResponse(m, identity)
	a.out = append(a.out, fmt.Sprintf("%s: %s", step, strings.ReplaceAll(format(m), "\n", " ")))
}

func (a *alarmScript) alarm(step string, action pb.AlarmRequest_AlarmAction, member uint64, kind pb.AlarmType) {
	r, err := pb.NewMaintenanceClient(a.cli.ActiveConnection()).Alarm(a.ctx, &pb.AlarmRequest{Action: action, MemberID: member, Alarm: kind}, grpc.WaitForReady(true))
	a.say(step, r, err)
}

// alarmActivateTwice: etcd's AlarmStore.Activate returns the alarm already raised,
// and etcd answers with it.
func alarmActivateTwice(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	a := newAlarmScript(ctx, t, cli, side)
	a.alarm("activate NOSPACE", pb.AlarmRequest_ACTIVATE, a.self, pb.AlarmType_NOSPACE)
	a.alarm("activate NOSPACE again", pb.AlarmRequest_ACTIVATE, a.self, pb.AlarmType_NOSPACE)
	a.alarm("deactivate NOSPACE", pb.AlarmRequest_DEACTIVATE, a.self, pb.AlarmType_NOSPACE)
	return strings.Join(a.out, "\n")
}

// alarmUnknownType: an alarm type outside the enum (9) is kept, listed and cleared
// like the named ones, beside a NOSPACE alarm of the same member.
func alarmUnknownType(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	a := newAlarmScript(ctx, t, cli, side)
	a.alarm("activate alarm type 9", pb.AlarmRequest_ACTIVATE, a.self, 9)
	a.alarm("get all", pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
	a.alarm("activate NOSPACE", pb.AlarmRequest_ACTIVATE, a.self, pb.AlarmType_NOSPACE)
	a.alarm("get all", pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
	a.alarm("deactivate NOSPACE", pb.AlarmRequest_DEACTIVATE, a.self, pb.AlarmType_NOSPACE)
	a.alarm("get all", pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
	a.alarm("deactivate alarm type 9", pb.AlarmRequest_DEACTIVATE, a.self, 9)
	a.alarm("get all", pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
	return strings.Join(a.out, "\n")
}

// alarmTranscript raises and clears alarms through the Maintenance API, with
// writes, reads and lease grants between: the member's own id is written "self".
func alarmTranscript(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	as := newAlarmScript(ctx, t, cli, side)
	self, say, alarm := as.self, as.say, as.alarm
	put := func(step, key string) {
		r, err := edgeKV(cli).Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte("v")})
		say(step, r, err)
	}
	alarm("get, none", pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
	alarm("activate NONE for self", pb.AlarmRequest_ACTIVATE, self, pb.AlarmType_NONE)
	alarm("activate NOSPACE for member 0xbad", pb.AlarmRequest_ACTIVATE, 0xbad, pb.AlarmType_NOSPACE)
	alarm("get after activating for an unknown member", pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
	alarm("deactivate NOSPACE not raised", pb.AlarmRequest_DEACTIVATE, self, pb.AlarmType_NOSPACE)
	// Not sent: an action outside the enum, which etcd 3.7.3's applier answers with
	// a nil response that its gRPC handler dereferences (maintenance.go, Alarm), a
	// panic that ends the test binary.
	alarm("activate NOSPACE for self", pb.AlarmRequest_ACTIVATE, self, pb.AlarmType_NOSPACE)
	alarm("get NOSPACE", pb.AlarmRequest_GET, 0, pb.AlarmType_NOSPACE)
	alarm("get CORRUPT", pb.AlarmRequest_GET, 0, pb.AlarmType_CORRUPT)
	put("put under NOSPACE", "alarm/1")
	r1, err := edgeKV(cli).Range(ctx, &pb.RangeRequest{Key: []byte("a")})
	say("range under NOSPACE", r1, err)
	r2, err := edgeKV(cli).DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("alarm/0")})
	say("delete under NOSPACE", r2, err)
	r3, err := edgeKV(cli).Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{edgeOpRange(&pb.RangeRequest{Key: []byte("a")})}})
	say("read-only txn under NOSPACE", r3, err)
	r4, err := edgeKV(cli).Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{edgeCmpVersion("a", "", pb.Compare_LESS, 0)},
		Failure: []*pb.RequestOp{edgeOpRange(&pb.RangeRequest{Key: []byte("a")})}, Success: []*pb.RequestOp{edgeOpPut("alarm/2", "v")}})
	say("txn with a put in the branch not taken under NOSPACE", r4, err)
	r5, err := edgeLease(cli).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 300, TTL: 600})
	say("lease grant under NOSPACE", r5, err)
	r6, err := edgeLease(cli).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 300})
	say("lease revoke under NOSPACE", r6, err)
	r7, err := edgeKV(cli).Compact(ctx, &pb.CompactionRequest{Revision: 6})
	say("compact under NOSPACE", r7, err)
	alarm("deactivate NOSPACE for member 0xbad", pb.AlarmRequest_DEACTIVATE, 0xbad, pb.AlarmType_NOSPACE)
	alarm("deactivate NOSPACE for self", pb.AlarmRequest_DEACTIVATE, self, pb.AlarmType_NOSPACE)
	put("put after NOSPACE", "alarm/3")
	alarm("get at the end", pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
	return strings.Join(as.out, "\n")
}

// watchProgressWithCompactedWatch: a watch created at a compacted revision gets its
// compaction response and stays on the stream (the client does not cancel it).
// etcd 3.7.3 then answers no progress request on the stream (the watcher is in
// neither its synced nor its unsynced group, progressIfSync returns false).
func watchProgressWithCompactedWatch(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	w := newWatchScript(ctx, t, cli, side)
	w.put("put w", "w", "1")
	w.put("put w", "w", "2")
	w.compact("compact at the last write", w.now+2)
	w.create("create at a compacted revision", &pb.WatchCreateRequest{Key: []byte("w"), StartRevision: w.now + 1})
	w.progress("progress request")
	return w.transcript()
}

// watchProgressDeferred: a progress request while a watch on the stream starts in
// the future. etcd 3.7.3 drops it (RequestProgressAll finds a watcher not synced,
// and nothing remembers the request), so nothing answers it, even once the future
// watch is canceled.
func watchProgressDeferred(ctx context.Context, t *testing.T, cli *clientv3.Client, side string) string {
	w := newWatchScript(ctx, t, cli, side)
	w.create("create from now", &pb.WatchCreateRequest{Key: []byte("w")})
	w.create("create in the future", &pb.WatchCreateRequest{Key: []byte("w"), StartRevision: w.now + 100})
	w.progress("progress request")
	w.cancel("cancel the future watch", 1)
	w.put("put w", "w", "1")
	return w.transcript()
}

// runEdgeCases starts an embedded etcd and a raftkv cluster of members (through a
// follower if more than one), writes edgeSetup to both, runs cases and fails each
// case whose answers differ.
func runEdgeCases(t *testing.T, members int, cases []edgeCase) {
	oracle := newClient(t, startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 }))
	ms := startRaftkv(t, members, 0)
	subject := ms[0]
	if members > 1 {
		subject = follower(t, ms)
	}
	cli := newClient(t, hostPort(subject.clientURL))
	ttl := &leaseDiff{slack: 2 * time.Second}
	run := func(c edgeCase) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if c.transcript != nil {
			// Each side waits out a quiet period per step: a context of its own.
			ctx1, cancel1 := context.WithTimeout(context.Background(), time.Minute)
			defer cancel1()
			want := c.transcript(ctx1, t, oracle, "etcd")
			ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
			defer cancel2()
			got := c.transcript(ctx2, t, cli, "raftkv")
			if want != got {
				t.Errorf("%s: transcripts differ\netcd:\n%s\nraftkv:\n%s", c.name, want, got)
				return false
			}
			if *diffLog {
				t.Logf("%s: both answered\n%s", c.name, want)
			}
			return true
		}
		want, wantErr := c.call(ctx, oracle)
		got, gotErr := c.call(ctx, cli)
		if ws, gs := errString(wantErr), errString(gotErr); ws != gs {
			t.Errorf("%s: errors differ\n  etcd:   %s\n  raftkv: %s\n  raftkv response: %s", c.name, orNone(ws), orNone(gs), format(got))
			return false
		}
		if wantErr != nil {
			return true
		}
		normalizeLeaseResponse(want, identity)
		normalizeLeaseResponse(got, identity)
		if msg := ttl.compareRemainingTTL(want, got); msg != "" {
			t.Errorf("%s: %s", c.name, msg)
			return false
		}
		if !proto.Equal(want, got) {
			t.Errorf("%s: responses differ\netcd:\n%s\nraftkv:\n%s", c.name, format(want), format(got))
			return false
		}
		return true
	}
	for _, c := range edgeSetup {
		if !run(c) {
			t.Fatalf("setup step %q differs; the cases cannot run", c.name)
		}
	}
	matched := 0
	for _, c := range cases {
		if run(c) {
			matched++
		}
	}
	t.Logf("%d of %d cases matched", matched, len(cases))
}

// TestDiffEdge sends the edge cases (edgeCases) to an embedded etcd and to raftkv,
// one member and then a follower of three, and requires the same answers.
func TestDiffEdge(t *testing.T) {
	t.Parallel()
	for _, members := range []int{1, 3} {
		t.Run(fmt.Sprintf("members=%d", members), func(t *testing.T) {
			runEdgeCases(t, members, edgeCases())
		})
	}
}
