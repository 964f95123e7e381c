package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

// groupEntry is one log entry of TestGroupedApplyMatchesOneByOne: a command, or
// none (a no-op), applied through the proposal table if once is set.
type groupEntry struct {
	data []byte
	once *ProposalID
}

// randomGroupEntries draws n entries: mostly plain puts (the groupable kind, to
// keys that repeat, so that a group puts a key twice), and between them every
// kind that must commit alone: puts with a lease or prev_kv or ignore_value,
// deletes, txns, lease grants and revokes, compactions, no-ops, retries of a
// client's session, and copies of proposals applied through the proposal table.
func randomGroupEntries(t *testing.T, rng *rand.Rand, n int) []groupEntry {
	t.Helper()
	key := func() []byte { return fmt.Appendf(nil, "k%d", rng.IntN(12)) }
	var entries []groupEntry
	add := func(cmd *Command, once *ProposalID) {
		data, err := cmd.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", cmd, err)
		}
		entries = append(entries, groupEntry{data: data, once: once})
	}
	var lease int64 // granted and not yet revoked, 0 if none
	var seq, proposalSeq uint64
	rev := int64(1) // a lower bound of the store's revision, for compactions
	for len(entries) < n {
		switch p := rng.IntN(100); {
		case p < 60:
			cmd := &Command{Put: &PutRequest{Key: key(), Value: fmt.Appendf(nil, "v%d", rng.IntN(1000))}}
			if rng.IntN(4) == 0 { // a client with a session, at times retrying
				seq += uint64(rng.IntN(2))
				cmd.ClientID, cmd.Seq = 7, max(seq, 1)
			}
			add(cmd, nil)
			rev++
		case p < 68: // a put copied into the log twice, through the proposal table
			proposalSeq++
			id := ProposalID{Proposer: 99, Seq: proposalSeq, LowestPending: proposalSeq}
			cmd := &Command{Put: &PutRequest{Key: key(), Value: []byte("once")}}
			add(cmd, &id)
			if rng.IntN(2) == 0 {
				add(cmd, &id)
			}
		case p < 73:
			add(&Command{Put: &PutRequest{Key: key(), Value: []byte("x"), PrevKv: true}}, nil)
		case p < 76:
			add(&Command{Put: &PutRequest{Key: key(), IgnoreValue: true}}, nil)
		case p < 80:
			if lease == 0 {
				lease = 1 + rng.Int64N(1000)
				add(&Command{LeaseGrant: &LeaseGrantRequest{ID: lease, TTL: 60}}, nil)
			} else if rng.IntN(3) == 0 {
				add(&Command{LeaseRevoke: &LeaseRevokeRequest{ID: lease}}, nil)
				lease = 0
			} else {
				add(&Command{Put: &PutRequest{Key: key(), Value: []byte("leased"), Lease: lease}}, nil)
			}
		case p < 86:
			add(&Command{DeleteRange: &DeleteRangeRequest{Key: key()}}, nil)
		case p < 92:
			k := key()
			add(&Command{Txn: &TxnRequest{
				Compare: []Compare{{Key: k, Target: CompareVersion, Result: CompareGreater, Version: 1}},
				Success: []RequestOp{putOp(string(k), "txn"), putOp("t", "yes")},
				Failure: []RequestOp{delOp(string(k), "")},
			}}, nil)
		case p < 94:
			add(&Command{Compact: &CompactionRequest{Revision: max(rev/2, 1)}}, nil)
		default:
			entries = append(entries, groupEntry{}) // a no-op
		}
	}
	return entries
}

func applyEntry(s *Store, index uint64, e groupEntry) Result {
	if e.once != nil {
		return s.ApplyOnce(index, *e.once, e.data)
	}
	return s.Apply(index, e.data)
}

