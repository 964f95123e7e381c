package kv

import "sync"

// The range cache answers point reads (one key, at the current revision) from
// memory: a seek of the engine costs a new pebble iterator and a merging seek
// through the memtables and levels, about a quarter of a leader's CPU under
// bench/'s serializable gets, where etcd reads its in-memory index and a bbolt
// page.
//
// It holds versions, not keys: an entry is one version of a key, named by its
// create revision and version (a generation and a position in it, which no other
// version of the key shares), with its mod revision, lease and value. An entry
// is served only while the engine's newestCache, which the writer keeps under
// the Store's write lock, names that same version as the key's newest: the
// lookup runs under the Store's read lock, so it sees the newestCache and the
// revision of one applied state, and a write, a delete or a lease revoke makes
// the entry unservable at the moment the write becomes visible. newestCache
// naming a tombstone (or no version at all) answers "not found" without the
// engine too. A restore or an import replaces the Store's state: the cache
// belongs to one state, and the first lookup under another empties it, so a
// version of the history before cannot answer for the one after.
//
// Entries are added by reads that missed, for a key whose newest version the
// newestCache named, and only that version, and only if the state is still the
// one the lookup saw; what the cache holds changes no answer, only how fast one
// comes. Its memory is bounded by rangeCacheBytes (keys, values and
// rangeCacheEntryOverhead each); when full it drops arbitrary entries. Values
// and keys in it are shared with the responses that read them: a range's result
// must not be modified in place.

const (
	// rangeCacheBytes bounds the range cache's memory. 4 MiB holds bench/'s
	// 1,000 keys of 256 bytes many times over, or 3,500 values of 1 KiB.
	rangeCacheBytes = 4 << 20
	// rangeCacheMaxEntryBytes is the largest version the cache holds: a larger
	// value costs its copy, not the seek, and would push out many small ones.
	rangeCacheMaxEntryBytes = 16 << 10
	// rangeCacheEntryOverhead is what an entry costs besides its key and value:
	// the map's slot and key header, the struct.
	rangeCacheEntryOverhead = 96
)

// rangeCache is the cache of versions read lately. The zero value is empty and
// ready; it is safe for concurrent use.
type rangeCache struct {
	mu sync.Mutex
	// of is the state the entries were read from.
	of    *state
	byKey map[string]*cachedVersion
	bytes int64
}

// cachedVersion is one version of a key. Its slices are never modified.
type cachedVersion struct {
	key                                         []byte
	createRevision, modRevision, version, lease int64
	value                                       []byte
}

func (v *cachedVersion) keyValue() KeyValue {
	return KeyValue{Key: v.key, CreateRevision: v.createRevision, ModRevision: v.modRevision,
		Version: v.version, Lease: v.lease, Value: v.value}
}

func (v *cachedVersion) cost() int64 {
	return int64(len(v.key)+len(v.value)) + rangeCacheEntryOverhead
}

// get returns key's cached version in st if it is the version (createRevision,
// version), and drops a cached version of key that is not. Call it under the
// Store's read lock, st being the Store's state.
func (c *rangeCache) get(st *state, key []byte, createRevision, version int64) (*cachedVersion, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.of != st {
		c.of, c.byKey, c.bytes = st, nil, 0
		return nil, false
	}
	v, ok := c.byKey[string(key)]
	if !ok {
		return nil, false
	}
	if v.createRevision != createRevision || v.version != version {
		delete(c.byKey, string(key))
		c.bytes -= v.cost()
		return nil, false
	}
	return v, true
}

// put caches kv, a version read with its value from st, unless it is too large
// or the cache belongs to another state now.
func (c *rangeCache) put(st *state, kv *KeyValue) {
	v := &cachedVersion{key: kv.Key, createRevision: kv.CreateRevision, modRevision: kv.ModRevision,
		version: kv.Version, lease: kv.Lease, value: kv.Value}
	cost := v.cost()
	if cost > rangeCacheMaxEntryBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.of != st {
		return
	}
	if c.byKey == nil {
		c.byKey = map[string]*cachedVersion{}
	}
	if old, ok := c.byKey[string(kv.Key)]; ok {
		c.bytes -= old.cost()
	}
	for k, old := range c.byKey {
		if c.bytes+cost <= rangeCacheBytes {
			break
		}
		delete(c.byKey, k)
		c.bytes -= old.cost()
	}
	c.byKey[string(kv.Key)] = v
	c.bytes += cost
}

// pointRangeProbe is what a point range found in memory, under the Store's read
// lock: an answer, or, for a miss, the version to cache once the engine has
// been read (wantCreate and wantVersion; cacheable false if none).
type pointRangeProbe struct {
	resp                    *RangeResponse
	err                     error
	answered                bool
	cacheable               bool
	st                      *state
	wantCreate, wantVersion int64
}

// rangeAsCached answers a point range at the current revision (isPointRange,
// Revision 0) for sender from the newestCache and the range cache, checking
// what RangeAs checks in the same order. Anything else, and a miss, it leaves
// to RangeAs's engine read, with what to cache afterwards.
func (s *Store) rangeAsCached(sender AuthInfo, r *RangeRequest, maxResponseBytes int64) pointRangeProbe {
	if r.Revision > 0 || !isPointRange(r) {
		return pointRangeProbe{}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return pointRangeProbe{}
	}
	st := s.mu.st
	if st.failed != nil {
		return pointRangeProbe{err: st.failed, answered: true} // as beginRead: no stale read
	}
	if err := st.auth.checkOp(sender, r.Key, r.RangeEnd, false); err != nil {
		return pointRangeProbe{err: err, answered: true}
	}
	e := st.e
	if _, err := rangeRevision(r, e.rev, e.compactRev); err != nil {
		return pointRangeProbe{err: err, answered: true}
	}
	newest, _, ok := e.newestCache.get(r.Key)
	if !ok {
		return pointRangeProbe{}
	}
	if newest.tombstone {
		resp, err := pointRange(KeyValue{}, false, r, e.rev, newBudget(maxResponseBytes))
		return pointRangeProbe{resp: resp, err: err, answered: true}
	}
	v, ok := s.rangeCache.get(st, r.Key, newest.createRevision, newest.version)
	if !ok {
		return pointRangeProbe{cacheable: !r.KeysOnly, st: st, wantCreate: newest.createRevision, wantVersion: newest.version}
	}
	resp, err := pointRange(v.keyValue(), true, r, e.rev, newBudget(maxResponseBytes))
	return pointRangeProbe{resp: resp, err: err, answered: true}
}

// remember caches what a missed point range read from the engine, if it is the
// version the probe wanted.
func (s *Store) remember(p *pointRangeProbe, resp *RangeResponse) {
	if !p.cacheable || resp == nil || len(resp.Kvs) != 1 {
		return
	}
	kv := &resp.Kvs[0]
	if kv.CreateRevision == p.wantCreate && kv.Version == p.wantVersion {
		s.rangeCache.put(p.st, kv)
	}
}
