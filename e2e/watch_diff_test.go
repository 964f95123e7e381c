package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

var (
	watchDiffOps  = flag.Int("watchdiff.ops", 0, "writes per watch differential run (default 10000 against one member, 2000 against a follower of three; a fifth with -short)")
	watchDiffSeed = flag.Uint64("watchdiff.seed", 0, "seed of the watch differential test (default: drawn from the clock)")
)

// TestWatchDifferential runs one seeded random sequence of writes (Put, DeleteRange,
// Txn, Compact) against an embedded etcd and raftkv, and opens watches on both, with
// the same random key, range or prefix, start revision (now, past, compacted,
// future), filters, prev_kv and fragment, before, during and after the writes;
// some are canceled on the way. Each watch must deliver the same stream on both:
// the Created revision, every event with its kv and prev_kv, in the same order,
// and the same compaction or cancel. Events may be grouped into responses
// differently (that depends on when each server reads), but on raftkv no revision
// is ever split between two responses.
func TestWatchDifferential(t *testing.T) {
	t.Parallel()
	seed := *watchDiffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for _, run := range []struct {
		members    int
		defaultOps int
	}{{1, 10000}, {3, 2000}} {
		t.Run(fmt.Sprintf("members=%d", run.members), func(t *testing.T) {
			ops := *watchDiffOps
			if ops == 0 {
				ops = run.defaultOps
				if testing.Short() {
					ops /= 5
				}
			}
			logReplay(t, "seed %d, %d writes; replay with: go test -run 'TestWatchDifferential/members=%d' -watchdiff.seed=%d -watchdiff.ops=%d",
				seed, ops, run.members, seed, ops)
			oracle := newClient(t, startEtcd(t))
			members := startRaftkv(t, run.members, 300)
			writer, watched := members[0], members[0]
			if run.members > 1 {
				// Writes through the leader, watches on a follower: events from the
				// follower's own apply.
				writer, watched = leader(t, members), follower(t, members)
			}
			subject := [2]*clientv3.Client{newClient(t, hostPort(writer.clientURL)), newClient(t, hostPort(watched.clientURL))}
			runWatchDifferential(t, seed, ops, oracle, subject)
		})
	}
}

// watchRecord is what one watch delivered.
type watchRecord struct {
	mu           sync.Mutex
	created      int64 // header revision of the Created response
	events       []*mvccpb.Event
	lastRev      int64 // of the last event
	lastProgress int64
	compactRev   int64
	canceled     bool
	cancelReason string
	closed       bool
	// split names a revision whose events came in two responses (not fragments).
	split    string
	startRev int64
}

// describeWatchEvent writes an event with its lease as etcd's id (ids maps the
// side's lease ids to etcd's, for the ids each server picks).
func describeWatchEvent(ev *mvccpb.Event, ids *leaseIDs) string {
	kv := ev.Kv
	s := fmt.Sprintf("%s %q c=%d m=%d v=%d val=%q lease=%d", ev.Type, kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Value, ids.etcd(kv.Lease))
	if p := ev.PrevKv; p != nil {
		s += fmt.Sprintf(" prev{c=%d m=%d v=%d val=%q}", p.CreateRevision, p.ModRevision, p.Version, p.Value)
	}
	return s
}

// recordWatch reads ch, a watch from startRev (0: now), until it closes.
func recordWatch(ch clientv3.WatchChan, startRev int64) *watchRecord {
	r := &watchRecord{created: -1, startRev: startRev}
	go func() {
		var prevRespRevs []int64
		for resp := range ch {
			r.mu.Lock()
			switch {
			case resp.Created:
				r.created = resp.Header.Revision
			case resp.IsProgressNotify():
				r.lastProgress = max(r.lastProgress, resp.Header.Revision)
			}
			var revs []int64
			for _, ev := range resp.Events {
				r.events = append(r.events, ev)
				r.lastRev = ev.Kv.ModRevision
				if len(revs) == 0 || revs[len(revs)-1] != ev.Kv.ModRevision {
					revs = append(revs, ev.Kv.ModRevision)
				}
			}
			if len(revs) > 0 && len(prevRespRevs) > 0 && prevRespRevs[len(prevRespRevs)-1] == revs[0] && r.split == "" {
				r.split = fmt.Sprintf("revision %d", revs[0])
			}
			if len(revs) > 0 {
				prevRespRevs = revs
			}
			if resp.CompactRevision != 0 {
				r.compactRev = resp.CompactRevision
			}
			if resp.Canceled {
				r.canceled, r.cancelReason = true, resp.CancelReason
			}
			r.mu.Unlock()
		}
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
	}()
	return r
}

// caughtUp reports whether the watch has everything up to rev, or ended.
func (r *watchRecord) caughtUp(rev int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed || r.canceled || r.lastProgress >= rev || r.lastRev >= rev || r.startRev > rev
}

