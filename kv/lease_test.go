package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func mustGrant(t testing.TB, s *Store, id, ttl int64) *LeaseGrantResponse {
	t.Helper()
	res := apply(t, s, &Command{LeaseGrant: &LeaseGrantRequest{ID: id, TTL: ttl}})
	if res.Err != nil {
		t.Fatalf("grant lease %d: %v", id, res.Err)
	}
	return res.LeaseGrant
}

func mustRevoke(t testing.TB, s *Store, id int64) *LeaseRevokeResponse {
	t.Helper()
	res := apply(t, s, &Command{LeaseRevoke: &LeaseRevokeRequest{ID: id}})
	if res.Err != nil {
		t.Fatalf("revoke lease %d: %v", id, res.Err)
	}
	return res.LeaseRevoke
}

func putWithLease(t testing.TB, s *Store, key string, lease int64) Result {
	t.Helper()
	return apply(t, s, &Command{Put: &PutRequest{Key: []byte(key), Value: []byte("v"), Lease: lease}})
}

// leaseKeys returns the keys attached to lease id, joined by commas.
func leaseKeys(s *Store, id int64) string {
	var keys []string
	for _, k := range s.LeaseKeys(id) {
		keys = append(keys, string(k))
	}
	return strings.Join(keys, ",")
}

func TestLeaseGrant(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "1")
	rev := s.Revision()
	got := mustGrant(t, s, 7, 60)
	if *got != (LeaseGrantResponse{Header: ResponseHeader{Revision: rev}, ID: 7, TTL: 60}) {
		t.Fatalf("grant answered %+v", got)
	}
	mustGrant(t, s, -4, MaxLeaseTTL) // etcd takes negative ids and the largest TTL
	for _, tc := range []struct {
		req  LeaseGrantRequest
		want error
	}{
		{LeaseGrantRequest{ID: 7, TTL: 10}, ErrLeaseExists},
		{LeaseGrantRequest{ID: 0, TTL: 10}, ErrLeaseNotFound},
		{LeaseGrantRequest{ID: 8, TTL: MaxLeaseTTL + 1}, ErrLeaseTTLTooLarge},
		// The TTL check comes first, as in etcd's lessor.
		{LeaseGrantRequest{ID: 7, TTL: MaxLeaseTTL + 1}, ErrLeaseTTLTooLarge},
	} {
		res := apply(t, s, &Command{LeaseGrant: &tc.req})
		wantErr(t, fmt.Sprintf("grant %+v", tc.req), res.Err, tc.want)
		if err := s.Check(&Command{LeaseGrant: &tc.req}); tc.want != ErrLeaseExists && !errors.Is(err, tc.want) {
			t.Fatalf("Check of grant %+v: %v, want %v", tc.req, err, tc.want)
		}
	}
	if s.Revision() != rev {
		t.Fatalf("grants moved the revision from %d to %d", rev, s.Revision())
	}
	if got, want := s.Leases(), []LeaseInfo{{ID: -4, TTL: MaxLeaseTTL}, {ID: 7, TTL: 60}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Leases() = %+v, want %+v", got, want)
	}
	if info, ok := s.Lease(7); !ok || info != (LeaseInfo{ID: 7, TTL: 60}) {
		t.Fatalf("Lease(7) = %+v, %v", info, ok)
	}
	if _, ok := s.Lease(8); ok {
		t.Fatal("Lease(8) found a lease never granted")
	}
}

