package kv

import (
	"bytes"
	"cmp"
)

// The four steps of a txn, as etcd's txn.Txn takes them, so that a txn either
// applies whole or fails without a trace (engine_txn.go runs them):
//  1. the request checks (checkTxn), which need no state;
//  2. every compare, nested ones included, against the store before the txn,
//     giving the path: which branch each txn on the way takes;
//  3. the checks that need state, along that path (checkTxnPath): puts need their
//     lease to exist, puts with IgnoreValue/IgnoreLease need their key, ranges
//     need a readable revision;
//  4. the ops, which after steps 1-3 cannot fail.

func branch(r *TxnRequest, succeeded bool) []RequestOp {
	if succeeded {
		return r.Success
	}
	return r.Failure
}

// txnPathStore is what checkTxnPath reads of a store: a write (engineWrite) and
// a read (engineRead) each answer it.
type txnPathStore interface {
	revisions() (rev, compactRev int64)
	checkPutLease(p *PutRequest) error
	// liveKey says whether key has a live (not deleted) newest version.
	liveKey(key []byte) (bool, error)
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
