package kv

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// freshRange answers r as the engine does without the count cache: a walk of
// every key of the range.
func freshRange(t *testing.T, s *Store, r *RangeRequest) (*RangeResponse, error) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.mu.st.e
	return engineRangeAt(e.db, r, e.rev, e.compactRev, newBudget(0))
}

// TestRangeCountsAgainstFreshWalks pages through ranges with random requests,
// with writes, compactions, restores and imports between the pages, and checks
// every answer, its count above all, against the same request answered without
// the cache.
func TestRangeCountsAgainstFreshWalks(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { testRangeCountsAgainstFreshWalks(t, seed) })
	}
}

func testRangeCountsAgainstFreshWalks(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 13))
	s := newTestStoreOn(t, Config{}, backends[seed%2])
	keys := []string{"a", "a\x00", "a\x00\x00", "a\x01", "ab", "abc", "b", "b\x00", "ba", "bb", "c", "ca", "cab", "d", "\x00", "\x00a", "\xff", "\xff\xff"}
	key := func() string {
		if rng.IntN(4) == 0 {
			return fmt.Sprintf("k%03d", rng.IntN(300))
		}
		return keys[rng.IntN(len(keys))]
	}
	write := func() {
		switch rng.IntN(8) {
		case 0:
			mustDelete(t, s, key(), "")
		case 1:
			from := key()
			mustDelete(t, s, from, from+"\x10")
		default:
			mustPut(t, s, key(), fmt.Sprint(rng.IntN(1000)))
		}
	}
	for range 400 {
		write()
	}
	snapshots := [][]byte{}
	type pager struct {
		r RangeRequest
	}
	var pages, known int
	for step := range 300 {
		switch rng.IntN(20) {
		case 0, 1, 2:
			for range 1 + rng.IntN(3) {
				write()
			}
		case 3:
			if s.Revision() == s.CompactRevision() {
				break
			}
			rev := s.CompactRevision() + 1 + rng.Int64N(s.Revision()-s.CompactRevision())
			if res := apply(t, s, &Command{Compact: &CompactionRequest{Revision: rev}}); res.Err != nil {
				t.Fatalf("compact at %d: %v", rev, res.Err)
			}
		case 4:
			snap, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			snapshots = append(snapshots, snap)
		case 5:
			if len(snapshots) > 0 {
				if err := s.Restore(snapshots[rng.IntN(len(snapshots))]); err != nil {
					t.Fatal(err)
				}
			}
		case 6:
			hdr, histories, dels := exportStore(t, s)
			importInto(t, s, hdr, histories, dels) // the same histories, a new state
		}
		// A paged read of a range, with a write (or not) between its pages.
		var p pager
		p.r.Key = []byte(key())
		switch rng.IntN(4) {
		case 0:
			p.r.RangeEnd = []byte{0}
		case 1:
			p.r.RangeEnd = prefixEndOf(p.r.Key)
		case 2:
			p.r.RangeEnd = []byte(key())
		default:
			p.r.Key, p.r.RangeEnd = []byte{0}, []byte{0}
		}
		p.r.Limit = int64(1 + rng.IntN(6))
		if rng.IntN(3) == 0 {
			p.r.Revision = s.CompactRevision() + rng.Int64N(s.Revision()-s.CompactRevision()+1)
		}
		p.r.KeysOnly = rng.IntN(3) == 0
		p.r.CountOnly = rng.IntN(6) == 0
		if rng.IntN(5) == 0 {
			p.r.SortTarget, p.r.SortOrder = SortTarget(rng.IntN(5)), SortOrder(rng.IntN(3))
		}
		for page := 0; page < 40; page++ {
			want, err1 := freshRange(t, s, &p.r)
			got, err2 := s.RangeAs(AuthInfo{}, &p.r, 0)
			if err1 != nil || err2 != nil {
				if fmt.Sprint(err1) != fmt.Sprint(err2) {
					t.Fatalf("step %d page %d: %+v: error %v, without the cache %v", step, page, p.r, err2, err1)
				}
				break
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("step %d page %d: %+v:\n got %+v\nwant %+v", step, page, p.r, got, want)
			}
			pages++
			if !got.More || len(got.Kvs) == 0 {
				break
			}
			if rng.IntN(8) == 0 {
				write()
			}
			if rng.IntN(20) == 0 && s.Revision() > s.CompactRevision() {
				// A compaction between pages: a count cached below it cannot be
				// carried to the next page's revision.
				rev := s.CompactRevision() + 1 + rng.Int64N(s.Revision()-s.CompactRevision())
				if res := apply(t, s, &Command{Compact: &CompactionRequest{Revision: rev}}); res.Err != nil {
					t.Fatalf("compact at %d: %v", rev, res.Err)
				}
				if p.r.Revision != 0 && p.r.Revision < rev {
					break // the pinned revision is gone
				}
			}
			if rng.IntN(30) == 0 {
				hdr, histories, dels := exportStore(t, s)
				importInto(t, s, hdr, histories, dels)
			}
			if rng.IntN(30) == 0 && len(snapshots) > 0 {
				if err := s.Restore(snapshots[rng.IntN(len(snapshots))]); err != nil {
					t.Fatal(err)
				}
			}
			if p.r.SortOrder == SortDescend {
				break
			}
			p.r.Key = append(append([]byte{}, got.Kvs[len(got.Kvs)-1].Key...), 0)
		}
	}
	s.rangeCounts.mu.Lock()
	known = len(s.rangeCounts.entries)
	s.rangeCounts.mu.Unlock()
	t.Logf("%d pages compared; %d counts cached at the end", pages, known)
}