// A put may name only a lease that exists, and that check comes before the
// checks that need the key, as in etcd (txn/put.go checkLease).
func TestPutToUnknownLease(t *testing.T) {
	s := newTestStore(t, Config{})
	mustGrant(t, s, 1, 60)
	mustPut(t, s, "k", "v")
	rev := s.Revision()
	for _, p := range []PutRequest{
		{Key: []byte("k"), Value: []byte("x"), Lease: 2},
		{Key: []byte("missing"), IgnoreValue: true, Lease: 2},
	} {
		res := apply(t, s, &Command{Put: &p})
		wantErr(t, fmt.Sprintf("put %+v", p), res.Err, ErrLeaseNotFound)
		txn := &TxnRequest{Success: []RequestOp{putOp("other", "1"), {Put: &p}}}
		res = apply(t, s, &Command{Txn: txn})
		wantErr(t, fmt.Sprintf("txn with put %+v", p), res.Err, ErrLeaseNotFound)
	}
	// A txn checks only the branch it takes.
	mustTxn(t, s, &TxnRequest{
		Compare: []Compare{{Target: CompareValue, Key: []byte("k"), Value: []byte("nope")}},
		Success: []RequestOp{{Put: &PutRequest{Key: []byte("k"), Lease: 99}}},
		Failure: []RequestOp{{Put: &PutRequest{Key: []byte("k"), Value: []byte("w"), Lease: 1}}},
	})
	if s.Revision() != rev+1 {
		t.Fatalf("revision %d, want %d: a refused put must change nothing", s.Revision(), rev+1)
	}
	if kv := get(t, s, "k", 0); kv.Lease != 1 || leaseKeys(s, 1) != "k" {
		t.Fatalf("key %+v, lease 1 holds %q", kv, leaseKeys(s, 1))
	}
}

// Attachments follow the key's live revision: a put with another lease moves it, a
// put without one or a delete detaches it, IgnoreLease keeps it.
func TestLeaseAttachments(t *testing.T) {
	s := newTestStore(t, Config{})
	mustGrant(t, s, 1, 60)
	mustGrant(t, s, 2, 60)
	step := func(what, want1, want2 string) {
		t.Helper()
		if got1, got2 := leaseKeys(s, 1), leaseKeys(s, 2); got1 != want1 || got2 != want2 {
			t.Fatalf("after %s: lease 1 holds %q, lease 2 %q; want %q and %q", what, got1, got2, want1, want2)
		}
	}
	putWithLease(t, s, "a", 1)
	putWithLease(t, s, "b", 1)
	putWithLease(t, s, "c", 2)
	step("three puts", "a,b", "c")
	putWithLease(t, s, "a", 2)
	step("a moved to lease 2", "b", "a,c")
	apply(t, s, &Command{Put: &PutRequest{Key: []byte("a"), Value: []byte("x"), IgnoreLease: true}})
	step("a put with IgnoreLease", "b", "a,c")
	mustPut(t, s, "c", "no lease")
	step("c put without a lease", "b", "a")
	mustDelete(t, s, "b", "")
	step("b deleted", "", "a")
	putWithLease(t, s, "b", 1)
	mustTxn(t, s, &TxnRequest{Success: []RequestOp{
		{Put: &PutRequest{Key: []byte("d"), Lease: 1}},
		delOp("a", "b"),
	}})
	step("a txn attaching d and deleting a", "b,d", "")
	mustDelete(t, s, "a", "\x00")
	step("a delete of every key", "", "")
}

// A revoke deletes every attached key at one revision, in one write, and only
// those: a key moved to another lease or deleted since is left alone.
func TestLeaseRevoke(t *testing.T) {
	s := newTestStore(t, Config{})
	mustGrant(t, s, 1, 60)
	mustGrant(t, s, 2, 60)
	for _, k := range []string{"x", "a", "m", "z"} {
		putWithLease(t, s, k, 1)
	}
	putWithLease(t, s, "m", 2)
	mustPut(t, s, "z", "now without a lease")
	putWithLease(t, s, "other", 2)
	before := s.Revision()
	resp := mustRevoke(t, s, 1)
	if resp.Header.Revision != before+1 || s.Revision() != before+1 || resp.ID != 1 {
		t.Fatalf("revoke answered %+v, store at %d; want revision %d", resp, s.Revision(), before+1)
	}
	left := keysOf(mustRange(t, s, &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}).Kvs)
	if strings.Join(left, ",") != "m,other,z" {
		t.Fatalf("after revoke the store holds %v, want m, other and z", left)
	}
	// Both deleted keys are there one revision earlier, and gone at the revoke's.
	for _, k := range []string{"a", "x"} {
		if get(t, s, k, before) == nil || get(t, s, k, before+1) != nil {
			t.Fatalf("key %q: not deleted exactly at revision %d", k, before+1)
		}
	}
	if _, ok := s.Lease(1); ok {
		t.Fatal("lease 1 outlived its revoke")
	}
	res := apply(t, s, &Command{LeaseRevoke: &LeaseRevokeRequest{ID: 1}})
	wantErr(t, "second revoke", res.Err, ErrLeaseNotFound)
	res = putWithLease(t, s, "a", 1)
	wantErr(t, "put to a revoked lease", res.Err, ErrLeaseNotFound)
	// A lease with no keys is revoked without a new revision.
	mustGrant(t, s, 3, 60)
	rev := s.Revision()
	if resp := mustRevoke(t, s, 3); resp.Header.Revision != rev || s.Revision() != rev {
		t.Fatalf("revoke of a lease without keys: %+v, store at %d, want %d", resp, s.Revision(), rev)
	}
	if leaseKeys(s, 2) != "m,other" {
		t.Fatalf("lease 2 holds %q", leaseKeys(s, 2))
	}
}

