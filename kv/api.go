package kv

// This file holds the request and response types. They mirror the fields of
// etcd's etcdserverpb and mvccpb messages that the KV service uses, with the same
// names and the same enum numbers, so the server converts them field by field.
// Byte slices in responses are shared with the store and with other responses:
// treat them as read-only.

// KeyValue mirrors mvccpb.KeyValue: one version of one key.
type KeyValue struct {
	Key []byte
	// CreateRevision is the revision of the put that created the key (the start of
	// its current generation).
	CreateRevision int64
	// ModRevision is the revision of the last put to the key.
	ModRevision int64
	// Version counts the puts since the key was created: 1 on creation. A delete
	// ends the generation, and the next put starts again at 1.
	Version int64
	Value   []byte
	// Lease is the lease the key is attached to, 0 for none. A put may name only a
	// lease that exists; revoking the lease deletes the key (lease.go).
	Lease int64
}

// ResponseHeader mirrors the part of etcdserverpb.ResponseHeader that the state
// machine knows; the server fills in cluster id, member id and raft term.
type ResponseHeader struct {
	Revision int64
}

// SortOrder mirrors RangeRequest.SortOrder.
type SortOrder int32

// Sort orders, numbered as in etcd.
const (
	SortNone    SortOrder = 0
	SortAscend  SortOrder = 1
	SortDescend SortOrder = 2
)

// SortTarget mirrors RangeRequest.SortTarget.
type SortTarget int32

// Sort targets, numbered as in etcd.
const (
	SortByKey     SortTarget = 0
	SortByVersion SortTarget = 1
	SortByCreate  SortTarget = 2
	SortByMod     SortTarget = 3
	SortByValue   SortTarget = 4
)

// RangeRequest mirrors etcdserverpb.RangeRequest.
//
// RangeEnd selects the keys, as in etcd: empty means Key alone; "\x00" means every
// key >= Key; anything else means [Key, RangeEnd), which is empty when RangeEnd <= Key.
type RangeRequest struct {
	Key      []byte
	RangeEnd []byte
	// Limit caps the number of keys returned; 0 or less means no cap.
	Limit int64
	// Revision reads the store as of that revision; 0 or less means the current one.
	Revision   int64
	SortOrder  SortOrder
	SortTarget SortTarget
	// Serializable is carried for the server, which decides how to read; the
	// state machine answers the same either way.
	Serializable bool
	KeysOnly     bool
	CountOnly    bool
	// The revision filters drop keys outside [Min, Max] after the count is taken;
	// 0 means no bound.
	MinModRevision    int64
	MaxModRevision    int64
	MinCreateRevision int64
	MaxCreateRevision int64
}

// RangeResponse mirrors etcdserverpb.RangeResponse.
type RangeResponse struct {
	Header ResponseHeader
	Kvs    []KeyValue
	// More says that Limit cut keys off the result.
	More bool
	// Count is the number of keys in the range at the read revision, before Limit
	// and before the revision filters, as in etcd.
	Count int64
}

// PutRequest mirrors etcdserverpb.PutRequest.
type PutRequest struct {
	Key   []byte
	Value []byte
	Lease int64
	// PrevKv asks for the key's value before the put in the response.
	PrevKv bool
	// IgnoreValue keeps the key's current value; the key must exist.
	IgnoreValue bool
	// IgnoreLease keeps the key's current lease; the key must exist.
	IgnoreLease bool
}

// PutResponse mirrors etcdserverpb.PutResponse.
type PutResponse struct {
	Header ResponseHeader
	// PrevKv is the key before the put, when asked for and the key existed.
	PrevKv *KeyValue
}

// DeleteRangeRequest mirrors etcdserverpb.DeleteRangeRequest. RangeEnd works as
// in RangeRequest.
type DeleteRangeRequest struct {
	Key      []byte
	RangeEnd []byte
	PrevKv   bool
}

// DeleteRangeResponse mirrors etcdserverpb.DeleteRangeResponse.
type DeleteRangeResponse struct {
	Header  ResponseHeader
	Deleted int64
	PrevKvs []KeyValue
}

// CompareResult mirrors Compare.CompareResult.
type CompareResult int32

// Compare results, numbered as in etcd.
const (
	CompareEqual    CompareResult = 0
	CompareGreater  CompareResult = 1
	CompareLess     CompareResult = 2
	CompareNotEqual CompareResult = 3
)

// CompareTarget mirrors Compare.CompareTarget.
type CompareTarget int32

// Compare targets, numbered as in etcd.
const (
	CompareVersion CompareTarget = 0
	CompareCreate  CompareTarget = 1
	CompareMod     CompareTarget = 2
	CompareValue   CompareTarget = 3
	CompareLease   CompareTarget = 4
)

// Compare mirrors etcdserverpb.Compare. etcd holds the operand in a oneof; here
// each has its own field and only the one named by Target is read (a oneof set
// to another field compares against zero in etcd, and so does an unset field
// here). With a RangeEnd the compare must hold for every key in the range; over
// an empty range it compares a zero KeyValue, except that a Value compare fails.
type Compare struct {
	Result         CompareResult
	Target         CompareTarget
	Key            []byte
	RangeEnd       []byte
	Version        int64
	CreateRevision int64
	ModRevision    int64
	Value          []byte
	Lease          int64
}

// RequestOp mirrors etcdserverpb.RequestOp: exactly one field is set (none is an
// "empty op", which etcd rejects with ErrKeyNotFound).
type RequestOp struct {
	Range       *RangeRequest
	Put         *PutRequest
	DeleteRange *DeleteRangeRequest
	Txn         *TxnRequest
}

// ResponseOp mirrors etcdserverpb.ResponseOp: the field matching the op is set.
type ResponseOp struct {
	Range       *RangeResponse
	Put         *PutResponse
	DeleteRange *DeleteRangeResponse
	Txn         *TxnResponse
}

// TxnRequest mirrors etcdserverpb.TxnRequest. If every compare holds, Success
// runs, otherwise Failure. All compares, including those of nested txns, are
// evaluated against the store as it was before the txn, while each op sees the
// writes of the ops before it, as in etcd.
type TxnRequest struct {
	Compare []Compare
	Success []RequestOp
	Failure []RequestOp
}

// TxnResponse mirrors etcdserverpb.TxnResponse. The header of a nested txn's
// response has Revision 0, because etcd leaves it unset; the ops inside carry
// their own revisions.
type TxnResponse struct {
	Header    ResponseHeader
	Succeeded bool
	Responses []ResponseOp
}

// CompactionRequest mirrors etcdserverpb.CompactionRequest.
type CompactionRequest struct {
	Revision int64
	// Physical is carried for the server; compaction here is always complete
	// when Apply returns.
	Physical bool
}

// CompactionResponse mirrors etcdserverpb.CompactionResponse.
type CompactionResponse struct {
	Header ResponseHeader
}

// IsTxnReadOnly reports whether every op of the txn, on both branches, is a
// Range, as etcd's IsTxnReadonly does (a nested txn counts as a write).
func IsTxnReadOnly(r *TxnRequest) bool {
	for _, ops := range [2][]RequestOp{r.Success, r.Failure} {
		for i := range ops {
			if ops[i].Range == nil {
				return false
			}
		}
	}
	return true
}
