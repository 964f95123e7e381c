package chaos

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"raftkv/chaos/watchcheck"
)

// The watchers: while the clients write, watches on the workload's whole prefix
// receive every write of it, and the sixth verdict (watchcheck.Check) holds them to
// the history and the final Range. A prefix watch sees every key of every epoch, so
// one watch checks every write; per-client watches of the epoch's keys would check
// the same writes, only fewer of them each.
//
// Three kinds, so that both the resumption clientv3 does by itself and one the test
// does are exercised, on followers as much as on the leader:
//
//   - a raw watcher per member: a gRPC Watch stream of the test's own (no clientv3 in
//     between) to that member alone, which the test resumes from the last revision it
//     received + 1 whenever the stream fails (the member was killed, or crashed on a
//     full disk) and also at random times (rawStreamLife), so that resumptions land
//     during partitions and pauses too, when the member is cut off and behind;
//   - a clientv3 watcher per member, of a client of that member alone: clientv3
//     resumes it by itself from the last revision + 1 after an Unavailable error
//     (watchGRPCStream.serveSubstream keeps that revision), and the test re-watches
//     from there if clientv3 ever closes the channel;
//   - a clientv3 watcher of a client of every member, which gRPC's balancer may move
//     to another member when it resumes, with clientv3.WithRequireLeader: etcd ends
//     such a watch when its member loses the leader, clientv3 closes the channel
//     with "etcdserver: no leader", and the test watches again, through whichever
//     member the balancer picks. raftkv ends it the same way (three election
//     timeouts without a leader).
//
// Each watches from revision 1: the prefix has no key before the workload starts,
// and a watcher that starts late replays what it missed. The suite never compacts
// (no Compact call, no --auto-compaction-*), so a watch told its revision was
// compacted is a failure of its own; the watcher still resumes from the compact
// revision, and watchcheck restarts that watch's check there.

// rawStreamLife bounds how long the test lets a raw watcher's stream live before it
// ends the stream and resumes, drawn uniformly in [min, max).
var rawStreamLife = [2]time.Duration{5 * time.Second, 20 * time.Second}

// watchMethod is the gRPC method of a Watch stream, which the clientv3 watchers'
// interceptor counts.
const watchMethod = "/etcdserverpb.Watch/Watch"

// watcher is one watch on keyPrefix over the whole run, across its resumptions.
type watcher struct {
	name string
	// streams counts the Watch streams opened for it: by the test for a raw watcher,
	// by clientv3 (its first and every resumption) for the others.
	streams atomic.Int64
	mu      struct {
		sync.Mutex
		events []watchcheck.Event
		holes  []watchcheck.Hole
		// resumes counts the resumptions the test made, by why the stream ended.
		resumes map[string]int
	}
}

func newWatcher(name string) *watcher {
	w := &watcher{name: name}
	w.mu.resumes = map[string]int{}
	return w
}

// next is the revision to watch from: the one after the last event received.
func (w *watcher) next() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nextLocked()
}

func (w *watcher) nextLocked() int64 {
	next := int64(1)
	if n := len(w.mu.events); n > 0 {
		next = w.mu.events[n-1].Revision + 1
	}
	if n := len(w.mu.holes); n > 0 {
		next = max(next, w.mu.holes[n-1].Compact)
	}
	return next
}

func (w *watcher) add(events []*mvccpb.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range events {
		w.mu.events = append(w.mu.events, watchcheck.Event{Key: string(ev.Kv.Key), Value: string(ev.Kv.Value),
			Revision: ev.Kv.ModRevision, CreateRevision: ev.Kv.CreateRevision, Version: ev.Kv.Version,
			Delete: ev.Type == mvccpb.DELETE})
	}
}

// compacted records that the watch was told its next revision is compacted: it
// resumes at compactRevision.
func (w *watcher) compacted(compactRevision int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.holes = append(w.mu.holes, watchcheck.Hole{After: w.nextLocked() - 1, Compact: compactRevision})
}

func (w *watcher) resumed(cause string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.resumes[cause]++
}