// Grouping is a member's own choice, made by how many entries wait when it
// applies (server.applyLoop), so two members may group the same log differently:
// each entry's Result, and the state after every group, must be what applying the
// entries one by one gives, or the members diverge.
func TestGroupedApplyMatchesOneByOne(t *testing.T) {
	for _, backend := range backends {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("%s/seed%d", backend, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 11))
				entries := randomGroupEntries(t, rng, 600)
				single := newTestStoreOn(t, Config{}, backend)
				grouped := newTestStoreOn(t, Config{}, backend)
				groups, inGroups := 0, 0
				for i := 0; i < len(entries); {
					n := 1 + rng.IntN(40)
					grouped.BeginGroup()
					before := grouped.AppliedIndex()
					end := min(i+n, len(entries))
					for ; i < end; i++ {
						index := uint64(i + 1)
						want := applyEntry(single, index, entries[i])
						got := applyEntry(grouped, index, entries[i])
						if !reflect.DeepEqual(got, want) {
							t.Fatalf("entry %d in a group: %+v, one by one %+v", index, got, want)
						}
						if want.Err != nil && isEngineError(want.Err) {
							t.Fatalf("entry %d: %v", index, want.Err)
						}
					}
					if grouped.AppliedIndex() < uint64(end) {
						inGroups++ // some entries waited for EndGroup
					}
					if grouped.AppliedIndex() < before {
						t.Fatalf("applied index went back from %d to %d", before, grouped.AppliedIndex())
					}
					if err := grouped.EndGroup(); err != nil {
						t.Fatal(err)
					}
					groups++
					if grouped.AppliedIndex() != uint64(end) || grouped.Revision() != single.Revision() ||
						grouped.CompactRevision() != single.CompactRevision() {
						t.Fatalf("after the group ending at %d: applied %d, revision %d, compacted %d; one by one %d, %d, %d",
							end, grouped.AppliedIndex(), grouped.Revision(), grouped.CompactRevision(),
							single.AppliedIndex(), single.Revision(), single.CompactRevision())
					}
				}
				a, err := single.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				b, err := grouped.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Fatalf("the states differ after %d entries (%d and %d snapshot bytes)", len(entries), len(a), len(b))
				}
				checkSizeCounters(t, grouped)
				if inGroups < groups/4 {
					t.Fatalf("only %d of %d groups held entries back: the test grouped almost nothing", inGroups, groups)
				}
			})
		}
	}
}