// watchPair is one watch opened on both servers, each on a stream of its own (a
// progress request is answered only when every watch of its stream is synced and
// past its start revision, and a watch may start in the future).
type watchPair struct {
	desc   string
	ctx    [2]context.Context
	cancel [2]context.CancelFunc
	rec    [2]*watchRecord
}

// watchSide is one server's clients: writes go through write, watches through
// watch (the same client on one member; a follower's on three), and ids maps the
// server's lease ids to etcd's.
type watchSide struct {
	name   string
	write  *clientv3.Client
	watch  *clientv3.Client
	ids    *leaseIDs
	ctx    context.Context
	cancel context.CancelFunc
}

// watchHarness opens watches of the same shape on etcd and raftkv while a test
// writes to both, cancels some on the way, and at the end requires each pair to
// have delivered the same stream. g is the test's generator: the harness draws the
// watches' shapes from it, and reads the revision and compaction it follows.
type watchHarness struct {
	t           *testing.T
	seed        uint64
	g           *opGen
	sides       [2]*watchSide
	pairs, open []*watchPair
}

func newWatchHarness(t *testing.T, seed uint64, g *opGen, oracle *clientv3.Client, subject [2]*clientv3.Client, subjectIDs *leaseIDs) *watchHarness {
	h := &watchHarness{t: t, seed: seed, g: g, sides: [2]*watchSide{
		{name: "etcd", write: oracle, watch: oracle, ids: identity},
		{name: "raftkv", write: subject[0], watch: subject[1], ids: subjectIDs},
	}}
	for _, s := range h.sides {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		t.Cleanup(s.cancel)
	}
	return h
}

