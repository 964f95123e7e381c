package kv

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// The count cache makes a paged read of a range linear. A range with a limit
// returns etcd's count, every key of [key, end) at the read revision, which the
// engine has no index to answer but a walk of those keys: a client reading N keys
// back in pages of L, each page from the key after the last, would walk N²/2L
// keys, the whole rest of the range again at every page (issue 13: at 1 GiB under
// a 512 MiB memory cap, every page re-read the rest from disk and the read-back
// timed out).
//
// An entry remembers, for one state, one read revision and one range end, that
// the range [pos, end) held count keys. The live set at a read revision no
// earlier than the compacted one never changes (a write makes a new revision, a
// compaction drops only what no such read sees), so a later range [key, end) at
// that revision, with pos <= key, holds count minus the keys of [pos, key): a
// walk of what lies between, nothing when key is pos. A page answered walks its
// own keys and stops; its entry moves to the key after its last one, where the
// next page starts. A page read at another revision (each page of an unpinned
// read while writes go on reads at the newest) carries the nearest entry there
// through the history: the keys that the changes between the two revisions
// touch, each read at both, add or remove one each (countAcross), while both
// revisions are readable and at most as many changes as a page may skip lie
// between them. A restore or an import replaces the Store's state, and the
// first use of the cache under another state empties it, as the range cache
// does (range_cache.go). What the cache holds changes no answer, only how fast
// one comes.
//
// Its memory is bounded: rangeCountEntries entries, each with at most
// rangeCountMaxKeyBytes of keys; the least recently used goes first.

const (
	// rangeCountEntries bounds the entries: one per range being paged through
	// at one revision.
	rangeCountEntries = 64
	// rangeCountMaxKeyBytes bounds an entry's position and end together.
	rangeCountMaxKeyBytes = 4 << 10
	// rangeCountMinSkip is the fewest keys a range may walk from an entry's
	// position to its own start before giving up on the entry for a full walk
	// (twice its limit, if more): at worst a page costs that much more.
	rangeCountMinSkip = 1024
	// rangeCountMaxChanges bounds the history's changes a count is carried
	// through to another revision, and rangeCountMaxTouchedBytes the bytes of
	// the keys countAcross holds meanwhile.
	rangeCountMaxChanges      = 4096
	rangeCountMaxTouchedBytes = 1 << 20
)

// rangeCounts is the cache of range counts. The zero value is empty and ready;
// it is safe for concurrent use.
type rangeCounts struct {
	mu sync.Mutex
	// of is the state the counts were read from.
	of      *state
	entries []rangeCountEntry
	// clock orders the entries' uses.
	clock uint64
}

// rangeCountEntry: at revision rev, [pos, end) holds count keys. pos and end
// are engine bounds (rangeBounds); a nil end is no end.
type rangeCountEntry struct {
	rev      int64
	pos, end []byte
	count    int64
	used     uint64
}

// countRead is one read's handle on the cache: the cache and the state the
// read's view was taken from. A nil *countRead caches nothing.
type countRead struct {
	c  *rangeCounts
	st *state
}

// lookup returns the entry of st for ranges ending at end that starts closest
// at or before lower, at rev or else at the revision nearest it that the read
// can carry a count from: no older than compactRev, and no newer than curRev,
// the read's own view (whose history holds no later change); and its slot. ok
// is false if there is none.
func (c *rangeCounts) lookup(st *state, rev, curRev, compactRev int64, lower, end []byte) (e rangeCountEntry, slot int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.of != st {
		c.of, c.entries = st, nil
		return rangeCountEntry{}, -1, false
	}
	slot = -1
	distance := func(x *rangeCountEntry) int64 { return max(x.rev-rev, rev-x.rev) }
	for i := range c.entries {
		x := &c.entries[i]
		if x.rev < compactRev || x.rev > curRev || !bytes.Equal(x.end, end) || bytes.Compare(x.pos, lower) > 0 {
			continue
		}
		if slot < 0 {
			slot = i
			continue
		}
		best := &c.entries[slot]
		if d, bd := distance(x), distance(best); d < bd || (d == bd && bytes.Compare(x.pos, best.pos) > 0) {
			slot = i
		}
	}
	if slot < 0 {
		return rangeCountEntry{}, -1, false
	}
	c.clock++
	c.entries[slot].used = c.clock
	return c.entries[slot], slot, true
}

// store records that [pos, end) holds count keys at rev in st, in place of the
// entry in slot (the one the read started from, if it still holds what lookup
// returned as from; -1 if none) or else of the least recently used one.
func (c *rangeCounts) store(st *state, rev int64, pos, end []byte, count int64, slot int, from *rangeCountEntry) {
	if len(pos)+len(end) > rangeCountMaxKeyBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.of != st {
		return
	}
	c.clock++
	e := rangeCountEntry{rev: rev, pos: pos, end: end, count: count, used: c.clock}
	for i := range c.entries {
		x := &c.entries[i]
		if x.rev == rev && bytes.Equal(x.end, end) && bytes.Equal(x.pos, pos) {
			*x = e // the same count: a page read twice
			return
		}
	}
	if slot >= 0 && slot < len(c.entries) && from != nil {
		x := &c.entries[slot]
		if x.rev == from.rev && x.count == from.count && bytes.Equal(x.pos, from.pos) && bytes.Equal(x.end, from.end) {
			*x = e
			return
		}
	}
	if len(c.entries) < rangeCountEntries {
		c.entries = append(c.entries, e)
		return
	}
	oldest := 0
	for i := range c.entries {
		if c.entries[i].used < c.entries[oldest].used {
			oldest = i
		}
	}
	c.entries[oldest] = e
}