// runRaw watches through a Watch stream of its own on conn, a connection to one
// member, resuming it until ctx ends.
func (w *watcher) runRaw(ctx context.Context, conn *grpc.ClientConn, rng *rand.Rand) {
	client := pb.NewWatchClient(conn)
	for ctx.Err() == nil {
		cause, opened := w.rawStream(ctx, client, rng)
		if ctx.Err() != nil {
			return
		}
		if opened {
			w.resumed(cause)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rawStream watches from w.next() on one stream until the stream fails or its
// random life ends, and says why it ended and whether it was opened at all.
func (w *watcher) rawStream(ctx context.Context, client pb.WatchClient, rng *rand.Rand) (cause string, opened bool) {
	life := rawStreamLife[0] + time.Duration(rng.Int64N(int64(rawStreamLife[1]-rawStreamLife[0])))
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Not a deadline on the stream: gRPC would send it to the member, whose
	// DeadlineExceeded could then arrive before the test's own timer fired.
	var endedByTest atomic.Bool
	timer := time.AfterFunc(life, func() {
		endedByTest.Store(true)
		cancel()
	})
	defer timer.Stop()
	ended := func(err error) string {
		if endedByTest.Load() {
			return "ended by the test"
		}
		return "stream failed: " + status.Code(err).String()
	}
	// WaitForReady: while the member is down the stream waits for it rather than
	// failing at once, so each stream opened is one resumption.
	stream, err := client.Watch(streamCtx, grpc.WaitForReady(true))
	if err != nil {
		return ended(err), false
	}
	w.streams.Add(1)
	create := &pb.WatchCreateRequest{Key: []byte(keyPrefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(keyPrefix)),
		StartRevision: w.next()}
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: create}}); err != nil {
		return ended(err), true
	}
	for {
		resp, err := stream.Recv()
		switch {
		case err != nil:
			return ended(err), true
		case resp.CompactRevision != 0:
			w.compacted(resp.CompactRevision)
			return "compacted", true
		case resp.Canceled:
			return "canceled by the member: " + resp.CancelReason, true
		}
		w.add(resp.Events)
	}
}

// runClientv3 watches through cli, whose watch resumes by itself after an error the
// client deems temporary; if the channel closes anyway, it watches again from the
// revision after the last event received. requireLeader asks the member to end the
// watch when it has no leader (clientv3.WithRequireLeader).
func (w *watcher) runClientv3(ctx context.Context, cli *clientv3.Client, requireLeader bool) {
	watchCtx := ctx
	if requireLeader {
		watchCtx = clientv3.WithRequireLeader(ctx)
	}
	for ctx.Err() == nil {
		cause := "closed with no error"
		for resp := range cli.Watch(watchCtx, keyPrefix, clientv3.WithPrefix(), clientv3.WithRev(w.next())) {
			switch {
			case resp.CompactRevision != 0:
				w.compacted(resp.CompactRevision)
				cause = "compacted"
			case resp.Err() != nil:
				cause = resp.Err().Error()
			default:
				w.add(resp.Events)
			}
		}
		if ctx.Err() != nil {
			return
		}
		w.resumed("clientv3 closed the watch: " + cause)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// countWatchStreams counts the Watch streams a client opens.
func countWatchStreams(streams *atomic.Int64) grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn,
		method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err == nil && method == watchMethod {
			streams.Add(1)
		}
		return s, err
	})
}

