package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

// Exactly-once metadata: a client that sends both keys has a retried request with the
// same pair answered from the session table instead of applied again. Sequence numbers
// of one client id must increase, one request at a time.
const (
	MetadataClientID = "raftkv-client-id"
	MetadataSequence = "raftkv-seq"
)

type kvService struct {
	pb.UnimplementedKVServer
	s *Server
}

func (k *kvService) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	// No --max-request-bytes check: as in etcd, it bounds what is proposed through
	// Raft, and a read is not; gRPC's own limit (MaxRequestBytes plus
	// grpcOverheadBytes) still bounds the request.
	if !r.Serializable {
		if err := k.s.linearizableRead(ctx); err != nil {
			return nil, toGRPC(err)
		}
	}
	sender, err := k.s.sender(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	resp, err := k.s.sm.store.RangeAs(sender, rangeFromPB(r), int64(k.s.cfg.MaxResponseBytes))
	if err != nil {
		return nil, toGRPC(err)
	}
	return rangeToPB(k.s.header(), resp), nil
}

func (k *kvService) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	res, err := k.write(ctx, r, &kv.Command{Put: putFromPB(r)})
	if err != nil {
		return nil, err
	}
	return putToPB(k.s.header(), res.Put), nil
}

func (k *kvService) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	res, err := k.write(ctx, r, &kv.Command{DeleteRange: deleteFromPB(r)})
	if err != nil {
		return nil, err
	}
	return deleteToPB(k.s.header(), res.DeleteRange), nil
}

func (k *kvService) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	txn := txnFromPB(r)
	if kv.IsTxnReadOnly(txn) {
		// Not proposed, so not held to --max-request-bytes (as Range).
		if err := k.s.sm.store.Check(&kv.Command{Txn: txn}); err != nil {
			return nil, toGRPC(err)
		}
		if !isSerializableTxn(txn) {
			if err := k.s.linearizableRead(ctx); err != nil {
				return nil, toGRPC(err)
			}
		}
		sender, err := k.s.sender(ctx)
		if err != nil {
			return nil, toGRPC(err)
		}
		resp, err := k.s.sm.store.TxnAs(sender, txn, int64(k.s.cfg.MaxResponseBytes))
		if err != nil {
			return nil, toGRPC(err)
		}
		return txnToPB(k.s.header(), resp), nil
	}
	res, err := k.write(ctx, r, &kv.Command{Txn: txn})
	if err != nil {
		return nil, err
	}
	return txnToPB(k.s.header(), res.Txn), nil
}

// isSerializableTxn: etcd serves a read-only txn locally when every range in it asks
// for serializable reads.
func isSerializableTxn(t *kv.TxnRequest) bool {
	for _, ops := range [2][]kv.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			if op.Range != nil && !op.Range.Serializable {
				return false
			}
		}
	}
	return true
}

func (k *kvService) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	res, err := k.write(ctx, r, &kv.Command{Compact: &kv.CompactionRequest{Revision: r.Revision, Physical: r.Physical}})
	if err != nil {
		return nil, err
	}
	return &pb.CompactionResponse{Header: k.s.header().pb(res.Compact.Header.Revision)}, nil
}

// write checks a request, replicates it and returns the state machine's result.
// Nothing is proposed for a request that fails its checks, so nothing is half-applied.
// The command names its sender; whether the sender may write is decided where it
// applies (kv's auth_check.go), as etcd does.
func (k *kvService) write(ctx context.Context, req proto.Message, cmd *kv.Command) (kv.Result, error) {
	if err := k.checkSize(req); err != nil {
		return kv.Result{}, err
	}
	if err := k.s.sm.store.Check(cmd); err != nil {
		return kv.Result{}, toGRPC(err)
	}
	if err := k.s.checkQuota(ctx, cmd); err != nil {
		return kv.Result{}, err
	}
	clientID, seq, err := sessionFromMetadata(ctx)
	if err != nil {
		return kv.Result{}, err
	}
	cmd.ClientID, cmd.Seq = clientID, seq
	if cmd.Sender, err = k.s.sender(ctx); err != nil {
		return kv.Result{}, toGRPC(err)
	}
	payload, err := cmd.Encode()
	if err != nil {
		return kv.Result{}, toGRPC(err)
	}
	res, err := k.s.propose(ctx, kindKV, payload)
	if err != nil {
		return kv.Result{}, toGRPC(err)
	}
	if res.Err != nil {
		return kv.Result{}, toGRPC(res.Err)
	}
	if kind, same := sameKind(cmd, res); !same {
		// The session table answered with the result of the request this client
		// sent with that sequence number first, which was of another kind.
		return kv.Result{}, status.Errorf(codes.InvalidArgument,
			"raftkv: %s %d of %s %d was a %s; a retry must repeat its request, and a new request take the next sequence number",
			MetadataSequence, seq, MetadataClientID, clientID, kind)
	}
	return res, nil
}

