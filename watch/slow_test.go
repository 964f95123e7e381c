package watch

import (
	"context"
	"fmt"
	"raftkv/kv"
	"strings"
	"testing"
	"time"
)

// collect reads s until each watch id of last has seen an event at the revision
// last gives it, checking every watcher's events come in revision order with no
// revision twice, and returns the revisions seen per watch id.
func collect(t *testing.T, s *Stream, last map[int64]int64) map[int64][]int64 {
	t.Helper()
	seen := map[int64][]int64{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		r, ok := s.Next(ctx)
		if !ok {
			t.Fatalf("stream ended or 30s passed before revisions %v; seen up to %v", last, lastOf(seen))
		}
		for _, ev := range r.Events {
			revs := seen[r.WatchID]
			if n := len(revs); n > 0 && ev.Kv.ModRevision <= revs[n-1] {
				t.Fatalf("watch %d: revision %d after %d", r.WatchID, ev.Kv.ModRevision, revs[n-1])
			}
			if ev.Kv.ModRevision > r.Revision {
				t.Fatalf("watch %d: event at %d in a response at revision %d", r.WatchID, ev.Kv.ModRevision, r.Revision)
			}
			seen[r.WatchID] = append(revs, ev.Kv.ModRevision)
		}
		done := true
		for id, rev := range last {
			if revs := seen[id]; len(revs) == 0 || revs[len(revs)-1] < rev {
				done = false
			}
		}
		if done {
			return seen
		}
	}
}

func lastOf(seen map[int64][]int64) map[int64]int64 {
	out := map[int64]int64{}
	for id, revs := range seen {
		out[id] = revs[len(revs)-1]
	}
	return out
}

// wantEvery requires revs to be exactly from..to.
func wantEvery(t *testing.T, what string, revs []int64, from, to int64) {
	t.Helper()
	if int64(len(revs)) != to-from+1 {
		t.Fatalf("%s: %d revisions, want %d (%d..%d)", what, len(revs), to-from+1, from, to)
	}
	for i, r := range revs {
		if r != from+int64(i) {
			t.Fatalf("%s: revision %d at position %d, want %d (a gap or a repeat)", what, r, i, from+int64(i))
		}
	}
}

// TestSlowConsumer: a client that stops reading holds a bounded queue, the writes and
// the other watchers go on, and when it reads again it gets every event in order.
func TestSlowConsumer(t *testing.T) {
	const writes = 3000
	cfg := Config{MaxQueuedResponses: 8, MaxQueuedBytes: 64 << 10}
	f := newFixture(t, cfg, false)
	slow, fast := f.hub.NewStream(), f.hub.NewStream()
	for _, s := range []*Stream{slow, fast} {
		f.create(s, CreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), PrevKv: true}) // 0: every k key
		f.create(s, CreateRequest{Key: []byte("k7")})                                     // 1: one key
	}
	fastSeen := make(chan map[int64][]int64, 1)
	// k7 is written by the 8th write of every 10: the last at revision writes-1.
	last := map[int64]int64{0: writes + 1, 1: writes - 1}
	go func() { fastSeen <- collect(t, fast, last) }()

	value := strings.Repeat("v", 1000)
	maxQueued, maxBytes := 0, 0
	start := time.Now()
	for i := range writes {
		f.put(fmt.Sprintf("k%d", i%10), value)
		slow.mu.Lock()
		maxQueued, maxBytes = max(maxQueued, slow.mu.events), max(maxBytes, slow.mu.eventBytes)
		slow.mu.Unlock()
	}
	t.Logf("%d writes applied in %v with a stream not reading", writes, time.Since(start))
	seen := <-fastSeen
	wantEvery(t, "the reading stream's prefix watch", seen[0], 2, writes+1)
	if len(seen[1]) != writes/10 {
		t.Fatalf("the reading stream's key watch saw %d events, want %d", len(seen[1]), writes/10)
	}
	// The queue of the stream not reading stayed within its limits: event responses
	// up to the limits, plus at most one revision's events (a read never splits a
	// revision, and a response always fits an empty queue).
	oneRevision := (&kv.Event{Kv: kv.KeyValue{Key: []byte("k0"), Value: []byte(value)},
		PrevKv: &kv.KeyValue{Key: []byte("k0"), Value: []byte(value)}}).Size()
	if maxQueued > cfg.MaxQueuedResponses || maxBytes > cfg.MaxQueuedBytes+oneRevision {
		t.Fatalf("the stream not reading queued up to %d responses and %d bytes; the limits are %d and %d",
			maxQueued, maxBytes, cfg.MaxQueuedResponses, cfg.MaxQueuedBytes)
	}
	if st := f.hub.Stats(); st.Unsynced != 2 {
		t.Fatalf("stats %+v: want the 2 watchers of the stream not reading unsynced", st)
	}

	// It reads again: every event, in order, caught up from the history.
	got := collect(t, slow, last)
	wantEvery(t, "the slow stream's prefix watch", got[0], 2, writes+1)
	if len(got[1]) != writes/10 {
		t.Fatalf("the slow stream's key watch saw %d events, want %d", len(got[1]), writes/10)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.hub.Stats().Unsynced != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the slow stream's watchers did not rejoin the synced ones", f.hub.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	f.put("k7", "live")
	r := next(t, slow)
	if len(r.Events) != 1 || string(r.Events[0].Kv.Value) != "live" {
		t.Fatalf("after catching up, the next response is %s", describe(r))
	}
}

