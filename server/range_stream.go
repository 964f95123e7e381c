package server

import (
	"math"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

// RangeStream answers etcd 3.7's streamed Range (clientv3's GetStream): the keys of
// the range in chunks, each a Range of the next keys at one revision, so that no
// single message holds the whole answer. Merged (proto.Merge), the chunks are the
// answer Range would give: each chunk carries the next keys; the last one alone
// carries the header, More and Count. The chunks read at the revision asked for, or
// else at the store's revision as the stream starts, so writes made while it runs
// are not seen; the header names the store's revision as the stream starts, as
// Range's names the store's revision.
//
// As etcd's, it sorts only by key ascending and has no revision filters: either
// asked for is Unimplemented, after Range's own checks (empty key, a sort option
// that does not exist).
func (k *kvService) RangeStream(r *pb.RangeRequest, rs pb.KV_RangeStreamServer) error {
	if err := checkRangeStream(r); err != nil {
		return err
	}
	ctx := rs.Context()
	if !r.Serializable {
		if err := k.s.linearizableRead(ctx); err != nil {
			return toGRPC(err)
		}
	}
	sender, err := k.s.sender(ctx)
	if err != nil {
		return toGRPC(err)
	}
	req := rangeFromPB(r)
	if req.CountOnly {
		resp, err := k.s.sm.store.RangeAs(sender, req, int64(k.s.cfg.MaxResponseBytes))
		if err != nil {
			return toGRPC(err)
		}
		return rs.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{
			Header: k.s.header().pb(resp.Header.Revision), Count: resp.Count}})
	}
	total := r.Limit
	if total <= 0 {
		total = math.MaxInt64 // no limit, as in Range
	}
	target := rangeStreamChunkBytes(k.s.cfg.MaxRequestBytes)
	chunk := int64(rangeStreamFirstChunk)
	var (
		sent      int64 // keys sent in the chunks before this one
		headerRev int64 // the store's revision as the stream starts, as Range's header
	)
	// Permission is checked once, with the first chunk, as etcd checks it once for
	// the stream (doSerialize); the later chunks read unchecked, and an auth change
	// made meanwhile fails the stream only after its last chunk, as etcd's does.
	reader := sender
	for {
		req.Limit = min(chunk, total-sent)
		resp, err := k.s.sm.store.RangeAs(reader, req, int64(k.s.cfg.MaxResponseBytes))
		reader = kv.AuthInfo{Member: true}
		if err != nil {
			return toGRPC(err)
		}
		if headerRev == 0 {
			headerRev = resp.Header.Revision
			if req.Revision == 0 {
				req.Revision = headerRev // every later chunk reads here
			}
		}
		out := &pb.RangeResponse{Kvs: kvsToPB(resp.Kvs)}
		n := int64(len(resp.Kvs))
		last := !resp.More || sent+n >= total
		if last {
			// resp.Count counts the range from this chunk's first key on.
			out.Header, out.More, out.Count = k.s.header().pb(headerRev), resp.More, sent+resp.Count
		}
		if err := rs.Send(&pb.RangeStreamResponse{RangeResponse: out}); err != nil {
			return err
		}
		if last {
			if _, rev := k.s.sm.store.AuthStatus(); sender.Revision != 0 && sender.Revision != rev {
				return rpctypes.ErrGRPCAuthOldRevision
			}
			return nil
		}
		sent += n
		req.Key = append(slices.Clip(resp.Kvs[n-1].Key), 0) // the key after the last one sent
		chunk = nextRangeStreamChunk(chunk, n, proto.Size(out), target)
	}
}

// rangeStreamFirstChunk is how many keys the first chunk asks for: small, so that
// a short range answers in one message at once, and the chunks after it grow to
// the target size (nextRangeStreamChunk).
const rangeStreamFirstChunk = 10

// rangeStreamChunkBytes is the size a chunk aims at: --max-request-bytes (1.5 MiB by
// default), as etcd's, within [64 KiB, 4 MiB].
func rangeStreamChunkBytes(maxRequestBytes int) int {
	return min(max(maxRequestBytes, 64<<10), 4<<20)
}

// nextRangeStreamChunk sizes the next chunk from the last one's keys and bytes: as
// many keys as fit the target at the last chunk's bytes per key, at most four times
// the last chunk's count (keys later in the range may be larger), at least one.
func nextRangeStreamChunk(last, keys int64, bytes, target int) int64 {
	if keys == 0 || bytes <= 0 {
		return last
	}
	perKey := max(int64(bytes)/keys, 1)
	return min(max(int64(target)/perKey, 1), 4*last)
}

// checkRangeStream refuses what RangeStream does not serve, with etcd's errors in
// etcd's order: Range's own checks first.
func checkRangeStream(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if r.SortOrder != pb.RangeRequest_NONE && !(r.SortTarget == pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_ASCEND) {
		return status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		return status.Error(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	return nil
}
