package kv

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// A snapshot written in format 1 (values inline, before format 2 of 2026-11-26)
// still restores, to the same store as replaying the commands that made it: a member
// upgraded across the change reads the snapshot it left on disk. The fixture was
// written by the format 1 code from v1FixtureCommands.
func TestRestoresFormat1Snapshot(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			restored := newTestStoreOn(t, Config{}, backend)
			if err := restored.Restore(data); err != nil {
				t.Fatal(err)
			}
			replayed := newTestStoreOn(t, Config{}, backend)
			for _, c := range v1FixtureCommands() {
				apply(t, replayed, c)
			}
			// The same history: every key at every revision still readable. (The
			// bytes differ: the replay's value log holds compaction's garbage, the
			// restore's a copy per revision.)
			if restored.Revision() != replayed.Revision() || restored.CompactRevision() != replayed.CompactRevision() {
				t.Fatalf("restored at revision %d (compacted %d), replayed at %d (%d)", restored.Revision(),
					restored.CompactRevision(), replayed.Revision(), replayed.CompactRevision())
			}
			for rev := replayed.CompactRevision(); rev <= replayed.Revision(); rev++ {
				all := &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
				got, want := mustRange(t, restored, all), mustRange(t, replayed, all)
				if fmt.Sprint(got.Kvs) != fmt.Sprint(want.Kvs) {
					t.Fatalf("at revision %d restored has %v, replayed %v", rev, describe(got.Kvs), describe(want.Kvs))
				}
			}
			r := mustRange(t, restored, &RangeRequest{Key: []byte("key-07")})
			if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "value-47-\x00\x00" {
				t.Fatalf("key-07 after restore: %v", describe(r.Kvs))
			}
		})
	}
}

// v1FixtureCommands made testdata/snapshot-v1.bin.
func v1FixtureCommands() []*Command {
	var cmds []*Command
	for i := range 60 {
		cmds = append(cmds, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "key-%02d", i%20), Value: fmt.Appendf(nil, "value-%d-%s", i, string(make([]byte, i%5)))}})
	}
	cmds = append(cmds, &Command{DeleteRange: &DeleteRangeRequest{Key: []byte("key-03")}})
	cmds = append(cmds, &Command{Put: &PutRequest{Key: []byte("key-07"), IgnoreValue: true, Lease: 0}})
	cmds = append(cmds, &Command{Compact: &CompactionRequest{Revision: 20}})
	cmds = append(cmds, &Command{Put: &PutRequest{Key: []byte("empty")}})
	return cmds
}

// Snapshots written in formats 2 (before the proposal table, 2026-11-27) and 3
// (before leases, 2026-12-03) still restore, and read back exactly what the code of
// their format read from the store that wrote them: every key at every revision kept,
// lease ids included (testdata/snapshot-v<N>.golden, written with the fixture by that
// code; the fixtures' commands are in the comment at the end of this file). They hold
// no leases; their keys name lease ids 21 and 42, which the server then stored as
// given, and which stay attached to nothing: granting and revoking 42 afterwards
// leaves them alone.
func TestRestoresFormat2And3Snapshots(t *testing.T) {
	for _, version := range []int{2, 3} {
		data, err := os.ReadFile(fmt.Sprintf("testdata/snapshot-v%d.bin", version))
		if err != nil {
			t.Fatal(err)
		}
		golden, err := os.ReadFile(fmt.Sprintf("testdata/snapshot-v%d.golden", version))
		if err != nil {
			t.Fatal(err)
		}
		for _, backend := range backends {
			t.Run(fmt.Sprintf("v%d/%s", version, backend), func(t *testing.T) {
				s := newTestStoreOn(t, Config{}, backend)
				if err := s.Restore(data); err != nil {
					t.Fatal(err)
				}
				if got := describeHistory(t, s); got != string(golden) {
					t.Fatalf("restored format %d snapshot reads\n%s\nwant\n%s", version, got, golden)
				}
				if leases := s.Leases(); len(leases) != 0 {
					t.Fatalf("a format %d snapshot restored with leases %+v", version, leases)
				}
				rev := s.Revision()
				if version == 2 {
					// A retried session command is still answered from the table.
					res := apply(t, s, &Command{ClientID: 4, Seq: 7, Txn: &TxnRequest{}})
					if res.Err != nil || res.Txn == nil || res.Txn.Header.Revision != 34 {
						t.Fatalf("retry of the fixture's session txn: %+v", res)
					}
				} else {
					// A copy of a forwarded proposal already applied is not applied again.
					data, err := (&Command{Put: &PutRequest{Key: []byte("fwd-2"), Value: []byte("twice")}}).Encode()
					if err != nil {
						t.Fatal(err)
					}
					res := s.ApplyOnce(s.AppliedIndex()+1, ProposalID{Proposer: 77, Seq: 2, LowestPending: 1}, data)
					if res.Err != nil || s.Revision() != rev || string(get(t, s, "fwd-2", 0).Value) != "once" {
						t.Fatalf("a copy of proposal 2 after the restore: %+v, revision %d (was %d)", res, s.Revision(), rev)
					}
				}
				mustGrant(t, s, 42, 60)
				mustRevoke(t, s, 42)
				if s.Revision() != rev || get(t, s, "key-02", 0) == nil {
					t.Fatalf("revoking a new lease 42 touched the keys the snapshot holds with lease 42")
				}
				checkGrantInvariant(t, s)
			})
		}
	}
}