// A single response larger than the byte limit still goes out: it fits an empty
// queue.
func TestLargeResponseFitsAnEmptyQueue(t *testing.T) {
	f := newFixture(t, Config{MaxQueuedBytes: 1000}, true)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("k")})
	f.put("k", strings.Repeat("x", 5000))
	f.step()
	f.put("k", strings.Repeat("y", 5000))
	f.step()
	got := drain(s)
	if len(got) != 2 || !strings.Contains(got[1], "PUT k=xxx") {
		t.Fatalf("responses: %v", got)
	}
	f.step() // room again: the second catches up
	got = drain(s)
	if len(got) != 1 || !strings.Contains(got[0], "PUT k=yyy") {
		t.Fatalf("responses after the first was read: %v", got)
	}
}

func TestProgressRequest(t *testing.T) {
	f := newFixture(t, Config{MaxQueuedResponses: 1}, true)
	empty := f.hub.NewStream()
	empty.RequestProgress()
	f.step()
	wantResponses(t, "a stream without watchers", drain(empty))

	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("a")})
	f.put("a", "1")
	f.step()
	wantResponses(t, "events", drain(s), "created 0 @1", "0 @2: PUT a=1@2")
	s.RequestProgress()
	f.step()
	wantResponses(t, "synced", drain(s), "progress -1 @2")

	// Behind (a full queue): as in etcd 3.7, the request is dropped, not kept;
	// once the watcher has caught up, the next one is answered with a revision it
	// has every event up to.
	f.put("a", "2")
	f.step() // queued
	f.put("a", "3")
	f.step() // does not fit: unsynced
	s.RequestProgress()
	f.step()
	wantResponses(t, "one response, and the request dropped", []string{describe(next(t, s))}, "0 @3: PUT a=2@3")
	f.put("b", "1")
	f.step()
	wantResponses(t, "caught up, no answer to the dropped request", drain(s), "0 @5: PUT a=3@4")
	f.step()
	wantResponses(t, "still none", drain(s))
	s.RequestProgress()
	f.step()
	wantResponses(t, "asked again", drain(s), "progress -1 @5")

	// A watcher starting past the store's revision: dropped too, until the store
	// reaches its start.
	f.create(s, CreateRequest{Key: []byte("a"), StartRevision: 7})
	s.RequestProgress()
	f.step()
	f.put("b", "2") // 6
	f.step()
	wantResponses(t, "future start", drain(s), "created 1 @5")
	f.put("b", "3") // 7
	f.step()
	wantResponses(t, "reached, the request was dropped", drain(s))
	s.RequestProgress()
	f.step()
	wantResponses(t, "asked again", drain(s), "progress -1 @7")
}