// watchers are the run's watchers and their goroutines.
type watchers struct {
	list   []*watcher
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// startWatchers starts a raw and a clientv3 watcher on each member and a clientv3
// watcher of every member; they run until stopAndWait, which the test's cleanup
// also calls.
func startWatchers(c *cluster, seed uint64) *watchers {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchers{cancel: cancel}
	for i, m := range c.members {
		conn, err := grpc.NewClient("passthrough:///"+m.container+":"+clientPort,
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(c.dial), redialParams)
		if err != nil {
			c.t.Fatalf("a gRPC connection to %s for its raw watcher: %v", m.name, err)
		}
		c.t.Cleanup(func() { conn.Close() })
		raw := newWatcher("raw@" + m.name)
		rng := rand.New(rand.NewPCG(seed, 0x7761746368+uint64(i)))
		ws.list = append(ws.list, raw)
		ws.wg.Go(func() { raw.runRaw(ctx, conn, rng) })

		pinned := newWatcher("clientv3@" + m.name)
		cli := c.newClientWith([]grpc.DialOption{countWatchStreams(&pinned.streams)}, m.container+":"+clientPort)
		ws.list = append(ws.list, pinned)
		ws.wg.Go(func() { pinned.runClientv3(ctx, cli, false) })
	}
	balanced := newWatcher("clientv3@all")
	cli := c.newClientWith([]grpc.DialOption{countWatchStreams(&balanced.streams)}, c.endpoints()...)
	ws.list = append(ws.list, balanced)
	// As a client that would rather move to another member than wait on one cut off
	// from the leader.
	ws.wg.Go(func() { balanced.runClientv3(ctx, cli, true) })
	// Registered after the clients and connections, so it runs before they close.
	c.t.Cleanup(ws.stopAndWait)
	return ws
}

func (ws *watchers) stopAndWait() {
	ws.once.Do(ws.cancel)
	ws.wg.Wait()
}

// waitFor waits until every watcher has received revision rev (the last write of
// the run), and returns how long it took and the watchers that did not within
// timeout, with the revision each had reached.
func (ws *watchers) waitFor(rev int64, timeout time.Duration) (time.Duration, []string) {
	start := time.Now()
	for {
		var behind []string
		for _, w := range ws.list {
			if got := w.next() - 1; got < rev {
				behind = append(behind, fmt.Sprintf("%s at revision %d", w.name, got))
			}
		}
		if len(behind) == 0 || time.Since(start) > timeout {
			return time.Since(start), behind
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// results returns what each watcher received, for watchcheck.Check. Call it after
// stopAndWait.
func (ws *watchers) results() []watchcheck.Watch {
	var out []watchcheck.Watch
	for _, w := range ws.list {
		w.mu.Lock()
		out = append(out, watchcheck.Watch{Name: w.name, Events: slices.Clone(w.mu.events), Holes: slices.Clone(w.mu.holes)})
		w.mu.Unlock()
	}
	return out
}

// resumes returns the resumptions of every watcher by cause: the test's own (by
// why the stream ended) and clientv3's ("clientv3 resumed by itself", the streams
// it opened after the first, less those of the test's re-watches).
func (ws *watchers) resumes() map[string]int {
	all := map[string]int{}
	for _, w := range ws.list {
		w.mu.Lock()
		explicit := 0
		for cause, n := range w.mu.resumes {
			all[cause] += n
			explicit += n
		}
		w.mu.Unlock()
		if strings.HasPrefix(w.name, "clientv3@") {
			if n := int(w.streams.Load()) - 1 - explicit; n > 0 {
				all["clientv3 resumed by itself"] += n
			}
		}
	}
	return all
}

// summary is one line per watcher: events, streams and resumptions.
func (ws *watchers) summary() string {
	var b strings.Builder
	for _, w := range ws.list {
		w.mu.Lock()
		causes := slices.SortedFunc(maps.Keys(w.mu.resumes), func(a, b string) int {
			return cmp.Or(cmp.Compare(w.mu.resumes[b], w.mu.resumes[a]), strings.Compare(a, b))
		})
		var parts []string
		for _, cause := range causes {
			parts = append(parts, fmt.Sprintf("%d %s", w.mu.resumes[cause], cause))
		}
		fmt.Fprintf(&b, "%-14s %6d events, %3d streams", w.name, len(w.mu.events), w.streams.Load())
		if len(parts) > 0 {
			fmt.Fprintf(&b, "; the test resumed it: %s", strings.Join(parts, ", "))
		}
		if len(w.mu.holes) > 0 {
			fmt.Fprintf(&b, "; compacted: %v", w.mu.holes)
		}
		b.WriteString("\n")
		w.mu.Unlock()
	}
	return b.String()
}

// watchReport is the watch verdict's figures, in -chaos.json.
type watchReport struct {
	Watchers      int            `json:"watchers"`
	EventsChecked int            `json:"events_checked"`
	Writes        int            `json:"writes"`
	Acknowledged  int            `json:"acknowledged"`
	Unknown       int            `json:"unknown_outcome"`
	Unverified    int            `json:"unverified"`
	Resumes       map[string]int `json:"resumes"`
	Compactions   int            `json:"compactions"`
	CaughtUpIn    time.Duration  `json:"caught_up_ns"`
	Problems      int            `json:"problems"`
}

// maxProblemsLogged bounds the watch problems the test prints; the count says how
// many there were.
const maxProblemsLogged = 30

// checkWatches is the sixth verdict: it waits until every watcher has received the
// run's last write of the workload (final holds the final Range, after every heal),
// stops the watchers, and checks what they received against the history and final.
func checkWatches(t *testing.T, ws *watchers, history []porcupine.Operation, final map[string]watchcheck.KeyState) watchReport {
	t.Helper()
	var last int64
	for _, k := range final {
		last = max(last, k.ModRevision)
	}
	took, behind := ws.waitFor(last, recoveryTimeout)
	ws.stopAndWait()
	for _, b := range behind {
		t.Errorf("a watcher had not received the run's last write (revision %d) %v after the final read: %s", last, recoveryTimeout, b)
	}
	results := ws.results()
	res := watchcheck.Check(history, final, results)
	rep := watchReport{Watchers: len(results), EventsChecked: res.Events, Writes: res.Writes, Acknowledged: res.Acknowledged,
		Unknown: res.Unknown, Unverified: res.Unverified, Resumes: ws.resumes(), CaughtUpIn: took, Problems: len(res.Problems)}
	for _, w := range results {
		for _, h := range w.Holes {
			rep.Compactions++
			t.Errorf("%s was told that revision %d is compacted (compact revision %d), but the suite never compacts; its check restarts at %d",
				w.Name, h.After+1, h.Compact, h.Compact)
		}
	}
	for i, p := range res.Problems {
		if i == maxProblemsLogged {
			t.Errorf("... and %d more watch problems", len(res.Problems)-i)
			break
		}
		t.Errorf("watch: %s", p)
	}
	t.Logf("watches: %d events checked on %d watchers, all of them at the last write (revision %d) %v after the final read; "+
		"%d writes took effect (%d acknowledged, %d of unknown outcome); %d problems\n%s",
		res.Events, len(results), last, took.Round(time.Millisecond), res.Writes, res.Acknowledged, res.Unknown, len(res.Problems), ws.summary())
	return rep
}
