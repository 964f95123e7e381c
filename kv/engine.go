package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// engine is the MVCC key space of the store on pebble (issue 13): every version of
// every key, the history by revision, leases, sessions, proposals, auth, server
// records, and the revision, compaction revision, applied index and term, in one
// database (key layout: engine_keys.go). Its memory is the block cache and the
// memtables, sized by engineConfig, whatever the data, plus the bounded
// newestCache.
//
// Durability: every apply is one pebble batch that also records the applied index,
// committed without the engine's own WAL and without a sync. The raft log is the
// durability: after a crash the engine comes back as of its last flush (whole
// batches only), and the member replays the log from the applied index it finds.
// So the log may be truncated only up to an index that flush has made durable.
//
// The engine is used under the Store's lock: one writer at a time (an
// engineWrite is not safe for concurrent use, and the engine reuses one), and
// reads concurrent with each other and with the writer, each from its own
// iterator or pebble snapshot, which sees a consistent state. The mirrored meta
// fields (rev, compactRev, appliedIndex, ...) are read and written under that
// lock, and published only after their batch commits.
type engine struct {
	db  *pebble.DB
	dir string
	// opts are the options db was opened with: restore writes tables for it.
	opts *pebble.Options
	// restoring is set once markRestoring has cleared the records, until
	// replaceWithTables has made the new state durable: a restore that fails
	// between the two leaves no consistent state, marker or not (cutOff).
	restoring bool
	// rev is the revision of the last write (1 for an empty store, as in etcd).
	rev int64
	// compactRev is the last compaction's revision, -1 before the first.
	compactRev int64
	// appliedIndex is the index of the last log entry the engine holds, and
	// appliedTerm the raft term recorded with it (Store.SetTerm).
	appliedIndex, appliedTerm uint64
	// term is the term the next commit records.
	term uint64
	// keys counts the keys with at least one version record, and live the bytes
	// of the version and change records (Sizes).
	keys, live int64
	// unflushed counts the bytes of the batches committed since the last flush
	// (Sizes), at most what the memtables hold.
	unflushed int64
	// newestCache spares most puts their seek for the key's previous version.
	newestCache newestCache
	// separateAt is the size from which a put's value goes into a value record
	// of its own (engineConfig.SeparateValueBytes); 0 keeps every value inline.
	separateAt int
	// bg holds the engine's first failure: pebble's background work (a flush or
	// a compaction that failed, on a full disk say), a commit, or a read.
	bg *backgroundError
	// w is the write the engine reuses, one entry after another.
	w engineWrite
	// open is the write of a group of entries not yet committed (Store.BeginGroup),
	// nil if none: no other write may begin until it commits (state.commitOpen).
	open *engineWrite
}

// backgroundError is the engine's first failure: an error pebble reported from
// its background work, a commit that failed, or a read that failed (an I/O error,
// a corrupt block). Pebble retries a failed flush without end, and stops writes
// once its memtables are full, so the store takes the first failure as fatal
// instead: Apply and Flush return it from then on, and Store.Failed is closed, so
// that the member stops. Each error set is whole: it names the engine's directory.
type backgroundError struct {
	once sync.Once
	err  atomic.Pointer[error]
	done chan struct{} // closed when err is set
}

func (b *backgroundError) set(err error) {
	// Once (pebble retries a failed flush in a loop), and a caller returns only
	// once done is closed, whoever set it.
	b.once.Do(func() {
		b.err.Store(&err)
		slog.Error("kv: the storage engine failed; the store applies nothing more", "err", err.Error())
		close(b.done)
	})
}

// get returns the error, nil if none.
func (b *backgroundError) get() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// newestVersion is what a put or a delete needs of a key's newest version: 32
// bytes, no value.
type newestVersion struct {
	createRevision, version, lease int64
	tombstone                      bool
	// absent says the key has no version record at all (a tombstone too).
	absent bool
}

func newestOf(rec versionRecord, found bool) newestVersion {
	if !found {
		return newestVersion{tombstone: true, absent: true}
	}
	if rec.tombstone {
		return newestVersion{tombstone: true}
	}
	return newestVersion{createRevision: rec.createRevision, version: rec.version, lease: rec.lease}
}

func (m newestVersion) record() versionRecord {
	return versionRecord{tombstone: m.tombstone, createRevision: m.createRevision, version: m.version, lease: m.lease}
}

// newestCache holds the newest version of up to maxKeys keys, the in-memory
// structure the engine keeps beside pebble's own: its cost is bounded by maxKeys
// (about 100 bytes a key plus the key), not by the data. A put reads the key's
// newest version to continue its generation; etcd reads it from its in-memory
// index of every key, and without a cache the engine seeks for it, which was most
// of a put's cost (BenchmarkEnginePut). The versions are in a slice of slots that
// the map indexes, so that a write updates the slot its lookup found without
// another map operation or allocation (set); when full it evicts a slot drawn at
// random. Random, not the oldest insert: keys put over and over in a cycle
// longer than the cache (100,000 keys against the default 65,536) come back
// just after a first-in-first-out cache evicted them, and none hits, where
// random eviction keeps 40% (BenchmarkEnginePutCycling); on keys drawn at
// random the two hold the same. (bench/'s put-100k-keys cycles through 100,000
// keys but puts each about once in its window: first writes, which no cache
// holds.) What it holds changes no answer, only how fast one comes. Only writes
// use it, under the Store's write lock. Compaction may drop a key's newest
// version only if that is a tombstone, which the cache already treats as no
// version at all.
type newestCache struct {
	maxKeys int
	byKey   map[string]int32
	slots   []newestSlot
	// evict draws the slot an insert into a full cache takes; seeded, so that
	// a run's evictions repeat.
	evict rand.PCG
}

type newestSlot struct {
	key string
	v   newestVersion
}