// A watcher told that its start was compacted holds every progress request of its
// stream back, as etcd 3.7's: it is never synced again, until the client cancels it.
func TestProgressRequestWithACompactedWatcher(t *testing.T) {
	f := newFixture(t, Config{}, true)
	f.put("a", "1")
	f.put("a", "2")
	f.step()
	f.compact(3)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("a")})
	f.create(s, CreateRequest{Key: []byte("a"), StartRevision: 2})
	f.step()
	drain(s)
	s.RequestProgress()
	f.step()
	wantResponses(t, "a compacted watcher on the stream", drain(s))
	if err := s.Cancel(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	drain(s)
	s.RequestProgress()
	f.step()
	wantResponses(t, "after the client canceled it", drain(s), "progress -1 @3")
}

func TestProgressNotify(t *testing.T) {
	f := newFixture(t, Config{}, true)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("a"), ProgressNotify: true})
	f.create(s, CreateRequest{Key: []byte("b")})
	f.create(s, CreateRequest{Key: []byte("c"), ProgressNotify: true, StartRevision: 9})
	drain(s)
	s.progressTick()
	wantResponses(t, "first tick", drain(s), "progress 0 @1")
	f.put("a", "1")
	f.put("b", "1")
	f.step()
	s.progressTick() // 0 had an event since the last tick
	wantResponses(t, "after an event", perWatch(drain(s)), "0 @3: PUT a=1@2", "1 @3: PUT b=1@3")
	s.progressTick()
	wantResponses(t, "a quiet interval", drain(s), "progress 0 @3")
}

// The stream's own timer sends them (at the shortest interval).
func TestProgressNotifyTimer(t *testing.T) {
	f := newFixture(t, Config{ProgressNotifyInterval: time.Millisecond}, false)
	if f.hub.cfg.ProgressNotifyInterval != MinProgressNotifyInterval {
		t.Fatalf("interval %v, want it raised to %v", f.hub.cfg.ProgressNotifyInterval, MinProgressNotifyInterval)
	}
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("a"), ProgressNotify: true, WatchID: 5})
	wantResponses(t, "created", []string{describe(next(t, s))}, "created 5 @1")
	start := time.Now()
	wantResponses(t, "timed", []string{describe(next(t, s))}, "progress 5 @1")
	if d := time.Since(start); d < MinProgressNotifyInterval/2 {
		t.Fatalf("progress after %v, before the interval", d)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	f := newFixture(t, Config{}, false)
	s := f.hub.NewStream()
	f.create(s, CreateRequest{Key: []byte("a")})
	done := make(chan bool)
	go func() {
		drainCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Next(drainCtx) // Created
		_, ok := s.Next(drainCtx)
		done <- ok
	}()
	f.hub.Close()
	if <-done {
		t.Fatal("Next returned a response after the hub closed")
	}
	if st := f.hub.Stats(); st.Streams != 0 || st.Synced != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	if err := s.Create(context.Background(), CreateRequest{Key: []byte("a")}); err == nil {
		t.Fatal("Create on a closed stream succeeded")
	}
}

// A stream that closes while a Create on it is between its check that the stream
// is open and its taking of the hub's lock: the watcher must not join the hub,
// where nothing would ever take it out (it read history at every revision, for
// good). The stream is closed as its handler returns, which may be while its
// receiving goroutine is in a Create.
func TestCreateRacingCloseLeavesNoWatcher(t *testing.T) {
	f := newFixture(t, Config{}, false)
	s := f.hub.NewStream()
	f.hub.beforeCreateLock = s.Close
	if err := s.Create(context.Background(), CreateRequest{Key: []byte("a")}); err == nil {
		t.Fatal("Create on a stream closed under it succeeded")
	}
	if st := f.hub.Stats(); st.Streams != 0 || st.Synced != 0 || st.Unsynced != 0 {
		t.Fatalf("after a Create racing Close: %+v; want no stream and no watcher", st)
	}
}
