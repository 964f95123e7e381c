package kv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// kvsWireSize is the bytes the key-values take in an etcd RangeResponse, by
// protobuf itself: what a response budget counts.
func kvsWireSize(kvs []KeyValue) int64 {
	var n int64
	for _, kv := range kvs {
		size := proto.Size(&mvccpb.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision,
			Version: kv.Version, Value: kv.Value, Lease: kv.Lease})
		n += 1 + varintSize(uint64(size)) + int64(size)
	}
	return n
}

// For every kind of range (single key, prefix, limits, sorts, revision filters,
// keys only), a budget of exactly the response's size answers the same as no
// budget, and one byte less refuses it with that size.
func TestRangeLimitedExactAtTheBoundary(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	s := newTestStore(t, Config{})
	for i := range 300 {
		key := fmt.Sprintf("k%02d", rng.IntN(60))
		if rng.IntN(8) == 0 {
			mustDelete(t, s, key, "")
			continue
		}
		value := strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(300))
		apply(t, s, &Command{Put: &PutRequest{Key: []byte(key), Value: []byte(value), Lease: int64(rng.IntN(3))}})
		_ = i
	}
	for i := range 2000 {
		r := &RangeRequest{Key: []byte(fmt.Sprintf("k%02d", rng.IntN(60)))}
		switch rng.IntN(3) {
		case 0:
			r.RangeEnd = []byte{0}
		case 1:
			r.RangeEnd = []byte(fmt.Sprintf("k%02d", rng.IntN(70)))
		}
		if rng.IntN(2) == 0 {
			r.Limit = int64(rng.IntN(10))
		}
		r.SortOrder, r.SortTarget = SortOrder(rng.IntN(3)), SortTarget(rng.IntN(5))
		r.KeysOnly = rng.IntN(4) == 0
		if rng.IntN(4) == 0 {
			r.MinModRevision = rng.Int64N(s.Revision())
		}
		if rng.IntN(4) == 0 {
			r.Revision = 1 + rng.Int64N(s.Revision())
		}
		want, err := s.Range(r)
		if err != nil {
			t.Fatalf("request %d %+v: %v", i, r, err)
		}
		size := kvsWireSize(want.Kvs)
		if size == 0 {
			continue
		}
		sortsByValue := r.SortTarget == SortByValue && len(r.RangeEnd) > 0
		got, err := s.RangeLimited(r, size)
		if err != nil && !(sortsByValue && errors.Is(err, ErrResponseTooLarge)) {
			t.Fatalf("seed %d request %d %+v: a budget of exactly %d bytes: %v", seed, i, r, size, err)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d request %d %+v: within the budget the answer differs:\n got %+v\nwant %+v", seed, i, r, got, want)
		}
		_, err = s.RangeLimited(r, size-1)
		var tooLarge *ResponseTooLargeError
		if !errors.As(err, &tooLarge) || tooLarge.Limit != size-1 ||
			(!tooLarge.SortByValue && tooLarge.Bytes != size) || tooLarge.Bytes < size {
			t.Fatalf("seed %d request %d %+v: a budget of %d, one byte short: %v (%+v), want a refusal saying %d bytes",
				seed, i, r, size-1, err, tooLarge, size)
		}
	}
}

// A range over far more value bytes than its budget is refused without reading the
// values: the refusal allocates a small fraction (an eighth at most) of what the
// response would take.
func TestRangeLimitedReadsNoValueWhenTooLarge(t *testing.T) {
	s := newTestStore(t, Config{})
	value := strings.Repeat("v", 1<<20)
	for i := range 64 {
		mustPut(t, s, fmt.Sprintf("k%02d", i), value)
	}
	for _, r := range []*RangeRequest{
		{Key: []byte("k"), RangeEnd: []byte("l")},
		{Key: []byte("k"), RangeEnd: []byte("l"), SortOrder: SortDescend},
		{Key: []byte("k"), RangeEnd: []byte("l"), SortTarget: SortByValue, SortOrder: SortAscend},
		{Key: []byte("k"), RangeEnd: []byte("l"), MinModRevision: 2},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := s.RangeLimited(r, 4<<20)
		runtime.ReadMemStats(&after)
		var tooLarge *ResponseTooLargeError
		if !errors.As(err, &tooLarge) || tooLarge.Bytes < 64<<20 {
			t.Fatalf("range %+v over 64 MiB with a 4 MiB budget: %v, want a refusal saying at least 64 MiB", r, err)
		}
		// The engine reads the keys' blocks through its cache, which may allocate
		// a few of them; the values themselves are not copied.
		// (Not under -race: pebble's invariant builds copy what they read.)
		if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 8<<20 && !raceEnabled {
			t.Fatalf("range %+v: refusing allocated %d bytes; the values were read", r, allocated)
		}
	}
	// Keys only fits: the values are not counted.
	if _, err := s.RangeLimited(&RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), KeysOnly: true}, 4<<10); err != nil {
		t.Fatalf("keys-only range of 64 keys within 4 KiB: %v", err)
	}
}

// The ranges of a read-only txn share one budget.
func TestTxnLimitedSharesTheBudget(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", strings.Repeat("v", 1000))
	txn := &TxnRequest{Success: []RequestOp{rangeOp("a", ""), rangeOp("a", "")}}
	want, err := s.Txn(txn)
	if err != nil {
		t.Fatal(err)
	}
	one := kvsWireSize(want.Responses[0].Range.Kvs)
	if got, err := s.TxnLimited(txn, 2*one); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("txn within its budget: %+v %v, want %+v", got, err, want)
	}
	if _, err := s.TxnLimited(txn, 2*one-1); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("txn of two ranges of %d bytes with a budget of %d: %v, want ErrResponseTooLarge", one, 2*one-1, err)
	}
}
