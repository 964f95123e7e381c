package kv

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Range reads over the engine, with etcd's semantics (etcd's executeRange): the
// checks, then the keys collected in one iterator pass over their versions, then
// the end every range shares (finishRange, range.go). Inline values are copied
// out of the pass for the keys kept when the response is in key order (up to
// eagerValueBytes). The other values are read once the response is settled (sorted,
// filtered, cut and charged to the budget): the separated ones with one iterator in
// revision order, the inline ones with one in key order. So a filtered or refused
// range holds no value it will not return; a range sorted by value reads every
// value that passes its filters, as it must to sort them.

// rangeLimited answers r at the engine's current revision, with the response's
// key-values bounded to maxResponseBytes (none if 0 or less), as
// Store.RangeLimited does.
func (e *engine) rangeLimited(r *RangeRequest, maxResponseBytes int64) (*RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	return engineRangeAt(e.db, r, e.rev, e.compactRev, newBudget(maxResponseBytes))
}

// eagerValueBytes bounds the value bytes a range in key order copies as it
// scans; the values past it are read (readInlineValues) once the response is
// known to fit its budget, so that a refusal allocates little.
const eagerValueBytes = 256 << 10

// rangeRevision is the revision a range reads at, or why it cannot be read.
func rangeRevision(r *RangeRequest, curRev, compactRev int64) (int64, error) {
	rev := r.Revision
	if rev > curRev {
		return 0, ErrFutureRev
	}
	if rev <= 0 {
		rev = curRev
	}
	if rev < compactRev {
		return 0, ErrCompacted
	}
	return rev, nil
}

// isPointRange reports whether r reads one key and returns it (not only a
// count): engineRangeAt answers it with one seek, the range cache from memory.
func isPointRange(r *RangeRequest) bool {
	_, single := parseRangeEnd(r.RangeEnd)
	return single && !r.CountOnly
}

// pointRange is the answer to a point range (isPointRange) at curRev whose key
// is kv if found: the revision filters, the budget and KeysOnly applied.
func pointRange(kv KeyValue, found bool, r *RangeRequest, curRev int64, budget *responseBudget) (*RangeResponse, error) {
	if !found {
		return &RangeResponse{Header: ResponseHeader{Revision: curRev}}, nil
	}
	if !passesRevisionFilters(&kv, r) {
		return &RangeResponse{Header: ResponseHeader{Revision: curRev}, Count: 1}, nil
	}
	e := rangeEntry{kv: kv, valueLen: uint32(len(kv.Value))}
	if err := budget.take(e.size(r.KeysOnly)); err != nil {
		return nil, err
	}
	if r.KeysOnly {
		keysOnly(&e.kv, r)
	}
	// The response and its one key-value in one allocation.
	one := &struct {
		resp RangeResponse
		kvs  [1]KeyValue
	}{resp: RangeResponse{Header: ResponseHeader{Revision: curRev}, Count: 1}, kvs: [1]KeyValue{e.kv}}
	one.resp.Kvs = one.kvs[:]
	return &one.resp, nil
}

func engineRangeAt(db pebble.Reader, r *RangeRequest, curRev, compactRev int64, budget *responseBudget) (*RangeResponse, error) {
	rev, err := rangeRevision(r, curRev, compactRev)
	if err != nil {
		return nil, err
	}
	if isPointRange(r) {
		kv, ok, err := engineGet(db, r.Key, rev, !r.KeysOnly)
		if err != nil {
			return nil, engineReadFailed(fmt.Sprintf("key %q", r.Key), err)
		}
		return pointRange(kv, ok, r, curRev, budget)
	}
	resp := &RangeResponse{Header: ResponseHeader{Revision: curRev}}
	lower, upper := rangeBounds(r.Key, r.RangeEnd)
	// The count of [lower, upper) from the count cache (range_count.go), for a
	// range that need not walk all its keys otherwise: a count, or a page.
	counts := countsOf(db)
	limit := rangeLimit(r)
	var counted countedRange
	if r.CountOnly || limit > 0 {
		maxSkip := max(rangeCountMinSkip, 2*r.Limit)
		if counted, err = counts.countFromCache(db, rev, curRev, compactRev, lower, upper, maxSkip); err != nil {
			return nil, engineReadFailed("a range count", err)
		}
	}
	if r.CountOnly {
		if counted.known {
			resp.Count = counted.count
			return resp, nil
		}
		resp.Count, err = countAscend(db, lower, upper, rev)
		if err != nil {
			return nil, engineReadFailed("a range count", err)
		}
		counts.remember(rev, lower, upper, resp.Count, &counted)
		return resp, nil
	}
	inIndexOrder := !hasRevisionFilters(r) && r.SortTarget == SortByKey && r.SortOrder != SortDescend
	var entries []rangeEntry
	var total, size, copied int64
	var afterLimit []byte // the bound after the Limit-th key, where the next page starts
	var countFrom []byte  // where the keys left to count start, if the walk stopped to count them
	over := false
	err = engineAscend(db, lower, upper, rev, func(prefix []byte, modRev int64, sub uint32, rec *versionRecord) bool {
		total++
		if limit > 0 && total == r.Limit && counts != nil {
			// the lower bound of the key and a 0 byte (rangeBounds), escaped
			afterLimit = append(append(afterLimit[:0], prefix[:len(prefix)-2]...), 0x00, 0xff)
		}
		sized := inIndexOrder && (r.Limit <= 0 || total <= r.Limit)
		if !sized && limit > 0 && int64(len(entries)) >= limit {
			// Only counted from here on: by a walk of the keys alone.
			countFrom = prefixEnd(prefix)
			return false
		}
		e := rangeEntry{kv: rec.keyValue(unescapeKey(prefix), modRev, false), valueLen: uint32(rec.valueLen()),
			sub: sub, separated: rec.separated}
		if sized {
			size += e.size(r.KeysOnly)
			over = over || budget.wouldExceed(size)
		}
		if !over && (limit <= 0 || int64(len(entries)) < limit) {
			if inIndexOrder && !r.KeysOnly && len(rec.value) > 0 && copied+int64(len(rec.value)) <= eagerValueBytes {
				e.kv.Value = bytes.Clone(rec.value)
				copied += int64(len(rec.value))
			}
			entries = append(entries, e)
		}
		// With the count known, the walk ends with the keys the page needs.
		return !counted.known || int64(len(entries)) < limit
	})
	if err != nil {
		return nil, engineReadFailed("a range", err)
	}
	if over {
		return nil, &ResponseTooLargeError{Bytes: budget.used + size, Limit: budget.limit}
	}
	if counted.known {
		total = counted.count
	} else if countFrom != nil {
		n, err := countAscend(db, countFrom, upper, rev)
		if err != nil {
			return nil, engineReadFailed("a range count", err)
		}
		total += n
	}
	if afterLimit != nil && total > r.Limit {
		counts.remember(rev, afterLimit, upper, total-r.Limit, &counted)
	}
	// finishRange reads the values of the entries it returns, and only theirs
	// (but for a sort by value): a page does not read the value of the key after
	// its Limit, found only to tell More.
	return finishRange(resp, entries, total, r, budget, func(entries []rangeEntry) error {
		if err := readSeparatedValues(db, entries); err != nil {
			return engineReadFailed("the values of a range", err)
		}
		if err := readInlineValues(db, entries); err != nil {
			return engineReadFailed("the values of a range", err)
		}
		return nil
	})
}