// countedRange is what a range learned from the cache.
type countedRange struct {
	// known: [lower, upper) holds count keys.
	known bool
	count int64
	from  rangeCountEntry
	slot  int
}

// countFromCache looks up the count of [lower, upper) at rev, walking at most
// maxSkip keys from the entry's position to lower; an entry at another
// revision, between compactRev and curRev (the revision of db's view), is
// first carried to rev through at most maxSkip (and rangeCountMaxChanges)
// changes of the history (countAcross).
func (cr *countRead) countFromCache(db pebble.Reader, rev, curRev, compactRev int64, lower, upper []byte, maxSkip int64) (countedRange, error) {
	if cr == nil {
		return countedRange{slot: -1}, nil
	}
	e, slot, ok := cr.c.lookup(cr.st, rev, curRev, compactRev, lower, upper)
	if !ok {
		return countedRange{slot: -1}, nil
	}
	res := countedRange{from: e, slot: slot}
	if e.rev != rev {
		delta, ok, err := countAcross(db, e.rev, rev, e.pos, upper, min(maxSkip, rangeCountMaxChanges))
		if err != nil || !ok {
			return res, err
		}
		e.count += delta
	}
	var skipped int64
	if !bytes.Equal(e.pos, lower) {
		over := false
		err := engineAscend(db, e.pos, lower, rev, func([]byte, int64, uint32, *versionRecord) bool {
			skipped++
			over = skipped > maxSkip
			return !over
		})
		if err != nil || over {
			return res, err
		}
	}
	if skipped > e.count {
		return res, nil // cannot be: the entry is wrong; walk
	}
	res.known, res.count = true, e.count-skipped
	return res, nil
}

// remember records that [pos, upper) holds count keys at rev.
func (cr *countRead) remember(rev int64, pos, upper []byte, count int64, from *countedRange) {
	if cr == nil {
		return
	}
	slot, fromEntry := -1, (*rangeCountEntry)(nil)
	if from != nil && from.slot >= 0 {
		slot, fromEntry = from.slot, &from.from
	}
	cr.c.store(cr.st, rev, bytes.Clone(pos), bytes.Clone(upper), count, slot, fromEntry)
}

// countsOf is the count cache of the reads on db: a Store's view (iterView)
// carries its state's; a write's batch and an engine read directly have none.
func countsOf(db pebble.Reader) *countRead {
	if v, ok := db.(*iterView); ok && v.counts.c != nil {
		return &v.counts
	}
	return nil
}

// countAcross returns how many more keys [pos, end) holds at rev than at from
// (fewer if negative), both revisions readable and in db's view: the keys that
// the history's changes between them touch, each read at both. ok is false,
// with no answer, if more than maxChanges changes lie between them (a walk is
// as cheap then), or their keys in the range take more than
// rangeCountMaxTouchedBytes.
func countAcross(db pebble.Reader, from, rev int64, pos, end []byte, maxChanges int64) (delta int64, ok bool, err error) {
	lo, hi := min(from, rev), max(from, rev)
	touched := map[string]struct{}{}
	var n, touchedBytes int64
	var prefix []byte
	gaveUp := false
	err = readChanges(db, lo+1, hi, func(c engineChange) bool {
		if n++; n > maxChanges {
			gaveUp = true
			return false
		}
		prefix = versionPrefix(prefix, c.key)
		if bytes.Compare(prefix, pos) < 0 || (end != nil && bytes.Compare(prefix, end) >= 0) {
			return true
		}
		if _, seen := touched[string(c.key)]; !seen {
			if touchedBytes += int64(len(c.key)); touchedBytes > rangeCountMaxTouchedBytes {
				gaveUp = true
				return false
			}
			touched[string(c.key)] = struct{}{}
		}
		return true
	})
	if err != nil || gaveUp {
		return 0, false, err
	}
	for key := range touched {
		_, before, err := engineGet(db, []byte(key), from, false)
		if err != nil {
			return 0, false, err
		}
		_, after, err := engineGet(db, []byte(key), rev, false)
		if err != nil {
			return 0, false, err
		}
		switch {
		case after && !before:
			delta++
		case before && !after:
			delta--
		}
	}
	return delta, true, nil
}

// countAscend counts the keys of [lower, upper) that exist at rev, as
// engineAscend would find them, without decoding their records or handing them
// out: a walk of the keys only, a key's older versions stepped over or skipped
// with one seek.
func countAscend(r pebble.Reader, lower, upper []byte, rev int64) (int64, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	var prefix, seek []byte
	valid := it.First()
	for valid {
		p, modRev, _ := splitVersionKey(it.Key())
		prefix = append(prefix[:0], p...)
		if modRev > rev {
			seek = prefixSeekKey(seek[:0], prefix, rev)
			if valid = it.SeekGE(seek); !valid || !bytes.HasPrefix(it.Key(), prefix) {
				continue
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, err
		}
		switch {
		case len(v) > 1 && (v[0] == recordPut || v[0] == recordPutSeparated):
			n++
		case len(v) == 1 && v[0] == recordTombstone:
		default:
			return 0, fmt.Errorf("%w: version record %x = %x", ErrCorruptEngine, it.Key(), v)
		}
		valid = it.Next()
		for i := 0; valid && bytes.HasPrefix(it.Key(), prefix); i++ {
			if i == engineScanNexts {
				valid = it.SeekGE(prefixEnd(prefix))
				break
			}
			valid = it.Next()
		}
	}
	return n, it.Error()
}
