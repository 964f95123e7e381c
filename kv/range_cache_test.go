package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
)

// Point reads through RangeAs, which the range cache answers when it can, return
// exactly what the engine alone (RangeLimited) returns, after every kind of change
// to the keys read: overwrites, deletes, recreation, lease attachment and revoke,
// txns, and either compactions or restores of another store's history whose keys
// have the same create revisions and versions but other values. (Not both in one
// history: restores followed by compactions make two engine reads in a row
// disagree now and then, with or without the cache; see the branch's report.)
func TestRangeCacheAnswersAsTheEngine(t *testing.T) {
	t.Run("compactions", func(t *testing.T) { checkRangeCacheAgainstEngine(t, false) })
	t.Run("restores", func(t *testing.T) { checkRangeCacheAgainstEngine(t, true) })
}

func checkRangeCacheAgainstEngine(t *testing.T, restores bool) {
	s := newTestStore(t, Config{})
	rng := rand.New(rand.NewPCG(7, 13))
	keys := []string{"a", "b", "c\x00d", "e"}
	value := func() string {
		n := []int{0, 3, 256, 20 << 10}[rng.IntN(4)] // 20 KiB is over what the cache holds
		return fmt.Sprintf("%d-", rng.Int()) + string(bytes.Repeat([]byte{'v'}, n))
	}
	check := func(when string) {
		t.Helper()
		rev := s.Revision()
		for _, k := range keys {
			reqs := []struct {
				r   RangeRequest
				max int64
			}{
				{RangeRequest{Key: []byte(k)}, 0},
				{RangeRequest{Key: []byte(k), KeysOnly: true}, 0},
				{RangeRequest{Key: []byte(k), Serializable: true}, 1 << 20},
				{RangeRequest{Key: []byte(k)}, 40}, // too large unless empty or absent
				{RangeRequest{Key: []byte(k), MinModRevision: rev}, 0},
				{RangeRequest{Key: []byte(k), MaxCreateRevision: 3}, 0},
				{RangeRequest{Key: []byte(k), Revision: rev}, 0},
			}
			for _, q := range reqs {
				want, wantErr := s.RangeLimited(&q.r, q.max)
				for try := range 2 { // the first may fill the cache, the second read from it
					got, err := s.RangeAs(AuthInfo{}, &q.r, q.max)
					if !reflect.DeepEqual(got, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
						t.Fatalf("%s: read %d of %+v (limit %d) through RangeAs: %+v, %v; the engine: %+v, %v",
							when, try+1, q.r, q.max, got, err, want, wantErr)
					}
				}
			}
		}
	}
	for i := range 300 {
		ki := rng.IntN(len(keys))
		k := keys[ki]
		var what string
		switch op := rng.IntN(10); {
		case op < 5:
			what = "put " + k
			mustPut(t, s, k, value())
		case op < 6:
			what = "delete " + k
			mustDelete(t, s, k, "")
		case op < 7:
			what = "put with a lease, then revoke it"
			mustGrant(t, s, int64(i+1), 60)
			apply(t, s, &Command{Put: &PutRequest{Key: []byte(k), Value: []byte(value()), Lease: int64(i + 1)}})
			check("a put with a lease")
			mustRevoke(t, s, int64(i+1))
		case op < 8:
			what = "txn put"
			mustTxn(t, s, &TxnRequest{Success: []RequestOp{{Put: &PutRequest{Key: []byte(k), Value: []byte(value())}},
				{Put: &PutRequest{Key: []byte(keys[(ki+1)%len(keys)]), Value: []byte(value())}}}})
		case op < 9 && !restores:
			what = "compaction"
			apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
		case !restores:
			what = "put " + k
			mustPut(t, s, k, value())
		default:
			what = "restore of another history"
			other := newTestStore(t, Config{})
			for range s.AppliedIndex() + 1 { // the same revisions, other values
				mustPut(t, other, keys[rng.IntN(len(keys))], value())
			}
			var snap bytes.Buffer
			if _, err := other.WriteSnapshot(&snap); err != nil {
				t.Fatal(err)
			}
			if err := s.Restore(snap.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		check(fmt.Sprintf("op %d, %s", i, what))
	}
	if s.rangeCache.bytes == 0 {
		t.Fatal("the range cache holds nothing after 300 ops' reads; the test read nothing from it")
	}
}

// A point read that the cache answers runs the permission check as an engine
// read does.
func TestRangeCacheChecksPermission(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "config", "v")
	mustPut(t, s, "config", "v2")
	mustPut(t, s, "app/x", "v")
	setupAuth(t, s)
	for range 2 { // fill the cache, then read from it
		for _, who := range []string{"root", "alice"} {
			if _, err := s.RangeAs(as(s, who), &RangeRequest{Key: []byte("config")}, 0); err != nil {
				t.Fatalf("%s's read of config: %v", who, err)
			}
		}
		if _, err := s.RangeAs(AuthInfo{}, &RangeRequest{Key: []byte("config")}, 0); err != ErrUserEmpty {
			t.Fatalf("a read of config without a user: %v, want %v", err, ErrUserEmpty)
		}
		if _, err := s.RangeAs(as(s, "alice"), &RangeRequest{Key: []byte("secret")}, 0); err != ErrPermissionDenied {
			t.Fatalf("alice's read of secret: %v, want %v", err, ErrPermissionDenied)
		}
	}
	if s.rangeCache.bytes == 0 {
		t.Fatal("the range cache holds nothing; the test read nothing from it")
	}
}

// Point reads concurrent with the writes of their key see its versions in order,
// each with its own value and none older than the last write applied before the
// read began, whether the cache or the engine answers.
func TestRangeCacheConcurrentWithWrites(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "k", "1")
	var applied atomic.Int64
	applied.Store(1)
	const writes = 500
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var last int64
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				before := applied.Load()
				resp, err := s.RangeAs(AuthInfo{}, &RangeRequest{Key: []byte("k")}, 0)
				if err != nil || len(resp.Kvs) != 1 {
					errs <- fmt.Errorf("read: %+v, %v", resp, err)
					return
				}
				kv := resp.Kvs[0]
				if kv.Version < max(last, before) || string(kv.Value) != fmt.Sprint(kv.Version) || kv.ModRevision > resp.Header.Revision {
					errs <- fmt.Errorf("read version %d (value %q, mod revision %d at revision %d) after reading version %d, with version %d applied",
						kv.Version, kv.Value, kv.ModRevision, resp.Header.Revision, last, before)
					return
				}
				last = kv.Version
			}
		}()
	}
	for v := 2; v <= writes; v++ {
		mustPut(t, s, "k", fmt.Sprint(v))
		applied.Store(int64(v))
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