// get returns key's newest version and its slot.
func (c *newestCache) get(key []byte) (newestVersion, int32, bool) {
	i, ok := c.byKey[string(key)]
	if !ok {
		return newestVersion{}, -1, false
	}
	return c.slots[i].v, i, true
}

// put sets key's newest version and returns its slot.
func (c *newestCache) put(key []byte, m newestVersion) int32 {
	if i, ok := c.byKey[string(key)]; ok {
		c.slots[i].v = m
		return i
	}
	if c.byKey == nil {
		c.byKey = map[string]int32{}
	}
	k := string(key)
	var i int32
	if len(c.slots) < c.maxKeys {
		i = int32(len(c.slots))
		c.slots = append(c.slots, newestSlot{key: k, v: m})
	} else {
		i = int32(c.evict.Uint64() % uint64(len(c.slots)))
		if j, ok := c.byKey[c.slots[i].key]; ok && j == i {
			delete(c.byKey, c.slots[i].key)
		}
		c.slots[i] = newestSlot{key: k, v: m}
	}
	c.byKey[k] = i
	return i
}

// reset empties the cache (a restore replaced the versions it held).
func (c *newestCache) reset() {
	c.byKey, c.slots = nil, nil
}

// set is put for a key that get or put found in slot (-1 if none): while the
// slot still holds key, it is updated without a map operation.
func (c *newestCache) set(slot int32, key []byte, m newestVersion) {
	if slot >= 0 && int(slot) < len(c.slots) && c.slots[slot].key == string(key) {
		c.slots[slot].v = m
		return
	}
	c.put(key, m)
}

// engineConfig bounds the engine's memory: the block cache and the memtables are
// all of it that grows with use, whatever the number of keys and revisions: at
// most CacheBytes + 2*MemTableBytes (pebble keeps a second memtable while the
// first is flushed, and stops writes rather than take a third).
type engineConfig struct {
	// CacheBytes is the block cache's size. Default 64 MiB.
	CacheBytes int64
	// MemTableBytes is one memtable's size. Default 32 MiB.
	MemTableBytes int64
	// NewestCacheKeys bounds the keys whose newest version the engine keeps in
	// memory for puts (newestCache). Default 65536 (about 10 MiB with 50-byte keys).
	NewestCacheKeys int
	// SeparateValueBytes is the value size from which a put's value is kept in
	// a record of its own, apart from its version record (engine_keys.go).
	// Default defaultSeparateValueBytes; -1 keeps every value inline.
	SeparateValueBytes int
	// FS is the file system; nil is the operating system's. Tests pass one that
	// crashes.
	FS vfs.FS
}

const (
	defaultEngineCacheBytes    = 64 << 20
	defaultEngineMemTableBytes = 32 << 20
	minEngineBytes             = 1 << 20
	defaultNewestCacheKeys     = 1 << 16
	// defaultSeparateValueBytes: see engineConfig.SeparateValueBytes.
	defaultSeparateValueBytes = 128
	maxNewestCacheKeys        = 1 << 24
	maxEngineCacheBytes       = 1 << 40
	maxEngineMemTableBytes    = 1 << 30
	// engineMemTables is how many memtables pebble may hold (one filling, one
	// being flushed) before it stops writes.
	engineMemTables = 2
	// engineL0CompactionThreshold lets L0 grow to 8 sublevels (pebble compacts
	// L0 once twice its sublevels reach the threshold) before it is compacted
	// into the base level; pebble's default, 4, compacts at 2. Every local
	// snapshot (compactLog) flushes a memtable, so under steady puts L0 gains a
	// small table every --snapshot-count entries, each overlapping the last;
	// while the data is below the base level's target (64 MiB) the base level is
	// the bottom one, and each compaction rewrote all of it (since
	// engineSpanPolicy, its version and meta records, not the values, which
	// wait in L0 until pebble's file limit). Measured before that (bench
	// put-1000c, 3 members, 2 CPUs, 1000 keys): with the default, compactions
	// and flushes took 1.0 of a follower's 1.9 CPU seconds; member CPU per put
	// 72 → 63 µs and p99 146 → 124 ms at 16; put-100c p99 26.9 → 17.4 ms.
	// Point reads pay little for the extra sublevels: each table's bloom filter
	// answers for a key it lacks (get-ser-100c within noise).
	engineL0CompactionThreshold = 16
	// engineL0StopWritesThreshold is the sublevel count at which pebble stops
	// writes until compactions catch up: pebble requires it to be at least the
	// compaction threshold. 64 sublevels is 8 times the compaction trigger, a
	// backlog only a compaction that cannot keep up (a slow or failing disk)
	// reaches.
	engineL0StopWritesThreshold = 64
	// engineFormat is the layout version written in the meta records and
	// engine snapshots. Format 2 added separated values; a format 1 engine, whose
	// values are all inline, is read as it is and marked format 2 at open.
	engineFormat = 2
)

