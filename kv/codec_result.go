package kv

import (
	"fmt"
	"math"
)

// The wire form of Results, which snapshots need because the session table
// keeps the last Result of every client. Same conventions as commands:
//
//	result     = err:1 kind:1 [put | delete | txn | compact | lease result (lease_codec.go)]
//	header     = revision:varint
//	kv         = key value create:varint mod:varint version:varint lease:varint
//	put        = header hasPrev:1 [kv]
//	delete     = header deleted:varint n:uvarint kv*n
//	range      = header n:uvarint kv*n more:1 count:varint
//	txn        = header succeeded:1 n:uvarint responseOp*n
//	responseOp = kind:1 [range | put | delete | txn]
//	compact    = header
//	auth       = authResp (auth_codec.go)

// minKVBytes is the smallest kv encoding: two empty strings and four varints.
const minKVBytes = 6

func (e *encoder) result(r *Result) {
	code, ok := errorCode(r.Err)
	if !ok {
		e.err = fmt.Errorf("kv: session result holds error %q, which has no snapshot code; add it to resultErrors", r.Err)
		return
	}
	e.byte(code)
	switch {
	case r.Put != nil:
		e.byte(byte(opPut))
		e.putResponse(r.Put)
	case r.DeleteRange != nil:
		e.byte(byte(opDeleteRange))
		e.deleteRangeResponse(r.DeleteRange)
	case r.Txn != nil:
		e.byte(byte(opTxn))
		e.txnResponse(r.Txn)
	case r.Compact != nil:
		e.byte(byte(opCompact))
		e.varint(r.Compact.Header.Revision)
	case e.leaseResult(r):
	case r.Auth != nil:
		e.byte(byte(opAuth))
		e.authResponse(r.Auth)
	default:
		e.byte(byte(opEmpty))
	}
}

func (e *encoder) kv(kv *KeyValue) {
	e.bytes(kv.Key)
	e.bytes(kv.Value)
	e.varint(kv.CreateRevision)
	e.varint(kv.ModRevision)
	e.varint(kv.Version)
	e.varint(kv.Lease)
}

func (e *encoder) kvs(kvs []KeyValue) {
	e.uvarint(uint64(len(kvs)))
	for i := range kvs {
		e.kv(&kvs[i])
	}
}

func (e *encoder) putResponse(p *PutResponse) {
	e.varint(p.Header.Revision)
	e.flags(p.PrevKv != nil)
	if p.PrevKv != nil {
		e.kv(p.PrevKv)
	}
}

func (e *encoder) deleteRangeResponse(d *DeleteRangeResponse) {
	e.varint(d.Header.Revision)
	e.varint(d.Deleted)
	e.kvs(d.PrevKvs)
}

func (e *encoder) rangeResponse(r *RangeResponse) {
	e.varint(r.Header.Revision)
	e.kvs(r.Kvs)
	e.flags(r.More)
	e.varint(r.Count)
}

func (e *encoder) txnResponse(t *TxnResponse) {
	e.varint(t.Header.Revision)
	e.flags(t.Succeeded)
	e.uvarint(uint64(len(t.Responses)))
	for i := range t.Responses {
		op := &t.Responses[i]
		switch {
		case op.Range != nil:
			e.byte(byte(opRange))
			e.rangeResponse(op.Range)
		case op.Put != nil:
			e.byte(byte(opPut))
			e.putResponse(op.Put)
		case op.DeleteRange != nil:
			e.byte(byte(opDeleteRange))
			e.deleteRangeResponse(op.DeleteRange)
		case op.Txn != nil:
			e.byte(byte(opTxn))
			e.txnResponse(op.Txn)
		default:
			e.byte(byte(opEmpty))
		}
	}
}

func (d *decoder) result() Result {
	var r Result
	code := d.byte()
	if int(code) >= len(resultErrors) {
		d.fail("unknown error code %d", code)
		return r
	}
	r.Err = resultErrors[code]
	switch kind := opKind(d.byte()); kind {
	case opEmpty:
	case opPut:
		r.Put = d.putResponse()
	case opDeleteRange:
		r.DeleteRange = d.deleteRangeResponse()
	case opTxn:
		r.Txn = d.txnResponse(1)
	case opCompact:
		r.Compact = &CompactionResponse{Header: ResponseHeader{Revision: d.varint()}}
	case opLeaseGrant, opLeaseRevoke, opLeaseCheckpoint:
		d.leaseResult(kind, &r)
	case opAuth:
		r.Auth = d.authResponse()
	default:
		d.fail("unknown result kind %d", kind)
	}
	return r
}

func (d *decoder) kv(kv *KeyValue) {
	kv.Key = d.bytes()
	kv.Value = d.bytes()
	kv.CreateRevision = d.varint()
	kv.ModRevision = d.varint()
	kv.Version = d.varint()
	kv.Lease = d.varint()
}

func (d *decoder) kvs() []KeyValue {
	n := d.count(minKVBytes, math.MaxInt)
	if n == 0 {
		return nil
	}
	kvs := make([]KeyValue, n)
	for i := range kvs {
		d.kv(&kvs[i])
	}
	return kvs
}

func (d *decoder) putResponse() *PutResponse {
	p := &PutResponse{Header: ResponseHeader{Revision: d.varint()}}
	if d.flags(1)[0] {
		p.PrevKv = &KeyValue{}
		d.kv(p.PrevKv)
	}
	return p
}

func (d *decoder) deleteRangeResponse() *DeleteRangeResponse {
	return &DeleteRangeResponse{
		Header:  ResponseHeader{Revision: d.varint()},
		Deleted: d.varint(),
		PrevKvs: d.kvs(),
	}
}

func (d *decoder) rangeResponse() *RangeResponse {
	r := &RangeResponse{Header: ResponseHeader{Revision: d.varint()}, Kvs: d.kvs()}
	r.More = d.flags(1)[0]
	r.Count = d.varint()
	return r
}

func (d *decoder) txnResponse(depth int) *TxnResponse {
	if depth > maxTxnDepth {
		d.fail("txn responses nested more than %d deep", maxTxnDepth)
		return nil
	}
	t := &TxnResponse{Header: ResponseHeader{Revision: d.varint()}}
	t.Succeeded = d.flags(1)[0]
	n := d.count(minOpBytes, maxTxnListLen)
	if n == 0 {
		return t
	}
	t.Responses = make([]ResponseOp, n)
	for i := range t.Responses {
		if d.err != nil {
			return t
		}
		op := &t.Responses[i]
		switch kind := opKind(d.byte()); kind {
		case opEmpty:
		case opRange:
			op.Range = d.rangeResponse()
		case opPut:
			op.Put = d.putResponse()
		case opDeleteRange:
			op.DeleteRange = d.deleteRangeResponse()
		case opTxn:
			op.Txn = d.txnResponse(depth + 1)
		default:
			d.fail("unknown response kind %d", kind)
		}
	}
	return t
}
