package kv

import (
	"bytes"
	"slices"
)

// This file holds the checks etcd makes in its gRPC layer before a request is
// proposed (api/v3rpc/key.go). They depend only on the request and the Config,
// never on the store, so the server can run them (Store.Check) before proposing,
// and Apply runs them again so the state machine never trusts its input.

// opKind says which request a Command or RequestOp holds.
type opKind uint8

const (
	opEmpty opKind = iota
	opRange
	opPut
	opDeleteRange
	opTxn
	opCompact
	// Lease commands: only ever a whole Command, never a txn op.
	opLeaseGrant
	opLeaseRevoke
	opLeaseCheckpoint
	// opAuth: an auth command (auth.go), only ever a whole Command.
	opAuth
	opMany // more than one request set
)

func (op *RequestOp) kind() opKind {
	kind, n := opEmpty, 0
	if op.Range != nil {
		kind, n = opRange, n+1
	}
	if op.Put != nil {
		kind, n = opPut, n+1
	}
	if op.DeleteRange != nil {
		kind, n = opDeleteRange, n+1
	}
	if op.Txn != nil {
		kind, n = opTxn, n+1
	}
	if n > 1 {
		return opMany
	}
	return kind
}

func checkRange(r *RangeRequest) error {
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if r.SortOrder < SortNone || r.SortOrder > SortDescend || r.SortTarget < SortByKey || r.SortTarget > SortByValue {
		return ErrInvalidSortOption
	}
	return nil
}

func checkPut(p *PutRequest) error {
	switch {
	case len(p.Key) == 0:
		return ErrEmptyKey
	case p.IgnoreValue && len(p.Value) != 0:
		return ErrValueProvided
	case p.IgnoreLease && p.Lease != 0:
		return ErrLeaseProvided
	}
	return nil
}

func checkDeleteRange(d *DeleteRangeRequest) error {
	if len(d.Key) == 0 {
		return ErrEmptyKey
	}
	return nil
}

// checkTxn runs etcd's checkTxnRequest and then its duplicate-key check on
// each branch.
func checkTxn(r *TxnRequest, maxTxnOps int) error {
	if err := checkTxnRequest(r, maxTxnOps); err != nil {
		return err
	}
	if puts, dels := countWrites(r); puts == 0 || (puts == 1 && dels == 0) {
		return nil // nothing can collide; skip building the sets
	}
	if _, _, err := checkIntervals(r.Success); err != nil {
		return err
	}
	_, _, err := checkIntervals(r.Failure)
	return err
}

// checkTxnRequest mirrors etcd: the limit counts the longest of compares,
// success and failure, and a nested txn may use only what its parent left. Unlike
// etcd it also refuses a txn nested more than maxTxnDepth deep (as too many
// operations), which the codec cannot carry; each level spends at least one op of
// its parent's budget, so only a --max-txn-ops above 1023 lets one through.
func checkTxnRequest(r *TxnRequest, maxTxnOps int) error {
	return checkTxnAtDepth(r, maxTxnOps, 1)
}