func (c engineConfig) withDefaults() (engineConfig, error) {
	if c.CacheBytes == 0 {
		c.CacheBytes = defaultEngineCacheBytes
	}
	if c.MemTableBytes == 0 {
		c.MemTableBytes = defaultEngineMemTableBytes
	}
	if c.CacheBytes < minEngineBytes || c.CacheBytes > maxEngineCacheBytes {
		return c, fmt.Errorf("%w: CacheBytes (--backend-cache-bytes) is %d; give between %d and %d (0 selects %d)",
			ErrInvalidConfig, c.CacheBytes, minEngineBytes, int64(maxEngineCacheBytes), defaultEngineCacheBytes)
	}
	if c.MemTableBytes < minEngineBytes || c.MemTableBytes > maxEngineMemTableBytes {
		return c, fmt.Errorf("%w: MemTableBytes (--backend-memtable-bytes) is %d; give between %d and %d (0 selects %d)",
			ErrInvalidConfig, c.MemTableBytes, minEngineBytes, maxEngineMemTableBytes, defaultEngineMemTableBytes)
	}
	if c.NewestCacheKeys == 0 {
		c.NewestCacheKeys = defaultNewestCacheKeys
	}
	if c.NewestCacheKeys < 1 || c.NewestCacheKeys > maxNewestCacheKeys {
		return c, fmt.Errorf("%w: newest-version cache of %d keys; give between 1 and %d (0 selects %d)",
			ErrInvalidConfig, c.NewestCacheKeys, maxNewestCacheKeys, defaultNewestCacheKeys)
	}
	switch {
	case c.SeparateValueBytes == 0:
		c.SeparateValueBytes = defaultSeparateValueBytes
	case c.SeparateValueBytes < -1:
		return c, fmt.Errorf("%w: SeparateValueBytes (--backend-separate-value-bytes) is %d; give a size in bytes, 0 for the default (%d) or -1 for none",
			ErrInvalidConfig, c.SeparateValueBytes, defaultSeparateValueBytes)
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	return c, nil
}

// Meta record names.
var (
	metaFormat = []byte{engineMetaPrefix, 'f'}
	// metaPosition holds the applied index, the revision, the compaction
	// revision, the applied term and the key count, five varints in one record:
	// every batch writes it, and one record is one memtable insert rather than five.
	metaPosition = []byte{engineMetaPrefix, 'p'}
)

// quietLogger keeps pebble's informational lines out of the member's log; its
// errors go to slog, and a fatal one panics as pebble expects.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	slog.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (quietLogger) Fatalf(format string, args ...any) {
	panic("pebble: " + fmt.Sprintf(format, args...))
}

// openEngine opens the engine in dir, creating an empty store (revision 1,
// nothing compacted or applied) if dir holds none.
func openEngine(dir string, cfg engineConfig) (*engine, error) {
	return openEngineMode(dir, cfg, false)
}

// openEngineForRestore opens the engine in dir to restore a snapshot into it: an
// engine cut off in an earlier restore is accepted, and must not be used before
// restore succeeds.
func openEngineForRestore(dir string, cfg engineConfig) (*engine, error) {
	return openEngineMode(dir, cfg, true)
}

func openEngineMode(dir string, cfg engineConfig, forRestore bool) (*engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// Pebble reserves its memtables' memory in the block cache: sized at the
	// blocks alone, the cache would hold no block at all once the memtables had
	// taken it (measured: 0 hits in BenchmarkEngineChoice with cache == memtable).
	cache := pebble.NewCache(cfg.CacheBytes + engineMemTables*cfg.MemTableBytes)
	defer cache.Unref() // the database holds its own reference
	bg := &backgroundError{done: make(chan struct{})}
	opts := &pebble.Options{
		EventListener: &pebble.EventListener{BackgroundError: func(err error) {
			bg.set(fmt.Errorf("kv: the storage engine in %q failed in the background: %w", dir, err))
		}},
		Comparer:                    engineComparer,
		Cache:                       cache,
		MemTableSize:                uint64(cfg.MemTableBytes),
		MemTableStopWritesThreshold: engineMemTables,
		L0CompactionThreshold:       engineL0CompactionThreshold,
		L0StopWritesThreshold:       engineL0StopWritesThreshold,
		DisableWAL:                  true,
		FS:                          cfg.FS,
		Logger:                      quietLogger{},
	}
	opts.Experimental.SpanPolicyFunc = engineSpanPolicy
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10) // 1% false positives
	}
	_ = cfg.FS.RemoveAll(dir + restoreDirSuffix) // tables of a restore a crash cut off
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("kv: opening the storage engine in %q: %w", dir, err)
	}
	opts.EnsureDefaults()
	e := &engine{db: db, dir: dir, opts: opts, newestCache: newestCache{maxKeys: cfg.NewestCacheKeys}, bg: bg,
		separateAt: max(cfg.SeparateValueBytes, 0)}
	if restoring, err := e.getMeta(metaRestoring); forRestore && err == nil && restoring != nil {
		return e, nil
	}
	if err := e.loadMeta(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return e, nil
}

// loadMeta reads the meta records, or writes those of an empty store.
func (e *engine) loadMeta() error {
	restoring, err := e.getMeta(metaRestoring)
	if err != nil {
		return err
	}
	if restoring != nil {
		return fmt.Errorf("%w: engine in %q; restore a snapshot again, or remove the directory and let the member catch up",
			ErrRestoreCutOff, e.dir)
	}
	format, err := e.getMeta(metaFormat)
	if err != nil {
		return err
	}
	if format == nil {
		e.rev, e.compactRev, e.appliedIndex, e.appliedTerm, e.term, e.keys, e.live = 1, -1, 0, 0, 0, 0, 0
		b := e.db.NewBatch()
		defer b.Close()
		_ = b.Set(metaFormat, binary.AppendUvarint(nil, engineFormat), nil)
		e.setMeta(b)
		if err := b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("kv: initializing the storage engine in %q: %w", e.dir, err)
		}
		return e.db.Flush()
	}
	v, n := binary.Uvarint(format)
	if n != len(format) || !readableFormat(v) {
		return fmt.Errorf("%w: engine in %q has layout format %x; this build reads formats 1 to %d: point the data dir elsewhere or use the build that wrote it",
			ErrCorruptEngine, e.dir, format, engineFormat)
	}
	pos, err := e.getMeta(metaPosition)
	if err != nil {
		return err
	}
	var fields [6]int64
	rest := pos
	for i := range fields {
		v, n := binary.Varint(rest)
		if n <= 0 {
			return fmt.Errorf("%w: engine in %q: meta record %q is %x", ErrCorruptEngine, e.dir, metaPosition, pos)
		}
		fields[i], rest = v, rest[n:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: engine in %q: meta record %q is %x", ErrCorruptEngine, e.dir, metaPosition, pos)
	}
	applied, rev, compactRev, term, keys, live := fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
	if applied < 0 || rev < 1 || compactRev < -1 || compactRev > rev || term < 0 || keys < 0 || live < 0 {
		return fmt.Errorf("%w: engine in %q: applied index %d, revision %d, compaction revision %d, term %d, %d keys, %d live bytes are inconsistent",
			ErrCorruptEngine, e.dir, applied, rev, compactRev, term, keys, live)
	}
	if v != engineFormat {
		// The engine is whole: mark it as this build's format before any
		// write may separate a value, so that an older build refuses it.
		err := e.db.Set(metaFormat, binary.AppendUvarint(nil, engineFormat), pebble.NoSync)
		if err == nil {
			err = e.db.Flush() // no WAL: the flush makes it durable
		}
		if err != nil {
			return fmt.Errorf("kv: upgrading the storage engine in %q to layout format %d: %w", e.dir, engineFormat, err)
		}
	}
	e.live = live
	e.appliedIndex, e.rev, e.compactRev = uint64(applied), rev, compactRev
	e.appliedTerm, e.term, e.keys = uint64(term), uint64(term), keys
	return nil
}

