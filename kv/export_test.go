package kv

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// A store imported from another's export answers every read the same: ranges at
// every retained revision, the history's events, the leases, auth, the revision
// and the compaction revision; and exports the same histories again.
func TestExportImportRoundTrip(t *testing.T) {
	src := newTestStore(t, Config{})
	apply := func(cmd *Command) {
		t.Helper()
		if res := src.ApplyCommand(src.AppliedIndex()+1, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(&Command{LeaseGrant: &LeaseGrantRequest{ID: 7, TTL: 60}})
	for i := range 30 {
		k := []byte{'k', byte('a' + i%7)}
		switch {
		case i%5 == 4:
			apply(&Command{DeleteRange: &DeleteRangeRequest{Key: k}})
		case i%3 == 0:
			apply(&Command{Put: &PutRequest{Key: k, Value: []byte{byte(i)}, Lease: 7}})
		default:
			apply(&Command{Put: &PutRequest{Key: k, Value: make([]byte, i*10)}})
		}
	}
	apply(&Command{Compact: &CompactionRequest{Revision: 12}})
	apply(&Command{Put: &PutRequest{Key: []byte("z"), Value: []byte("last")}})
	mustAuth(t, src, AuthInfo{}, &AuthRequest{Op: UserAdd, Name: "root", PasswordHash: []byte("hash-root")})
	mustAuth(t, src, AuthInfo{}, &AuthRequest{Op: UserGrantRole, Name: "root", Role: RootRole})
	mustAuth(t, src, AuthInfo{}, &AuthRequest{Op: UserAdd, Name: "alice", PasswordHash: []byte("hash-alice")})
	mustAuth(t, src, AuthInfo{}, &AuthRequest{Op: AuthEnable})

	hdr, keys, dels := exportStore(t, src)
	dst := newTestStore(t, Config{})
	importInto(t, dst, hdr, keys, dels)
	if dst.Revision() != src.Revision() || dst.CompactRevision() != src.CompactRevision() {
		t.Fatalf("imported revision %d compacted %d, source %d compacted %d",
			dst.Revision(), dst.CompactRevision(), src.Revision(), src.CompactRevision())
	}
	for rev := src.CompactRevision(); rev <= src.Revision(); rev++ {
		want, err1 := src.Range(&RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		got, err2 := dst.Range(&RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		if err1 != nil || err2 != nil || !reflect.DeepEqual(want, got) {
			t.Fatalf("range at %d: source %+v (%v), imported %+v (%v)", rev, want, err1, got, err2)
		}
	}
	wantEv, err1 := src.Events(&EventsRequest{FromRevision: src.CompactRevision() + 1})
	gotEv, err2 := dst.Events(&EventsRequest{FromRevision: src.CompactRevision() + 1})
	if err1 != nil || err2 != nil || !reflect.DeepEqual(wantEv, gotEv) {
		t.Fatalf("events: source %+v (%v), imported %+v (%v)", wantEv, err1, gotEv, err2)
	}
	if want, got := src.LeaseKeys(7), dst.LeaseKeys(7); !reflect.DeepEqual(want, got) || len(got) == 0 {
		t.Fatalf("lease 7's keys: source %q, imported %q", want, got)
	}
	srcOn, srcRev := src.AuthStatus()
	dstOn, dstRev := dst.AuthStatus()
	users, err := dst.UserList(as(dst, "root"))
	if !srcOn || dstOn != srcOn || dstRev != srcRev || err != nil || len(users) != 2 {
		t.Fatalf("auth after import: enabled %v at %d (source %v at %d), users %v (%v)", dstOn, dstRev, srcOn, srcRev, users, err)
	}
	hdr2, keys2, dels2 := exportStore(t, dst)
	if !reflect.DeepEqual(hdr, hdr2) || !reflect.DeepEqual(keys, keys2) || !reflect.DeepEqual(dels, dels2) {
		t.Fatalf("re-export differs:\n%+v\n%+v", hdr, hdr2)
	}
}

// Import refuses histories that break the store's invariants; a refused import
// leaves the store refusing Apply, and its engine refused at open, until an
// import succeeds.
func TestImportRefusesBadHistory(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.ApplyCommand(1, &Command{Put: &PutRequest{Key: []byte("keep"), Value: []byte("v")}})
	for name, keys := range map[string][]*KeyHistory{
		"out of order": {
			{Key: []byte("b"), Generations: []KeyGeneration{{CreateRevision: 2, FirstVersion: 1, Revisions: []KeyRevision{{ModRevision: 2}}}}},
			{Key: []byte("a"), Generations: []KeyGeneration{{CreateRevision: 3, FirstVersion: 1, Revisions: []KeyRevision{{ModRevision: 3}}}}},
		},
		"revision past the store's": {
			{Key: []byte("a"), Generations: []KeyGeneration{{CreateRevision: 2, FirstVersion: 1, Revisions: []KeyRevision{{ModRevision: 99}}}}},
		},
		"no revisions": {{Key: []byte("a"), Generations: []KeyGeneration{{CreateRevision: 2, FirstVersion: 1}}}},
	} {
		err := s.Import(ImportHeader{Revision: 5, CompactRevision: -1}, listed(keys), nil)
		if err == nil {
			t.Errorf("%s: imported", name)
		}
		if res := s.ApplyCommand(s.AppliedIndex()+1, &Command{Put: &PutRequest{Key: []byte("k")}}); res.Err == nil {
			t.Fatalf("%s: a store cut off in an import applied a put", name)
		}
		if _, err := s.Flush(); err == nil {
			t.Fatalf("%s: a store cut off in an import flushed", name)
		}
		// A good import makes it a store again.
		err = s.Import(ImportHeader{AppliedIndex: 9, Revision: 5, CompactRevision: -1}, listed[KeyHistory](nil), nil)
		if err != nil || s.Revision() != 5 || s.AppliedIndex() != 9 {
			t.Fatalf("%s: a good import after a refused one: %v, revision %d", name, err, s.Revision())
		}
		if res := s.ApplyCommand(10, &Command{Put: &PutRequest{Key: []byte("k")}}); res.Err != nil {
			t.Fatalf("%s: put after a good import: %v", name, res.Err)
		}
		// The refused import's engine, cut off, is refused at open.
		cut, err := OpenStore(Config{}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cutDir := cut.mu.st.e.dir
		_ = cut.Import(ImportHeader{Revision: 5, CompactRevision: -1}, listed(keys), nil)
		if _, err := cut.Flush(); err == nil {
			t.Fatalf("%s: flushed a store cut off in an import", name)
		}
		cut.mu.st.e.db.Flush() // what a background flush may do
		cut.Close()
		if reopened, err := OpenStore(Config{}, cutDir); !errors.Is(err, ErrCorruptEngine) || !strings.Contains(err.Error(), cutDir) {
			if err == nil {
				reopened.Close()
			}
			t.Fatalf("%s: opening an engine cut off in an import: %v, want ErrCorruptEngine naming %s", name, err, cutDir)
		}
	}
}

// exportStore returns s's state as Import takes it: the header, every key's
// history and the deletes at the compaction revision.
func exportStore(t *testing.T, s *Store) (ImportHeader, []*KeyHistory, []CompactionDelete) {
	t.Helper()
	view, err := s.SnapshotView()
	if err != nil {
		t.Fatal(err)
	}
	defer view.Release()
	leases, err := view.Leases()
	if err != nil {
		t.Fatal(err)
	}
	hdr := ImportHeader{AppliedIndex: s.AppliedIndex(), Revision: view.Revision(), CompactRevision: view.CompactRevision(),
		Leases: leases, AuthState: view.AuthState(), WithSubs: true}
	var keys []*KeyHistory
	if err := view.EachKey(func(h *KeyHistory) error { keys = append(keys, h); return nil }); err != nil {
		t.Fatal(err)
	}
	var dels []CompactionDelete
	if err := view.EachCompactionDelete(func(d CompactionDelete) error { dels = append(dels, d); return nil }); err != nil {
		t.Fatal(err)
	}
	return hdr, keys, dels
}

// importInto imports hdr, keys and dels into dst, failing the test on an error.
func importInto(t *testing.T, dst *Store, hdr ImportHeader, keys []*KeyHistory, dels []CompactionDelete) {
	t.Helper()
	if err := dst.Import(hdr, listed(keys), listed(ptrs(dels))); err != nil {
		t.Fatal(err)
	}
}

// listed returns an Import iterator over items, nil after the last.
func listed[T any](items []*T) func() (*T, error) {
	return func() (*T, error) {
		if len(items) == 0 {
			return nil, nil
		}
		it := items[0]
		items = items[1:]
		return it, nil
	}
}

// ptrs returns pointers to items' elements.
func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// TestImportRefusesTwoChangesInOnePlace: histories carried with their
// sub-revisions (WithSubs) in which two keys changed at the same revision and
// sub-revision are refused: the second change would take the first's place,
// and with separated values give the first key the second's value.
func TestImportRefusesTwoChangesInOnePlace(t *testing.T) {
	s := newTestStoreOn(t, Config{}, "mem") // separates values of 2 bytes or more
	histories := []*KeyHistory{
		{Key: []byte("a"), Generations: []KeyGeneration{{CreateRevision: 2, FirstVersion: 1, Revisions: []KeyRevision{{ModRevision: 2, Sub: 0, Value: []byte("AAAA")}}}}},
		{Key: []byte("b"), Generations: []KeyGeneration{{CreateRevision: 2, FirstVersion: 1, Revisions: []KeyRevision{{ModRevision: 2, Sub: 0, Value: []byte("BBBB")}}}}},
	}
	err := s.Import(ImportHeader{AppliedIndex: 5, Revision: 2, CompactRevision: -1, WithSubs: true}, listed(histories), nil)
	if !errors.Is(err, ErrCorruptSnapshot) || !strings.Contains(err.Error(), "share a revision and sub-revision") {
		t.Fatalf("import of two changes at revision 2.0: %v, want ErrCorruptSnapshot", err)
	}
}

// A delete at the compaction revision leaves nothing in its key's history, but
// etcd keeps it for a watch from exactly that revision: an export lists it
// (EachCompactionDelete), and an import puts it back in its place among the
// revision's changes.
func TestExportImportKeepsDeletesAtCompaction(t *testing.T) {
	src := newTestStore(t, Config{})
	mustPut(t, src, "a", "1")                                                           // 2
	mustPut(t, src, "b", "1")                                                           // 3
	mustTxn(t, src, &TxnRequest{Success: []RequestOp{putOp("c", "1"), delOp("a", "")}}) // 4
	mustPut(t, src, "y", "1")                                                           // 5
	// The from-key delete takes x, put just before it, and y.
	mustTxn(t, src, &TxnRequest{Success: []RequestOp{putOp("x", "1"), delOp("w", "\x00"), putOp("e", "1")}}) // 6
	mustPut(t, src, "a", "2")                                                                                // 7
	for _, c := range []struct {
		compact int64
		dels    string
		events  string
	}{
		{4, "a@4.1", "PUT c=1@4 DELETE a@4 PUT y=1@5 PUT x=1@6 DELETE x@6 DELETE y@6 PUT e=1@6 PUT a=2@7"},
		{6, "x@6.1 y@6.2", "DELETE x@6 DELETE y@6 PUT e=1@6 PUT a=2@7"},
	} {
		apply(t, src, &Command{Compact: &CompactionRequest{Revision: c.compact}})
		hdr, keys, dels := exportStore(t, src)
		var got []string
		for _, d := range dels {
			got = append(got, fmt.Sprintf("%s@%d.%d", d.Key, hdr.CompactRevision, d.Sub))
		}
		if strings.Join(got, " ") != c.dels {
			t.Fatalf("compacted at %d: deletes at the compaction revision %q, want %q", c.compact, got, c.dels)
		}
		dst := newTestStore(t, Config{})
		importInto(t, dst, hdr, keys, dels)
		for _, prev := range []bool{false, true} {
			want := mustEvents(t, src, &EventsRequest{FromRevision: c.compact, PrevKv: prev})
			have := mustEvents(t, dst, &EventsRequest{FromRevision: c.compact, PrevKv: prev})
			if describeEvents(want.Events) != c.events || !reflect.DeepEqual(want.Events, have.Events) {
				t.Fatalf("compacted at %d, events from there (prev_kv %v):\nsource   %s\nimported %s\nwant     %s",
					c.compact, prev, describeEvents(want.Events), describeEvents(have.Events), c.events)
			}
		}
	}

	// A delete at the compaction revision needs a compaction, a key, and no
	// version of the key left at or below it (the compaction dropped the lifetime
	// it ended).
	b := &KeyHistory{Key: []byte("b"), Generations: []KeyGeneration{{CreateRevision: 2, FirstVersion: 1,
		Revisions: []KeyRevision{{ModRevision: 2, Value: []byte("1")}}}}}
	for name, c := range map[string]struct {
		compact int64
		keys    []*KeyHistory
		del     CompactionDelete
	}{
		"no compaction":                {-1, nil, CompactionDelete{Key: []byte("a")}},
		"empty key":                    {2, nil, CompactionDelete{}},
		"alive at the compaction":      {3, []*KeyHistory{b}, CompactionDelete{Key: []byte("b"), Sub: 1}},
		"alive at the compaction, too": {2, []*KeyHistory{b}, CompactionDelete{Key: []byte("b"), Sub: 1}},
	} {
		dst := newTestStore(t, Config{})
		err := dst.Import(ImportHeader{AppliedIndex: 3, Revision: 3, CompactRevision: c.compact, WithSubs: true},
			listed(c.keys), listed([]*CompactionDelete{&c.del}))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: import of a delete at the compaction revision: %v, want ErrCorruptSnapshot", name, err)
		}
	}
	// Deleted at the compaction revision, alive again after it: taken.
	b.Generations[0].CreateRevision, b.Generations[0].Revisions[0].ModRevision = 3, 3
	dst := newTestStore(t, Config{})
	err := dst.Import(ImportHeader{AppliedIndex: 3, Revision: 3, CompactRevision: 2, WithSubs: true},
		listed([]*KeyHistory{b}), listed([]*CompactionDelete{{Key: []byte("b"), Sub: 1}}))
	if err != nil {
		t.Fatalf("import of b deleted at 2 and put at 3: %v", err)
	}
}