// prefixEndOf is etcd's end of the range of keys with prefix key.
func prefixEndOf(key []byte) []byte {
	end := append([]byte{}, key...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

// blockReads is how many sstable blocks s's engine has read (from its block
// cache or the files).
func blockReads(s *Store) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := s.mu.st.e.db.Metrics()
	return m.BlockCache.Hits + m.BlockCache.Misses
}

// TestPagedReadBackReadsTheRangeOnce: reading a range's keys back in pages, each
// from the key after the previous page's last, reads about as many blocks as one
// walk of the range, not one walk of the rest of the range per page (issue 13). The
// read is at the current revision, as bench/'s read-back is; at a revision
// given, with writes between the pages; and at the current revision with writes
// between the pages, in the range and outside it, so that each page reads at a
// new revision and the count is carried there through the history.
func TestPagedReadBackReadsTheRangeOnce(t *testing.T) {
	for _, mode := range []string{"current", "pinned", "current-under-writes"} {
		pinned, writes := mode == "pinned", mode != "current"
		t.Run(mode, func(t *testing.T) {
			s := newTestStore(t, Config{})
			const n, limit = 8000, 100
			value := string(make([]byte, 1024))
			for i := 0; i < n; i += 100 {
				txn := &TxnRequest{}
				for j := i; j < i+100; j++ {
					txn.Success = append(txn.Success, putOp(fmt.Sprintf("key-%06d", j), value))
				}
				mustTxn(t, s, txn)
			}
			s.mu.RLock()
			err := s.mu.st.e.db.Flush()
			s.mu.RUnlock()
			if err != nil {
				t.Fatal(err)
			}
			end := []byte("key-999999")
			before := blockReads(s)
			if resp, err := freshRange(t, s, &RangeRequest{Key: []byte("key-"), RangeEnd: end}); err != nil || len(resp.Kvs) != n {
				t.Fatalf("read: %d keys, %v", len(resp.Kvs), err)
			}
			oneRead := blockReads(s) - before
			before = blockReads(s)
			if resp, err := freshRange(t, s, &RangeRequest{Key: []byte("key-"), RangeEnd: end, CountOnly: true}); err != nil || resp.Count != n {
				t.Fatalf("count: %+v, %v", resp, err)
			}
			oneWalk := blockReads(s) - before
			// The 1 KiB values are kept apart from the version records
			// (engine_keys.go): counting the keys reads few of the blocks a read
			// of their values does, and a page's count costs little.
			if 10*oneWalk > oneRead {
				t.Fatalf("counting %d keys read %d blocks, reading them %d", n, oneWalk, oneRead)
			}
			rev := s.Revision()
			before = blockReads(s)
			from, read, added := []byte("key-"), 0, 0
			for from != nil {
				// Keys only: the values' blocks would hide the count's.
				r := &RangeRequest{Key: from, RangeEnd: end, Limit: limit, KeysOnly: true}
				if pinned {
					r.Revision = rev
				}
				resp, err := s.RangeAs(AuthInfo{}, r, 0)
				if err != nil {
					t.Fatal(err)
				}
				if resp.Count != int64(n+added-read) {
					t.Fatalf("count from key %d: %d, want %d", read, resp.Count, n+added-read)
				}
				read += len(resp.Kvs)
				from = nil
				if resp.More {
					from = append(append([]byte{}, resp.Kvs[len(resp.Kvs)-1].Key...), 0)
				}
				if writes {
					mustPut(t, s, "other", "v") // outside the range: a new revision
				}
				if writes && !pinned && resp.More {
					// in the range, past the pages read so far
					mustPut(t, s, fmt.Sprintf("key-%06d-%d", n-1, added), "v")
					added++
				}
			}
			paged := blockReads(s) - before
			t.Logf("one read of %d keys read %d blocks, a count of them %d; reading their keys back in pages of %d, %d", n, oneRead, oneWalk, limit, paged)
			// Each page costs a few blocks of its own (its seeks, and the writes
			// between pages theirs), at most 16; a walk of the rest of the range
			// at every page would cost n/limit/2 walks more (measured: 374-1,031
			// block reads, 3,185-3,357 with every page walking the rest).
			if bound := 3*oneWalk + 16*n/limit; read != n+added || paged > bound {
				t.Fatalf("read %d keys back in %d block reads, more than %d: one walk of the range reads %d", read, paged, bound, oneWalk)
			}
		})
	}
}

// TestRangeCountsConcurrent pages through ranges from several goroutines at once,
// at the current revision and at one given, while another applies writes: every
// answer equals the engine's without the cache (run it with -race).
func TestRangeCountsConcurrent(t *testing.T) {
	s := newTestStore(t, Config{})
	for i := range 600 {
		mustPut(t, s, fmt.Sprintf("key-%04d", i), "v")
	}
	done := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			data, err := (&Command{Put: &PutRequest{Key: []byte(fmt.Sprintf("key-%04d", i*7%900)), Value: []byte("w")}}).Encode()
			if err != nil {
				panic(err)
			}
			if res := s.Apply(s.AppliedIndex()+1, data); res.Err != nil {
				panic(res.Err)
			}
		}
	}()
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			errs <- func() error {
				for round := range 3 {
					r := RangeRequest{Key: []byte("key-"), RangeEnd: []byte("key-9999"), Limit: int64(7 + g*13)}
					if (g+round)%2 == 0 {
						r.Revision = s.Revision()
					}
					for {
						got, err := s.RangeAs(AuthInfo{}, &r, 0)
						if err != nil {
							return err
						}
						at := r // the same read at the revision it read at
						at.Revision = got.Header.Revision
						if r.Revision != 0 {
							at.Revision = r.Revision
						}
						want, err := freshRange(t, s, &at)
						if err != nil {
							return err
						}
						if got.Count != want.Count || !reflect.DeepEqual(got.Kvs, want.Kvs) {
							return fmt.Errorf("%+v: count %d, want %d", r, got.Count, want.Count)
						}
						if !got.More {
							break
						}
						r.Key = append(append([]byte{}, got.Kvs[len(got.Kvs)-1].Key...), 0)
					}
				}
				return nil
			}()
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(done)
	<-writerDone
}