// etcd 3.7 answers a keys-only range that does not sort by value from its index,
// without leases; one sorted by value reads the keys whole and keeps them.
func TestKeysOnlyRangeDropsLeases(t *testing.T) {
	s := newTestStore(t, Config{})
	mustGrant(t, s, 3, 60)
	putWithLease(t, s, "a", 3)
	putWithLease(t, s, "b", 3)
	for _, r := range []*RangeRequest{
		{Key: []byte("a"), KeysOnly: true},
		{Key: []byte("a"), RangeEnd: []byte("c"), KeysOnly: true},
		{Key: []byte("a"), RangeEnd: []byte("c"), KeysOnly: true, SortTarget: SortByMod, SortOrder: SortDescend},
	} {
		for _, kv := range mustRange(t, s, r).Kvs {
			if kv.Lease != 0 || kv.Value != nil {
				t.Fatalf("keys-only range %+v returned %+v", r, kv)
			}
		}
	}
	for _, kv := range mustRange(t, s, &RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), KeysOnly: true, SortTarget: SortByValue}).Kvs {
		if kv.Lease != 3 || kv.Value != nil {
			t.Fatalf("keys-only range sorted by value returned %+v", kv)
		}
	}
	if kv := get(t, s, "a", 0); kv.Lease != 3 {
		t.Fatalf("a full range returned %+v", kv)
	}
}

// A revoke's deletes reach the history as any DeleteRange's do: one revision, the
// keys in key order, with their previous values for a watcher that asks.
func TestLeaseRevokeInHistory(t *testing.T) {
	s := newTestStore(t, Config{})
	mustGrant(t, s, 1, 60)
	for _, k := range []string{"b", "a", "c"} {
		putWithLease(t, s, k, 1)
	}
	mustPut(t, s, "d", "not on the lease")
	before := s.Revision()
	mustRevoke(t, s, 1)
	resp := mustEvents(t, s, &EventsRequest{FromRevision: before + 1, PrevKv: true})
	if got, want := describeEvents(resp.Events), fmt.Sprintf("DELETE a@%d DELETE b@%d DELETE c@%d", before+1, before+1, before+1); got != want {
		t.Fatalf("the revoke's events: %s, want %s", got, want)
	}
	for _, ev := range resp.Events {
		if ev.PrevKv == nil || ev.PrevKv.Lease != 1 || string(ev.PrevKv.Value) != "v" {
			t.Fatalf("the revoke's delete of %q has prev_kv %+v", ev.Kv.Key, ev.PrevKv)
		}
	}
}

