package kv

import "math"

// keyIndex holds the whole retained history of one key: a slice of generations,
// oldest first. A generation is one lifetime of the key, from the put that
// created it to the delete that ended it (its tombstone). Only the last
// generation can be live.
//
// Invariant: every generation has at least one revision.
// Invariant: only the last generation may have tombstoneRev == 0.
// Invariant: mod revisions never decrease along gens and revs, and each
// generation's tombstone is >= its last mod revision (equal when one txn put and
// then deleted the key).
type keyIndex struct {
	key  []byte
	gens []generation
}

// generation is one lifetime of a key.
type generation struct {
	createRev int64
	// firstVersion is the Version of revs[0]. It is 1 until compaction drops the
	// older revisions of the generation; storing it keeps Version exact without
	// storing it on every revision.
	firstVersion int64
	// tombstoneRev is the revision of the delete that ended the generation, or 0
	// while the key is live.
	tombstoneRev int64
	revs         []keyRev
}

// keyRev is one put: the value and lease the key held from modRev on. It holds no
// pointer (the value is in the store's valueLog), so the collector skips the slices
// of them, which hold most of a store's memory. For the same reason it is packed into
// 24 bytes: the value's valueRef split into its fields, and the lease as an index
// into the store's leaseTable, where a valueRef and an int64 lease took 32. After
// bench/'s put workloads the index holds about 600,000 of them.
type keyRev struct {
	modRev   int64
	valueOff int64
	valueLen uint32
	lease    uint32
}

func (r *keyRev) value() valueRef { return valueRef{off: r.valueOff, n: r.valueLen} }

func (r *keyRev) setValue(v valueRef) { r.valueOff, r.valueLen = v.off, v.n }

// leaseTable interns the lease ids that revisions carry, so a revision holds a
// 32-bit index instead of the 64-bit id; index 0 is no lease. Between compactions it
// only grows: an id keeps its index, so a frozen view may share a prefix of ids.
// Compaction rebuilds it without the ids no retained revision names, once they are
// the majority (collectLeaseIDs), so that leases granted and revoked over the store's
// life do not each keep an entry.
type leaseTable struct {
	ids   []int64
	index map[int64]uint32
}

// intern returns id's index, adding it if new.
func (t *leaseTable) intern(id int64) uint32 {
	if id == 0 {
		return 0
	}
	if i, ok := t.index[id]; ok {
		return i
	}
	if t.index == nil {
		t.index, t.ids = map[int64]uint32{}, []int64{0}
	}
	if len(t.ids) > math.MaxUint32 {
		panic("kv: more than 2^32 distinct lease ids") // 100 GiB of them first
	}
	i := uint32(len(t.ids))
	t.ids = append(t.ids, id)
	t.index[id] = i
	return i
}

// leaseID returns the id at index i of ids, a leaseTable's ids or a prefix of them.
func leaseID(ids []int64, i uint32) int64 {
	if i == 0 {
		return 0
	}
	return ids[i]
}

// at finds the revision of the key visible at rev: the generation and the index
// of the last put at or before rev, unless the key was deleted by then.
func (ki *keyIndex) at(rev int64) (*generation, int, bool) {
	for gi := len(ki.gens) - 1; gi >= 0; gi-- {
		g := &ki.gens[gi]
		if g.revs[0].modRev > rev {
			continue // created after rev; an older generation may be visible
		}
		if g.tombstoneRev != 0 && g.tombstoneRev <= rev {
			return nil, 0, false
		}
		return g, g.lastAtOrBefore(rev), true
	}
	return nil, 0, false
}

// lastAtOrBefore returns the index of the last revision with modRev <= rev. The
// caller ensures revs[0].modRev <= rev. Reading at the current revision is the
// common case, so the last revision is tried first.
func (g *generation) lastAtOrBefore(rev int64) int {
	last := len(g.revs) - 1
	if g.revs[last].modRev <= rev {
		return last
	}
	lo, hi := 0, last // revs[lo] <= rev < revs[hi]
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if g.revs[mid].modRev <= rev {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// kvAt returns the key as it was at rev, its value read from vals; with vals nil
// the value is left out (for counting and compares that do not look at it).
func (ki *keyIndex) kvAt(rev int64, vals valueLog, leases *leaseTable) (KeyValue, bool) {
	g, i, ok := ki.at(rev)
	if !ok {
		return KeyValue{}, false
	}
	r := &g.revs[i]
	kv := KeyValue{
		Key:            ki.key,
		CreateRevision: g.createRev,
		ModRevision:    r.modRev,
		Version:        g.firstVersion + int64(i),
		Lease:          leaseID(leases.ids, r.lease),
	}
	if vals != nil {
		kv.Value = vals.read(r.value())
	}
	return kv, true
}

// isLive reports whether the key exists at the newest revision.
func (ki *keyIndex) isLive() bool {
	n := len(ki.gens)
	return n > 0 && ki.gens[n-1].tombstoneRev == 0
}

// put records a put at rev, starting a new generation if the key is not live.
// value is already in the store's valueLog.
func (ki *keyIndex) put(rev int64, value valueRef, lease uint32) {
	r := keyRev{modRev: rev, valueOff: value.off, valueLen: value.n, lease: lease}
	if !ki.isLive() {
		ki.gens = append(ki.gens, generation{createRev: rev, firstVersion: 1, revs: []keyRev{r}})
		return
	}
	g := &ki.gens[len(ki.gens)-1]
	if last := g.revs[len(g.revs)-1].modRev; rev < last {
		panic("kv: put at revision below the key's last revision")
	}
	g.revs = append(g.revs, r)
}

// tombstone ends the live generation at rev.
func (ki *keyIndex) tombstone(rev int64) {
	if !ki.isLive() {
		panic("kv: delete of a key that is not live: " + string(ki.key))
	}
	ki.gens[len(ki.gens)-1].tombstoneRev = rev
}

// compact drops the history that no read at or after rev can see: generations
// deleted at or before rev (tombstone included, as etcd does), and within the
// generation visible at rev, the puts before the one visible at rev. It reports
// whether any history is left.
func (ki *keyIndex) compact(rev int64) bool {
	dead := 0
	for dead < len(ki.gens) && ki.gens[dead].tombstoneRev != 0 && ki.gens[dead].tombstoneRev <= rev {
		dead++
	}
	if dead > 0 {
		// Copy rather than reslice so the dropped generations' values can be freed.
		ki.gens = append([]generation(nil), ki.gens[dead:]...)
	}
	if len(ki.gens) == 0 {
		return false
	}
	g := &ki.gens[0]
	if g.revs[0].modRev > rev {
		return true
	}
	if keep := g.lastAtOrBefore(rev); keep > 0 {
		g.revs = append([]keyRev(nil), g.revs[keep:]...)
		g.firstVersion += int64(keep)
	}
	return true
}
