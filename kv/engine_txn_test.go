package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// A value compare over a range reads its separated values in batches, each in
// revision order (compareValues); these tests hold it to the walk that read each
// value by a point read in key order (compareByScan).

// compareRangeKeys is how many keys the tests' ranges hold: enough for several
// batches of compareValues, the later ones bounded by their bytes.
const compareRangeKeys = 300

// compareTestEngine returns an engine holding compareRangeKeys keys
// (compareTestKey), put in random order so that their values' revision order is
// not their key order, each with value base; and the keys put.
func compareTestEngine(t *testing.T, rng *rand.Rand, base []byte) (*engine, map[string][]byte) {
	t.Helper()
	e := openTestEngine(t, t.TempDir(), nil) // separates values of 4 bytes or more
	t.Cleanup(func() { e.close() })
	model := map[string][]byte{}
	for i, k := range rng.Perm(compareRangeKeys) {
		mustEngineApply(t, e, uint64(i+1), &Command{Put: &PutRequest{Key: compareTestKey(k), Value: base}})
		model[string(compareTestKey(k))] = base
	}
	return e, model
}

func compareTestKey(i int) []byte { return fmt.Appendf(nil, "k%03d", i) }

// modelCompare is the value compare c over model, etcd's: it holds if the range
// has a key and every key in it passes.
func modelCompare(model map[string][]byte, c *Compare) bool {
	found := false
	for k, v := range model {
		if bytes.Compare([]byte(k), c.Key) < 0 || bytes.Compare([]byte(k), c.RangeEnd) >= 0 {
			continue
		}
		found = true
		if !compareKV(c, &KeyValue{Value: v}) {
			return false
		}
	}
	return found
}

var compareResults = []CompareResult{CompareEqual, CompareNotEqual, CompareLess, CompareGreater}

// TestCompareValueRangeOneValueDiffers: a value compare over a range where one
// key's value differs from all the others', that key first, in the middle or
// last of the range, its value separated (greater, lesser, shorter) or inline,
// gives etcd's answer for every result and compared value, whether the range
// holds that key or not, through the store's own reads and a write's txn.
func TestCompareValueRangeOneValueDiffers(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	base := bytes.Repeat([]byte("m"), 2048)
	e, model := compareTestEngine(t, rng, base)
	index := uint64(compareRangeKeys)
	put := func(key, value []byte) {
		index++
		mustEngineApply(t, e, index, &Command{Put: &PutRequest{Key: key, Value: value}})
		model[string(key)] = value
	}
	variant := func(last byte, n int) []byte {
		v := bytes.Clone(base[:n])
		v[n-1] = last
		return v
	}
	diffs := map[string][]byte{
		"greater":        variant('n', len(base)),
		"lesser":         variant('l', len(base)),
		"shorter":        base[:len(base)-1],
		"inline-lesser":  []byte("abc"),
		"inline-greater": []byte("zz"),
	}
	for _, at := range []int{0, compareRangeKeys / 2, compareRangeKeys - 1} {
		for name, diff := range diffs {
			key := compareTestKey(at)
			put(key, diff)
			ranges := [][2][]byte{
				{[]byte("k"), []byte("l")},                       // every key
				{key, append(bytes.Clone(key), 0)},               // the one that differs, as a range
				{compareTestKey(0), compareTestKey(at)},          // the keys before it
				{append(bytes.Clone(key), 0), []byte("l")},       // the keys after it
				{[]byte("a"), []byte("b")},                       // no key
				{compareTestKey(at - 1), compareTestKey(at + 2)}, // it and its neighbours
			}
			for _, r := range ranges {
				for _, result := range compareResults {
					for _, value := range [][]byte{base, diff, nil, []byte("m"), variant('n', len(base))} {
						c := Compare{Key: r[0], RangeEnd: r[1], Target: CompareValue, Result: result, Value: value}
						what := fmt.Sprintf("%s value at key %d, compare %d over [%s, %s) with %.8q", name, at, result, r[0], r[1], value)
						want := modelCompare(model, &c)
						got, err := compare(e.db, &c, e.rev)
						if err != nil || got != want {
							t.Fatalf("%s: %v, %v; want %v", what, got, err, want)
						}
						rd := &engineRead{r: e.db, rev: e.rev, compactRev: e.compactRev}
						resp, err := rd.readTxn(&TxnRequest{Compare: []Compare{c}}, 128, nil)
						if err != nil || resp.Succeeded != want {
							t.Fatalf("%s, in a read-only txn: %+v, %v; want %v", what, resp, err, want)
						}
						w := e.beginWrite()
						resp, err = w.txnRequest(&TxnRequest{Compare: []Compare{c}}, 128)
						w.abort()
						if err != nil || resp.Succeeded != want {
							t.Fatalf("%s, in a write's txn: %+v, %v; want %v", what, resp, err, want)
						}
					}
				}
			}
			put(key, base)
		}
	}
}

