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

// finishRange is the end of a range read (engine_range.go): it filters the entries
// collected, sorts them, cuts them to the limit, charges the budget, and only then
// has fill read the values the entries left lack (needsValue), all at once.
func finishRange(resp *RangeResponse, entries []rangeEntry, total int64, r *RangeRequest, budget *responseBudget,
	fill func([]rangeEntry) error) (*RangeResponse, error) {
	entries = filterRevisions(entries, r)
	if r.SortTarget == SortByValue {
		// Sorting by value needs every value collected, in memory, before the limit
		// cuts any: they must fit the budget too.
		if err := budget.check(entriesSize(entries, false), true); err != nil {
			return nil, err
		}
		if err := fill(entries); err != nil {
			return nil, err
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
	if !r.KeysOnly {
		if err := fill(entries); err != nil {
			return nil, err
		}
	}
	resp.Kvs = make([]KeyValue, len(entries))
	for i := range entries {
		resp.Kvs[i] = entries[i].kv
		if r.KeysOnly {
			keysOnly(&resp.Kvs[i], r)
		}
	}
	if len(resp.Kvs) == 0 {
		resp.Kvs = nil
	}
	resp.Count = total
	return resp, nil
}

// needsValue says the entry's value is still to be read (fill of finishRange).
func (e *rangeEntry) needsValue() bool { return e.kv.Value == nil && e.valueLen > 0 }

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

// isDefaultOrdering reports whether the order asked for is the engine's own
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
	if target < SortByKey || target > SortByValue {
		panic("kv: sort target passed validation but is unknown")
	}
	// A static compare: through a func value, the pointers to the closure's
	// arguments escaped, and every comparison allocated two entries on the heap.
	descend := order == SortDescend
	slices.SortFunc(entries, func(a, b rangeEntry) int {
		if descend {
			return compareBy(target, &b.kv, &a.kv)
		}
		return compareBy(target, &a.kv, &b.kv)
	})
}

// compareBy orders a and b by target.
func compareBy(target SortTarget, a, b *KeyValue) int {
	switch target {
	case SortByVersion:
		return cmp.Compare(a.Version, b.Version)
	case SortByCreate:
		return cmp.Compare(a.CreateRevision, b.CreateRevision)
	case SortByMod:
		return cmp.Compare(a.ModRevision, b.ModRevision)
	case SortByValue:
		return bytes.Compare(a.Value, b.Value)
	default:
		return bytes.Compare(a.Key, b.Key)
	}
}