// sameKind reports whether res answers a command of cmd's kind, and if not, the
// kind it answers.
func sameKind(cmd *kv.Command, res kv.Result) (resKind string, same bool) {
	switch {
	case res.Put != nil:
		return "put", cmd.Put != nil
	case res.DeleteRange != nil:
		return "delete", cmd.DeleteRange != nil
	case res.Txn != nil:
		return "txn", cmd.Txn != nil
	case res.Compact != nil:
		return "compaction", cmd.Compact != nil
	case res.LeaseGrant != nil:
		return "lease grant", cmd.LeaseGrant != nil
	case res.LeaseRevoke != nil:
		return "lease revoke", cmd.LeaseRevoke != nil
	case res.LeaseCheckpoint != nil:
		return "lease checkpoint", cmd.LeaseCheckpoint != nil
	}
	return "request of another kind", false
}

func (k *kvService) checkSize(req proto.Message) error {
	if proto.Size(req) > k.s.cfg.MaxRequestBytes {
		return rpctypes.ErrGRPCRequestTooLarge
	}
	return nil
}

func sessionFromMetadata(ctx context.Context) (clientID, seq uint64, err error) {
	// ValueFromIncomingContext looks the two keys up; FromIncomingContext would copy
	// every header of every write first (1.7% of a leader's CPU under put-100c).
	ids, seqs := metadata.ValueFromIncomingContext(ctx, MetadataClientID), metadata.ValueFromIncomingContext(ctx, MetadataSequence)
	if len(ids) == 0 && len(seqs) == 0 {
		return 0, 0, nil
	}
	if len(ids) != 1 || len(seqs) != 1 {
		return 0, 0, status.Errorf(codes.InvalidArgument,
			"raftkv: send exactly one %s and one %s, or neither (got %d and %d)", MetadataClientID, MetadataSequence, len(ids), len(seqs))
	}
	clientID, err1 := strconv.ParseUint(ids[0], 10, 64)
	seq, err2 := strconv.ParseUint(seqs[0], 10, 64)
	if err1 != nil || err2 != nil || clientID == 0 || seq == 0 {
		return 0, 0, status.Errorf(codes.InvalidArgument,
			"raftkv: %s=%q and %s=%q must be positive decimal integers", MetadataClientID, ids[0], MetadataSequence, seqs[0])
	}
	return clientID, seq, nil
}