// readSeparatedValues reads the separated values of the entries that lack theirs
// (needsValue) with one iterator, in the values' revision order, so that the page
// of a range reads each block of values once, not every level's index for every
// value.
func readSeparatedValues(r pebble.Reader, entries []rangeEntry) error {
	var at []int
	for i := range entries {
		if entries[i].separated && entries[i].needsValue() {
			at = append(at, i)
		}
	}
	slices.SortFunc(at, func(a, b int) int {
		x, y := &entries[a], &entries[b]
		if c := cmp.Compare(x.kv.ModRevision, y.kv.ModRevision); c != 0 {
			return c
		}
		return cmp.Compare(x.sub, y.sub)
	})
	return readSeparated(r, len(at), func(j int) (int64, uint32, uint32, *[]byte) {
		e := &entries[at[j]]
		return e.kv.ModRevision, e.sub, e.valueLen, &e.kv.Value
	})
}

// readSeparated reads n separated values, the j-th that of the change at revision
// rev.sub, of valueLen bytes, into *dst (value(j)), with one iterator, which only
// seeks forward: the caller orders them by revision. It stops at the first read
// that fails, its *dst set to nil. One value is a point read, as cheap.
func readSeparated(r pebble.Reader, n int, value func(j int) (rev int64, sub, valueLen uint32, dst *[]byte)) error {
	if n == 0 {
		return nil
	}
	if n == 1 {
		rev, sub, valueLen, dst := value(0)
		var err error
		*dst, err = readValueFrom(r, rev, sub, int(valueLen))
		return err
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{engineValuePrefix}, UpperBound: []byte{engineValuePrefix + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for j := range n {
		rev, sub, valueLen, dst := value(j)
		if *dst, err = readValue(it, true, rev, sub, int(valueLen)); err != nil {
			return err
		}
	}
	return nil
}

// readInlineValues reads the inline values of the entries that lack theirs
// (needsValue: a range that was not in key order copied none in its walk) with one
// iterator, in key order, each seek going on from the last. Each entry's version
// record, read a moment before in the same view, must still be there and hold a
// value of the length it had.
func readInlineValues(r pebble.Reader, entries []rangeEntry) error {
	var at []int
	for i := range entries {
		if !entries[i].separated && entries[i].needsValue() {
			at = append(at, i)
		}
	}
	if len(at) == 0 {
		return nil
	}
	slices.SortFunc(at, func(a, b int) int { return bytes.Compare(entries[a].kv.Key, entries[b].kv.Key) })
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{engineVersionPrefix}, UpperBound: []byte{engineVersionPrefix + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	var vk []byte
	for _, i := range at {
		e := &entries[i]
		vk = versionKey(vk[:0], e.kv.Key, e.kv.ModRevision, e.sub)
		if !it.SeekGE(vk) || !bytes.Equal(it.Key(), vk) {
			if err := it.Error(); err != nil {
				return err
			}
			return fmt.Errorf("%w: the version of key %q at revision %d.%d read a moment before is gone", ErrCorruptEngine, e.kv.Key, e.kv.ModRevision, e.sub)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		rec, err := decodeVersionRecord(v)
		if err != nil {
			return err
		}
		if rec.tombstone || rec.separated || len(rec.value) != int(e.valueLen) {
			return fmt.Errorf("%w: the version of key %q at revision %d.%d changed since it was read a moment before", ErrCorruptEngine, e.kv.Key, e.kv.ModRevision, e.sub)
		}
		e.kv.Value = bytes.Clone(rec.value)
	}
	return nil
}