// separates reports whether a put of value keeps it in a value record of its
// own (engine_keys.go).
func (e *engine) separates(value []byte) bool {
	return e.separateAt > 0 && len(value) >= e.separateAt
}

// readableFormat reports whether this build reads an engine of layout format v.
func readableFormat(v uint64) bool { return v == 1 || v == engineFormat }

func (e *engine) getMeta(name []byte) ([]byte, error) {
	v, closer, err := e.db.Get(name)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kv: reading meta record %q of the engine in %q: %w", name, e.dir, err)
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// setMeta writes the mirrored meta fields into b.
func (e *engine) setMeta(b *pebble.Batch) {
	var buf [6 * binary.MaxVarintLen64]byte
	v := binary.AppendVarint(buf[:0], int64(e.appliedIndex))
	v = binary.AppendVarint(v, e.rev)
	v = binary.AppendVarint(v, e.compactRev)
	v = binary.AppendVarint(v, int64(e.appliedTerm))
	v = binary.AppendVarint(v, e.keys)
	v = binary.AppendVarint(v, e.live)
	_ = b.Set(metaPosition, v, nil)
}

// close closes the database. Writes not yet flushed are lost, as in a crash: the
// raft log holds them.
func (e *engine) close() error {
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("kv: closing the storage engine in %q: %w", e.dir, err)
	}
	return nil
}

// flush makes every write committed so far durable and returns the applied index
// the engine will hold after a crash from now on, the highest the raft log may be
// truncated to.
func (e *engine) flush() (uint64, error) {
	applied, flushed, err := e.startFlush()
	if err != nil {
		return 0, err
	}
	return applied, e.waitFlush(flushed)
}

// startFlush starts a flush of every write committed so far and returns the
// applied index it covers and the channel closed once it is durable
// (waitFlush). It must be called under the Store's write lock, so that no batch
// commits meanwhile; the wait needs no lock, and writes go on into a new
// memtable. The flushed bytes leave the count of unflushed ones (Sizes) now.
func (e *engine) startFlush() (uint64, <-chan struct{}, error) {
	if err := e.bg.get(); err != nil {
		return 0, nil, err
	}
	applied := e.appliedIndex
	flushed, err := e.db.AsyncFlush()
	if err != nil {
		return 0, nil, fmt.Errorf("kv: flushing the storage engine in %q: %w", e.dir, err)
	}
	e.unflushed = 0
	return applied, flushed, nil
}

// waitFlush waits for the flush that closes flushed, or for pebble's background
// work to fail (pebble would retry a failed flush without end).
func (e *engine) waitFlush(flushed <-chan struct{}) error {
	select {
	case <-flushed:
		return nil
	case <-e.bg.done:
		return e.bg.get()
	}
}

// engineWrite is the batch of one applied entry: its changes share one revision,
// beginRev+1, which the store's revision moves to only if something changed (as
// etcd's storeTxnWrite does), and it commits with the entry's index. A group's
// write (engine.open) holds several entries, each begun by nextEntry, and commits
// with the last one's index.
type engineWrite struct {
	e        *engine
	b        *pebble.Batch
	beginRev int64
	// sub counts the changes so far: the next one's sub-revision.
	sub uint32
	// blind says the batch has no index: reads go to the database, and none may
	// come after a write (beginBlindWrite).
	blind bool
	// compactRev is the compaction revision the write sets, if compacts.
	compactRev int64
	compacts   bool
	// pending holds the newest version of each key the write changed, for the
	// engine's newestCache once the batch commits (pendingVersions).
	pending pendingVersions
	// keys and live are the changes the write makes to the engine's key count
	// and live bytes.
	keys, live int64
	// buf, keyBuf and changeBuf are scratch for the records' bytes, which the
	// batch copies, and seekBuf for the seek key of newest.
	buf, keyBuf, changeBuf, seekBuf []byte
	// droppedSeqs is scratch for the proposal results applyOnce deletes.
	droppedSeqs []uint64
	// slotHint is the newestCache slot of the key newest last looked up, for the
	// change that follows it (-1 if none).
	slotHint int32
	// inUse says the write has begun and not ended (the engine reuses one).
	inUse bool
}

// pendingVersions maps the keys a write changed to their newest version: a
// slice while few (a put changes one key), a map once many.
type pendingVersions struct {
	keys [][]byte
	vers []newestVersion
	// slots are the keys' slots in the newestCache, -1 if unknown
	// (newestCache.set).
	slots []int32
	byKey map[string]int
	// arena holds the keys' copies, reused from one write to the next.
	arena []byte
}

const pendingMapAfter = 16

func (p *pendingVersions) get(key []byte) (newestVersion, bool) {
	if p.byKey != nil {
		i, ok := p.byKey[string(key)]
		if !ok {
			return newestVersion{}, false
		}
		return p.vers[i], true
	}
	for i := len(p.keys) - 1; i >= 0; i-- {
		if bytes.Equal(p.keys[i], key) {
			return p.vers[i], true
		}
	}
	return newestVersion{}, false
}

