package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	watchFaultsDuration = flag.Duration("watchfaults.duration", 0, "how long the watch-under-faults writers run (default 20s; 8s with -short)")
	watchFaultsSeed     = flag.Uint64("watchfaults.seed", 0, "seed of the watch-under-faults test's writes and kills (default: from the clock)")
)

// seenEvent is one event a watcher received, and the response it came in.
type seenEvent struct {
	typ                  mvccpb.Event_EventType
	key, value           string
	rev, create, version int64
	response             int
}

// faultWatcher follows a key or prefix on one member, resuming from the revision
// after the last event it received whenever the test restarts it.
type faultWatcher struct {
	name   string
	member *procMember
	key    string
	prefix bool
	mu     sync.Mutex
	events []seenEvent
	// responses numbers the responses received, for the atomicity check.
	responses int
	resumes   int
}

func (w *faultWatcher) next() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.events); n > 0 {
		return w.events[n-1].rev + 1
	}
	return 1
}

// run watches until ctx ends; each turn of the loop is one watch, from the
// revision after the last event, that the test ends by canceling turn (it does
// so after killing the watcher's member, and at random).
func (w *faultWatcher) run(ctx context.Context, turns <-chan struct{}) {
	for ctx.Err() == nil {
		turnCtx, cancel := context.WithCancel(ctx)
		opts := []clientv3.OpOption{clientv3.WithRev(w.next())}
		if w.prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		ch := w.member.client.Watch(turnCtx, w.key, opts...)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for resp := range ch {
				w.mu.Lock()
				w.responses++
				for _, ev := range resp.Events {
					w.events = append(w.events, seenEvent{typ: ev.Type, key: string(ev.Kv.Key), value: string(ev.Kv.Value),
						rev: ev.Kv.ModRevision, create: ev.Kv.CreateRevision, version: ev.Kv.Version, response: w.responses})
				}
				w.mu.Unlock()
			}
		}()
		select {
		case <-turns:
		case <-ctx.Done():
		}
		cancel()
		<-done
		w.mu.Lock()
		w.resumes++
		w.mu.Unlock()
	}
}