// The commands that made testdata/snapshot-v2.bin, applied by the format 2 code to a
// new store (a put's lease was then stored as given); snapshot-v3.bin is the same
// commands but the last, applied by the format 3 code, then three puts of keys
// fwd-1..3 through ApplyOnce as proposer 77's proposals 1..3:
//
//	for i := range 30 {
//		Put{Key: fmt.Appendf(nil, "key-%02d", i%10), Value: fmt.Appendf(nil, "value-%d", i), Lease: int64(i % 3 * 21)}
//	}
//	DeleteRange{Key: "key-04"}
//	ClientID 3, Seq 1: Put{Key: "key-05", Value: "kept lease", IgnoreLease: true}
//	Compact{Revision: 12}
//	ClientID 4, Seq 7: Txn{Success: [Put{Key: "txn", Lease: 42}]}

// describeHistory writes out what a restored store reads: its revisions, every key
// at every revision kept, and its leases with their keys.
func describeHistory(t *testing.T, s *Store) string {
	t.Helper()
	var got strings.Builder
	fmt.Fprintf(&got, "revision %d compacted %d applied %d\n", s.Revision(), s.CompactRevision(), s.AppliedIndex())
	for rev := s.CompactRevision(); rev <= s.Revision(); rev++ {
		r := mustRange(t, s, &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		fmt.Fprintf(&got, "%d: %s\n", rev, describe(r.Kvs))
	}
	for _, l := range s.Leases() {
		keys := leaseKeys(s, l.ID)
		if keys == "" {
			keys = "(none)"
		}
		fmt.Fprintf(&got, "lease %d ttl %d remaining %d keys %s\n", l.ID, l.TTL, l.RemainingTTL, keys)
	}
	return got.String()
}

// A snapshot written in format 4 (with leases, before the auth section of
// 2026-12-03) still restores, and reads back exactly what the format 4 code read
// from the store that wrote it: every key at every revision kept, and the leases
// with their TTLs, checkpoints and keys (testdata/snapshot-v4.golden, written with
// the fixture by that code from the commands below). Its session table, proposal
// table and leases work on: a retried session command is answered from the table, a
// copy of an applied proposal is not applied again, and revoking a lease deletes the
// keys the snapshot attached to it.
//
//	LeaseGrant{ID: 21, TTL: 60}, LeaseGrant{ID: 42, TTL: 120}, LeaseGrant{ID: 63, TTL: 30}
//	for i := range 30 {
//		Put{Key: fmt.Appendf(nil, "key-%02d", i%10), Value: fmt.Appendf(nil, "value-%d", i), Lease: int64(i % 3 * 21)}
//	}
//	DeleteRange{Key: "key-04"}
//	ClientID 3, Seq 1: Put{Key: "key-05", Value: "kept lease", IgnoreLease: true}
//	Compact{Revision: 12}
//	ClientID 4, Seq 7: Txn{Success: [Put{Key: "txn", Lease: 42}]}
//	LeaseCheckpoint{Checkpoints: [{ID: 42, RemainingTTL: 100}]}
//	then puts of fwd-1..3 (value "once") through ApplyOnce as proposer 77's proposals 1..3
func TestRestoresFormat4Snapshot(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v4.bin")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/snapshot-v4.golden")
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s := newTestStoreOn(t, Config{}, backend)
			if err := s.Restore(data); err != nil {
				t.Fatal(err)
			}
			if got := describeHistory(t, s); got != string(golden) {
				t.Fatalf("restored format 4 snapshot reads\n%s\nwant\n%s", got, golden)
			}
			checkGrantInvariant(t, s)
			rev := s.Revision()
			if res := apply(t, s, &Command{ClientID: 4, Seq: 7, Txn: &TxnRequest{}}); res.Err != nil || res.Txn == nil || res.Txn.Header.Revision != 34 {
				t.Fatalf("retry of the fixture's session txn: %+v", res)
			}
			data, err := (&Command{Put: &PutRequest{Key: []byte("fwd-2"), Value: []byte("twice")}}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			res := s.ApplyOnce(s.AppliedIndex()+1, ProposalID{Proposer: 77, Seq: 2, LowestPending: 1}, data)
			if res.Err != nil || s.Revision() != rev || string(get(t, s, "fwd-2", 0).Value) != "once" {
				t.Fatalf("a copy of proposal 2 after the restore: %+v, revision %d (was %d)", res, s.Revision(), rev)
			}
			mustRevoke(t, s, 42)
			if s.Revision() != rev+1 || get(t, s, "key-00", 0) != nil || get(t, s, "txn", 0) != nil || get(t, s, "key-02", 0) == nil {
				t.Fatalf("revoking lease 42 after the restore: revision %d (was %d), keys %s", s.Revision(), rev,
					describe(mustRange(t, s, &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}).Kvs))
			}
			checkGrantInvariant(t, s)
		})
	}
}