// put records key's newest version; slot is the key's slot in the newestCache
// if the write has looked it up, -1 if not.
func (p *pendingVersions) put(key []byte, v newestVersion, slot int32) {
	if p.byKey != nil {
		if i, ok := p.byKey[string(key)]; ok {
			p.vers[i] = v
			return
		}
	} else {
		for i := range p.keys {
			if bytes.Equal(p.keys[i], key) {
				p.vers[i] = v
				return
			}
		}
	}
	// A copy in the arena: a later append may move the arena, but the copies
	// already taken stay where they are, unchanged until reset.
	start := len(p.arena)
	p.arena = append(p.arena, key...)
	p.keys = append(p.keys, p.arena[start:len(p.arena):len(p.arena)])
	p.vers = append(p.vers, v)
	p.slots = append(p.slots, slot)
	if p.byKey == nil && len(p.keys) > pendingMapAfter {
		p.byKey = make(map[string]int, 2*len(p.keys))
		for i, k := range p.keys {
			p.byKey[string(k)] = i
		}
	} else if p.byKey != nil {
		p.byKey[string(key)] = len(p.keys) - 1
	}
}

func (p *pendingVersions) reset() {
	clear(p.keys) // the keys are the write's own copies: let them go
	if cap(p.arena) > pendingArenaMax {
		p.arena = nil // a large txn's keys: not kept for every later put
	}
	p.keys, p.vers, p.slots, p.byKey, p.arena = p.keys[:0], p.vers[:0], p.slots[:0], nil, p.arena[:0]
}

// pendingArenaMax bounds the key bytes a write's arena keeps for the next.
const pendingArenaMax = 64 << 10

// begin starts a write on b, reusing the engine's write when it is free.
func (e *engine) begin(b *pebble.Batch, blind bool) *engineWrite {
	if e.open != nil {
		// Its batch would commit after this one, moving the applied index back.
		panic("kv: an engine write begun while a group of entries is open (state.commitOpen first)")
	}
	w := &e.w
	if w.inUse {
		w = &engineWrite{}
	}
	w.pending.reset()
	*w = engineWrite{e: e, b: b, beginRev: e.rev, blind: blind, inUse: true, slotHint: -1,
		pending: w.pending, buf: w.buf[:0], keyBuf: w.keyBuf[:0], changeBuf: w.changeBuf[:0], seekBuf: w.seekBuf[:0],
		droppedSeqs: w.droppedSeqs[:0]}
	return w
}

// nextEntry begins the next entry of a group's write: its changes get the
// revision after the last entry's, if that changed anything. Its reads still go
// around the batch (it is blind): groupable admits only commands whose one read
// is newest, which sees the group's own changes through pending.
func (w *engineWrite) nextEntry() {
	if w.sub > 0 {
		w.beginRev++
		w.sub = 0
	}
	w.slotHint = -1
}

// end ends the write, whose batch is closed.
func (w *engineWrite) end() {
	w.b = nil
	w.inUse = false
}

// beginWrite starts the batch of one entry, for a command that may read after it
// has written (a Txn): reads through it see its writes.
func (e *engine) beginWrite() *engineWrite {
	return e.begin(e.db.NewIndexedBatch(), false)
}

// beginBlindWrite starts the batch of one entry for a command that reads nothing
// after its first write (a Put, a DeleteRange, a lease revoke): its reads go to
// the database, and the batch needs no index, which makes a put about twice as
// cheap (BenchmarkEnginePut).
func (e *engine) beginBlindWrite() *engineWrite {
	return e.begin(e.db.NewBatch(), true)
}

// reader is what the write's reads see.
func (w *engineWrite) reader() pebble.Reader {
	if !w.blind {
		return w.b
	}
	if w.sub > 0 {
		panic(fmt.Sprintf("kv: a blind engine write read after its write %d at revision %d; begin it with beginWrite", w.sub, w.beginRev+1))
	}
	return w.e.db
}

// readRev is the revision reads inside the write see: the write's own once it has
// changed something, as in etcd.
func (w *engineWrite) readRev() int64 {
	if w.sub > 0 {
		return w.beginRev + 1
	}
	return w.beginRev
}

// get returns key at rev as the batch sees it.
func (w *engineWrite) get(key []byte, rev int64, withValue bool) (KeyValue, bool, error) {
	return engineGet(w.reader(), key, rev, withValue)
}

// newest returns the newest version record of key as the batch sees it, without
// its value: from the write's own changes, the engine's cache of newest versions,
// or one seek (whose answer then goes into the cache).
// The key's slot in the cache goes to the change that follows (slotHint), so
// that the commit updates it without looking the key up again.
func (w *engineWrite) newest(key []byte) (versionRecord, bool, error) {
	w.slotHint = -1
	if m, ok := w.pending.get(key); ok {
		return m.record(), !m.absent, nil
	}
	if m, slot, ok := w.e.newestCache.get(key); ok {
		w.slotHint = slot
		return m.record(), !m.absent, nil
	}
	var rec versionRecord
	var found bool
	var err error
	w.seekBuf, rec, found, err = newestRecordBuf(w.reader(), key, w.readRev(), w.seekBuf)
	if err == nil {
		// No version at all is cached as a tombstone: a put or a delete treats
		// both alike.
		w.slotHint = w.e.newestCache.put(key, newestOf(rec, found))
	}
	return rec, found, err
}

