package kv

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
)

// The engine choice of issue 13, measured: the same MVCC layout (user key, then
// the revision inverted so a key's newest version sorts first) on pebble and on
// bbolt, each written without a sync per batch as the store writes (the raft WAL
// is the durability). Every engine gets the same work: batches of 100 puts of
// 100-byte values, point reads of the newest version at or below a revision,
// and ranges of 100 keys. The reads run first, over two versions of every key,
// after the engine has settled and every key was read once, so that they measure
// a warm engine rather than its background work; the puts run last. The key count is engineChoiceKeys, 100k by default;
// RAFTKV_ENGINE_BENCH_KEYS=1000000 gives the figures in ARCHITECTURE.md.
//
//	go test ./kv -run '^$' -bench EngineChoice -benchtime 20000x

func engineChoiceKeys(b *testing.B) int {
	if s := os.Getenv("RAFTKV_ENGINE_BENCH_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1000 {
			b.Fatalf("RAFTKV_ENGINE_BENCH_KEYS is %q; give a key count of at least 1000", s)
		}
		return n
	}
	return 100_000
}

// choiceKey is the benchmark's MVCC key: the fixed-width user key of i, then
// ^rev big-endian, so the newest revision of a key sorts first.
func choiceKey(dst []byte, i int, rev int64) []byte {
	dst = fmt.Appendf(dst[:0], "/registry/pods/default/pod-%08d", i)
	return binary.BigEndian.AppendUint64(dst, ^uint64(rev))
}

const choiceUserKeyLen = len("/registry/pods/default/pod-00000000")

// choiceEngine is the little each engine must do for the benchmark.
type choiceEngine interface {
	// putBatch writes keys [first, first+n) at rev in one atomic batch.
	putBatch(b *testing.B, first, n int, rev int64, value []byte)
	// get finds key i's newest version at or below rev.
	get(b *testing.B, i int, rev int64) bool
	// scan visits up to n keys from key i at rev, one version each.
	scan(b *testing.B, i, n int, rev int64) int
	// settle finishes the background work the load left (pebble's flushes and
	// compactions), so that the reads measure a settled engine.
	settle(b *testing.B)
	close()
}

type pebbleChoice struct{ db *pebble.DB }

func openPebbleChoice(b *testing.B, dir string) choiceEngine {
	// 64 MiB of blocks unless RAFTKV_ENGINE_BENCH_CACHE_MB says otherwise;
	// pebble takes its memtables out of the same cache.
	cacheBytes := int64(64 << 20)
	if s := os.Getenv("RAFTKV_ENGINE_BENCH_CACHE_MB"); s != "" {
		mb, err := strconv.Atoi(s)
		if err != nil || mb < 1 {
			b.Fatalf("RAFTKV_ENGINE_BENCH_CACHE_MB is %q; give a size in MiB of at least 1", s)
		}
		cacheBytes = int64(mb) << 20
	}
	cache := pebble.NewCache(cacheBytes + 2*16<<20)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{Cache: cache, MemTableSize: 16 << 20, MemTableStopWritesThreshold: 2,
		DisableWAL: true, Logger: quietLogger{}})
	if err != nil {
		b.Fatal(err)
	}
	return &pebbleChoice{db: db}
}