// A snapshot written in format 5 (the last of the full-state format, with the
// auth section), as members of the previous release write it, is imported into
// the engine: it reads back what the format 5 code read from the store that
// wrote it (testdata/snapshot-v5.golden, written with the fixture by that code:
// snapshotFixture, then setupAuth, then a put of "fwd" through ApplyOnce as
// proposer 77's proposal 1), and its sessions, proposals, leases and auth work on.
func TestRestoresFormat5Snapshot(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v5.bin")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/snapshot-v5.golden")
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s := newTestStoreOn(t, Config{}, backend)
			if err := s.Restore(data); err != nil {
				t.Fatal(err)
			}
			enabled, rev := s.AuthStatus()
			users, err := s.UserList(as(s, "root"))
			if err != nil {
				t.Fatal(err)
			}
			perms, err := s.RoleGet(as(s, "root"), "app")
			if err != nil {
				t.Fatal(err)
			}
			got := describeHistory(t, s) + fmt.Sprintf("auth enabled %v revision %d users %q app %+v\n", enabled, rev, users, perms)
			if got != string(golden) {
				t.Fatalf("restored format 5 snapshot reads\n%s\nwant\n%s", got, golden)
			}
			checkGrantInvariant(t, s)
			revision := s.Revision()
			// A retried session command is answered from the table.
			if res := apply(t, s, &Command{ClientID: 11, Seq: 1, Put: &PutRequest{Key: []byte("d"), PrevKv: true}}); res.Err != nil || res.Put == nil || res.Put.Header.Revision != 8 {
				t.Fatalf("retry of the fixture's session put: %+v", res)
			}
			// A copy of the forwarded proposal is not applied again.
			data, err := (&Command{Sender: as(s, "root"), Put: &PutRequest{Key: []byte("fwd"), Value: []byte("twice")}}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			res := s.ApplyOnce(s.AppliedIndex()+1, ProposalID{Proposer: 77, Seq: 1, LowestPending: 1}, data)
			if res.Err != nil || s.Revision() != revision || string(get(t, s, "fwd", 0).Value) != "once" {
				t.Fatalf("a copy of proposal 1 after the restore: %+v, revision %d (was %d)", res, s.Revision(), revision)
			}
			// Auth is enforced: alice may not write outside app/.
			if res := apply(t, s, &Command{Sender: as(s, "alice"), Put: &PutRequest{Key: []byte("a"), Value: []byte("no")}}); !errors.Is(res.Err, ErrPermissionDenied) {
				t.Fatalf("alice's put of a after the restore: %v, want ErrPermissionDenied", res.Err)
			}
			// Revoking lease 42 deletes the key the snapshot attached to it.
			if res := apply(t, s, &Command{Sender: as(s, "root"), LeaseRevoke: &LeaseRevokeRequest{ID: 42}}); res.Err != nil || get(t, s, "c", 0) != nil {
				t.Fatalf("revoke of lease 42 after the restore: %v, c is %+v", res.Err, get(t, s, "c", 0))
			}
			checkGrantInvariant(t, s)
		})
	}
}
