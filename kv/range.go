package kv

import (
	"bytes"
	"cmp"
	"math"
	"slices"
)

// parseRangeEnd reads etcd's range_end convention: empty selects the key alone
// (single), "\x00" selects every key from the start (end nil), anything else is
// an exclusive end.
func parseRangeEnd(rangeEnd []byte) (end []byte, single bool) {
	switch {
	case len(rangeEnd) == 0:
		return nil, true
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return nil, false
	default:
		return rangeEnd, false
	}
}

// visit calls fn for every key in the range that exists at rev, in key order,
// until fn returns false. The KeyValues carry their values only if withValues:
// reading a value can cost a read from the value file.
func (st *state) visit(key, rangeEnd []byte, rev int64, withValues bool, fn func(kv KeyValue) bool) {
	vals := st.valuesIf(withValues)
	end, single := parseRangeEnd(rangeEnd)
	if single {
		if ki := st.index.get(key); ki != nil {
			if kv, ok := ki.kvAt(rev, vals, &st.leases); ok {
				fn(kv)
			}
		}
		return
	}
	st.index.ascend(key, func(ki *keyIndex) bool {
		if end != nil && bytes.Compare(ki.key, end) >= 0 {
			return false
		}
		if kv, ok := ki.kvAt(rev, vals, &st.leases); ok {
			return fn(kv)
		}
		return true
	})
}

// collect returns up to limit (all if limit <= 0) keys of the range at rev and
// the total number of keys in it, like etcd's treeIndex.Revisions. The keys
// collected carry their values only if withValues.
func (st *state) collect(key, rangeEnd []byte, rev int64, limit int64, withValues bool) ([]KeyValue, int64) {
	end, single := parseRangeEnd(rangeEnd)
	if single {
		// The common case gets no closure and an exactly sized result.
		if ki := st.index.get(key); ki != nil {
			if kv, ok := ki.kvAt(rev, st.valuesIf(withValues), &st.leases); ok {
				return []KeyValue{kv}, 1
			}
		}
		return nil, 0
	}
	var kvs []KeyValue
	var total int64
	st.index.ascend(key, func(ki *keyIndex) bool {
		if end != nil && bytes.Compare(ki.key, end) >= 0 {
			return false
		}
		// Values are read only for the keys kept, not for every key counted.
		keep := limit <= 0 || int64(len(kvs)) < limit
		kv, ok := ki.kvAt(rev, st.valuesIf(keep && withValues), &st.leases)
		if !ok {
			return true
		}
		if keep {
			kvs = append(kvs, kv)
		}
		total++
		return true
	})
	return kvs, total
}

// valuesIf returns the store's valueLog if withValues, else nil.
func (st *state) valuesIf(withValues bool) valueLog {
	if withValues {
		return st.vals
	}
	return nil
}

// count returns the number of keys in the range at rev.
func (st *state) count(key, rangeEnd []byte, rev int64) int64 {
	var total int64
	st.visit(key, rangeEnd, rev, false, func(KeyValue) bool {
		total++
		return true
	})
	return total
}

