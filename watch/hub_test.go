package watch

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"raftkv/kv"
)

func TestLiveEventsByKeyRangeAndPrefix(t *testing.T) {
	f := newFixture(t, Config{}, true)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("a")})                          // 0: a only
	f.create(s, CreateRequest{Key: []byte("a"), RangeEnd: []byte("b")})   // 1: [a, b)
	f.create(s, CreateRequest{Key: []byte("b"), RangeEnd: []byte{0}})     // 2: b and after
	f.create(s, CreateRequest{RangeEnd: []byte{0}})                       // 3: every key
	f.create(s, CreateRequest{Key: []byte("a/"), RangeEnd: []byte("a0")}) // 4: prefix a/
	f.create(s, CreateRequest{Key: []byte("a/"), RangeEnd: []byte("a0")}) // 5: the same range again
	wantResponses(t, "creates", drain(s), "created 0 @1", "created 1 @1", "created 2 @1", "created 3 @1", "created 4 @1", "created 5 @1")
	f.put("a", "1")   // 2
	f.put("a/x", "1") // 3
	f.put("c", "1")   // 4
	f.step()
	got := drain(s)
	// One response per watcher per read; their order between watchers is free.
	want := map[string]bool{
		"0 @4: PUT a=1@2":                       true,
		"1 @4: PUT a=1@2 PUT a/x=1@3":           true,
		"2 @4: PUT c=1@4":                       true,
		"3 @4: PUT a=1@2 PUT a/x=1@3 PUT c=1@4": true,
		"4 @4: PUT a/x=1@3":                     true,
		"5 @4: PUT a/x=1@3":                     true,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d responses, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, g := range got {
		if !want[g] {
			t.Fatalf("unexpected response %q; all:\n%s", g, strings.Join(got, "\n"))
		}
	}
}

func TestStartRevisionReplaysHistoryThenGoesLive(t *testing.T) {
	f := newFixture(t, Config{}, true)
	for i := range 6 {
		f.put("k", fmt.Sprint(i)) // 2..7
	}
	f.step()
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("k"), StartRevision: 4, PrevKv: true})
	f.create(s, CreateRequest{Key: []byte("k"), StartRevision: 9})              // future: from 9 on
	f.create(s, CreateRequest{Key: []byte("k"), StartRevision: 7, NoPut: true}) // puts filtered
	f.step()
	f.put("k", "6") // 8
	f.put("k", "7") // 9
	f.del("k", "")  // 10
	f.step()
	got := drain(s)
	wantResponses(t, "replay, then live", append(got[:4:4], perWatch(got[4:])...),
		"created 0 @7", "created 1 @7", "created 2 @7",
		"0 @7: PUT k=2@4(prev 1@3) PUT k=3@5(prev 2@4) PUT k=4@6(prev 3@5) PUT k=5@7(prev 4@6)",
		"0 @10: PUT k=6@8(prev 5@7) PUT k=7@9(prev 6@8) DELETE k@10(prev 7@9)",
		"1 @10: PUT k=7@9 DELETE k@10",
		"2 @10: DELETE k@10")
}

func TestOneRevisionInOneResponse(t *testing.T) {
	f := newFixture(t, Config{}, true)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("p/"), RangeEnd: []byte("p0")})
	f.txn(putOp("p/b", "1"), putOp("p/a", "1"), putOp("q", "1"), putOp("p/c", "1")) // 2
	f.del("p/", "p0")                                                               // 3
	f.step()
	// Read one revision at a time, as the hub does when it keeps up.
	wantResponses(t, "txn and delete range", drain(s), "created 0 @1",
		"0 @3: PUT p/b=1@2 PUT p/a=1@2 PUT p/c=1@2 DELETE p/a@3 DELETE p/b@3 DELETE p/c@3")
	f.put("p/x", "1")
	f.step()
	f.txn(delOp("p/x", ""), putOp("p/y", "2"))
	f.step()
	wantResponses(t, "one revision each", drain(s), "0 @4: PUT p/x=1@4", "0 @5: DELETE p/x@5 PUT p/y=2@5")
}

func TestWatchIDs(t *testing.T) {
	f := newFixture(t, Config{MaxWatchesPerStream: 6}, true)
	s := f.hub.NewStream()
	f.put("x", "1") // 2
	f.create(s, CreateRequest{Key: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("a"), WatchID: 2})
	f.create(s, CreateRequest{Key: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("a"), WatchID: 2})
	f.create(s, CreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("b"), RangeEnd: []byte("b")})
	f.create(s, CreateRequest{Key: []byte("a"), StartRevision: -1})
	f.create(s, CreateRequest{Key: []byte("a"), WatchID: -7})
	f.create(s, CreateRequest{Key: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("a")})
	wantResponses(t, "ids", drain(s),
		"created 0 @2", "created 2 @2", "created 1 @2", "created 3 @2",
		"refused -1 @2: mvcc: duplicate watch ID provided on the WatchStream",
		"refused -1 @2: mvcc: watcher range is empty",
		"refused -1 @2: mvcc: watcher range is empty",
		"refused -1 @2: etcdserver: mvcc: required revision has been compacted",
		"created -7 @2", "created 4 @2",
		"refused -1 @2: raftkv: too many watches on this stream: it has 6, the most allowed; cancel some or open another stream",
		"refused -1 @2: raftkv: too many watches on this stream: it has 6, the most allowed; cancel some or open another stream")
	// Another stream numbers its own from 0.
	s2 := f.hub.NewStream()
	f.create(s2, CreateRequest{Key: []byte("a")})
	wantResponses(t, "second stream", drain(s2), "created 0 @2")
}

