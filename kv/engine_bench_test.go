package kv

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// The engine's counterparts of bench_test.go's store benchmarks, on the same data
// (benchKeys keys of 100-byte values), so that the two read side by side:
// BenchmarkEnginePut with BenchmarkPut, BenchmarkEngineRangeSingle with
// BenchmarkRangeSingle, BenchmarkEngineRangeLimit10 with BenchmarkRangeLimit10.
// A put here is the engine's whole share of an applied entry: one batch with the
// version, the history record and the applied index, committed without a sync.

// benchEngine returns an engine holding benchKeys keys with 100-byte values, its
// memtable flushed so that reads come from the engine's files and block cache.
func benchEngine(b *testing.B) *engine {
	return benchEngineWith(b, engineConfig{})
}

func benchEngineWith(b *testing.B, cfg engineConfig) *engine {
	keys := make([]int, benchKeys)
	for i := range keys {
		keys[i] = i
	}
	return benchEngineOf(b, cfg, keys, make([]byte, 100), nil)
}

// benchEngineOf returns an engine opened with cfg holding benchKey(k) for each k
// of keys, put in that order, one applied entry each, with value (refilled by
// fill before each put, if fill is not nil), its memtable flushed.
func benchEngineOf(b *testing.B, cfg engineConfig, keys []int, value []byte, fill func([]byte)) *engine {
	b.Helper()
	e, err := openEngine(b.TempDir(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.close() })
	for i, k := range keys {
		if fill != nil {
			fill(value)
		}
		w := e.beginBlindWrite()
		if _, err := w.put(benchKey(k), value, 0); err != nil {
			b.Fatal(err)
		}
		if err := w.commit(uint64(i + 1)); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.flush(); err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkEnginePut(b *testing.B) {
	benchEnginePut(b, benchEngine(b))
}

// BenchmarkEnginePutCached is BenchmarkEnginePut with a newestCache that holds
// every key, so that no put seeks for its key's previous version: the
// difference is what the seeks of BenchmarkEnginePut's misses cost.
func BenchmarkEnginePutCached(b *testing.B) {
	benchEnginePut(b, benchEngineWith(b, engineConfig{NewestCacheKeys: 2 * benchKeys}))
}

// BenchmarkEnginePutCycling puts benchKeys keys over and over in the same order,
// as bench/'s put-100k-keys does, with the default newestCache, which holds fewer
// keys than the cycle: each key comes back after every other key of the cycle has
// been put, and the cache's eviction decides whether it is still there.
func BenchmarkEnginePutCycling(b *testing.B) {
	e := benchEngine(b)
	next, hits := 0, 0
	benchEnginePutKeys(b, e, func() int {
		next = (next + 1) % benchKeys
		if _, _, ok := e.newestCache.get(benchKey(next)); ok {
			hits++
		}
		return next
	})
	b.ReportMetric(float64(hits)/float64(b.N), "hit-ratio")
}

func benchEnginePut(b *testing.B, e *engine) {
	rng := rand.New(rand.NewPCG(1, 1))
	benchEnginePutKeys(b, e, func() int { return rng.IntN(benchKeys) })
}

// benchEnginePutKeys puts b.N 100-byte values, to the keys key returns, one
// applied entry each.
func benchEnginePutKeys(b *testing.B, e *engine, key func() int) {
	value := make([]byte, 100)
	index := e.appliedIndex
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for range b.N {
		index++
		w := e.beginBlindWrite()
		if _, err := w.put(benchKey(key()), value, 0); err != nil {
			b.Fatal(err)
		}
		if err := w.commit(index); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEngineRangeSingle(b *testing.B) {
	e := benchEngine(b)
	rng := rand.New(rand.NewPCG(2, 2))
	reqs := make([]RangeRequest, 4096)
	for i := range reqs {
		reqs[i] = RangeRequest{Key: benchKey(rng.IntN(benchKeys))}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		resp, err := e.rangeLimited(&reqs[i%len(reqs)], 0)
		if err != nil || len(resp.Kvs) != 1 {
			b.Fatal(err)
		}
	}
}

func BenchmarkEngineRangeLimit10(b *testing.B) {
	e := benchEngine(b)
	req := RangeRequest{Key: benchKey(50_000), RangeEnd: benchKey(50_100), Limit: 10}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		resp, err := e.rangeLimited(&req, 0)
		if err != nil || len(resp.Kvs) != 10 || !resp.More {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineBytesPerKey is BenchmarkIndexBytesPerKey for the engine: n keys
// (engineChoiceKeys) with one 100-byte value each, written as entries of one put
// and flushed; it reports the Go heap after minus before, per key and whole, with
// the engine's default cache and memtables. Built without cgo (as the release
// binary is, CGO_ENABLED=0) the heap holds pebble's block cache and memtables; with
// cgo pebble allocates them with malloc, outside it. Either way what grows is
// bounded by engineConfig, not by n.
func BenchmarkEngineBytesPerKey(b *testing.B) {
	n := engineChoiceKeys(b)
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		e, err := openEngine(b.TempDir(), engineConfig{})
		if err != nil {
			b.Fatal(err)
		}
		value := make([]byte, 100)
		for i := range n {
			w := e.beginBlindWrite()
			key := fmt.Appendf(nil, "/registry/pods/default/pod-%08d", i)
			if _, err := w.put(key, value, 0); err != nil {
				b.Fatal(err)
			}
			if err := w.commit(uint64(i + 1)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := e.flush(); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		b.ReportMetric(float64(heap)/float64(n), "heap-bytes/key")
		b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		runtime.KeepAlive(e)
		e.close()
	}
}

// benchEngineShuffled returns an engine holding keys keys with 1 KiB values of
// random bytes (separated, at the default size), written in an order drawn from
// seed, so that revision order is not key order, and a value's buffer of that size.
func benchEngineShuffled(b *testing.B, keys int, seed uint64) (*engine, []byte) {
	rng := rand.New(rand.NewPCG(seed, seed))
	value := make([]byte, 1024)
	e := benchEngineOf(b, engineConfig{}, rng.Perm(keys), value, func(v []byte) {
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
	})
	return e, value
}

// BenchmarkEngineRangeOutOfKeyOrder reads every value of 20,000 keys whose 1 KiB
// values the engine keeps separated, in ranges that do not return keys in the
// order of the walk that found them: by descending key, and by value (which
// collects every value before it sorts); and a DeleteRange with prev_kv.
func BenchmarkEngineRangeOutOfKeyOrder(b *testing.B) {
	const keys = 20_000
	e, value := benchEngineShuffled(b, keys, 3)
	all := RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
	for _, c := range []struct {
		name string
		req  RangeRequest
	}{
		{"ascend", all}, // in key order: the baseline
		{"descend", RangeRequest{Key: all.Key, RangeEnd: all.RangeEnd, SortOrder: SortDescend}},
		{"by-value", RangeRequest{Key: all.Key, RangeEnd: all.RangeEnd, SortTarget: SortByValue, SortOrder: SortAscend}},
		{"descend-limit-100", RangeRequest{Key: all.Key, RangeEnd: all.RangeEnd, SortOrder: SortDescend, Limit: 100}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				resp, err := e.rangeLimited(&c.req, 0)
				if err != nil || len(resp.Kvs) == 0 || len(resp.Kvs[0].Value) != len(value) {
					b.Fatal(err)
				}
			}
		})
	} // A DeleteRange of every key with prev_kv, its batch left uncommitted.
	b.Run("delete-prev-kv", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			w := e.beginWrite()
			resp, err := w.deleteRangeRequest(&DeleteRangeRequest{Key: all.Key, RangeEnd: all.RangeEnd, PrevKv: true})
			w.abort()
			if err != nil || len(resp.PrevKvs) != keys || len(resp.PrevKvs[0].Value) != len(value) {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEngineTxnCompareValueRange is a read-only txn whose one compare is of
// the value of every key of a range of 20,000 keys of 1 KiB values, which the
// engine keeps separated, written in random key order (as in
// BenchmarkEngineRangeOutOfKeyOrder), so that the values' revision order is not
// the compare's key order: one that holds for every key, and so reads every
// value, and one that fails at the first key.
func BenchmarkEngineTxnCompareValueRange(b *testing.B) {
	const keys = 20_000
	e, _ := benchEngineShuffled(b, keys, 4)
	all := Compare{Key: []byte{0}, RangeEnd: []byte{0}, Target: CompareValue}
	for _, c := range []struct {
		name      string
		result    CompareResult
		value     []byte
		succeeded bool
	}{
		{"holds", CompareNotEqual, []byte("x"), true},
		{"fails-first", CompareEqual, []byte("x"), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			cmp := all
			cmp.Result, cmp.Value = c.result, c.value
			r := &TxnRequest{Compare: []Compare{cmp}}
			rd := &engineRead{r: e.db, rev: e.rev, compactRev: e.compactRev}
			b.ReportAllocs()
			for range b.N {
				resp, err := rd.readTxn(r, 128, nil)
				if err != nil || resp.Succeeded != c.succeeded {
					b.Fatal(resp, err)
				}
			}
		})
	}
}

// BenchmarkDeleteRangePrevKv is a DeleteRange of all of 10,000 keys, its batch
// left uncommitted, with and without prev_kv, of values kept inline (16 bytes)
// and separated (256 bytes, above the default SeparateValueBytes): what it
// allocates per key besides the values, with prev_kv the answer's PrevKvs.
func BenchmarkDeleteRangePrevKv(b *testing.B) {
	const keys = 10_000
	order := make([]int, keys)
	for i := range order {
		order[i] = i
	}
	for _, size := range []int{16, 256} {
		e := benchEngineOf(b, engineConfig{}, order, make([]byte, size), nil)
		for _, prevKv := range []bool{false, true} {
			b.Run(fmt.Sprintf("value-%d/prev-kv-%v", size, prevKv), func(b *testing.B) {
				d := &DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, PrevKv: prevKv}
				b.ReportAllocs()
				for range b.N {
					w := e.beginBlindWrite()
					resp, err := w.deleteRangeRequest(d)
					w.abort()
					if err != nil || resp.Deleted != keys || prevKv && len(resp.PrevKvs[keys-1].Value) != size {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
