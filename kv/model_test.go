package kv

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var modelSeed = flag.Uint64("kv.seed", 0, "seed for TestStoreAgainstModel (0: pick one from the clock)")

// model is the simplest MVCC store that could work: every event of every key,
// replayed on each read. TestStoreAgainstModel checks the real store against it.
type model struct {
	events     map[string][]modelEvent
	rev        int64
	compactRev int64
}

type modelEvent struct {
	rev     int64
	deleted bool
	value   string
	lease   int64
}

func (m *model) kvAt(key string, rev int64) (KeyValue, bool) {
	var kv KeyValue
	live := false
	for _, e := range m.events[key] {
		if e.rev > rev {
			break
		}
		switch {
		case e.deleted:
			live = false
		case !live:
			live = true
			kv = KeyValue{Key: []byte(key), CreateRevision: e.rev, ModRevision: e.rev, Version: 1, Value: bytesOrNil(e.value), Lease: e.lease}
		default:
			kv.ModRevision, kv.Version, kv.Value, kv.Lease = e.rev, kv.Version+1, bytesOrNil(e.value), e.lease
		}
	}
	return kv, live
}

func (m *model) rangeAt(key, end string, rev int64) []KeyValue {
	var keys []string
	for k := range m.events {
		if (end == "" && k == key) || (end == "\x00" && k >= key) || (end != "" && end != "\x00" && k >= key && k < end) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []KeyValue
	for _, k := range keys {
		if kv, ok := m.kvAt(k, rev); ok {
			out = append(out, kv)
		}
	}
	return out
}

func TestStoreAgainstModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testStoreAgainstModel(t, seed, backend) })
	}
}

func testStoreAgainstModel(t *testing.T, seed uint64, backend string) {
	t.Logf("seed %d; replay with: go test ./kv -run TestStoreAgainstModel -kv.seed=%d", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	s := newTestStoreOn(t, Config{}, backend)
	m := &model{events: map[string][]modelEvent{}, rev: 1, compactRev: -1}
	randKey := func() string {
		k := string(rune('a' + rng.IntN(8)))
		if rng.IntN(3) == 0 {
			k += string(rune('a' + rng.IntN(3)))
		}
		return k
	}
	// Puts draw their lease from 0, 1 and 2; the last two must exist.
	mustGrant(t, s, 1, 60)
	mustGrant(t, s, 2, 60)
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for step := range steps {
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d step %d: %s", seed, step, fmt.Sprintf(format, args...))
		}
		switch p := rng.IntN(100); {
		case p < 40: // put
			key, value, lease := randKey(), fmt.Sprint(rng.IntN(1000)), rng.Int64N(3)
			res := apply(t, s, &Command{Put: &PutRequest{Key: []byte(key), Value: bytesOrNil(value), Lease: lease}})
			m.rev++
			m.events[key] = append(m.events[key], modelEvent{rev: m.rev, value: value, lease: lease})
			if res.Err != nil || res.Put.Header.Revision != m.rev {
				fail("put: %+v %v, model revision %d", res.Put, res.Err, m.rev)
			}
		case p < 55: // delete a key or a range
			key, end := randKey(), ""
			if rng.IntN(2) == 0 {
				end = []string{"\x00", randKey()}[rng.IntN(2)]
			}
			want := m.rangeAt(key, end, m.rev)
			res := apply(t, s, &Command{DeleteRange: &DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end), PrevKv: true}})
			if len(want) > 0 {
				m.rev++
				for _, kv := range want {
					m.events[string(kv.Key)] = append(m.events[string(kv.Key)], modelEvent{rev: m.rev, deleted: true})
				}
			}
			if res.Err != nil || res.DeleteRange.Deleted != int64(len(want)) || !reflect.DeepEqual(res.DeleteRange.PrevKvs, want) {
				fail("delete %q..%q: %+v %v, want %d deleted", key, end, res.DeleteRange, res.Err, len(want))
			}
		case p < 70: // txn of puts and deletes on distinct keys
			used := map[string]bool{}
			var ops []RequestOp
			var events []func()
			for range 1 + rng.IntN(4) {
				key := randKey()
				if used[key] {
					continue
				}
				used[key] = true
				if rng.IntN(3) == 0 {
					ops = append(ops, delOp(key, ""))
					if _, live := m.kvAt(key, m.rev); live {
						events = append(events, func() { m.events[key] = append(m.events[key], modelEvent{rev: m.rev, deleted: true}) })
					}
				} else {
					value := fmt.Sprint(rng.IntN(1000))
					ops = append(ops, putOp(key, value))
					events = append(events, func() { m.events[key] = append(m.events[key], modelEvent{rev: m.rev, value: value}) })
				}
			}
			resp := mustTxn(t, s, &TxnRequest{Success: ops})
			if len(events) > 0 {
				m.rev++
			}
			for _, e := range events {
				e()
			}
			if resp.Header.Revision != m.rev {
				fail("txn revision %d, model %d", resp.Header.Revision, m.rev)
			}
		case p < 74: // compact
			if m.compactRev == m.rev {
				wantErr(t, "compact at the compaction revision", apply(t, s, &Command{Compact: &CompactionRequest{Revision: m.rev}}).Err, ErrCompacted)
				continue
			}
			rev := m.compactRev + 1 + rng.Int64N(m.rev-m.compactRev)
			res := apply(t, s, &Command{Compact: &CompactionRequest{Revision: rev}})
			if res.Err != nil {
				fail("compact %d (compacted %d, revision %d): %v", rev, m.compactRev, m.rev, res.Err)
			}
			m.compactRev = rev
		case p < 76: // snapshot, restore into a new store, carry on with that one
			snap, err := s.Snapshot()
			if err != nil {
				fail("snapshot: %v", err)
			}
			var streamed bytes.Buffer
			if n, err := s.WriteSnapshot(&streamed); err != nil || n != int64(len(snap)) || !bytes.Equal(streamed.Bytes(), snap) {
				fail("WriteSnapshot wrote %d bytes (%v), not the %d of Snapshot", n, err, len(snap))
			}
			restored := newTestStoreOn(t, Config{}, backend)
			if err := restored.Restore(snap); err != nil {
				fail("restore: %v", err)
			}
			if again, _ := restored.Snapshot(); !bytes.Equal(again, snap) {
				fail("snapshot of the restored store differs")
			}
			s = restored
		default: // read at a random revision still readable
			key, end := randKey(), []string{"", "\x00", randKey()}[rng.IntN(3)]
			rev := max(m.compactRev, 1) + rng.Int64N(m.rev-max(m.compactRev, 1)+1)
			want := m.rangeAt(key, end, rev)
			got := mustRange(t, s, &RangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end), Revision: rev})
			if !reflect.DeepEqual(got.Kvs, want) || got.Count != int64(len(want)) || got.Header.Revision != m.rev {
				fail("range %q..%q at %d:\n got  %v\n want %v", key, end, rev, describe(got.Kvs), describe(want))
			}
		}
		if s.Revision() != m.rev || s.CompactRevision() != m.compactRev {
			fail("store at revision %d compacted %d; model %d, %d", s.Revision(), s.CompactRevision(), m.rev, m.compactRev)
		}
		if step%100 == 0 {
			checkSizeCounters(t, s)
		}
	}
	checkSizeCounters(t, s)
}

func describe(kvs []KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, fmt.Sprintf("%s=%s(c%d m%d v%d l%d)", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
	}
	return strings.Join(parts, " ")
}