// put writes key at the write's revision, continuing the key's generation if it
// is live, moves the key's lease attachment if its lease changes, and returns the
// revision. The lease is not checked here (putRequest does).
func (w *engineWrite) put(key, value []byte, lease int64) (int64, error) {
	rev := w.beginRev + 1
	prev, found, err := w.newest(key)
	if err != nil {
		return 0, err
	}
	rec := versionRecord{createRevision: rev, version: 1, lease: lease, value: value}
	var oldLease int64
	if !found {
		w.keys++
	}
	if found && !prev.tombstone {
		rec.createRevision, rec.version, oldLease = prev.createRevision, prev.version+1, prev.lease
	}
	if oldLease != lease {
		if oldLease != 0 {
			_ = w.b.Delete(attachKey(oldLease, key), nil)
		}
		if lease != 0 {
			_ = w.b.Set(attachKey(lease, key), nil, nil)
		}
	}
	w.record(key, &rec)
	return rev, nil
}

// tombstone ends the generation of key, live with lease, without reading it.
func (w *engineWrite) tombstone(key []byte, lease int64) {
	if lease != 0 {
		_ = w.b.Delete(attachKey(lease, key), nil)
	}
	w.record(key, &versionRecord{tombstone: true})
}

// record writes a change of key: its version record and its history record.
func (w *engineWrite) record(key []byte, rec *versionRecord) {
	rev := w.beginRev + 1
	if w.sub == 1<<32-1 {
		panic(fmt.Sprintf("kv: more than 2^32-1 changes at revision %d", rev))
	}
	if w.e.separates(rec.value) && !rec.tombstone {
		w.keyBuf = valueKey(w.keyBuf[:0], rev, w.sub)
		_ = w.b.Set(w.keyBuf, rec.value, nil)
		w.live += int64(len(w.keyBuf) + len(rec.value))
		rec.separated, rec.separatedLen, rec.value = true, len(rec.value), nil
	}
	w.buf = rec.appendTo(w.buf[:0])
	w.keyBuf = versionKey(w.keyBuf[:0], key, rev, w.sub)
	_ = w.b.Set(w.keyBuf, w.buf, nil)
	w.live += int64(len(w.keyBuf) + len(w.buf))
	w.pending.put(key, newestOf(*rec, true), w.slotHint)
	w.slotHint = -1
	kind := byte(recordPut)
	if rec.tombstone {
		kind = recordTombstone
	}
	w.keyBuf = appendChangeKey(w.keyBuf[:0], rev, w.sub)
	w.changeBuf = append(append(w.changeBuf[:0], kind), key...)
	_ = w.b.Set(w.keyBuf, w.changeBuf, nil)
	w.live += int64(len(w.keyBuf) + len(w.changeBuf))
	w.sub++
}

// commit writes the batch with the entry's index, without a sync, and publishes
// the revision. Committing and aborting end the write.
func (w *engineWrite) commit(appliedIndex uint64) error {
	defer w.end()
	defer w.b.Close()
	e := w.e
	rev, compactRev, applied, term, keys, live := e.rev, e.compactRev, e.appliedIndex, e.appliedTerm, e.keys, e.live
	e.rev = w.beginRev // past a group's earlier entries (nextEntry)
	if w.sub > 0 {
		e.rev++
	}
	if w.compacts {
		e.compactRev = w.compactRev
	}
	e.appliedIndex, e.appliedTerm = appliedIndex, e.term
	e.keys += w.keys
	e.live += w.live
	e.setMeta(w.b)
	if err := w.b.Commit(pebble.NoSync); err != nil {
		e.rev, e.compactRev, e.appliedIndex, e.appliedTerm, e.keys, e.live = rev, compactRev, applied, term, keys, live
		return fmt.Errorf("kv: committing entry %d to the storage engine in %q: %w", appliedIndex, e.dir, err)
	}
	e.unflushed += int64(w.b.Len())
	for i, k := range w.pending.keys {
		e.newestCache.set(w.pending.slots[i], k, w.pending.vers[i])
	}
	return nil
}

// abort drops the batch.
func (w *engineWrite) abort() {
	_ = w.b.Close()
	w.end()
}

// get returns key as it was at rev.
func (e *engine) get(key []byte, rev int64, withValue bool) (KeyValue, bool, error) {
	return engineGet(e.db, key, rev, withValue)
}

// engineGet reads key's newest version at or below rev from r.
func engineGet(r pebble.Reader, key []byte, rev int64, withValue bool) (KeyValue, bool, error) {
	if v, ok := r.(*iterView); ok {
		// A read's own iterator: seek it rather than open another.
		return engineGetIter(v.base, key, rev, withValue)
	}
	// No bounds: SeekPrefixGE stays within the key's versions.
	it, err := r.NewIter(nil)
	if err != nil {
		return KeyValue{}, false, err
	}
	defer it.Close()
	return engineGetIter(it, key, rev, withValue)
}

// engineGetIter reads key's newest version at or below rev with it.
func engineGetIter(it *pebble.Iterator, key []byte, rev int64, withValue bool) (KeyValue, bool, error) {
	var seek [64]byte
	if !it.SeekPrefixGE(versionSeekKey(seek[:0], key, rev)) {
		return KeyValue{}, false, it.Error()
	}
	_, modRev, sub := splitVersionKey(it.Key())
	rec, err := decodeVersionRecord(it.Value())
	if err != nil || rec.tombstone {
		return KeyValue{}, false, err
	}
	kv := rec.keyValue(bytes.Clone(key), modRev, withValue)
	if withValue && rec.separated {
		if kv.Value, err = readValue(it, false, modRev, sub, rec.separatedLen); err != nil {
			return KeyValue{}, false, err
		}
	}
	return kv, true, nil
}

// newestRecord reads key's newest version record at or below rev from r.
func newestRecord(r pebble.Reader, key []byte, rev int64) (versionRecord, bool, error) {
	_, rec, found, err := newestRecordBuf(r, key, rev, nil)
	return rec, found, err
}