func TestLeaseCheckpoint(t *testing.T) {
	s := newTestStore(t, Config{})
	mustGrant(t, s, 1, 600)
	mustGrant(t, s, 2, 600)
	rev := s.Revision()
	res := apply(t, s, &Command{LeaseCheckpoint: &LeaseCheckpointRequest{Checkpoints: []LeaseCheckpoint{
		{ID: 1, RemainingTTL: 300}, {ID: 9, RemainingTTL: 5}, {ID: 2, RemainingTTL: -1},
	}}})
	want := &LeaseCheckpointResponse{Header: ResponseHeader{Revision: rev},
		Checkpoints: []LeaseCheckpoint{{ID: 1, RemainingTTL: 300}, {ID: 2, RemainingTTL: 0}}}
	if res.Err != nil || !reflect.DeepEqual(res.LeaseCheckpoint, want) {
		t.Fatalf("checkpoint answered %+v %v, want %+v", res.LeaseCheckpoint, res.Err, want)
	}
	if info, _ := s.Lease(1); info.RemainingTTL != 300 {
		t.Fatalf("lease 1 after checkpoint: %+v", info)
	}
	apply(t, s, &Command{LeaseCheckpoint: &LeaseCheckpointRequest{Checkpoints: []LeaseCheckpoint{{ID: 1}}}})
	if info, _ := s.Lease(1); info.RemainingTTL != 0 {
		t.Fatalf("lease 1 after clearing its checkpoint: %+v", info)
	}
	if s.Revision() != rev {
		t.Fatalf("checkpoints moved the revision to %d", s.Revision())
	}
	tooMany := &LeaseCheckpointRequest{Checkpoints: make([]LeaseCheckpoint, maxLeaseCheckpoints+1)}
	wantErr(t, "oversized checkpoint", s.Check(&Command{LeaseCheckpoint: tooMany}), ErrTooManyCheckpoints)
}

// Leases, their checkpoints and their keys survive a snapshot (and a view of one),
// and the lease results the session table keeps survive with them.
func TestLeaseSnapshotRoundTrip(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s := newTestStoreOn(t, Config{}, backend)
			apply(t, s, &Command{ClientID: 5, Seq: 1, LeaseGrant: &LeaseGrantRequest{ID: 10, TTL: 30}})
			apply(t, s, &Command{ClientID: 6, Seq: 1, LeaseGrant: &LeaseGrantRequest{ID: 11, TTL: 40}})
			apply(t, s, &Command{ClientID: 7, Seq: 1, LeaseCheckpoint: &LeaseCheckpointRequest{Checkpoints: []LeaseCheckpoint{{ID: 11, RemainingTTL: 12}}}})
			for i := range 20 {
				putWithLease(t, s, fmt.Sprintf("k%02d", i), 10+int64(i%2))
			}
			mustDelete(t, s, "k03", "")
			putWithLease(t, s, "k05", 0)
			apply(t, s, &Command{ClientID: 8, Seq: 1, LeaseRevoke: &LeaseRevokeRequest{ID: 99}})
			mustGrant(t, s, 12, 50)
			apply(t, s, &Command{ClientID: 8, Seq: 2, LeaseRevoke: &LeaseRevokeRequest{ID: 12}})

			snap := mustSnapshot(t, s)
			view, err := s.SnapshotView()
			if err != nil {
				t.Fatal(err)
			}
			var viewed bytes.Buffer
			if _, err := view.WriteTo(&viewed); err != nil {
				t.Fatal(err)
			}
			view.Release()
			if !bytes.Equal(viewed.Bytes(), snap) {
				t.Fatal("a snapshot view wrote other bytes than Snapshot")
			}
			r := newTestStoreOn(t, Config{}, backend)
			if err := r.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if got, want := r.Leases(), s.Leases(); !reflect.DeepEqual(got, want) {
				t.Fatalf("leases after restore %+v, want %+v", got, want)
			}
			for _, id := range []int64{10, 11} {
				if got, want := leaseKeys(r, id), leaseKeys(s, id); got != want {
					t.Fatalf("lease %d holds %q after restore, %q before", id, got, want)
				}
			}
			again := mustSnapshot(t, r)
			if !bytes.Equal(again, snap) {
				t.Fatal("the restored store's snapshot differs from the one it was restored from")
			}
			// The session table answers retries of lease commands as before.
			for _, c := range []*Command{
				{ClientID: 5, Seq: 1, LeaseGrant: &LeaseGrantRequest{ID: 10, TTL: 30}},
				{ClientID: 7, Seq: 1, LeaseCheckpoint: &LeaseCheckpointRequest{}},
				{ClientID: 8, Seq: 2, LeaseRevoke: &LeaseRevokeRequest{ID: 12}},
				{ClientID: 8, Seq: 1, LeaseRevoke: &LeaseRevokeRequest{ID: 99}},
			} {
				got, want := apply(t, r, c), apply(t, s, c)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("retry of %+v: restored store answers %+v, original %+v", c, got, want)
				}
			}
			// And a revoke after the restore deletes the keys the lease held.
			rev := r.Revision()
			mustRevoke(t, r, 10)
			if left := keysOf(mustRange(t, r, &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}).Kvs); len(left) != 9 ||
				r.Revision() != rev+1 {
				t.Fatalf("after revoking lease 10 the store holds %v at revision %d", left, r.Revision())
			}
		})
	}
}

