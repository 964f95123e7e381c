package kv

import (
	"fmt"
)

// Txns on the engine, in txn.go's four steps (request checks, every compare
// against the state before the txn, the checks that need state along the path
// taken, then the ops), in one indexed batch so that each op sees the writes of
// the ops before it.

// txnRequest applies r in the write, which must have been begun with beginWrite.
func (w *engineWrite) txnRequest(r *TxnRequest, maxTxnOps int) (*TxnResponse, error) {
	if w.blind {
		panic("kv: a txn needs an indexed engine write (beginWrite), not a blind one")
	}
	if err := checkTxn(r, maxTxnOps); err != nil {
		return nil, err
	}
	path, err := w.compareToPath(r, nil)
	if err != nil {
		return nil, err
	}
	pos := 0
	var fromKeyDeletes [][]byte
	if err := w.checkPath(r, path, &pos, &fromKeyDeletes); err != nil {
		return nil, err
	}
	pos = 0
	resp, err := w.txn(r, path, &pos)
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = w.readRev()
	return resp, nil
}

// compareToPath is state.compareToPath over the engine: it runs before any write.
func (w *engineWrite) compareToPath(r *TxnRequest, path []bool) ([]bool, error) {
	succeeded := true
	for i := range r.Compare {
		holds, err := w.compare(&r.Compare[i], w.beginRev)
		if err != nil {
			return nil, err
		}
		if !holds {
			succeeded = false
			break
		}
	}
	path = append(path, succeeded)
	for _, op := range branch(r, succeeded) {
		if op.Txn != nil {
			var err error
			if path, err = w.compareToPath(op.Txn, path); err != nil {
				return nil, err
			}
		}
	}
	return path, nil
}

// compare evaluates one compare at rev, as state.compare does.
func (w *engineWrite) compare(c *Compare, rev int64) (bool, error) {
	found, holds := false, true
	err := engineScan(w.reader(), c.Key, c.RangeEnd, rev, c.Target == CompareValue, func(kv KeyValue) bool {
		found = true
		holds = compareKV(c, &kv)
		return holds
	})
	if err != nil {
		return false, err
	}
	if !found {
		if c.Target == CompareValue {
			return false, nil
		}
		return compareKV(c, &KeyValue{}), nil
	}
	return holds, nil
}

// checkPath is state.checkPath over the engine.
func (w *engineWrite) checkPath(r *TxnRequest, path []bool, pos *int, fromKeyDeletes *[][]byte) error {
	return checkTxnPath(w, r, path, pos, fromKeyDeletes)
}

func (w *engineWrite) revisions() (rev, compactRev int64) { return w.e.rev, w.e.compactRev }

func (w *engineWrite) checkPutLease(p *PutRequest) error {
	if p.Lease == 0 {
		return nil
	}
	_, found, err := leaseOf(w.reader(), p.Lease)
	if err != nil {
		return err
	}
	if !found {
		return ErrLeaseNotFound
	}
	return nil
}

func (w *engineWrite) liveKey(key []byte) (bool, error) {
	rec, found, err := w.newest(key)
	return found && !rec.tombstone, err
}

// txn runs the ops of the branch the path says, each seeing the writes before it.
// After the checks only the engine itself can fail an op.
func (w *engineWrite) txn(r *TxnRequest, path []bool, pos *int) (*TxnResponse, error) {
	succeeded := path[*pos]
	*pos++
	ops := branch(r, succeeded)
	resp := &TxnResponse{Succeeded: succeeded, Responses: make([]ResponseOp, len(ops))}
	for i := range ops {
		op, out := &ops[i], &resp.Responses[i]
		var err error
		switch {
		case op.Range != nil:
			out.Range, err = engineRangeAt(w.b, op.Range, w.readRev(), w.e.compactRev, nil)
		case op.Put != nil:
			out.Put, err = w.putRequest(op.Put)
		case op.DeleteRange != nil:
			out.DeleteRange, err = w.deleteRangeRequest(op.DeleteRange)
		case op.Txn != nil:
			out.Txn, err = w.txn(op.Txn, path, pos)
		}
		if err != nil {
			return nil, fmt.Errorf("kv: txn op %d failed after its checks passed: %w", i, err)
		}
	}
	return resp, nil
}