// newestRecordBuf is newestRecord with the seek key built in buf (the iterator
// keeps it, so a buffer on the stack would move to the heap), which it returns
// for reuse.
func newestRecordBuf(r pebble.Reader, key []byte, rev int64, buf []byte) ([]byte, versionRecord, bool, error) {
	// No bounds: SeekPrefixGE stays within the key's versions (the comparer's
	// Split), and bounds would cost an allocation per put.
	it, err := r.NewIter(nil)
	if err != nil {
		return buf, versionRecord{}, false, err
	}
	defer it.Close()
	buf = versionSeekKey(buf[:0], key, rev)
	if !it.SeekPrefixGE(buf) {
		return buf, versionRecord{}, false, it.Error()
	}
	rec, err := decodeVersionRecord(it.Value())
	rec.value = nil // its callers need the version, not the value
	return buf, rec, err == nil, err
}

// keyValue returns the record as a KeyValue; the value is copied out of the
// iterator's memory only if withValue, and left out if separated (readValue).
func (r *versionRecord) keyValue(key []byte, modRev int64, withValue bool) KeyValue {
	kv := KeyValue{Key: key, CreateRevision: r.createRevision, ModRevision: modRev, Version: r.version, Lease: r.lease}
	if withValue && len(r.value) > 0 {
		kv.Value = bytes.Clone(r.value)
	}
	return kv
}

// scan calls fn for every key of etcd's range [key, rangeEnd) that exists at rev,
// in key order, until fn returns false.
func (e *engine) scan(key, rangeEnd []byte, rev int64, withValues bool, fn func(KeyValue) bool) error {
	return engineScan(e.db, key, rangeEnd, rev, withValues, fn)
}

func engineScan(r pebble.Reader, key, rangeEnd []byte, rev int64, withValues bool, fn func(KeyValue) bool) error {
	lower, upper := rangeBounds(key, rangeEnd)
	var readErr error
	err := engineAscend(r, lower, upper, rev, func(prefix []byte, modRev int64, sub uint32, rec *versionRecord) bool {
		kv := rec.keyValue(unescapeKey(prefix), modRev, withValues)
		if withValues && rec.separated {
			if kv.Value, readErr = readValueFrom(r, modRev, sub, rec.separatedLen); readErr != nil {
				return false
			}
		}
		return fn(kv)
	})
	if readErr != nil {
		return readErr
	}
	return err
}

// engineScanNexts is how many older versions a scan steps over with Next before
// it seeks past them: a step is cheaper than a seek, and most keys have few.
const engineScanNexts = 4

// engineAscend calls fn with the version visible at rev of every key with a
// version record in [lower, upper) that is live at rev, in key order, until fn
// returns false: the key's version prefix, the version's revision and
// sub-revision, and its record. The prefix and the record alias the iterator's
// memory: they are valid only during the call.
func engineAscend(r pebble.Reader, lower, upper []byte, rev int64, fn func(prefix []byte, modRev int64, sub uint32, rec *versionRecord) bool) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	var prefix, seek []byte
	valid := it.First()
	for valid {
		p, modRev, sub := splitVersionKey(it.Key())
		prefix = append(prefix[:0], p...)
		if modRev > rev {
			// Newer than the read: seek to the newest version at or below rev.
			seek = prefixSeekKey(seek[:0], prefix, rev)
			if valid = it.SeekGE(seek); !valid || !bytes.HasPrefix(it.Key(), prefix) {
				continue
			}
			_, modRev, sub = splitVersionKey(it.Key())
		}
		rec, err := decodeVersionRecord(it.Value())
		if err != nil {
			return err
		}
		if !rec.tombstone && !fn(prefix, modRev, sub, &rec) {
			return nil
		}
		// Step over the key's older versions.
		valid = it.Next()
		for i := 0; valid && bytes.HasPrefix(it.Key(), prefix); i++ {
			if i == engineScanNexts {
				valid = it.SeekGE(prefixEnd(prefix))
				break
			}
			valid = it.Next()
		}
	}
	return it.Error()
}

// engineChange is one change of the history: key put or deleted at (rev, sub).
type engineChange struct {
	rev     int64
	sub     uint32
	key     []byte
	deleted bool
}

// changes calls fn for the history's changes from revision from through to, in
// order, until fn returns false.
func (e *engine) changes(from, to int64, fn func(engineChange) bool) error {
	return readChanges(e.db, from, to, fn)
}

// readChanges is changes from r, a view of the engine or the engine itself.
func readChanges(r pebble.Reader, from, to int64, fn func(engineChange) bool) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: changeKey(from, 0), UpperBound: changeKey(to+1, 0)})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != 13 || len(v) < 1 || (v[0] != recordPut && v[0] != recordTombstone) {
			return fmt.Errorf("%w: change record %x = %x", ErrCorruptEngine, k, v)
		}
		c := engineChange{rev: int64(binary.BigEndian.Uint64(k[1:])), sub: binary.BigEndian.Uint32(k[9:]),
			key: bytes.Clone(v[1:]), deleted: v[0] == recordTombstone}
		if !fn(c) {
			return nil
		}
	}
	return it.Error()
}

// version reads the version record of key's change at exactly (rev, sub); found
// is false once compaction has dropped it.
func (e *engine) version(key []byte, rev int64, sub uint32) (versionRecord, bool, error) {
	v, closer, err := e.db.Get(versionKey(nil, key, rev, sub))
	if errors.Is(err, pebble.ErrNotFound) {
		return versionRecord{}, false, nil
	}
	if err != nil {
		return versionRecord{}, false, err
	}
	defer closer.Close()
	rec, err := decodeVersionRecord(v)
	if err != nil {
		return versionRecord{}, false, err
	}
	if rec.separated {
		rec.value, err = readValueFrom(e.db, rev, sub, rec.separatedLen)
		rec.separated, rec.separatedLen = false, 0
		return rec, err == nil, err
	}
	rec.value = bytes.Clone(rec.value)
	return rec, true, nil
}