// A group's entries are in no read, no snapshot and no applied index until it
// commits: a crash before then loses the group whole, and the log applies it again.
func TestGroupCommitsWhole(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "1")
	put := func(index uint64, key, value string) Result {
		t.Helper()
		data, err := (&Command{Put: &PutRequest{Key: []byte(key), Value: []byte(value)}}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		return s.Apply(index, data)
	}
	s.BeginGroup()
	if res := put(2, "a", "2"); res.Err != nil || res.Put.Header.Revision != 3 {
		t.Fatalf("first put of the group: %+v %v, want revision 3", res.Put, res.Err)
	}
	if res := put(3, "a", "3"); res.Err != nil || res.Put.Header.Revision != 4 {
		t.Fatalf("second put of the group: %+v %v, want revision 4", res.Put, res.Err)
	}
	if res := put(3, "a", "again"); res.Err != ErrAlreadyApplied {
		t.Fatalf("entry 3 twice in the group: %v, want ErrAlreadyApplied", res.Err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	got := mustRange(t, s, &RangeRequest{Key: []byte("a")})
	if s.AppliedIndex() != 1 || s.Revision() != 2 || string(got.Kvs[0].Value) != "1" || got.Header.Revision != 2 {
		t.Fatalf("while the group is open: applied %d, revision %d, a=%q at %d; want 1, 2, \"1\" at 2",
			s.AppliedIndex(), s.Revision(), got.Kvs[0].Value, got.Header.Revision)
	}
	if err := s.EndGroup(); err != nil {
		t.Fatal(err)
	}
	got = mustRange(t, s, &RangeRequest{Key: []byte("a")})
	if s.AppliedIndex() != 3 || s.Revision() != 4 || string(got.Kvs[0].Value) != "3" || got.Kvs[0].Version != 3 || got.Kvs[0].CreateRevision != 2 {
		t.Fatalf("after EndGroup: applied %d, revision %d, a=%+v; want 3, 4, \"3\" version 3 created at 2",
			s.AppliedIndex(), s.Revision(), got.Kvs[0])
	}

	// The snapshot taken while the group was open is the state a crash then
	// leaves: entry 1 applied, and the log applies 2 and 3 again.
	restored := newTestStore(t, Config{})
	if err := restored.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if restored.AppliedIndex() != 1 || restored.Revision() != 2 {
		t.Fatalf("the open group's snapshot: applied %d, revision %d, want 1, 2", restored.AppliedIndex(), restored.Revision())
	}

	// A command that cannot join the group commits the group before it applies.
	s.BeginGroup()
	put(4, "b", "1")
	data, err := (&Command{Put: &PutRequest{Key: []byte("b"), Value: []byte("2"), PrevKv: true}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	res := s.Apply(5, data)
	if res.Err != nil || res.Put.PrevKv == nil || string(res.Put.PrevKv.Value) != "1" || s.AppliedIndex() != 5 {
		t.Fatalf("a prev_kv put after a grouped one: %+v %v, applied %d; want prev \"1\", applied 5", res.Put, res.Err, s.AppliedIndex())
	}
	if err := s.EndGroup(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkApplyGroupedPuts applies puts of 256-byte values to 1,000 keys, in
// groups of 1 (one batch an entry, as without BeginGroup), 8 and 32.
func BenchmarkApplyGroupedPuts(b *testing.B) {
	for _, n := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("group=%d", n), func(b *testing.B) {
			s := newTestStore(b, Config{})
			rng := rand.New(rand.NewPCG(1, 1))
			value := bytes.Repeat([]byte("v"), 256)
			var data [][]byte
			for i := range 1000 {
				d, err := (&Command{Put: &PutRequest{Key: fmt.Appendf(nil, "key-%06d", i), Value: value}}).Encode()
				if err != nil {
					b.Fatal(err)
				}
				data = append(data, d)
			}
			index := s.AppliedIndex()
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			for i := 0; i < b.N; i += n {
				s.BeginGroup()
				for j := 0; j < n && i+j < b.N; j++ {
					index++
					if res := s.Apply(index, data[rng.IntN(len(data))]); res.Err != nil {
						b.Fatal(res.Err)
					}
				}
				if err := s.EndGroup(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// An engine failure in a group's entry drops the whole group: EndGroup reports
// it, so that the caller answers none of the group's entries as applied, and the
// store reopens at the state before the group.
func TestGroupDroppedByAnEngineFailure(t *testing.T) {
	var failing atomic.Bool
	fs := tableReadsFailWhile(&failing)
	// Reopened, no key's newest version is in memory: a put seeks it in the
	// files. Enough keys that the files hold version records in blocks that
	// opening them does not read.
	s := reopenedCold(t, fs, "/group", func(s *Store) {
		for i := range 5000 {
			mustPut(t, s, fmt.Sprintf("k%04d", i), strings.Repeat("v", 100))
		}
	})
	applied, rev := s.AppliedIndex(), s.Revision()
	put := func(index uint64, key string) Result {
		t.Helper()
		data, err := (&Command{Put: &PutRequest{Key: []byte(key), Value: []byte("new")}}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		return s.Apply(index, data)
	}
	s.BeginGroup()
	if res := put(applied+1, "k0000"); res.Err != nil {
		t.Fatalf("first put of the group: %v", res.Err)
	}
	failing.Store(true)
	// A key in the middle: the blocks at the ends (the first put's, and those by
	// the meta records that opening read) are in the cache.
	if res := put(applied+2, "k2500"); !errors.Is(res.Err, ErrEngineFailed) {
		t.Fatalf("a put whose seek fails: %v, want ErrEngineFailed", res.Err)
	}
	if err := s.EndGroup(); !errors.Is(err, ErrEngineFailed) {
		t.Fatalf("EndGroup after an entry of the group failed: %v, want ErrEngineFailed", err)
	}
	failing.Store(false)
	_ = s.Close()
	s, err := openStore(Config{}, "/group", fs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.AppliedIndex() != applied || s.Revision() != rev {
		t.Fatalf("reopened at applied %d, revision %d; want the state before the group: %d, %d", s.AppliedIndex(), s.Revision(), applied, rev)
	}
}
