package kv

import (
	"fmt"
	"testing"
)

// BenchmarkPagedReadBack reads n keys of 1 KiB back in pages of 500, as bench/'s
// read-back does (a limit, no revision, each page from the key after the last):
// each page must return the count of every key left in the range, which a walk of
// the keys left makes quadratic in n. ns/key is the time per key read back
// (all-pages), or per key of the range counted by the first page (first-page).
func BenchmarkPagedReadBack(b *testing.B) {
	for _, n := range []int{10_000, 40_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s := newTestStore(b, Config{})
			value := string(make([]byte, 1024))
			const batch = 100
			for i := 0; i < n; i += batch {
				txn := &TxnRequest{}
				for j := i; j < i+batch && j < n; j++ {
					txn.Success = append(txn.Success, putOp(fmt.Sprintf("key-%08d", j), value))
				}
				mustTxn(b, s, txn)
			}
			end := []byte(fmt.Sprintf("key-%08d", n))
			b.Run("first-page", func(b *testing.B) {
				// The one page that walks the whole range: the cache emptied.
				for range b.N {
					s.rangeCounts.mu.Lock()
					s.rangeCounts.entries = nil
					s.rangeCounts.mu.Unlock()
					resp, err := s.RangeAs(AuthInfo{}, &RangeRequest{Key: []byte("key-"), RangeEnd: end, Limit: 500}, 0)
					if err != nil || resp.Count != int64(n) {
						b.Fatalf("%v, count %d", err, resp.Count)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
			})
			b.Run("all-pages", func(b *testing.B) {
				for range b.N {
					from, read := []byte("key-"), 0
					for from != nil {
						resp, err := s.RangeAs(AuthInfo{}, &RangeRequest{Key: from, RangeEnd: end, Limit: 500}, 0)
						if err != nil {
							b.Fatal(err)
						}
						if want := int64(n - read); resp.Count != want {
							b.Fatalf("count from key %d: %d, want %d", read, resp.Count, want)
						}
						read += len(resp.Kvs)
						from = nil
						if resp.More {
							from = append(append([]byte{}, resp.Kvs[len(resp.Kvs)-1].Key...), 0)
						}
					}
					if read != n {
						b.Fatalf("read %d keys back, want %d", read, n)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
			})
		})
	}
}
