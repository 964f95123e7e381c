package kv

import (
	"math/rand/v2"
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
	b.Helper()
	e, err := openEngine(b.TempDir(), engineConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.close() })
	value := make([]byte, 100)
	for i := range benchKeys {
		w := e.beginBlindWrite()
		if _, err := w.put(benchKey(i), value, 0); err != nil {
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
	e := benchEngine(b)
	rng := rand.New(rand.NewPCG(1, 1))
	value := make([]byte, 100)
	index := e.appliedIndex
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		index++
		w := e.beginBlindWrite()
		if _, err := w.put(benchKey(rng.IntN(benchKeys)), value, 0); err != nil {
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