// rangeAt answers a range as etcd's executeRange does over a read view whose
// revision is curRev. Validation (checkRange) has already run. A budget, if not
// nil, bounds the response's bytes (see responseBudget).
//
// No value is read before the response is known to fit: the keys are collected
// with their values' places and lengths, filtered, sorted and cut to the limit,
// the response's size is counted from them, and only then are the values read.
// (A sort by value reads the values of every key collected, once they are known
// to fit the budget.)
func (st *state) rangeAt(r *RangeRequest, curRev int64, budget *responseBudget) (*RangeResponse, error) {
	rev := r.Revision
	if rev > curRev {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < st.compactRev {
		return nil, ErrCompacted
	}
	if _, single := parseRangeEnd(r.RangeEnd); single && !r.CountOnly {
		return st.rangeSingle(r, rev, curRev, budget)
	}
	resp := &RangeResponse{Header: ResponseHeader{Revision: curRev}}
	if r.CountOnly {
		resp.Count = st.count(r.Key, r.RangeEnd, rev)
		return resp, nil
	}
	// In the index's order and unfiltered, the keys collected are the response's
	// first ones, so collecting can stop keeping keys once they pass the budget.
	inIndexOrder := !hasRevisionFilters(r) && r.SortTarget == SortByKey && r.SortOrder != SortDescend
	var keepWithin *responseBudget
	if inIndexOrder {
		keepWithin = budget
	}
	entries, total, tooLarge := st.collectEntries(r, rev, rangeLimit(r), keepWithin)
	if tooLarge > 0 {
		return nil, &ResponseTooLargeError{Bytes: tooLarge, Limit: budget.limit}
	}
	return finishRange(resp, entries, total, r, budget, st.readEntryValue)
}

// readEntryValue reads the value of an entry of the index.
func (st *state) readEntryValue(e *rangeEntry) []byte { return st.vals.read(e.ref) }

// finishRange is the end of a range read over any source of entries (the index,
// or the engine: engine_range.go): it filters the entries collected, sorts them,
// cuts them to the limit, charges the budget, and only then reads their values
// with read.
func finishRange(resp *RangeResponse, entries []rangeEntry, total int64, r *RangeRequest, budget *responseBudget,
	read func(*rangeEntry) []byte) (*RangeResponse, error) {
	entries = filterRevisions(entries, r)
	if r.SortTarget == SortByValue {
		// Sorting by value needs every value collected, in memory, before the limit
		// cuts any: they must fit the budget too.
		if err := budget.check(entriesSize(entries, false), true); err != nil {
			return nil, err
		}
		for i := range entries {
			entries[i].kv.Value = read(&entries[i])
		}
	}
	sortEntries(entries, r.SortTarget, r.SortOrder)
	if r.Limit > 0 && int64(len(entries)) > r.Limit {
		entries = entries[:r.Limit]
		resp.More = true
	}
	if err := budget.take(entriesSize(entries, r.KeysOnly)); err != nil {
		return nil, err
	}
	resp.Kvs = make([]KeyValue, len(entries))
	for i := range entries {
		kv := entries[i].kv
		switch {
		case r.KeysOnly:
			keysOnly(&kv, r)
		case kv.Value == nil:
			kv.Value = read(&entries[i])
		}
		resp.Kvs[i] = kv
	}
	if len(resp.Kvs) == 0 {
		resp.Kvs = nil
	}
	resp.Count = total
	return resp, nil
}

// rangeSingle is rangeAt for one key, the most common read. The response and
// its one KeyValue share one allocation. Limit and sorting cannot change a
// result of one key; the revision filters and KeysOnly still apply.
func (st *state) rangeSingle(r *RangeRequest, rev, curRev int64, budget *responseBudget) (*RangeResponse, error) {
	box := &struct {
		resp RangeResponse
		kv   [1]KeyValue
	}{resp: RangeResponse{Header: ResponseHeader{Revision: curRev}}}
	ki := st.index.get(r.Key)
	if ki == nil {
		return &box.resp, nil
	}
	e, ok := ki.entryAt(rev, &st.leases)
	if !ok {
		return &box.resp, nil
	}
	box.resp.Count = 1
	if !passesRevisionFilters(&e.kv, r) {
		return &box.resp, nil
	}
	if budget != nil {
		if err := budget.take(e.size(r.KeysOnly)); err != nil {
			return nil, err
		}
	}
	if r.KeysOnly {
		keysOnly(&e.kv, r)
	} else {
		e.kv.Value = st.vals.read(e.ref)
	}
	box.kv[0] = e.kv
	box.resp.Kvs = box.kv[:]
	return &box.resp, nil
}

// collectEntries returns up to limit (all if limit <= 0) keys of r's range at rev,
// without their values, and the total number of keys in it, like etcd's
// treeIndex.Revisions. With a budget (given only when the keys collected are the
// response's first ones), it stops keeping keys once the response's would pass the
// budget, and goes on counting them: tooLarge is then the size of the whole
// response, to report.
func (st *state) collectEntries(r *RangeRequest, rev, limit int64, budget *responseBudget) (entries []rangeEntry, total, tooLarge int64) {
	end, _ := parseRangeEnd(r.RangeEnd)
	var size int64
	over := false
	st.index.ascend(r.Key, func(ki *keyIndex) bool {
		if end != nil && bytes.Compare(ki.key, end) >= 0 {
			return false
		}
		e, ok := ki.entryAt(rev, &st.leases)
		if !ok {
			return true
		}
		total++
		if budget != nil && (r.Limit <= 0 || total <= r.Limit) {
			size += e.size(r.KeysOnly)
			over = over || budget.wouldExceed(size)
		}
		if !over && (limit <= 0 || int64(len(entries)) < limit) {
			entries = append(entries, e)
		}
		return true
	})
	if over {
		return nil, total, budget.used + size
	}
	return entries, total, 0
}

// keysOnly strips what a KeysOnly range leaves out. etcd 3.7 answers one that does
// not sort by value from its index alone (mvcc's FastKeysOnly), which knows no
// leases: such an answer has every key's lease at 0, and so has this one.
func keysOnly(kv *KeyValue, r *RangeRequest) {
	kv.Value = nil
	if r.SortTarget != SortByValue {
		kv.Lease = 0
	}
}

// rangeLimit is how many keys to fetch: everything when the result will be
// sorted or filtered before the limit applies, else one more than the limit so
// that More can be told.
func rangeLimit(r *RangeRequest) int64 {
	limit := r.Limit
	if !isDefaultOrdering(r.SortTarget, r.SortOrder) || hasRevisionFilters(r) {
		limit = 0
	}
	if limit > 0 && limit < math.MaxInt64 {
		limit++
	}
	return limit
}

// isDefaultOrdering reports whether the order asked for is the index's own
// (ascending by key), judged on the order as sent. Note etcd's quirk, kept here:
// order NONE with a target other than KEY counts as default when choosing how
// many keys to fetch, so only Limit+1 keys (by key) are fetched, and sortKVs
// then sorts just those, ascending by the target, before Limit cuts them.
func isDefaultOrdering(target SortTarget, order SortOrder) bool {
	return order == SortNone || (target == SortByKey && order == SortAscend)
}

func hasRevisionFilters(r *RangeRequest) bool {
	return r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
}

// filterRevisions drops, in place, keys outside the request's revision bounds.
func filterRevisions(entries []rangeEntry, r *RangeRequest) []rangeEntry {
	if !hasRevisionFilters(r) {
		return entries
	}
	return slices.DeleteFunc(entries, func(e rangeEntry) bool { return !passesRevisionFilters(&e.kv, r) })
}

// passesRevisionFilters reports whether kv is within the request's revision bounds.
func passesRevisionFilters(kv *KeyValue, r *RangeRequest) bool {
	return (r.MaxModRevision == 0 || kv.ModRevision <= r.MaxModRevision) &&
		(r.MinModRevision == 0 || kv.ModRevision >= r.MinModRevision) &&
		(r.MaxCreateRevision == 0 || kv.CreateRevision <= r.MaxCreateRevision) &&
		(r.MinCreateRevision == 0 || kv.CreateRevision >= r.MinCreateRevision)
}

// sortEntries sorts as etcd does. The sort is not stable, and keys that tie on the
// target come out in whatever order pdqsort leaves them. etcd sorts with
// sort.Sort (v3.5, v3.6) or slices.SortFunc (later), which run the same pdqsort
// on the same comparisons, so using it here reproduces etcd's order of ties too
// (pdqsort's moves depend only on the length and the comparisons, not on the
// element type). A sort by value needs the entries' values read first.
func sortEntries(entries []rangeEntry, target SortTarget, order SortOrder) {
	if target != SortByKey && order == SortNone {
		order = SortAscend
	}
	if isDefaultOrdering(target, order) {
		return
	}
	if target == SortByKey && order == SortDescend {
		slices.Reverse(entries) // keys are unique and already ascending
		return
	}
	var compare func(a, b *KeyValue) int
	switch target {
	case SortByKey:
		compare = func(a, b *KeyValue) int { return bytes.Compare(a.Key, b.Key) }
	case SortByVersion:
		compare = func(a, b *KeyValue) int { return cmp.Compare(a.Version, b.Version) }
	case SortByCreate:
		compare = func(a, b *KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) }
	case SortByMod:
		compare = func(a, b *KeyValue) int { return cmp.Compare(a.ModRevision, b.ModRevision) }
	case SortByValue:
		compare = func(a, b *KeyValue) int { return bytes.Compare(a.Value, b.Value) }
	default:
		panic("kv: sort target passed validation but is unknown")
	}
	if order == SortDescend {
		slices.SortFunc(entries, func(a, b rangeEntry) int { return compare(&b.kv, &a.kv) })
		return
	}
	slices.SortFunc(entries, func(a, b rangeEntry) int { return compare(&a.kv, &b.kv) })
}
