package kv

import (
	"bytes"
	"slices"
)

// refStore is the engine tests' oracle: the simplest store with etcd's semantics
// that could work, independent of the engine's layout. Like model (model_test.go)
// it keeps every change of every key and replays a key's changes on each read;
// compaction only moves the revision below which reads fail. It shares with the
// store only the request checks (checkTxn, checkTxnPath's order of checks), the
// compare and the end of a range (finishRange: filters, sort, limit, budget),
// which range_test.go and txn_test.go check on their own.
type refStore struct {
	changes    []refChange // in the order they were made
	byKey      map[string][]int
	rev        int64
	compactRev int64
	applied    uint64
	leases     map[int64]LeaseInfo
}

type refChange struct {
	rev     int64
	key     string
	deleted bool
	value   []byte
	lease   int64
}

func newRefStore() *refStore {
	return &refStore{byKey: map[string][]int{}, rev: 1, compactRev: -1, leases: map[int64]LeaseInfo{}}
}

// kvAt returns key as it was at rev.
func (r *refStore) kvAt(key string, rev int64) (KeyValue, bool) {
	var kv KeyValue
	live := false
	for _, i := range r.byKey[key] {
		c := &r.changes[i]
		if c.rev > rev {
			break
		}
		switch {
		case c.deleted:
			live = false
		case !live:
			live = true
			kv = KeyValue{Key: []byte(key), CreateRevision: c.rev, ModRevision: c.rev, Version: 1, Value: c.value, Lease: c.lease}
		default:
			kv.ModRevision, kv.Version, kv.Value, kv.Lease = c.rev, kv.Version+1, c.value, c.lease
		}
	}
	return kv, live
}