// TestCountNotCarriedFromARevisionNewerThanTheView: a read whose view was taken
// before some writes must not carry a count cached by a later read at a newer
// revision. The history between the two is not in its view, so the carried
// count would be the newer revision's.
func TestCountNotCarriedFromARevisionNewerThanTheView(t *testing.T) {
	s := newTestStore(t, Config{})
	for i := range 10 {
		mustPut(t, s, fmt.Sprintf("k%02d", i), "v")
	}
	rd, err := s.beginRead(nil) // a read that has taken its view (rev R0)...
	if err != nil {
		t.Fatal(err)
	}
	defer rd.end()
	for i := 10; i < 15; i++ { // ...writes go on...
		mustPut(t, s, fmt.Sprintf("k%02d", i), "v")
	}
	// ...another read pages the range at the newer revision, caching its count.
	r := &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 2}
	if resp, err := s.Range(r); err != nil || resp.Count != 15 {
		t.Fatalf("newer read: %v %v", resp, err)
	}
	// The first read now answers the same page at its own revision.
	r = &RangeRequest{Key: []byte("k01\x00"), RangeEnd: []byte("l"), Limit: 2}
	got, err := engineRangeAt(rd.r, r, rd.rev, rd.compactRev, newBudget(0))
	if err != nil {
		t.Fatal(err)
	}
	want, err := freshRange(t, s, &RangeRequest{Key: r.Key, RangeEnd: r.RangeEnd, Limit: 2, Revision: rd.rev})
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != want.Count {
		t.Fatalf("count at revision %d: %d, a fresh walk counts %d", rd.rev, got.Count, want.Count)
	}
}