// checkGrantInvariant verifies the lease attachments against the keys: each
// lease holds exactly the live keys whose version names it.
func checkGrantInvariant(t testing.TB, s *Store) {
	t.Helper()
	want := map[int64][]string{}
	for _, kv := range mustRange(t, s, &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}).Kvs {
		if _, ok := s.Lease(kv.Lease); ok && kv.Lease != 0 {
			want[kv.Lease] = append(want[kv.Lease], string(kv.Key))
		}
	}
	for _, l := range s.Leases() {
		var got []string
		for _, k := range s.LeaseKeys(l.ID) {
			got = append(got, string(k))
		}
		id := l.ID
		if !slices.Equal(got, want[id]) {
			t.Fatalf("lease %d holds %v, but the live keys naming it are %v", id, got, want[id])
		}
	}
}

// FuzzLeaseCommands applies a sequence of lease commands and writes drawn from the
// input, with snapshot round trips and compactions on the way, and checks after each step that every lease holds exactly the
// live keys naming it, and that a revoke deletes them all at one revision.
func FuzzLeaseCommands(f *testing.F) {
	f.Add([]byte{0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("grant put put revoke snapshot delete txn"))
	f.Fuzz(func(t *testing.T, program []byte) {
		s := newTestStoreOn(t, Config{}, "mem")
		rng := rand.New(rand.NewPCG(uint64(len(program)), 1))
		key := func(b byte) []byte { return []byte{'k', 'a' + b%6} }
		for i, b := range program {
			arg := byte(rng.IntN(256))
			if i+1 < len(program) {
				arg = program[i+1]
			}
			id := int64(arg%4) + 1
			switch b % 9 {
			case 0:
				apply(t, s, &Command{LeaseGrant: &LeaseGrantRequest{ID: id, TTL: 10}})
			case 1, 2:
				putWithLease(t, s, string(key(arg>>2)), int64(arg%5))
			case 3:
				mustDelete(t, s, string(key(arg)), string(key(arg>>3)))
			case 4:
				g, _ := s.Lease(id)
				keys := s.LeaseKeys(id)
				rev := s.Revision()
				res := apply(t, s, &Command{LeaseRevoke: &LeaseRevokeRequest{ID: id}})
				if (g.ID == 0) != errors.Is(res.Err, ErrLeaseNotFound) {
					t.Fatalf("revoke of lease %d (exists: %v): %v", id, g.ID != 0, res.Err)
				}
				wantRev := rev
				if len(keys) > 0 {
					wantRev++
				}
				if s.Revision() != wantRev {
					t.Fatalf("revoke of lease %d with keys %q moved the revision from %d to %d", id, keys, rev, s.Revision())
				}
				for _, k := range keys {
					if get(t, s, string(k), 0) != nil {
						t.Fatalf("key %q outlived the revoke of its lease %d", k, id)
					}
				}
			case 5:
				lease := int64(arg>>6) % 2 * id
				_, exists := s.Lease(lease)
				res := apply(t, s, &Command{Txn: &TxnRequest{Success: []RequestOp{{Put: &PutRequest{Key: key(arg), Lease: lease}}}}})
				if (lease == 0 || exists) != (res.Err == nil) {
					t.Fatalf("txn put with lease %d (exists: %v): %v", lease, exists, res.Err)
				}
			case 6:
				r := newTestStoreOn(t, Config{}, "mem")
				if err := r.Restore(mustSnapshot(t, s)); err != nil {
					t.Fatal(err)
				}
				s = r
			case 7:
				apply(t, s, &Command{Put: &PutRequest{Key: key(arg), IgnoreLease: true}})
			case 8:
				before := mustRange(t, s, &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
				apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
				if after := mustRange(t, s, &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); !reflect.DeepEqual(before.Kvs, after.Kvs) {
					t.Fatalf("compaction changed the keys: %v, then %v", describe(before.Kvs), describe(after.Kvs))
				}
			}
			checkGrantInvariant(t, s)
		}
	})
}
