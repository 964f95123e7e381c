package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// applyOnce applies a put of key under id at the next index.
func applyOnce(t testing.TB, s *Store, id ProposalID, key string) Result {
	t.Helper()
	data, err := (&Command{Put: &PutRequest{Key: []byte(key), Value: []byte("v")}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s.ApplyOnce(s.AppliedIndex()+1, id, data)
}

// A second copy of a proposal returns the first copy's result and applies nothing;
// a copy below its proposer's floor is refused; proposers are apart.
func TestApplyOnce(t *testing.T) {
	s := newTestStore(t, Config{})
	first := applyOnce(t, s, ProposalID{Proposer: 7, Seq: 1, LowestPending: 1}, "a")
	if first.Err != nil || first.Put.Header.Revision != 2 {
		t.Fatalf("first copy: %+v", first)
	}
	again := applyOnce(t, s, ProposalID{Proposer: 7, Seq: 1, LowestPending: 1}, "a")
	if !reflect.DeepEqual(again, first) || s.Revision() != 2 {
		t.Fatalf("second copy: %+v at revision %d, want the first's result %+v and revision 2", again, s.Revision(), first)
	}
	// Another proposer's seq 1 is its own.
	if res := applyOnce(t, s, ProposalID{Proposer: 8, Seq: 1, LowestPending: 1}, "b"); res.Err != nil || s.Revision() != 3 {
		t.Fatalf("proposer 8 seq 1: %+v, revision %d", res, s.Revision())
	}
	// Out of order: 3 applies before 2, then 2, then copies of both are answered.
	r3 := applyOnce(t, s, ProposalID{Proposer: 7, Seq: 3, LowestPending: 2}, "c")
	r2 := applyOnce(t, s, ProposalID{Proposer: 7, Seq: 2, LowestPending: 2}, "d")
	if r3.Err != nil || r2.Err != nil || s.Revision() != 5 {
		t.Fatalf("seq 3 then 2: %+v %+v, revision %d", r3, r2, s.Revision())
	}
	if res := applyOnce(t, s, ProposalID{Proposer: 7, Seq: 2, LowestPending: 2}, "d"); !reflect.DeepEqual(res, r2) {
		t.Fatalf("copy of seq 2: %+v, want %+v", res, r2)
	}
	// The proposer stopped waiting for 1 and 2: a copy of either, or of 1 again, is
	// refused, and a late first copy of 2 would be too.
	if res := applyOnce(t, s, ProposalID{Proposer: 7, Seq: 4, LowestPending: 3}, "e"); res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, seq := range []uint64{1, 2} {
		if res := applyOnce(t, s, ProposalID{Proposer: 7, Seq: seq, LowestPending: 1}, "x"); res.Err != ErrProposalExpired {
			t.Fatalf("copy of seq %d below the floor: %+v, want ErrProposalExpired", seq, res)
		}
	}
	if s.Revision() != 6 || get(t, s, "x", 0) != nil {
		t.Fatalf("refused copies applied: revision %d", s.Revision())
	}
	// An entry replayed below the applied index is skipped as Apply skips it.
	data, _ := (&Command{Put: &PutRequest{Key: []byte("y")}}).Encode()
	if res := s.ApplyOnce(1, ProposalID{Proposer: 9, Seq: 1}, data); res.Err != ErrAlreadyApplied {
		t.Fatalf("replayed index: %+v", res)
	}
}

// Past MaxProposalResults a proposer's oldest result goes and its floor rises: a copy
// of it is refused, never applied twice. Past MaxProposers the least recently used
// proposer goes: a copy of its proposal applies again, the documented price.
func TestApplyOnceBounds(t *testing.T) {
	s := newTestStore(t, Config{MaxProposalResults: 2, MaxProposers: 2})
	for seq := uint64(1); seq <= 3; seq++ {
		applyOnce(t, s, ProposalID{Proposer: 1, Seq: seq, LowestPending: 1}, fmt.Sprint("k", seq))
	}
	if res := applyOnce(t, s, ProposalID{Proposer: 1, Seq: 1, LowestPending: 1}, "k1"); res.Err != ErrProposalExpired {
		t.Fatalf("copy of a dropped result: %+v, want ErrProposalExpired", res)
	}
	if res := applyOnce(t, s, ProposalID{Proposer: 1, Seq: 2, LowestPending: 1}, "k2"); res.Err != nil || s.Revision() != 4 {
		t.Fatalf("copy of a kept result: %+v at revision %d, want it answered from the table at 4", res, s.Revision())
	}
	applyOnce(t, s, ProposalID{Proposer: 2, Seq: 1, LowestPending: 1}, "p2")
	applyOnce(t, s, ProposalID{Proposer: 3, Seq: 1, LowestPending: 1}, "p3") // evicts proposer 1
	if res := applyOnce(t, s, ProposalID{Proposer: 1, Seq: 3, LowestPending: 1}, "k3"); res.Err != nil || get(t, s, "k3", 0).Version != 2 {
		t.Fatalf("copy of an evicted proposer's proposal: %+v; want it applied again (version 2)", res)
	}
}

// Replicas that apply the same log with snapshots and restores in between, at any
// point, end with the same bytes, and no proposal ever applies twice however its
// copies are spread over the log.
func TestApplyOnceRandomLog(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	type entry struct {
		id  ProposalID
		key string
	}
	// Three proposers, each with proposals pending at once; a pending proposal may
	// be sent again at any time, and any copy may also land again much later.
	var log []entry
	pending := map[uint64][]uint64{}
	next := map[uint64]uint64{1: 1, 2: 1, 3: 1}
	for len(log) < 600 {
		if len(log) > 0 && rng.IntN(5) == 0 { // a late copy, sent long ago
			log = append(log, log[rng.IntN(len(log))])
			continue
		}
		p := uint64(1 + rng.IntN(3))
		if len(pending[p]) == 0 || rng.IntN(3) == 0 {
			pending[p] = append(pending[p], next[p])
			next[p]++
		}
		i := rng.IntN(len(pending[p]))
		seq := pending[p][i]
		lowest := pending[p][0]
		log = append(log, entry{ProposalID{Proposer: p, Seq: seq, LowestPending: lowest}, fmt.Sprintf("p%d-%d", p, seq)})
		if rng.IntN(3) == 0 { // the proposer stops waiting for it
			pending[p] = append(pending[p][:i:i], pending[p][i+1:]...)
		}
	}
	a := newTestStore(t, Config{MaxProposalResults: 8})
	b := newTestStore(t, Config{MaxProposalResults: 8})
	for i, e := range log {
		applyOnce(t, a, e.id, e.key)
		applyOnce(t, b, e.id, e.key)
		if rng.IntN(50) == 0 {
			snap, err := b.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			b = newTestStore(t, Config{MaxProposalResults: 8})
			if err := b.Restore(snap); err != nil {
				t.Fatalf("seed %d entry %d: restore: %v", seed, i, err)
			}
		}
	}
	sa, _ := a.Snapshot()
	sb, _ := b.Snapshot()
	if !bytes.Equal(sa, sb) {
		t.Fatalf("seed %d: replicas differ after the same log", seed)
	}
	resp := mustRange(t, a, &RangeRequest{Key: []byte("p"), RangeEnd: []byte("q")})
	for _, kv := range resp.Kvs {
		if kv.Version != 1 {
			t.Fatalf("seed %d: %s applied %d times", seed, kv.Key, kv.Version)
		}
	}
	if len(resp.Kvs) == 0 {
		t.Fatalf("seed %d: nothing applied", seed)
	}
}

// TestApplyOnceRisingFloorIsCheap: one proposer with one write in flight at a time
// (a client writing through a follower) raises its floor with every entry. Each
// raise once wrote a range deletion of the results below the floor; pebble
// fragments a memtable's overlapping range deletions, and nested ones [0, n) for
// n = 1, 2, 3... take memory quadratic in their number: three members written
// through a follower by one client grew to 0.5-1.5 GB each within 30 s. The
// dropped results are now deleted one by one, and the records left are exactly
// the table's, as opening the store checks.
func TestApplyOnceRisingFloorIsCheap(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	alloc := bytesAllocated(func() {
		for seq := uint64(1); seq <= n; seq++ {
			if res := applyOnce(t, s, ProposalID{Proposer: 7, Seq: seq, LowestPending: seq}, fmt.Sprintf("k%d", seq%10)); res.Err != nil {
				t.Fatalf("proposal %d: %v", seq, res.Err)
			}
		}
		if _, err := s.Range(&RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	// 1 MB with point deletes; 302 MB with a range deletion per entry.
	if alloc > 64<<20 {
		t.Errorf("%d proposals with a rising floor, then a range and a flush, allocated %d MB", n, alloc>>20)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenStore(Config{}, dir)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	if res := applyOnce(t, s, ProposalID{Proposer: 7, Seq: n, LowestPending: n}, "k0"); res.Err != nil || res.Put == nil {
		t.Errorf("a copy of the last proposal after reopening: %+v, want its first copy's result", res)
	}
	if res := applyOnce(t, s, ProposalID{Proposer: 7, Seq: n - 1, LowestPending: n}, "k0"); res.Err != ErrProposalExpired {
		t.Errorf("a copy below the floor after reopening: %v, want ErrProposalExpired", res.Err)
	}
}

// A refused copy applies nothing, and a later copy applies nothing either and gets
// the same refusal; a refused copy of a proposal that an earlier copy applied
// returns that copy's result.
func TestRefuseOnce(t *testing.T) {
	s := newTestStore(t, Config{})
	id := ProposalID{Proposer: 7, Seq: 1, LowestPending: 1}
	if res := s.RefuseOnce(s.AppliedIndex()+1, id, ErrRefusedNoSpace); res.Err != ErrRefusedNoSpace {
		t.Fatalf("first copy refused: %+v; want ErrRefusedNoSpace", res)
	}
	if res := applyOnce(t, s, id, "a"); res.Err != ErrRefusedNoSpace || s.Revision() != 1 || get(t, s, "a", 0) != nil {
		t.Fatalf("a copy after the refused one: %+v at revision %d; want the refusal, nothing applied", res, s.Revision())
	}
	if res := s.RefuseOnce(s.AppliedIndex()+1, id, ErrRefusedCorrupt); res.Err != ErrRefusedNoSpace {
		t.Fatalf("a copy refused again: %+v; want the first refusal", res)
	}
	applied := applyOnce(t, s, ProposalID{Proposer: 7, Seq: 2, LowestPending: 1}, "b")
	if applied.Err != nil || applied.Put == nil || s.Revision() != 2 {
		t.Fatalf("seq 2: %+v at revision %d", applied, s.Revision())
	}
	res := s.RefuseOnce(s.AppliedIndex()+1, ProposalID{Proposer: 7, Seq: 2, LowestPending: 1}, ErrRefusedNoSpace)
	if !reflect.DeepEqual(res, applied) || s.Revision() != 2 {
		t.Fatalf("a refused copy of seq 2, applied before: %+v, revision %d; want the first copy's %+v", res, s.Revision(), applied)
	}
	// The refusal is replicated state: it survives a snapshot.
	var snap bytes.Buffer
	if _, err := s.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	r := newTestStore(t, Config{})
	if err := r.RestoreFrom(&snap, nil); err != nil {
		t.Fatal(err)
	}
	if res := applyOnce(t, r, id, "a"); res.Err != ErrRefusedNoSpace {
		t.Fatalf("a copy after a snapshot holding the refusal: %+v; want the refusal", res)
	}
}
