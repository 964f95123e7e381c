package kv

import (
	"bytes"
	"cmp"
	"fmt"
)

// txn applies a txn the way etcd's txn.Txn does, in four steps, so that a txn
// either applies whole or fails without a trace:
//  1. the request checks (checkTxn), which need no state;
//  2. every compare, nested ones included, against the store before the txn,
//     giving the path: which branch each txn on the way takes;
//  3. the checks that need state, along that path (checkPath): puts need their
//     lease to exist, puts with IgnoreValue/IgnoreLease need their key, ranges
//     need a readable revision;
//  4. the ops, which after steps 1-3 cannot fail.
func (st *state) txn(r *TxnRequest) (*TxnResponse, error) {
	if err := checkTxn(r, st.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	path := st.compareToPath(r, nil)
	pos := 0
	var fromKeyDeletes [][]byte
	if err := st.checkPath(r, path, &pos, &fromKeyDeletes); err != nil {
		return nil, err
	}
	w := st.beginWrite()
	pos = 0
	resp := w.txn(r, path, &pos)
	w.end()
	resp.Header.Revision = st.rev
	return resp, nil
}

// readTxn answers a txn whose ops are all ranges (IsTxnReadOnly), as txn would,
// with the ranges' key-values bounded by budget together. It changes nothing.
func (st *state) readTxn(r *TxnRequest, budget *responseBudget) (*TxnResponse, error) {
	if err := checkTxn(r, st.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	path := st.compareToPath(r, nil)
	pos := 0
	var fromKeyDeletes [][]byte
	if err := st.checkPath(r, path, &pos, &fromKeyDeletes); err != nil {
		return nil, err
	}
	ops := branch(r, path[0])
	resp := &TxnResponse{Header: ResponseHeader{Revision: st.rev}, Succeeded: path[0], Responses: make([]ResponseOp, len(ops))}
	for i := range ops {
		rr, err := st.rangeAt(ops[i].Range, st.rev, budget)
		if err != nil {
			return nil, err
		}
		resp.Responses[i].Range = rr
	}
	return resp, nil
}

// compareToPath appends, in the order the txn will run them, the outcome of
// this txn's compares and then those of the nested txns on the branch taken.
func (st *state) compareToPath(r *TxnRequest, path []bool) []bool {
	succeeded := true
	for i := range r.Compare {
		if !st.compare(&r.Compare[i], st.rev) {
			succeeded = false
			break
		}
	}
	path = append(path, succeeded)
	for _, op := range branch(r, succeeded) {
		if op.Txn != nil {
			path = st.compareToPath(op.Txn, path)
		}
	}
	return path
}

func branch(r *TxnRequest, succeeded bool) []RequestOp {
	if succeeded {
		return r.Success
	}
	return r.Failure
}

// txnPathStore is what checkTxnPath reads of a store: the in-memory state and
// the engine each answer it, so the two share etcd's checks.
type txnPathStore interface {
	revisions() (rev, compactRev int64)
	checkPutLease(p *PutRequest) error
	// liveKey says whether key has a live (not deleted) newest version.
	liveKey(key []byte) (bool, error)
}

func (st *state) revisions() (rev, compactRev int64) { return st.rev, st.compactRev }

func (st *state) liveKey(key []byte) (bool, error) {
	ki := st.index.get(key)
	return ki != nil && ki.isLive(), nil
}

// checkPath makes etcd's checks that depend on the store along the path.
func (st *state) checkPath(r *TxnRequest, path []bool, pos *int, fromKeyDeletes *[][]byte) error {
	return checkTxnPath(st, r, path, pos, fromKeyDeletes)
}

// checkTxnPath makes etcd's checks that depend on the store along the path, in
// op order. It also refuses one txn that etcd accepts and then crashes on: a
// put with IgnoreValue or IgnoreLease after a delete of the same key from a
// from-key range (RangeEnd "\x00") in the same txn, which etcd's duplicate check
// does not see. The put would find no key in the middle of the txn; here it
// fails up front with the error etcd's put would have returned.
func checkTxnPath(st txnPathStore, r *TxnRequest, path []bool, pos *int, fromKeyDeletes *[][]byte) error {
	succeeded := path[*pos]
	*pos++
	rev, compactRev := st.revisions()
	for _, op := range branch(r, succeeded) {
		switch {
		case op.Range != nil:
			switch r := op.Range.Revision; {
			case r == 0:
			case r > rev:
				return ErrFutureRev
			case r < compactRev:
				// Stricter than a plain Range: etcd fails a negative revision
				// here once anything was compacted.
				return ErrCompacted
			}
		case op.Put != nil:
			p := op.Put
			if err := st.checkPutLease(p); err != nil {
				return err
			}
			if !p.IgnoreValue && !p.IgnoreLease {
				continue
			}
			live, err := st.liveKey(p.Key)
			if err != nil {
				return err
			}
			if !live {
				return ErrKeyNotFound
			}
			for _, from := range *fromKeyDeletes {
				if bytes.Compare(from, p.Key) <= 0 {
					return ErrKeyNotFound
				}
			}
		case op.DeleteRange != nil:
			if end, single := parseRangeEnd(op.DeleteRange.RangeEnd); !single && end == nil {
				*fromKeyDeletes = append(*fromKeyDeletes, op.DeleteRange.Key)
			}
		case op.Txn != nil:
			if err := checkTxnPath(st, op.Txn, path, pos, fromKeyDeletes); err != nil {
				return err
			}
		}
	}
	return nil
}

// txn runs the ops of the branch the path says, each seeing the writes before it.
func (w *writeTxn) txn(r *TxnRequest, path []bool, pos *int) *TxnResponse {
	succeeded := path[*pos]
	*pos++
	ops := branch(r, succeeded)
	resp := &TxnResponse{Succeeded: succeeded, Responses: make([]ResponseOp, len(ops))}
	for i := range ops {
		op, out := &ops[i], &resp.Responses[i]
		switch {
		case op.Range != nil:
			rr, err := w.st.rangeAt(op.Range, w.readRev(), nil)
			if err != nil {
				panic(fmt.Sprintf("kv: txn range failed after its checks passed: %v (revision %d, store revision %d, compacted %d)",
					err, op.Range.Revision, w.st.rev, w.st.compactRev))
			}
			out.Range = rr
		case op.Put != nil:
			pr, err := w.put(op.Put)
			if err != nil {
				panic(fmt.Sprintf("kv: txn put of %q failed after its checks passed: %v", op.Put.Key, err))
			}
			out.Put = pr
		case op.DeleteRange != nil:
			out.DeleteRange = w.deleteRange(op.DeleteRange)
		case op.Txn != nil:
			out.Txn = w.txn(op.Txn, path, pos)
		}
	}
	return resp
}

// compare evaluates one compare at rev, as etcd's applyCompare does.
func (st *state) compare(c *Compare, rev int64) bool {
	found, holds := false, true
	st.visit(c.Key, c.RangeEnd, rev, c.Target == CompareValue, func(kv KeyValue) bool {
		found = true
		holds = compareKV(c, &kv)
		return holds
	})
	if !found {
		if c.Target == CompareValue {
			// etcd: a missing key has no value to compare, not an empty one.
			return false
		}
		return compareKV(c, &KeyValue{})
	}
	return holds
}

// compareKV mirrors etcd's compareKV, including its leniency: an unknown target
// compares as equal and an unknown result holds.
func compareKV(c *Compare, kv *KeyValue) bool {
	var result int
	switch c.Target {
	case CompareValue:
		result = bytes.Compare(kv.Value, c.Value)
	case CompareCreate:
		result = cmp.Compare(kv.CreateRevision, c.CreateRevision)
	case CompareMod:
		result = cmp.Compare(kv.ModRevision, c.ModRevision)
	case CompareVersion:
		result = cmp.Compare(kv.Version, c.Version)
	case CompareLease:
		result = cmp.Compare(kv.Lease, c.Lease)
	}
	switch c.Result {
	case CompareEqual:
		return result == 0
	case CompareNotEqual:
		return result != 0
	case CompareGreater:
		return result > 0
	case CompareLess:
		return result < 0
	}
	return true
}
