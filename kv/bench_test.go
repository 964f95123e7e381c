package kv

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

const benchKeys = 100_000

func benchKey(i int) []byte { return fmt.Appendf(nil, "/registry/pods/default/pod-%06d", i) }

// benchStore returns a store holding benchKeys keys with 100-byte values,
// flushed, as benchEngine's, so that reads come from the engine's files and
// block cache.
func benchStore(b *testing.B) *Store {
	b.Helper()
	s := newTestStore(b, Config{})
	value := make([]byte, 100)
	for i := range benchKeys {
		res := s.ApplyCommand(uint64(i+1), &Command{Put: &PutRequest{Key: benchKey(i), Value: value}})
		if res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	if _, err := s.Flush(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkPut measures Apply of an encoded put that overwrites one of 100k
// keys: decode, index lookup, append to the key's history, response.
func BenchmarkPut(b *testing.B) {
	s := benchStore(b)
	rng := rand.New(rand.NewPCG(1, 1))
	entries := make([][]byte, 4096)
	for i := range entries {
		data, err := (&Command{Put: &PutRequest{Key: benchKey(rng.IntN(benchKeys)), Value: make([]byte, 100)}}).Encode()
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = data
	}
	index := s.AppliedIndex()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := range b.N {
		index++
		if res := s.Apply(index, entries[i%len(entries)]); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkPutNewKey measures Apply of puts that create keys, growing the index.
func BenchmarkPutNewKey(b *testing.B) {
	s := benchStore(b)
	entries := make([][]byte, b.N)
	for i := range entries {
		entries[i], _ = (&Command{Put: &PutRequest{Key: benchKey(benchKeys + i), Value: make([]byte, 100)}}).Encode()
	}
	index := s.AppliedIndex()
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for i := range b.N {
		index++
		if res := s.Apply(index, entries[i]); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkRangeSingle measures a linearizable-path single-key read among 100k keys.
func BenchmarkRangeSingle(b *testing.B) {
	s := benchStore(b)
	benchSingleKeyReads(b, s, 2, func(rng *rand.Rand) []byte { return benchKey(rng.IntN(benchKeys)) })
}

// benchSingleKeyReads times reads of one key each, the keys drawn by key from a
// generator seeded with seed; each must find its key. It reads through RangeAs,
// as the server's Range does.
func benchSingleKeyReads(b *testing.B, s *Store, seed uint64, key func(*rand.Rand) []byte) {
	rng := rand.New(rand.NewPCG(seed, seed))
	reqs := make([]RangeRequest, 4096)
	for i := range reqs {
		reqs[i] = RangeRequest{Key: key(rng)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		resp, err := s.RangeAs(AuthInfo{}, &reqs[i%len(reqs)], 0)
		if err != nil || len(resp.Kvs) != 1 {
			b.Fatal(err)
		}
	}
}

// BenchmarkRangeLimit10 measures a prefix read of 10 keys out of 100k. etcd
// counts the whole range to fill Count, so this walks to the range end.
func BenchmarkRangeLimit10(b *testing.B) {
	s := benchStore(b)
	req := RangeRequest{Key: benchKey(50_000), RangeEnd: benchKey(50_100), Limit: 10}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		resp, err := s.Range(&req)
		if err != nil || len(resp.Kvs) != 10 || !resp.More {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteSnapshot writes the snapshot of a file-backed store holding 1,000
// keys with 200 revisions each of a 256-byte value (put-100c's history after 200,000
// puts) to io.Discard; MB/s is of snapshot bytes.
func BenchmarkWriteSnapshot(b *testing.B) {
	s := hotKeyStore(b, 200_000)
	n, err := s.WriteSnapshot(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(n)
	b.ResetTimer()
	for range b.N {
		if _, err := s.WriteSnapshot(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRangeHot measures a single-key read of a file-backed store whose reads go
// to keys written lately, as bench/'s gets do: 1,000 keys of 256-byte values, each
// written 20 times.
func BenchmarkRangeHot(b *testing.B) {
	s := hotKeyStore(b, 20_000)
	benchSingleKeyReads(b, s, 3, func(rng *rand.Rand) []byte { return fmt.Appendf(nil, "%08x", rng.IntN(1000)) })
}

// hotKeyStore returns a file-backed store after puts of 256-byte values cycling
// through 1,000 keys named "%08x", as bench/'s put workloads write them.
func hotKeyStore(b *testing.B, puts int) *Store {
	s := newTestStoreOn(b, Config{}, "file")
	value := make([]byte, 256)
	for i := range puts {
		apply(b, s, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "%08x", i%1000), Value: value}})
	}
	return s
}