// openWatch opens a watch of a random shape on both sides.
func (h *watchHarness) openWatch() {
	t := h.t
	key, opts, startRev, desc := h.g.watchShape()
	p := &watchPair{desc: desc}
	for _, s := range h.sides {
		// A linearizable read first: a follower then has applied every write
		// acknowledged so far, so a watch from now starts where etcd's does.
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		_, err := s.watch.Get(ctx, "sync-probe")
		cancel()
		if err != nil {
			t.Fatalf("read before a watch on %s: %v", s.name, err)
		}
	}
	for i, s := range h.sides {
		// clientv3 shares a stream between watches whose contexts carry the same
		// metadata: this gives the pair's watches a stream each.
		ctx := metadata.AppendToOutgoingContext(s.ctx, "watch-pair", fmt.Sprint(len(h.pairs)))
		p.ctx[i], p.cancel[i] = context.WithCancel(ctx)
		p.rec[i] = recordWatch(s.watch.Watch(p.ctx[i], key, append(opts, clientv3.WithCreatedNotify())...), startRev)
	}
	// Both Created responses before the next write, so both watches start at the
	// same revision.
	for i := range h.sides {
		err := eventually(10*time.Second, time.Millisecond, func() error {
			r := p.rec[i]
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.created < 0 && !r.closed {
				return fmt.Errorf("not created")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("watch %s on %s: no Created response within 10s", desc, h.sides[i].name)
		}
	}
	h.pairs, h.open = append(h.pairs, p), append(h.open, p)
}

// maybeChange opens a watch (3% of the calls) or cancels one (1%), and reports
// whether it did: the callers' loops call it before each operation.
func (h *watchHarness) maybeChange() bool {
	switch p := h.g.rng.Float64(); {
	case p < 0.03:
		h.openWatch()
		return true
	case p < 0.04 && len(h.open) > 0:
		h.waitCaughtUp("before a cancel")
		i := h.g.rng.IntN(len(h.open))
		h.open[i].cancel[0]()
		h.open[i].cancel[1]()
		h.open = slices.Delete(h.open, i, i+1)
		return true
	}
	return false
}

// waitCaughtUp waits until every open watch on both sides has everything up to
// the current revision, asking for progress: before a compaction (a watch still
// replaying would race it in etcd, whose prev_kv is read at send time), before a
// cancel, and at the end.
func (h *watchHarness) waitCaughtUp(why string) {
	for i, s := range h.sides {
		err := eventually(30*time.Second, 5*time.Millisecond, func() error {
			behind := 0
			for _, p := range h.open {
				if !p.rec[i].caughtUp(h.g.rev) {
					behind++
					// etcd answers only when the watch is synced: ask again.
					_ = s.watch.RequestProgress(p.ctx[i])
				}
			}
			if behind == 0 {
				return nil
			}
			return fmt.Errorf("%d watches behind revision %d", behind, h.g.rev)
		})
		if err != nil {
			h.t.Fatalf("%s, on %s: %v", why, s.name, err)
		}
	}
}

// finish opens three more watches (replays only), waits until every watch has
// caught up, and compares each pair's streams; it returns how many events matched.
func (h *watchHarness) finish() (events int) {
	t := h.t
	for range 3 {
		h.openWatch()
	}
	h.waitCaughtUp("at the end")
	for i, p := range h.pairs {
		w, r := p.rec[0], p.rec[1]
		w.mu.Lock()
		r.mu.Lock()
		if w.created != r.created || w.compactRev != r.compactRev || w.canceled != r.canceled || w.cancelReason != r.cancelReason {
			t.Fatalf("watch #%d %s (seed %d):\n  etcd:   created at %d, compacted at %d, canceled %v %q\n  raftkv: created at %d, compacted at %d, canceled %v %q",
				i, p.desc, h.seed, w.created, w.compactRev, w.canceled, w.cancelReason, r.created, r.compactRev, r.canceled, r.cancelReason)
		}
		var want, got []string
		for _, ev := range w.events {
			want = append(want, describeWatchEvent(ev, h.sides[0].ids))
		}
		for _, ev := range r.events {
			got = append(got, describeWatchEvent(ev, h.sides[1].ids))
		}
		if d := firstDifference(want, got); d != "" {
			t.Fatalf("watch #%d %s (seed %d): events differ (etcd %d, raftkv %d)\n%s", i, p.desc, h.seed, len(want), len(got), d)
		}
		if r.split != "" {
			t.Fatalf("watch #%d %s: raftkv split %s between two responses", i, p.desc, r.split)
		}
		events += len(w.events)
		w.mu.Unlock()
		r.mu.Unlock()
	}
	return events
}

func runWatchDifferential(t *testing.T, seed uint64, ops int, oracle *clientv3.Client, subject [2]*clientv3.Client) {
	g := &opGen{rng: rand.New(rand.NewPCG(seed, 0x3a7c4)), rev: 1}
	h := newWatchHarness(t, seed, g, oracle, subject, identity)
	start := time.Now()
	writes := 0
	h.openWatch() // before the writes
	for writes < ops {
		if h.maybeChange() {
			continue
		}
		op := g.next()
		if op.kind == "get" {
			continue
		}
		if op.kind == "compact" {
			h.waitCaughtUp("before a compaction")
		}
		want, wantErr := op.run(h.sides[0].write)
		got, gotErr := op.run(h.sides[1].write)
		if errString(wantErr) != errString(gotErr) {
			t.Fatalf("write #%d %s: etcd error %v, raftkv error %v", writes, op.desc, wantErr, gotErr)
		}
		if wantErr == nil {
			normalizeHeaders(want)
			normalizeHeaders(got)
			if headerOf(want).Revision != headerOf(got).Revision {
				t.Fatalf("write #%d %s: etcd at revision %d, raftkv at %d", writes, op.desc, headerOf(want).Revision, headerOf(got).Revision)
			}
			g.observe(op, want)
		}
		writes++
	}
	events := h.finish()
	t.Logf("%d writes, %d watches (%d canceled on the way), %d events matched in %v; final revision %d, compacted at %d",
		writes, len(h.pairs), len(h.pairs)-len(h.open), events, time.Since(start).Round(time.Millisecond), g.rev, g.compacted)
}

func firstDifference(want, got []string) string {
	for i := range max(len(want), len(got)) {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			from := max(0, i-3)
			return fmt.Sprintf("at event %d:\n  etcd:   %s\n  raftkv: %s\nthe events before it (etcd):\n  %s",
				i, orNone(w), orNone(g), strings.Join(want[from:i], "\n  "))
		}
	}
	return ""
}

// watchShape draws a watch: what it covers, from which revision, with which
// options.
func (g *opGen) watchShape() (key string, opts []clientv3.OpOption, rev int64, desc string) {
	key, opts, desc = g.rangeShape(0.4)
	if g.chance(0.55) {
		switch p := g.rng.Float64(); {
		case p < 0.5:
			rev = 1 + g.rng.Int64N(g.rev)
		case p < 0.75:
			rev = max(1, g.compacted-1+g.rng.Int64N(3)) // just below, at and above the compaction
		case p < 0.95:
			rev = g.rev + 1 + g.rng.Int64N(3) // future
		default:
			rev = -1 // refused as compacted
		}
		opts = append(opts, clientv3.WithRev(rev))
		desc += fmt.Sprintf(" rev=%d", rev)
	}
	for _, o := range []struct {
		p    float64
		opt  clientv3.OpOption
		name string
	}{{0.5, clientv3.WithPrevKV(), "prev_kv"}, {0.1, clientv3.WithFilterPut(), "noput"},
		{0.1, clientv3.WithFilterDelete(), "nodelete"}, {0.1, clientv3.WithFragment(), "fragment"}} {
		if g.chance(o.p) {
			opts = append(opts, o.opt)
			desc += " " + o.name
		}
	}
	return key, opts, rev, desc
}
