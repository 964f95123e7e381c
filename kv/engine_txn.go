package kv

import (
	"fmt"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
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
	path, err := compareToPath(w.reader(), w.beginRev, r, nil)
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

// compareToPath appends, in the order the txn will run them, the outcome of
// this txn's compares at rev and then those of the nested txns on the branch
// taken. It runs before any write.
func compareToPath(rd pebble.Reader, rev int64, r *TxnRequest, path []bool) ([]bool, error) {
	succeeded := true
	for i := range r.Compare {
		holds, err := compare(rd, &r.Compare[i], rev)
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
			if path, err = compareToPath(rd, rev, op.Txn, path); err != nil {
				return nil, err
			}
		}
	}
	return path, nil
}

// compare evaluates one compare at rev, as etcd's applyCompare does.
func compare(rd pebble.Reader, c *Compare, rev int64) (bool, error) {
	if _, single := parseRangeEnd(c.RangeEnd); c.Target == CompareValue && !single {
		return compareValues(rd, c, rev)
	}
	return compareByScan(rd, c, rev)
}

// compareByScan is compare by a walk of the range that reads each key's value in
// key order (by a point read if separated), stopping at the first key that fails.
func compareByScan(rd pebble.Reader, c *Compare, rev int64) (bool, error) {
	found, holds := false, true
	err := engineScan(rd, c.Key, c.RangeEnd, rev, c.Target == CompareValue, func(kv KeyValue) bool {
		found = true
		holds = compareKV(c, &kv)
		return holds
	})
	if err != nil {
		return false, err
	}
	if !found {
		if c.Target == CompareValue {
			// etcd: a missing key has no value to compare, not an empty one.
			return false, nil
		}
		return compareKV(c, &KeyValue{}), nil
	}
	return holds, nil
}

// compareValueBatchEntry is what a key of a batch of compareValues holds besides
// its value, counted with the value against eagerValueBytes.
const compareValueBatchEntry = int64(unsafe.Sizeof(rangeEntry{}))

// compareValues is compare of the values of a range's keys. It compares the
// inline values as its walk finds them, and reads the separated ones in batches,
// each with one iterator in revision order (readSeparatedValues, as a range
// does), rather than by a point read per value. A batch holds at most
// eagerValueBytes of values and entries, so a compare over any range holds
// little at once; the batches start at one key and double, so a compare that
// fails early reads few values past the key that fails it. The outcome and any
// error are those of reading and comparing the keys one by one in key order, the
// walk stopping at the first that fails (compareByScan): a batch's keys come before
// any key the walk stopped at, so they are settled first.
func compareValues(rd pebble.Reader, c *Compare, rev int64) (bool, error) {
	found, holds := false, true
	var batch []rangeEntry
	var batchBytes int64
	batchMax := 1
	var valueErr error
	lower, upper := rangeBounds(c.Key, c.RangeEnd)
	err := engineAscend(rd, lower, upper, rev, func(_ []byte, modRev int64, sub uint32, rec *versionRecord) bool {
		found = true
		if !rec.separated {
			holds = compareKV(c, &KeyValue{Value: rec.value})
			return holds
		}
		batch = append(batch, rangeEntry{kv: KeyValue{ModRevision: modRev}, valueLen: uint32(rec.separatedLen), sub: sub, separated: true})
		batchBytes += int64(rec.separatedLen) + compareValueBatchEntry
		if len(batch) < batchMax && batchBytes < eagerValueBytes {
			return true
		}
		if len(batch) == batchMax { // not once the bytes bound the batches
			batchMax *= 2
		}
		holds, valueErr = compareBatch(rd, c, batch)
		clear(batch)
		batch, batchBytes = batch[:0], 0
		return holds && valueErr == nil
	})
	if valueErr != nil {
		return false, valueErr
	}
	if len(batch) > 0 {
		batchHolds, err := compareBatch(rd, c, batch)
		if err != nil || !batchHolds {
			return false, err
		}
	}
	if err != nil {
		return false, err
	}
	// etcd: a missing key has no value to compare, not an empty one.
	return found && holds, nil
}

// compareBatch compares the separated values of batch, keys of a range in key
// order, read in one pass (readSeparatedValues). If the pass fails, it compares
// them again in key order, reading by a point read each value the pass did not,
// so that the outcome or the error is that of the first key, in key order, that
// fails to read or to compare.
func compareBatch(r pebble.Reader, c *Compare, batch []rangeEntry) (bool, error) {
	passErr := readSeparatedValues(r, batch)
	for i := range batch {
		e := &batch[i]
		if passErr != nil && e.needsValue() {
			var err error
			if e.kv.Value, err = readValueFrom(r, e.kv.ModRevision, e.sub, int(e.valueLen)); err != nil {
				return false, err
			}
		}
		if !compareKV(c, &e.kv) {
			return false, nil
		}
	}
	return true, nil
}

// checkPath makes etcd's checks that depend on the store along the path.
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

// engineRead is a read of the store at one revision, from a pebble snapshot (or
// any reader that holds the store as of rev): a read-only txn runs on it.
type engineRead struct {
	r               pebble.Reader
	rev, compactRev int64
}

func (rd *engineRead) revisions() (rev, compactRev int64) { return rd.rev, rd.compactRev }

func (rd *engineRead) checkPutLease(p *PutRequest) error {
	if p.Lease == 0 {
		return nil
	}
	_, found, err := leaseOf(rd.r, p.Lease)
	if err == nil && !found {
		err = ErrLeaseNotFound
	}
	return err
}

func (rd *engineRead) liveKey(key []byte) (bool, error) {
	rec, found, err := newestRecord(rd.r, key, rd.rev)
	return found && !rec.tombstone, err
}

// readTxn answers a txn whose ops are all ranges (IsTxnReadOnly), as an applied
// one would be answered, with the ranges' key-values bounded by budget together.
func (rd *engineRead) readTxn(r *TxnRequest, maxTxnOps int, budget *responseBudget) (*TxnResponse, error) {
	if err := checkTxn(r, maxTxnOps); err != nil {
		return nil, err
	}
	path, err := compareToPath(rd.r, rd.rev, r, nil)
	if err != nil {
		return nil, engineReadFailed("a txn's compares", err)
	}
	pos := 0
	var fromKeyDeletes [][]byte
	if err := checkTxnPath(rd, r, path, &pos, &fromKeyDeletes); err != nil {
		return nil, err
	}
	ops := branch(r, path[0])
	resp := &TxnResponse{Header: ResponseHeader{Revision: rd.rev}, Succeeded: path[0], Responses: make([]ResponseOp, len(ops))}
	for i := range ops {
		rr, err := engineRangeAt(rd.r, ops[i].Range, rd.rev, rd.compactRev, budget)
		if err != nil {
			return nil, err
		}
		resp.Responses[i].Range = rr
	}
	return resp, nil
}