func (p *pebbleChoice) putBatch(b *testing.B, first, n int, rev int64, value []byte) {
	batch := p.db.NewBatch()
	var k []byte
	for i := first; i < first+n; i++ {
		k = choiceKey(k, i, rev)
		if err := batch.Set(k, value, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		b.Fatal(err)
	}
}

func (p *pebbleChoice) get(b *testing.B, i int, rev int64) bool {
	seek := choiceKey(nil, i, rev)
	it, err := p.db.NewIter(&pebble.IterOptions{UpperBound: choiceKey(nil, i+1, 1<<62)})
	if err != nil {
		b.Fatal(err)
	}
	ok := it.SeekGE(seek) && len(it.Value()) > 0
	if err := it.Close(); err != nil {
		b.Fatal(err)
	}
	return ok
}

// getExact is a point Get of a key whose whole engine key is known: what a read
// costs when a record of each key's newest version lets it skip the seek.
func (p *pebbleChoice) getExact(b *testing.B, i int, rev int64) bool {
	v, closer, err := p.db.Get(choiceKey(nil, i, rev))
	if err != nil {
		return false
	}
	ok := len(v) > 0
	closer.Close()
	return ok
}

func (p *pebbleChoice) scan(b *testing.B, i, n int, rev int64) int {
	it, err := p.db.NewIter(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer it.Close()
	seen := 0
	var next []byte
	for valid := it.SeekGE(choiceKey(nil, i, rev)); valid && seen < n; {
		seen++
		_ = it.Value()
		// Skip the key's older versions: seek to the next user key's newest.
		next = append(next[:0], it.Key()[:choiceUserKeyLen]...)
		next = append(next, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		valid = it.SeekGE(next)
	}
	return seen
}

func (p *pebbleChoice) settle(b *testing.B) {
	if err := p.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := p.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
}

func (p *pebbleChoice) close() { _ = p.db.Close() }

type boltChoice struct{ db *bolt.DB }

var choiceBucket = []byte("kv")

func openBoltChoice(b *testing.B, dir string) choiceEngine {
	db, err := bolt.Open(dir+"/bench.db", 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(choiceBucket)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return &boltChoice{db: db}
}

func (o *boltChoice) putBatch(b *testing.B, first, n int, rev int64, value []byte) {
	err := o.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(choiceBucket)
		for i := first; i < first+n; i++ {
			if err := bk.Put(choiceKey(nil, i, rev), value); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func (o *boltChoice) get(b *testing.B, i int, rev int64) bool {
	found := false
	_ = o.db.View(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(choiceBucket).Cursor().Seek(choiceKey(nil, i, rev))
		found = k != nil && string(k[:choiceUserKeyLen]) == string(choiceKey(nil, i, rev)[:choiceUserKeyLen]) && len(v) > 0
		return nil
	})
	return found
}

func (o *boltChoice) scan(b *testing.B, i, n int, rev int64) int {
	seen := 0
	_ = o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(choiceBucket).Cursor()
		var next []byte
		for k, v := c.Seek(choiceKey(nil, i, rev)); k != nil && seen < n; {
			seen++
			_ = v
			next = append(next[:0], k[:choiceUserKeyLen]...)
			next = append(next, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
			k, v = c.Seek(next)
		}
		return nil
	})
	return seen
}

func (o *boltChoice) settle(*testing.B) {}

func (o *boltChoice) close() { _ = o.db.Close() }

func BenchmarkEngineChoice(b *testing.B) {
	engines := []struct {
		name string
		open func(*testing.B, string) choiceEngine
	}{{"pebble", openPebbleChoice}, {"bbolt", openBoltChoice}}
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			n := engineChoiceKeys(b)
			dir := b.TempDir()
			eng := e.open(b, dir)
			defer eng.close()
			value := make([]byte, 100)
			const batch = 100
			// Two versions of every key, so reads skip an older version.
			for rev := int64(1); rev <= 2; rev++ {
				for i := 0; i < n; i += batch {
					eng.putBatch(b, i, min(batch, n-i), rev, value)
				}
			}
			eng.settle(b)
			// Warm the caches (pebble's block cache, bbolt's pages): read every key once.
			for i := range n {
				eng.get(b, i, 2)
			}
			b.Run("get", func(b *testing.B) {
				for i := range b.N {
					if !eng.get(b, (i*7919)%n, 2) {
						b.Fatalf("key %d missing", (i*7919)%n)
					}
				}
			})
			if p, ok := eng.(*pebbleChoice); ok {
				b.Run("get-exact", func(b *testing.B) {
					for i := range b.N {
						if !p.getExact(b, (i*7919)%n, 2) {
							b.Fatalf("key %d missing", (i*7919)%n)
						}
					}
				})
			}
			b.Run("range100", func(b *testing.B) {
				for i := range b.N {
					if got := eng.scan(b, (i*7919)%(n-100), 100, 2); got != 100 {
						b.Fatalf("range saw %d keys, want 100", got)
					}
				}
			})
			b.Run("put-batch100", func(b *testing.B) {
				for i := range b.N {
					eng.putBatch(b, (i*batch)%n, batch, int64(3+i), value)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/put")
			})
			if p, ok := eng.(*pebbleChoice); ok {
				m := p.db.Metrics()
				b.Logf("pebble block cache: %d hits, %d misses, %d bytes", m.BlockCache.Hits, m.BlockCache.Misses, m.BlockCache.Size)
			}
			b.Logf("%s: %d keys, 2+ versions each, %d bytes on disk", e.name, n, dirBytes(b, dir))
		})
	}
}

// dirBytes sums the sizes of the files in dir.
func dirBytes(b *testing.B, dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && !info.IsDir() {
			total += info.Size()
		}
	}
	return total
}