// compact mirrors etcd's compaction at rev, applied as entry appliedIndex: reads
// below rev fail from now on, and the history they would need goes, by range
// deletes that the engine's own compactions turn into free space. Per key it keeps
// the versions above rev and the one visible at rev, unless that is a tombstone
// (which goes with everything older, as etcd drops it).
func (e *engine) compact(rev int64, appliedIndex uint64) error {
	w := e.beginBlindWrite()
	if err := w.compact(rev); err != nil {
		w.abort()
		return err
	}
	return w.commit(appliedIndex)
}

// compact is engine.compact in a write, so that the command's session or proposal
// record goes in the same batch; it must be the write's only change to the key
// space.
func (w *engineWrite) compact(rev int64) error {
	e := w.e
	if rev <= e.compactRev {
		return ErrCompacted
	}
	if rev > e.rev {
		return ErrFutureRev
	}
	b := w.b
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineVersionPrefix}, UpperBound: []byte{engineVersionPrefix + 1}})
	if err != nil {
		return err
	}
	var prefix, seek, first []byte
	valid := it.First()
	for valid {
		p, _, _ := splitVersionKey(it.Key())
		prefix = append(prefix[:0], p...)
		first = append(first[:0], it.Key()...)
		end := prefixEnd(prefix)
		seek = prefixSeekKey(seek[:0], prefix, rev)
		if it.SeekGE(seek) && bytes.HasPrefix(it.Key(), prefix) {
			rec, err := decodeVersionRecord(it.Value())
			if err != nil {
				it.Close()
				return err
			}
			// A tombstone goes with everything older; a put stays, and the
			// versions older than it go.
			drop := rec.tombstone
			if drop && bytes.Equal(it.Key(), first) {
				// The key's newest record goes: the key is gone.
				w.keys--
				w.pending.put(unescapeKey(prefix), newestVersion{tombstone: true, absent: true}, -1)
			}
			if !drop {
				drop = it.Next() && bytes.HasPrefix(it.Key(), prefix)
			}
			if drop {
				n, err := dropVersions(b, it, end)
				if err != nil {
					it.Close()
					return err
				}
				w.live -= n
			}
		}
		valid = it.SeekGE(end)
	}
	if err := it.Close(); err != nil {
		return err
	}
	history, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineChangePrefix}, UpperBound: changeKey(rev, 0)})
	if err != nil {
		return err
	}
	var run deletedRun
	for valid := history.First(); valid; valid = history.Next() {
		run.add(history.Key())
		w.live -= int64(len(history.Key()) + len(history.Value()))
	}
	if err := history.Close(); err != nil {
		return err
	}
	run.delete(b)
	w.compactRev, w.compacts = rev, true
	return nil
}

// dropVersions deletes in b the version records from it's position up to end
// (deletedRun), and the value records of the separated values among them, one by
// one (a key's values are spread across the revisions); and returns the bytes of
// all those records: it reads what it counts, as etcd's compaction does.
func dropVersions(b *pebble.Batch, it *pebble.Iterator, end []byte) (int64, error) {
	var run deletedRun
	var n int64
	var vk [13]byte
	for valid := it.Valid(); valid && bytes.Compare(it.Key(), end) < 0; valid = it.Next() {
		run.add(it.Key())
		n += int64(len(it.Key()) + len(it.Value()))
		if v := it.Value(); len(v) > 0 && v[0] == recordPutSeparated {
			rec, err := decodeVersionRecord(v)
			if err != nil {
				return 0, err
			}
			_, rev, sub := splitVersionKey(it.Key())
			_ = b.Delete(valueKey(vk[:0], rev, sub), nil)
			n += int64(len(vk) + rec.separatedLen)
		}
	}
	run.delete(b)
	return n, it.Error()
}

// deletedRun is a run of consecutive records a compaction deletes (a key's
// older versions, the history below the compaction revision): one by one while
// the run is short, else by one range delete from its first record to just past
// its last, which ends where the records that earlier compactions deleted begin.
//
// Range deletes must be few and must not overlap: pebble fragments a memtable's
// range deletions into lists it rebuilds after each new one, in memory quadratic
// in the number that overlap. With a range delete per key and one for the
// history, each from the start of its records, a compaction after every write
// cost 184 s and 249 GB of allocations over 5,000 writes; with range deletes that
// end at the run's last record, 9.8 s and 4.3 GB; with short runs deleted one by
// one, as here, 2.1 s and 3 MB (TestFrequentCompactionsAreCheap).
type deletedRun struct {
	keys [][]byte // the first maxPointDeletes
	last []byte
	n    int
}

// maxPointDeletes is the longest run deleted record by record.
const maxPointDeletes = 16

func (r *deletedRun) add(key []byte) {
	r.last = append(r.last[:0], key...)
	if r.n < maxPointDeletes {
		r.keys = append(r.keys, append([]byte(nil), key...))
	}
	r.n++
}

// delete writes the run's deletion to b.
func (r *deletedRun) delete(b *pebble.Batch) {
	if r.n > maxPointDeletes {
		_ = b.DeleteRange(r.keys[0], keyAfter(r.last), nil)
		return
	}
	for _, k := range r.keys {
		_ = b.Delete(k, nil)
	}
}

// keyAfter returns the least key above k that splits as pebble requires
// (engineComparer): k and a 0x00 for a key that is its own prefix (the history's),
// but for a version key the next version key of the same user key (the 12-byte
// suffix plus one), or past the last, the user key's prefixEnd. k and a 0x00 would
// still sort among the key's versions while Split took it whole, out of the
// prefix order pebble's seeks rely on (its invariant checks, on under -race,
// panic on such a range deletion's end).
func keyAfter(k []byte) []byte {
	n := engineComparer.Split(k)
	if n == len(k) {
		return append(append([]byte(nil), k...), 0x00)
	}
	next := append([]byte(nil), k...)
	for i := len(next) - 1; i >= n; i-- {
		if next[i]++; next[i] != 0 {
			return next
		}
	}
	return prefixEnd(k[:n])
}