// TestPagedCountsUnderConcurrentWrites is the same through the Store's API:
// readers page a range unpinned while a writer puts and deletes in it, and each
// page's count must equal a walk of the range at the page's revision (found in
// review: 3 failures in 4 runs before lookup took the view's revision).
func TestPagedCountsUnderConcurrentWrites(t *testing.T) {
	s := newTestStore(t, Config{})
	for i := range 200 {
		mustPut(t, s, fmt.Sprintf("k%05d", i), "v")
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	index := s.AppliedIndex()
	go func() {
		defer close(done)
		for i := 200; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			index++
			cmd := &Command{Put: &PutRequest{Key: []byte(fmt.Sprintf("k%05d", i%400)), Value: []byte("v")}}
			if i%3 == 0 {
				cmd = &Command{DeleteRange: &DeleteRangeRequest{Key: []byte(fmt.Sprintf("k%05d", (i*7)%400))}}
			}
			if res := s.ApplyCommand(index, cmd); res.Err != nil {
				return
			}
		}
	}()
	errs := make(chan error, 32)
	for g := range 32 {
		go func() {
			for round := 0; round < 10; round++ {
				from := []byte("k")
				for from != nil {
					r := &RangeRequest{Key: from, RangeEnd: []byte("l"), Limit: 5}
					resp, err := s.Range(r)
					if err != nil {
						errs <- err
						return
					}
					want, err := s.Range(&RangeRequest{Key: from, RangeEnd: []byte("l"), Revision: resp.Header.Revision, KeysOnly: true})
					if err != nil {
						errs <- err
						return
					}
					if want.Count != resp.Count {
						errs <- fmt.Errorf("reader %d: count from %q at %d: %d, a walk counts %d", g, from, resp.Header.Revision, resp.Count, want.Count)
						return
					}
					from = nil
					if resp.More && len(resp.Kvs) > 0 {
						from = append(append([]byte{}, resp.Kvs[len(resp.Kvs)-1].Key...), 0)
					}
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range 32 {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	close(stop)
	<-done
	if first != nil {
		t.Fatal(first)
	}
}