// TestWatchUnderFaults: writers run Put, Delete and two-key Txns on a 3-member
// cluster of processes while members are SIGKILLed and restarted (with snapshots
// every 200 entries, so restarts restore the store from one); watchers on every
// member, on every key, a prefix and a single key, resume from the revision after
// their last event after each kill and at random. At the end every watcher must
// have seen exactly the committed history of its keys: revisions rising, no event
// twice, a two-key txn's events in one response, versions and create revisions
// without a gap, and each key's last event matching a final linearizable Range;
// and every member's watcher of all keys must have seen the same events.
func TestWatchUnderFaults(t *testing.T) {
	t.Parallel()
	duration := *watchFaultsDuration
	if duration == 0 {
		duration = 20 * time.Second
		if testing.Short() {
			duration = 8 * time.Second
		}
	}
	seed := *watchFaultsSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d, writers for %v; replay the choices with -watchfaults.seed=%d", seed, duration, seed)
	c := startProcCluster(t, 3, "--snapshot-count", "200")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var watchers []*faultWatcher
	turns := map[*faultWatcher]chan struct{}{}
	var wg sync.WaitGroup
	for _, m := range c.members {
		for _, spec := range []struct {
			key    string
			prefix bool
		}{{"f/", true}, {"f/0/", true}, {"f/1/3", false}} {
			w := &faultWatcher{name: fmt.Sprintf("%s %q prefix=%v", m.name, spec.key, spec.prefix), member: m, key: spec.key, prefix: spec.prefix}
			watchers = append(watchers, w)
			turns[w] = make(chan struct{}, 1)
			wg.Go(func() { w.run(ctx, turns[w]) })
		}
	}
	resume := func(w *faultWatcher) {
		select {
		case turns[w] <- struct{}{}:
		default:
		}
	}

	// Writers, through every endpoint (clientv3 moves to another when one dies).
	writeCtx, stopWrites := context.WithTimeout(ctx, duration)
	defer stopWrites()
	var acked, failed atomic.Int64
	writers := newClient(t, c.endpoints()...)
	for wi := range 3 {
		rng := rand.New(rand.NewPCG(seed, uint64(wi)))
		wg.Go(func() {
			for i := 0; writeCtx.Err() == nil; i++ {
				key := fmt.Sprintf("f/%d/%d", wi, rng.IntN(8))
				opCtx, cancel := context.WithTimeout(writeCtx, 3*time.Second)
				var err error
				switch p := rng.IntN(10); {
				case p < 6:
					_, err = writers.Put(opCtx, key, fmt.Sprintf("w%d-%d", wi, i))
				case p < 8:
					_, err = writers.Delete(opCtx, key)
				default:
					other := fmt.Sprintf("f/%d/%d", (wi+1)%3, rng.IntN(8))
					_, err = writers.Txn(opCtx).Then(clientv3.OpPut(key, fmt.Sprintf("t%d-%d", wi, i)),
						clientv3.OpPut(other, fmt.Sprintf("t%d-%d", wi, i))).Commit()
				}
				cancel()
				if err == nil {
					acked.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}

	// The killer: a member at a time, sometimes the leader.
	rng := rand.New(rand.NewPCG(seed, 99))
	kills := 0
	for writeCtx.Err() == nil {
		select {
		case <-time.After(time.Duration(1000+rng.IntN(2000)) * time.Millisecond):
		case <-writeCtx.Done():
		}
		if writeCtx.Err() != nil {
			break
		}
		victim := c.members[rng.IntN(len(c.members))]
		if rng.IntN(2) == 0 {
			victim = c.leader(10 * time.Second)
		}
		c.kill(victim)
		kills++
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		c.start(victim)
		for _, w := range watchers {
			if w.member == victim || rng.IntN(4) == 0 {
				resume(w)
			}
		}
	}
	c.waitWritable(c.members, 30*time.Second)
	t.Logf("%d writes acknowledged, %d failed or unknown, %d kills", acked.Load(), failed.Load(), kills)

	// The final state, after a fence for each kind of watcher: a put of a key it
	// watches, which it must reach. The watchers of every key reach the last.
	fences := map[string]int64{}
	for _, f := range []struct{ watched, key string }{{"f/", "f/fence"}, {"f/0/", "f/0/fence"}, {"f/1/3", "f/1/3"}} {
		resp, err := writers.Put(ctx, f.key, "end")
		if err != nil {
			t.Fatal(err)
		}
		fences[f.watched] = resp.Header.Revision
		fences["f/"] = resp.Header.Revision
	}
	final, err := writers.Get(ctx, "f/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	finalKVs := map[string]*mvccpb.KeyValue{}
	for _, kv := range final.Kvs {
		finalKVs[string(kv.Key)] = kv
	}
	err = eventually(30*time.Second, 50*time.Millisecond, func() error {
		for _, w := range watchers {
			if fence := fences[w.key]; w.next() <= fence {
				return fmt.Errorf("%s has not reached its fence at revision %d", w.name, fence)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()

	var reference []seenEvent
	for _, w := range watchers {
		w.mu.Lock()
		checkWatchHistory(t, w, finalKVs)
		if w.key == "f/" {
			if reference == nil {
				reference = normalizeSeen(w.events)
			} else if !slices.Equal(reference, normalizeSeen(w.events)) {
				t.Errorf("%s saw %d events, another member's watcher of every key %d; they differ", w.name, len(w.events), len(reference))
			}
		}
		t.Logf("%s: %d events in %d responses, %d resumes", w.name, len(w.events), w.responses, w.resumes)
		w.mu.Unlock()
	}
}

// normalizeSeen drops the response numbers and orders each revision's events by
// key: a member restored from a snapshot replays a txn's events in key order
// (kv.Store.Events), one that applied it live in the txn's order.
func normalizeSeen(evs []seenEvent) []seenEvent {
	out := slices.Clone(evs)
	for i := range out {
		out[i].response = 0
	}
	slices.SortStableFunc(out, func(a, b seenEvent) int {
		if a.rev != b.rev {
			return int(a.rev - b.rev)
		}
		return strings.Compare(a.key, b.key)
	})
	return out
}

// checkWatchHistory checks one watcher's events against the rules in
// TestWatchUnderFaults' doc.
func checkWatchHistory(t *testing.T, w *faultWatcher, final map[string]*mvccpb.KeyValue) {
	t.Helper()
	type keyState struct {
		live            bool
		create, version int64
		last            seenEvent
	}
	keys := map[string]*keyState{}
	responseOfRev := map[int64]int{}
	var lastRev int64
	for i, ev := range w.events {
		switch {
		case ev.rev < lastRev:
			t.Fatalf("%s: event %d at revision %d after revision %d (out of order)", w.name, i, ev.rev, lastRev)
		case ev.rev == lastRev && ev.key == w.events[i-1].key:
			t.Fatalf("%s: event %d repeats %s at revision %d", w.name, i, ev.key, ev.rev)
		}
		if r, ok := responseOfRev[ev.rev]; ok && r != ev.response {
			t.Fatalf("%s: revision %d's events came in two responses", w.name, ev.rev)
		}
		responseOfRev[ev.rev], lastRev = ev.response, ev.rev
		st := keys[ev.key]
		if st == nil {
			st = &keyState{}
			keys[ev.key] = st
		}
		if ev.typ == mvccpb.DELETE {
			if !st.live && st.last.rev != 0 {
				t.Fatalf("%s: %s deleted at %d, but its last event (at %d) was a delete: a put is missing", w.name, ev.key, ev.rev, st.last.rev)
			}
			st.live = false
		} else {
			switch {
			case !st.live && (ev.version != 1 || ev.create != ev.rev) && st.last.rev != 0:
				t.Fatalf("%s: %s put at %d has version %d, create %d, after a delete: its creation is missing", w.name, ev.key, ev.rev, ev.version, ev.create)
			case st.live && (ev.version != st.version+1 || ev.create != st.create):
				t.Fatalf("%s: %s put at %d has version %d (create %d) after version %d (create %d): a gap", w.name, ev.key, ev.rev, ev.version, ev.create, st.version, st.create)
			}
			st.live, st.create, st.version = true, ev.create, ev.version
		}
		st.last = ev
	}
	// Each key's last event is the final state.
	for key, kv := range final {
		if !covers(w, key) || key == "f/fence" {
			continue
		}
		st := keys[key]
		if st == nil || !st.live || st.last.rev != kv.ModRevision || st.last.value != string(kv.Value) || st.version != kv.Version {
			t.Fatalf("%s: %s is %q at revision %d (version %d), but its last event is %+v", w.name, key, kv.Value, kv.ModRevision, kv.Version, st)
		}
	}
	for key, st := range keys {
		if _, ok := final[key]; st.live && !ok {
			t.Fatalf("%s: %s was deleted (it is not in the final range) but its last event is a put at %d", w.name, key, st.last.rev)
		}
	}
}

func covers(w *faultWatcher, key string) bool {
	if w.prefix {
		return strings.HasPrefix(key, w.key)
	}
	return key == w.key
}