// inRange says whether key is in etcd's range [key, rangeEnd).
func inRange(k, key, rangeEnd []byte) bool {
	end, single := parseRangeEnd(rangeEnd)
	switch {
	case single:
		return bytes.Equal(k, key)
	case end == nil:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

// rangeAt returns the keys of [key, rangeEnd) live at rev, in key order.
func (r *refStore) rangeAt(key, rangeEnd []byte, rev int64) []KeyValue {
	var keys []string
	for k := range r.byKey {
		if inRange([]byte(k), key, rangeEnd) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []KeyValue
	for _, k := range keys {
		if kv, ok := r.kvAt(k, rev); ok {
			out = append(out, kv)
		}
	}
	return out
}

// write is the changes of one applied command, all at revision r.rev+1.
type refWrite struct {
	r       *refStore
	changed bool
}

func (w *refWrite) readRev() int64 {
	if w.changed {
		return w.r.rev + 1
	}
	return w.r.rev
}

func (w *refWrite) change(c refChange) {
	c.rev = w.r.rev + 1
	w.r.byKey[c.key] = append(w.r.byKey[c.key], len(w.r.changes))
	w.r.changes = append(w.r.changes, c)
	w.changed = true
}

func (w *refWrite) end() {
	if w.changed {
		w.r.rev++
	}
}

// apply applies cmd as entry index; a command that fails changes nothing.
func (r *refStore) apply(index uint64, cmd *Command) Result {
	r.applied = index
	if err := cmd.check(DefaultMaxTxnOps); err != nil {
		return Result{Err: err}
	}
	w := &refWrite{r: r}
	defer w.end()
	var res Result
	switch {
	case cmd.Put != nil:
		res.Put, res.Err = w.put(cmd.Put)
	case cmd.DeleteRange != nil:
		res.DeleteRange = w.deleteRange(cmd.DeleteRange)
	case cmd.Txn != nil:
		res.Txn, res.Err = w.txn(cmd.Txn)
	case cmd.Compact != nil:
		switch rev := cmd.Compact.Revision; {
		case rev <= r.compactRev:
			res.Err = ErrCompacted
		case rev > r.rev:
			res.Err = ErrFutureRev
		default:
			r.compactRev = rev
			res.Compact = &CompactionResponse{Header: ResponseHeader{Revision: r.rev}}
		}
	case cmd.LeaseGrant != nil:
		g := cmd.LeaseGrant
		if _, ok := r.leases[g.ID]; ok {
			res.Err = ErrLeaseExists
			break
		}
		r.leases[g.ID] = LeaseInfo{ID: g.ID, TTL: g.TTL}
		res.LeaseGrant = &LeaseGrantResponse{Header: ResponseHeader{Revision: r.rev}, ID: g.ID, TTL: g.TTL}
	case cmd.LeaseRevoke != nil:
		id := cmd.LeaseRevoke.ID
		if _, ok := r.leases[id]; !ok {
			res.Err = ErrLeaseNotFound
			break
		}
		for _, k := range r.leaseKeys(id) {
			w.change(refChange{key: string(k), deleted: true})
		}
		delete(r.leases, id)
		res.LeaseRevoke = &LeaseRevokeResponse{Header: ResponseHeader{Revision: w.readRev()}, ID: id}
	case cmd.LeaseCheckpoint != nil:
		resp := &LeaseCheckpointResponse{Header: ResponseHeader{Revision: r.rev}}
		for _, cp := range cmd.LeaseCheckpoint.Checkpoints {
			l, ok := r.leases[cp.ID]
			if !ok {
				continue
			}
			l.RemainingTTL = max(cp.RemainingTTL, 0)
			r.leases[cp.ID] = l
			resp.Checkpoints = append(resp.Checkpoints, LeaseCheckpoint{ID: cp.ID, RemainingTTL: l.RemainingTTL})
		}
		res.LeaseCheckpoint = resp
	}
	if res.Err != nil {
		return Result{Err: res.Err}
	}
	return res
}

func (w *refWrite) put(p *PutRequest) (*PutResponse, error) {
	if _, ok := w.r.leases[p.Lease]; p.Lease != 0 && !ok {
		return nil, ErrLeaseNotFound
	}
	prev, found := w.r.kvAt(string(p.Key), w.readRev())
	if (p.IgnoreValue || p.IgnoreLease) && !found {
		return nil, ErrKeyNotFound
	}
	value, lease := p.Value, p.Lease
	if p.IgnoreValue {
		value = prev.Value
	}
	if p.IgnoreLease {
		lease = prev.Lease
	}
	resp := &PutResponse{}
	if p.PrevKv && found {
		resp.PrevKv = &prev
	}
	w.change(refChange{key: string(p.Key), value: bytes.Clone(value), lease: lease})
	resp.Header.Revision = w.r.rev + 1
	return resp, nil
}

func (w *refWrite) deleteRange(d *DeleteRangeRequest) *DeleteRangeResponse {
	kvs := w.r.rangeAt(d.Key, d.RangeEnd, w.readRev())
	for _, kv := range kvs {
		w.change(refChange{key: string(kv.Key), deleted: true})
	}
	resp := &DeleteRangeResponse{Deleted: int64(len(kvs)), Header: ResponseHeader{Revision: w.readRev()}}
	if d.PrevKv && len(kvs) > 0 {
		resp.PrevKvs = kvs
	}
	return resp
}

// The reference as checkTxnPath reads it, at the txn's start.
func (w *refWrite) revisions() (rev, compactRev int64) { return w.r.rev, w.r.compactRev }

func (w *refWrite) checkPutLease(p *PutRequest) error {
	if _, ok := w.r.leases[p.Lease]; p.Lease != 0 && !ok {
		return ErrLeaseNotFound
	}
	return nil
}

func (w *refWrite) liveKey(key []byte) (bool, error) {
	_, live := w.r.kvAt(string(key), w.r.rev)
	return live, nil
}

// compare evaluates one compare at rev, as etcd does: a compare holds when it
// holds for every key of its range; on no key, it compares an empty key-value,
// except that a value compares false.
func (w *refWrite) compare(c *Compare, rev int64) bool {
	kvs := w.r.rangeAt(c.Key, c.RangeEnd, rev)
	if len(kvs) == 0 {
		return c.Target != CompareValue && compareKV(c, &KeyValue{})
	}
	for i := range kvs {
		if !compareKV(c, &kvs[i]) {
			return false
		}
	}
	return true
}

func (w *refWrite) path(t *TxnRequest, path []bool) []bool {
	ok := true
	for i := range t.Compare {
		if !w.compare(&t.Compare[i], w.r.rev) {
			ok = false
			break
		}
	}
	path = append(path, ok)
	for _, op := range branch(t, ok) {
		if op.Txn != nil {
			path = w.path(op.Txn, path)
		}
	}
	return path
}

func (w *refWrite) txn(t *TxnRequest) (*TxnResponse, error) {
	if err := checkTxn(t, DefaultMaxTxnOps); err != nil {
		return nil, err
	}
	path := w.path(t, nil)
	pos := 0
	var fromKeyDeletes [][]byte
	if err := checkTxnPath(w, t, path, &pos, &fromKeyDeletes); err != nil {
		return nil, err
	}
	pos = 0
	resp := w.runTxn(t, path, &pos)
	resp.Header.Revision = w.readRev()
	return resp, nil
}

func (w *refWrite) runTxn(t *TxnRequest, path []bool, pos *int) *TxnResponse {
	ok := path[*pos]
	*pos++
	ops := branch(t, ok)
	resp := &TxnResponse{Succeeded: ok, Responses: make([]ResponseOp, len(ops))}
	for i := range ops {
		op, out := &ops[i], &resp.Responses[i]
		switch {
		case op.Range != nil:
			out.Range, _ = w.r.rangeRequest(op.Range, w.readRev(), nil)
		case op.Put != nil:
			out.Put, _ = w.put(op.Put)
		case op.DeleteRange != nil:
			out.DeleteRange = w.deleteRange(op.DeleteRange)
		case op.Txn != nil:
			out.Txn = w.runTxn(op.Txn, path, pos)
		}
	}
	return resp
}

// rangeRequest answers rr as etcd's Range does at a store whose revision is
// curRev.
func (r *refStore) rangeRequest(rr *RangeRequest, curRev int64, budget *responseBudget) (*RangeResponse, error) {
	rev := rr.Revision
	if rev > curRev {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < r.compactRev {
		return nil, ErrCompacted
	}
	resp := &RangeResponse{Header: ResponseHeader{Revision: curRev}}
	kvs := r.rangeAt(rr.Key, rr.RangeEnd, rev)
	if rr.CountOnly {
		resp.Count = int64(len(kvs))
		return resp, nil
	}
	if _, single := parseRangeEnd(rr.RangeEnd); single && len(kvs) == 1 {
		// One key: sorting and the limit change nothing, and no value is read
		// before the budget is charged.
		resp.Count = 1
		if !passesRevisionFilters(&kvs[0], rr) {
			return resp, nil
		}
		e := rangeEntry{kv: kvs[0], valueLen: uint32(len(kvs[0].Value))}
		if err := budget.take(e.size(rr.KeysOnly)); err != nil {
			return nil, err
		}
		if rr.KeysOnly {
			keysOnly(&e.kv, rr)
		}
		resp.Kvs = []KeyValue{e.kv}
		return resp, nil
	}
	total := int64(len(kvs))
	if limit := rangeLimit(rr); limit > 0 && int64(len(kvs)) > limit {
		// etcd's quirk: with no sort order, a sort target other than the key
		// sorts only the keys the limit kept.
		kvs = kvs[:limit]
	}
	entries := make([]rangeEntry, len(kvs))
	for i := range kvs {
		entries[i] = rangeEntry{kv: kvs[i], valueLen: uint32(len(kvs[i].Value))}
		entries[i].kv.Value = nil
	}
	byKey := map[string][]byte{}
	for _, kv := range kvs {
		byKey[string(kv.Key)] = kv.Value
	}
	return finishRange(resp, entries, total, rr, budget, func(entries []rangeEntry) error {
		for i := range entries {
			if entries[i].needsValue() {
				entries[i].kv.Value = bytes.Clone(byKey[string(entries[i].kv.Key)])
			}
		}
		return nil
	})
}

// leaseKeys returns the live keys whose version carries lease id, in key order.
func (r *refStore) leaseKeys(id int64) [][]byte {
	var keys [][]byte
	for _, kv := range r.rangeAt([]byte{0}, []byte{0}, r.rev) {
		if kv.Lease == id {
			keys = append(keys, kv.Key)
		}
	}
	return keys
}

// leaseList returns the leases in id order.
func (r *refStore) leaseList() []LeaseInfo {
	var out []LeaseInfo
	for _, l := range r.leases {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b LeaseInfo) int { return int(a.ID - b.ID) })
	return out
}

// retainedRecords is the number of version records compaction leaves: per key
// the changes above the compaction revision, and the one visible at it unless
// that is a delete.
func (r *refStore) retainedRecords() int {
	n := 0
	for _, idx := range r.byKey {
		var visible *refChange
		for _, i := range idx {
			c := &r.changes[i]
			if c.rev > r.compactRev {
				n++
			} else {
				visible = c
			}
		}
		if visible != nil && !visible.deleted {
			n++
		}
	}
	return n
}

// events answers er as Store.Events does.
func (r *refStore) events(er *EventsRequest) (*EventsResponse, error) {
	resp := &EventsResponse{Revision: r.rev, CompactRevision: r.compactRev}
	if er.FromRevision < r.compactRev {
		return resp, ErrCompacted
	}
	to := er.ToRevision
	if to <= 0 || to > r.rev {
		to = r.rev
	}
	resp.NextRevision = max(to+1, er.FromRevision)
	size := 0
	current := int64(0)
	for _, c := range r.changes {
		if c.rev < er.FromRevision || c.rev > to {
			continue
		}
		if c.rev != current {
			if (er.MaxEvents > 0 && len(resp.Events) >= er.MaxEvents) || (er.MaxBytes > 0 && size >= er.MaxBytes) {
				resp.NextRevision = c.rev
				break
			}
			current = c.rev
		}
		if er.Contains != nil && !er.Contains([]byte(c.key)) {
			continue
		}
		var ev Event
		if c.deleted {
			ev = Event{Type: EventDelete, Kv: KeyValue{Key: []byte(c.key), ModRevision: c.rev}}
		} else {
			kv, _ := r.kvAt(c.key, c.rev)
			ev = Event{Type: EventPut, Kv: kv}
		}
		if er.PrevKv && (c.deleted || ev.Kv.CreateRevision != c.rev) && c.rev-1 >= r.compactRev {
			if prev, ok := r.kvAt(c.key, c.rev-1); ok {
				ev.PrevKv = &prev
			}
		}
		resp.Events = append(resp.Events, ev)
		size += ev.Size()
	}
	return resp, nil
}

// retainedKeys returns the keys with a version record compaction leaves.
func (r *refStore) retainedKeys() []string {
	var keys []string
	for k, idx := range r.byKey {
		n := 0
		var visible *refChange
		for _, i := range idx {
			if c := &r.changes[i]; c.rev > r.compactRev {
				n++
			} else {
				visible = c
			}
		}
		if n > 0 || (visible != nil && !visible.deleted) {
			keys = append(keys, k)
		}
	}
	return keys
}