func checkTxnAtDepth(r *TxnRequest, maxTxnOps, depth int) error {
	opc := max(len(r.Compare), len(r.Success), len(r.Failure))
	if opc > maxTxnOps || depth > maxTxnDepth {
		return ErrTooManyOps
	}
	for i := range r.Compare {
		if len(r.Compare[i].Key) == 0 {
			return ErrEmptyKey
		}
	}
	for _, ops := range [2][]RequestOp{r.Success, r.Failure} {
		for i := range ops {
			if err := checkRequestOp(&ops[i], maxTxnOps-opc, depth); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRequestOp(op *RequestOp, maxTxnOps, depth int) error {
	switch op.kind() {
	case opRange:
		return checkRange(op.Range)
	case opPut:
		return checkPut(op.Put)
	case opDeleteRange:
		return checkDeleteRange(op.DeleteRange)
	case opTxn:
		return checkTxnAtDepth(op.Txn, maxTxnOps, depth+1)
	case opEmpty:
		return ErrKeyNotFound // etcd's answer to an empty op
	default:
		return ErrInvalidCommand
	}
}

// countWrites counts the puts and deletes anywhere in the txn.
func countWrites(r *TxnRequest) (puts, dels int) {
	for _, ops := range [2][]RequestOp{r.Success, r.Failure} {
		for i := range ops {
			switch {
			case ops[i].Put != nil:
				puts++
			case ops[i].DeleteRange != nil:
				dels++
			case ops[i].Txn != nil:
				p, d := countWrites(ops[i].Txn)
				puts, dels = puts+p, dels+d
			}
		}
	}
	return puts, dels
}

// checkIntervals is etcd's check that no key is written twice in a txn: a put
// may not meet another put or a delete covering it, across nested txns, except
// that the two branches of one nested txn may put the same key. The rules are
// etcd's, including what they let through: a delete in a nested txn does not
// conflict with a put in an earlier sibling txn, and a delete with RangeEnd
// "\x00" (from a key onwards) is an empty interval to etcd and conflicts with
// nothing.
func checkIntervals(ops []RequestOp) (map[string]struct{}, *intervalSet, error) {
	dels := &intervalSet{}
	for i := range ops {
		if d := ops[i].DeleteRange; d != nil {
			dels.addDelete(d.Key, d.RangeEnd)
		}
	}
	puts := make(map[string]struct{})
	for i := range ops {
		t := ops[i].Txn
		if t == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(t.Success)
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(t.Failure)
		if err != nil {
			return nil, nil, err
		}
		// Map order does not matter here: keys within one set are distinct, so
		// the outcome is the same whichever is checked first.
		for k := range putsThen {
			if _, dup := puts[k]; dup || dels.contains([]byte(k)) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				if _, sameTxn := putsThen[k]; !sameTxn {
					return nil, nil, ErrDuplicateKey
				}
			}
			if dels.contains([]byte(k)) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels.addAll(delsThen)
		dels.addAll(delsElse)
	}
	for i := range ops {
		p := ops[i].Put
		if p == nil {
			continue
		}
		if _, dup := puts[string(p.Key)]; dup || dels.contains(p.Key) {
			return nil, nil, ErrDuplicateKey
		}
		puts[string(p.Key)] = struct{}{}
	}
	return puts, dels, nil
}

// interval is the key range [begin, end), never empty.
type interval struct{ begin, end []byte }

// intervalSet answers "does any delete cover this key?". Intervals are added in
// batches between queries, so they are appended to pending and merged into the
// sorted, disjoint list only when a query comes.
type intervalSet struct {
	merged  []interval // ascending, disjoint, not touching
	pending []interval
}

// addDelete adds the keys a delete request covers, as etcd's check sees them.
func (s *intervalSet) addDelete(key, rangeEnd []byte) {
	if len(rangeEnd) == 0 {
		// A single key k is the interval [k, k+"\x00").
		s.add(interval{key, append(bytes.Clone(key), 0)})
		return
	}
	s.add(interval{key, rangeEnd})
}

func (s *intervalSet) add(iv interval) {
	if bytes.Compare(iv.begin, iv.end) < 0 {
		s.pending = append(s.pending, iv)
	}
}

func (s *intervalSet) addAll(o *intervalSet) {
	s.pending = append(s.pending, o.merged...)
	s.pending = append(s.pending, o.pending...)
}

func (s *intervalSet) contains(key []byte) bool {
	s.normalize()
	// The last interval beginning at or before key is the only one that can hold it.
	i, found := slices.BinarySearchFunc(s.merged, key, func(iv interval, k []byte) int {
		return bytes.Compare(iv.begin, k)
	})
	if !found {
		i--
	}
	return i >= 0 && bytes.Compare(key, s.merged[i].end) < 0
}

func (s *intervalSet) normalize() {
	if len(s.pending) == 0 {
		return
	}
	all := append(s.merged, s.pending...)
	s.pending = s.pending[:0]
	slices.SortFunc(all, func(a, b interval) int { return bytes.Compare(a.begin, b.begin) })
	out := all[:0]
	for _, iv := range all {
		if n := len(out); n > 0 && bytes.Compare(iv.begin, out[n-1].end) <= 0 {
			if bytes.Compare(iv.end, out[n-1].end) > 0 {
				out[n-1].end = iv.end
			}
			continue
		}
		out = append(out, iv)
	}
	s.merged = out
}