func TestCancel(t *testing.T) {
	f := newFixture(t, Config{}, true)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("a")})
	f.put("a", "1")
	f.step()
	ctx := context.Background()
	if err := s.Cancel(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Cancel(ctx, 42); err != nil { // unknown: no answer
		t.Fatal(err)
	}
	f.put("a", "2")
	f.step()
	got := drain(s)
	wantResponses(t, "cancel after the events queued before it", got[:2], "created 0 @1", "created 1 @1")
	rest := strings.Join(got[2:], "\n")
	// The two events of revision 2 come before the cancel; 1 alone sees revision 3.
	if !strings.Contains(rest, "0 @2: PUT a=1@2\n") || !strings.Contains(rest, "canceled 0 @2\n1 @3: PUT a=2@3") ||
		!strings.Contains(rest, "1 @2: PUT a=1@2") || strings.Count(rest, "\n") != 3 {
		t.Fatalf("after the creates:\n%s", rest)
	}
	// Canceled ids can be reused.
	f.create(s, CreateRequest{Key: []byte("a"), WatchID: 0})
	wantResponses(t, "reuse", drain(s), "created 2 @3")
	f.create(s, CreateRequest{Key: []byte("a"), WatchID: 1})
	wantResponses(t, "duplicate", drain(s), "refused -1 @3: mvcc: duplicate watch ID provided on the WatchStream")
}

func TestCompactedStartRevision(t *testing.T) {
	f := newFixture(t, Config{}, true)
	for i := range 5 {
		f.put("k", fmt.Sprint(i)) // 2..6
	}
	f.compact(5)
	f.step()
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("k"), StartRevision: 4, WatchID: 10})
	f.create(s, CreateRequest{Key: []byte("k"), StartRevision: 5, WatchID: 11})
	f.step()
	wantResponses(t, "compacted start", drain(s), "created 10 @6", "created 11 @6",
		"compacted 10 at 5 canceled=true @0", "11 @6: PUT k=3@5 PUT k=4@6")
	// The compacted watcher gets nothing more, keeps its id until canceled, as in etcd.
	f.put("k", "x")
	f.step()
	wantResponses(t, "after", drain(s), "11 @7: PUT k=x@7")
	f.create(s, CreateRequest{Key: []byte("k"), WatchID: 10})
	if err := s.Cancel(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	wantResponses(t, "its id", drain(s), "refused -1 @7: mvcc: duplicate watch ID provided on the WatchStream", "canceled 10 @7")
}

// A compaction waits for the hub (Flush), so a synced watcher never loses the
// events between the hub's position and the compaction.
func TestCompactionAfterUndispatchedWrites(t *testing.T) {
	f := newFixture(t, Config{}, true)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("k")})
	f.put("k", "1")
	f.put("k", "2")
	f.compact(3) // the hub has not run since the create
	f.put("k", "3")
	f.step()
	wantResponses(t, "events", drain(s), "created 0 @1", "0 @3: PUT k=1@2 PUT k=2@3", "0 @4: PUT k=3@4")
}

// A restored snapshot can move the compaction past the hub's position: the synced
// watchers that lost events are told, as etcd tells the watchers of a restored
// store.
func TestRestorePastThePosition(t *testing.T) {
	f := newFixture(t, Config{}, true)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("k")})
	f.step()
	other, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i := range 5 {
		other.ApplyCommand(uint64(i+1), &kv.Command{Put: &kv.PutRequest{Key: []byte("k"), Value: []byte(fmt.Sprint(i))}})
	}
	other.ApplyCommand(6, &kv.Command{Compact: &kv.CompactionRequest{Revision: 4}})
	snap, err := other.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f.hub.Flush()
	if err := f.store.Restore(snap); err != nil {
		t.Fatal(err)
	}
	f.index = 6
	f.put("k", "after") // 7
	f.step()
	wantResponses(t, "restored", drain(s), "created 0 @1", "compacted 0 at 4 canceled=true @0")
	// The restored store replays from its compaction revision, as etcd does: the
	// engine's snapshot carries the history whole.
	f.create(s, CreateRequest{Key: []byte("k"), StartRevision: 4})
	f.create(s, CreateRequest{Key: []byte("k"), StartRevision: 5})
	f.step()
	got := drain(s)
	wantResponses(t, "from the compaction revision", append(got[:2:2], perWatch(got[2:])...),
		"created 1 @7", "created 2 @7", "1 @7: PUT k=2@4 PUT k=3@5 PUT k=4@6 PUT k=after@7", "2 @7: PUT k=3@5 PUT k=4@6 PUT k=after@7")
}