// TestCompareValueRangeCorruptValue: a value compare over a range that reaches
// a separated value that is missing or not of the length its version says fails
// with ErrCorruptEngine, as a compare of that key alone does; unless a key before
// it fails the compare, where the walk stops, as it stops before reading on.
func TestCompareValueRangeCorruptValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	base := bytes.Repeat([]byte("m"), 2048)
	e, _ := compareTestEngine(t, rng, base)
	all := Compare{Key: []byte("k"), RangeEnd: []byte("l"), Target: CompareValue, Result: CompareEqual, Value: base}
	for _, at := range []int{0, compareRangeKeys / 2, compareRangeKeys - 1} {
		key := compareTestKey(at)
		kv, found, err := engineGet(e.db, key, e.rev, false)
		if err != nil || !found {
			t.Fatal(key, found, err)
		}
		vk := valueKey(nil, kv.ModRevision, 0) // each put is its revision's first change
		for _, corrupt := range []struct {
			name  string
			apply func() error
		}{
			{"missing", func() error { return e.db.Delete(vk, pebble.NoSync) }},
			{"short", func() error { return e.db.Set(vk, base[1:], pebble.NoSync) }},
			{"long", func() error { return e.db.Set(vk, append(bytes.Clone(base), 'm'), pebble.NoSync) }},
		} {
			if err := corrupt.apply(); err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("the %s value of key %d", corrupt.name, at)
			one := Compare{Key: key, Target: CompareValue, Result: CompareEqual, Value: base}
			if _, err := compare(e.db, &one, e.rev); !errors.Is(err, ErrCorruptEngine) {
				t.Fatalf("%s, compared alone: %v, want ErrCorruptEngine", what, err)
			}
			if holds, err := compare(e.db, &all, e.rev); !errors.Is(err, ErrCorruptEngine) {
				t.Fatalf("%s, in a range compare: %v, %v, want ErrCorruptEngine", what, holds, err)
			}
			rd := &engineRead{r: e.db, rev: e.rev, compactRev: e.compactRev}
			if _, err := rd.readTxn(&TxnRequest{Compare: []Compare{all}}, 128, nil); !errors.Is(err, ErrCorruptEngine) {
				t.Fatalf("%s, in a read-only txn's range compare: %v, want ErrCorruptEngine", what, err)
			}
			w := e.beginWrite()
			_, err := w.txnRequest(&TxnRequest{Compare: []Compare{all}}, 128)
			w.abort()
			if !errors.Is(err, ErrCorruptEngine) {
				t.Fatalf("%s, in a write's range compare: %v, want ErrCorruptEngine", what, err)
			}
			// A key before it that fails the compare ends the walk first.
			before := Compare{Key: all.Key, RangeEnd: all.RangeEnd, Target: CompareValue, Result: CompareLess, Value: base}
			if at > 0 {
				if holds, err := compare(e.db, &before, e.rev); holds || err != nil {
					t.Fatalf("%s, in a compare that fails at the first key: %v, %v; want false", what, holds, err)
				}
			}
			if err := e.db.Set(vk, base, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestCompareValueRangeAgreesWithPointReads: over ranges whose values differ at
// random keys, some inline, with random separated values missing or of the wrong
// length, a value compare gives the outcome, or fails with the error, of the walk
// that reads each value in key order and stops at the first key that fails.
func TestCompareValueRangeAgreesWithPointReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	base := bytes.Repeat([]byte("m"), 1500)
	e, _ := compareTestEngine(t, rng, base)
	index := uint64(compareRangeKeys)
	values := [][]byte{base, base[:1000], bytes.Repeat([]byte("n"), 1500), []byte("abc"), []byte("zz"), nil}
	type record struct{ key, value []byte }
	var corrupted []record // deleted value records, put back after their trial
	for trial := range 400 {
		// Change a few keys' values (put back to base after the trial), and
		// corrupt a few values.
		changed := make([][]byte, rng.IntN(4))
		for i := range changed {
			index++
			changed[i] = compareTestKey(rng.IntN(compareRangeKeys))
			v := values[rng.IntN(len(values))]
			mustEngineApply(t, e, index, &Command{Put: &PutRequest{Key: changed[i], Value: v}})
		}
		for _, r := range corrupted {
			if err := e.db.Set(r.key, r.value, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		corrupted = corrupted[:0]
		for range rng.IntN(3) {
			kv, found, err := engineGet(e.db, compareTestKey(rng.IntN(compareRangeKeys)), e.rev, true)
			if err != nil && !errors.Is(err, ErrCorruptEngine) {
				t.Fatal(err)
			}
			if found && len(kv.Value) >= 4 {
				vk := valueKey(nil, kv.ModRevision, 0)
				if err := e.db.Delete(vk, pebble.NoSync); err != nil {
					t.Fatal(err)
				}
				corrupted = append(corrupted, record{vk, kv.Value})
			}
		}
		lo, hi := rng.IntN(compareRangeKeys), rng.IntN(compareRangeKeys+1)
		if lo > hi {
			lo, hi = hi, lo
		}
		c := Compare{Key: compareTestKey(lo), RangeEnd: compareTestKey(hi), Target: CompareValue,
			Result: compareResults[rng.IntN(len(compareResults))], Value: base}
		if rng.IntN(2) == 0 {
			c.Value = values[rng.IntN(len(values))]
		}
		if rng.IntN(4) == 0 {
			c.Key, c.RangeEnd = []byte("k"), []byte("l")
		}
		want, wantErr := compareByScan(e.db, &c, e.rev)
		got, err := compare(e.db, &c, e.rev)
		if got != want || errors.Is(err, ErrCorruptEngine) != errors.Is(wantErr, ErrCorruptEngine) || (err == nil) != (wantErr == nil) {
			t.Fatalf("trial %d: compare %d over [%s, %s) with %.8q: %v, %v; point reads give %v, %v",
				trial, c.Result, c.Key, c.RangeEnd, c.Value, got, err, want, wantErr)
		}
		for _, k := range changed {
			index++
			mustEngineApply(t, e, index, &Command{Put: &PutRequest{Key: k, Value: base}})
		}
	}
}