// toGRPC maps an error to the gRPC status etcd would return, so etcd clients
// recognise it (clientv3 matches on these messages).
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, kv.ErrRefusedNoSpace):
		return rpctypes.ErrGRPCNoSpace
	case errors.Is(err, kv.ErrRefusedCorrupt):
		return rpctypes.ErrGRPCCorrupt
	case errors.Is(err, kv.ErrEmptyKey):
		return rpctypes.ErrGRPCEmptyKey
	case errors.Is(err, kv.ErrKeyNotFound):
		return rpctypes.ErrGRPCKeyNotFound
	case errors.Is(err, kv.ErrValueProvided):
		return rpctypes.ErrGRPCValueProvided
	case errors.Is(err, kv.ErrLeaseProvided):
		return rpctypes.ErrGRPCLeaseProvided
	case errors.Is(err, kv.ErrTooManyOps):
		return rpctypes.ErrGRPCTooManyOps
	case errors.Is(err, kv.ErrDuplicateKey):
		return rpctypes.ErrGRPCDuplicateKey
	case errors.Is(err, kv.ErrInvalidSortOption):
		return rpctypes.ErrGRPCInvalidSortOption
	case errors.Is(err, kv.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, kv.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, kv.ErrRequestTooLarge):
		return rpctypes.ErrGRPCRequestTooLarge
	case errors.Is(err, kv.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, kv.ErrLeaseExists):
		return rpctypes.ErrGRPCLeaseExist
	case errors.Is(err, kv.ErrLeaseTTLTooLarge):
		return rpctypes.ErrGRPCLeaseTTLTooLarge
	case errors.Is(err, errNoLeader):
		return rpctypes.ErrGRPCNoLeader
	case errors.Is(err, errInvalidAuthToken):
		return rpctypes.ErrGRPCInvalidAuthToken
	case errors.Is(err, errPasswordTooLong):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errTimeout):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, errTimeoutDueToLeaderFail):
		return rpctypes.ErrGRPCTimeoutDueToLeaderFail
	case errors.Is(err, errTimeoutDueToConnectionLost):
		return rpctypes.ErrGRPCTimeoutDueToConnectionLost
	case errors.Is(err, errCanceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, errLostEntry):
		return rpctypes.ErrGRPCLeaderChanged
	case errors.Is(err, errStopped):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, errTooManyRequests):
		return rpctypes.ErrGRPCRequestTooManyRequests
	case errors.Is(err, errProposalExpired):
		// Not applied, and safe to send again: what Unavailable tells clients.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, kv.ErrStaleSequence):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	if grpcErr, ok := authErrors[err]; ok {
		return grpcErr
	}
	var tooLarge *kv.ResponseTooLargeError
	if errors.As(err, &tooLarge) {
		return responseTooLarge(tooLarge)
	}
	return status.Error(codes.Unknown, err.Error())
}

// responseTooLarge is the answer to a read over MaxResponseBytes. ResourceExhausted is
// the code gRPC gives a message over its own limit, which is what etcd answers past
// 2 GiB; the message says what to do instead.
func responseTooLarge(e *kv.ResponseTooLargeError) error {
	if e.Lease != 0 {
		return status.Errorf(codes.ResourceExhausted,
			"raftkv: the keys of lease %x would take at least %d bytes of the response, over --max-response-bytes (%d); "+
				"ask for the lease's time to live without its keys (no --keys), or raise --max-response-bytes", e.Lease, e.Bytes, e.Limit)
	}
	what := fmt.Sprintf("the response would carry %d bytes of keys and values", e.Bytes)
	if e.SortByValue {
		what = fmt.Sprintf("sorting by value would read %d bytes of keys and values into memory", e.Bytes)
	}
	return status.Errorf(codes.ResourceExhausted,
		"raftkv: %s, over --max-response-bytes (%d); read the range in pages (a --limit per request, "+
			"each page starting just after the last key of the one before), or raise --max-response-bytes", what, e.Limit)
}

// authErrors are the gRPC statuses etcd answers the auth errors with.
var authErrors = map[error]error{
	kv.ErrRootUserNotExist:     rpctypes.ErrGRPCRootUserNotExist,
	kv.ErrRootRoleNotExist:     rpctypes.ErrGRPCRootRoleNotExist,
	kv.ErrUserAlreadyExist:     rpctypes.ErrGRPCUserAlreadyExist,
	kv.ErrUserEmpty:            rpctypes.ErrGRPCUserEmpty,
	kv.ErrUserNotFound:         rpctypes.ErrGRPCUserNotFound,
	kv.ErrRoleAlreadyExist:     rpctypes.ErrGRPCRoleAlreadyExist,
	kv.ErrRoleNotFound:         rpctypes.ErrGRPCRoleNotFound,
	kv.ErrRoleEmpty:            rpctypes.ErrGRPCRoleEmpty,
	kv.ErrAuthFailed:           rpctypes.ErrGRPCAuthFailed,
	kv.ErrPermissionNotGiven:   rpctypes.ErrGRPCPermissionNotGiven,
	kv.ErrPermissionDenied:     rpctypes.ErrGRPCPermissionDenied,
	kv.ErrRoleNotGranted:       rpctypes.ErrGRPCRoleNotGranted,
	kv.ErrPermissionNotGranted: rpctypes.ErrGRPCPermissionNotGranted,
	kv.ErrAuthNotEnabled:       rpctypes.ErrGRPCAuthNotEnabled,
	kv.ErrInvalidAuthMgmt:      rpctypes.ErrGRPCInvalidAuthMgmt,
	kv.ErrAuthOldRevision:      rpctypes.ErrGRPCAuthOldRevision,
}
