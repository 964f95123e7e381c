package sim

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"raftkv/raft"
)

var (
	flagSeeds     = flag.Int("seeds", 0, "number of seeds TestSimulate runs (default 100; 16 under -race or -short)")
	flagSeedStart = flag.Int64("seedstart", 1, "first seed TestSimulate runs")
	flagSeed      = flag.Int64("seed", -1, "run only this seed: TestSimulate replays it, scenario tests run with it")
	flagTrace     = flag.Bool("simtrace", false, "write every event and the cores' logs to stderr (use with -seed; go test keeps -trace for itself)")
	flagDuration  = flag.Duration("duration", 100*time.Second, "virtual time each TestSimulate seed runs under faults")
	flagWrites    = flag.String("writes", "mixed", "how nodes persist: sync, async (Options.AsyncWrites), or mixed (TestSimulate draws it per seed; scenario tests use sync)")
	flagConf      = flag.String("confchanges", "mixed", "configuration changes among TestSimulate's faults: on, off, or mixed (drawn per seed: half the seeds)")
	flagStale     = flag.Float64("stale", -1, "Options.StaleRate for TestSimulate's seeds: the chance a message in flight survives a crash of either end (negative: drawn per seed; 0: every such message lost)")
)

// applyStaleFlag sets opts.StaleRate as -stale says, leaving it as drawn if negative.
func applyStaleFlag(opts *Options) {
	if *flagStale >= 0 {
		opts.StaleRate = *flagStale
	}
}

// applyConfFlag sets opts.ConfChanges as -confchanges says, leaving it as drawn for
// mixed.
func applyConfFlag(opts *Options) {
	switch *flagConf {
	case "on":
		opts.ConfChanges = true
	case "off":
		opts.ConfChanges = false
	case "mixed":
	default:
		panic(fmt.Sprintf("-confchanges=%q: want on, off or mixed", *flagConf))
	}
}

// applyWritesFlag sets opts.AsyncWrites as -writes says, leaving it as drawn for mixed.
func applyWritesFlag(opts *Options) {
	switch *flagWrites {
	case "sync":
		opts.AsyncWrites = false
	case "async":
		opts.AsyncWrites = true
	case "mixed":
	default:
		panic(fmt.Sprintf("-writes=%q: want sync, async or mixed", *flagWrites))
	}
}

// traceWriter is where -trace sends the trace, or nil.
func traceWriter() io.Writer {
	if *flagTrace {
		return os.Stderr
	}
	return nil
}

// replayCommand is the command line that replays seed of the named test.
func replayCommand(test string, seed int64) string {
	cmd := fmt.Sprintf("go test ./sim -run '^%s$' -seed=%d -simtrace", test, seed)
	if test == "TestSimulate" && *flagDuration != 100*time.Second {
		cmd += fmt.Sprintf(" -duration=%v", *flagDuration)
	}
	if *flagWrites != "mixed" {
		cmd += " -writes=" + *flagWrites
	}
	if *flagConf != "mixed" && test == "TestSimulate" {
		cmd += " -confchanges=" + *flagConf
	}
	if *flagStale >= 0 && test == "TestSimulate" {
		cmd += fmt.Sprintf(" -stale=%v", *flagStale)
	}
	return cmd
}

// TestSimulate runs the randomized simulation: 5-node clusters under mixed faults for
// -duration of virtual time each, one seed per subtest, checked after every event.
// See the package doc for the flags.
func TestSimulate(t *testing.T) {
	if *flagSeed >= 0 {
		runSeed(t, *flagSeed)
		return
	}
	seeds := *flagSeeds
	if seeds == 0 {
		seeds = 100
		if raceEnabled || testing.Short() {
			seeds = 16
		}
	}
	start := time.Now()
	first := *flagSeedStart
	t.Run("seeds", func(t *testing.T) {
		for seed := first; seed < first+int64(seeds); seed++ {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				runSeed(t, seed)
			})
		}
	})
	t.Logf("ran seeds %d..%d (%d seeds of %v virtual time) in %v", first, first+int64(seeds)-1, seeds, *flagDuration,
		time.Since(start).Round(time.Millisecond))
}

func runSeed(t *testing.T, seed int64) {
	trace := traceWriter()
	configure := func(o *Options) {
		o.Trace = trace
		applyWritesFlag(o)
		applyConfFlag(o)
		applyStaleFlag(o)
	}
	if _, err := Simulate(seed, *flagDuration, configure); err != nil {
		t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed))
	}
}

// TestSimulateNoPreVoteStaleVoters replays seed 7309691, which failed the liveness
// check when seeds without PreVote had 60 s to elect: once a partition left a
// majority connected, the only node that could win (the longest log) was not in two
// voters' older configuration, so their elections never reached it, and it
// campaigned at terms they had used already. It won 75 s later. The seed must
// pass, and still be the case it was kept for: PreVote off, and an election slower
// than the old bound.
//
// It replays with raft.Config.ReadIndexToAll, the read rounds of the run that found
// it: since a round asks only the last round's quorum, the seed's messages differ
// and its slowest election takes 5.4 s, and a sweep of the 14,662 seeds with
// PreVote off and configuration changes from 9,000,000 to 9,293,926 found none
// over 51 s, so no seed of the default rounds is known to reproduce the race. For
// the same reason it replays with raft.Config.AppendToAll, the appends of that run:
// with appends to the last commit's quorum first its slowest election takes 13.2 s.
func TestSimulateNoPreVoteStaleVoters(t *testing.T) {
	const seed = 7309691
	var cfg raft.Config
	opts := RandomOptions(seed)
	opts.Configure(&cfg)
	if !cfg.DisablePreVote || !opts.ConfChanges {
		t.Fatalf("seed %d draws PreVote off %v, configuration changes %v: RandomOptions changed, find another seed", seed, cfg.DisablePreVote, opts.ConfChanges)
	}
	var b traceBuffer
	if _, err := Simulate(seed, 100*time.Second, func(o *Options) {
		o.Trace = &b
		configure := o.Configure
		o.Configure = func(cfg *raft.Config) {
			configure(cfg)
			cfg.ReadIndexToAll = true
			cfg.AppendToAll = true
		}
	}); err != nil {
		t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed))
	}
	slowest := slowestProbe(t, b.String())
	t.Logf("slowest liveness probe: %v", slowest)
	if slowest <= 60*time.Second {
		t.Fatalf("the slowest election took %v, not over the old 60 s bound: the seed no longer reproduces the stale voters' race; find another seed that does", slowest)
	}
}

// slowestProbe returns the longest time a liveness probe of trace took, from its
// start ("must commit by") to its "ok".
func slowestProbe(t *testing.T, trace string) time.Duration {
	started := map[string]time.Duration{}
	var slowest time.Duration
	for _, line := range strings.Split(trace, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != "liveness" || f[2] != "probe" {
			continue
		}
		at, err := time.ParseDuration(f[0])
		if err != nil {
			t.Fatalf("trace line %q: %v", line, err)
		}
		switch id := f[3]; {
		case strings.Contains(line, "must commit by"):
			started[id] = at
		case len(f) == 5 && f[4] == "ok":
			from, ok := started[id]
			if !ok {
				t.Fatalf("trace line %q: no start of probe %s before it", line, id)
			}
			slowest = max(slowest, at-from)
		}
	}
	return slowest
}

// TestRunForNeverTurnsTheClockBack: a span computed from a deadline already passed
// runs nothing and leaves the clock where it was.
func TestRunForNeverTurnsTheClockBack(t *testing.T) {
	h := newHarness(t, 3, Options{})
	if err := h.RunFor(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	now := h.Now()
	if err := h.RunFor(-time.Second); err != nil {
		t.Fatal(err)
	}
	if h.Now() != now {
		t.Fatalf("RunFor(-1s) moved the clock from %v to %v", now, h.Now())
	}
	if _, err := h.RunUntil(-time.Second, func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	if h.Now() != now {
		t.Fatalf("RunUntil(-1s) moved the clock from %v to %v", now, h.Now())
	}
}

// TestSimulateLateProbeKeepsTheClock replays seed 92003237, which failed the
// liveness check at the end of its run: the chaos phase's last probe ended at
// 105.5 s, past the run's 100 s, and RunChaos's closing RunFor(end-now), negative,
// set the clock back to 100 s; Settle's probe then had 4.5 s of events before its
// deadline, not 10 s, for a restarted learner to catch up 3,000 entries in appends
// of 128 bytes, two in flight. The seed must pass, and still be the case it was
// kept for: a probe of the chaos phase that ends after the run's duration.
func TestSimulateLateProbeKeepsTheClock(t *testing.T) {
	const seed = 92003237
	var b traceBuffer
	if _, err := Simulate(seed, 100*time.Second, func(o *Options) { o.Trace = &b }); err != nil {
		t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed))
	}
	var late, last time.Duration
	for _, line := range strings.Split(b.String(), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		at, err := time.ParseDuration(f[0])
		if err != nil {
			continue
		}
		if at < last {
			t.Fatalf("trace line %q at %v after a line at %v: the clock went back", line, at, last)
		}
		last = at
		if len(f) == 5 && f[1] == "liveness" && f[4] == "ok" && at > 100*time.Second && late == 0 {
			late = at
		}
	}
	if late == 0 {
		t.Fatal("no liveness probe ended after the run's 100 s: the seed no longer reproduces the case; find another that does")
	}
	t.Logf("first probe to end past the run's 100 s: at %v", late)
}

// TestSimulateIsDeterministic runs one seed twice and requires identical traces: replay
// is only as good as the simulator's determinism.
// It does so with synchronous writes, with AsyncWrites, and with AsyncWrites and
// configuration changes.
func TestSimulateIsDeterministic(t *testing.T) {
	seed := int64(7)
	if *flagSeed >= 0 {
		seed = *flagSeed
	}
	for _, mode := range []struct{ async, conf bool }{{false, false}, {true, false}, {true, true}} {
		run := func() string {
			var b traceBuffer
			configure := func(o *Options) {
				o.Trace = &b
				o.AsyncWrites = mode.async
				o.ConfChanges = mode.conf
			}
			if _, err := Simulate(seed, 20*time.Second, configure); err != nil {
				t.Fatalf("%+v: %v\nreplay: %s", mode, err, replayCommand(t.Name(), seed))
			}
			return b.String()
		}
		first, second := run(), run()
		if first != second {
			t.Fatalf("seed %d (%+v) gave two different traces (%d and %d bytes); something depends on map order or wall time\nreplay: %s",
				seed, mode, len(first), len(second), replayCommand(t.Name(), seed))
		}
	}
}

// traceBuffer collects a trace in memory.
type traceBuffer struct{ buf []byte }

func (b *traceBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *traceBuffer) String() string { return string(b.buf) }

// TestSimulateExercisesFaults checks that the random schedule reaches the paths it is
// meant to: over a handful of seeds there must be crashes inside Ready handling,
// restarts, snapshots installed on followers, compactions, many elections, passed
// liveness checks, acknowledged commands and served reads.
func TestSimulateExercisesFaults(t *testing.T) {
	var total Counters
	acks, reads := 0, 0
	for seed := int64(1); seed <= 8; seed++ {
		c, err := Simulate(seed, 100*time.Second, nil)
		if err != nil {
			t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed))
		}
		got := c.Counters()
		total.Crashes += got.Crashes
		total.CrashesMidReady += got.CrashesMidReady
		total.Restarts += got.Restarts
		total.Elections += got.Elections
		total.SnapshotsInstalled += got.SnapshotsInstalled
		total.Compactions += got.Compactions
		total.LivenessChecks += got.LivenessChecks
		acks += len(c.Acks())
		reads += c.ReadsServed()
	}
	t.Logf("over 8 seeds: %+v, %d acks, %d reads", total, acks, reads)
	if total.Crashes == 0 || total.CrashesMidReady == 0 || total.Restarts == 0 || total.Elections < 16 ||
		total.SnapshotsInstalled == 0 || total.Compactions == 0 || total.LivenessChecks < 16 || acks == 0 || reads == 0 {
		t.Fatalf("the fault schedule left paths unexercised: %+v, %d acks, %d reads", total, acks, reads)
	}
}

// TestSimulateAsyncExercisesPipeline checks that AsyncWrites mode reaches what it adds:
// writes queued and lost to crashes, group commits, held messages, crashes between a
// flush and the messages it releases.
func TestSimulateAsyncExercisesPipeline(t *testing.T) {
	var total Counters
	for seed := int64(1); seed <= 4; seed++ {
		c, err := Simulate(seed, 100*time.Second, func(o *Options) { o.AsyncWrites = true })
		if err != nil {
			t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed)+" -writes=async")
		}
		got := c.Counters()
		total.Crashes += got.Crashes
		total.CrashesMidReady += got.CrashesMidReady
		total.WritesQueued += got.WritesQueued
		total.WritesLost += got.WritesLost
		total.GroupCommits += got.GroupCommits
		total.MessagesHeld += got.MessagesHeld
		total.LivenessChecks += got.LivenessChecks
	}
	t.Logf("over 4 seeds: %+v", total)
	if total.WritesQueued == 0 || total.WritesLost == 0 || total.GroupCommits == 0 || total.MessagesHeld == 0 ||
		total.CrashesMidReady == 0 || total.LivenessChecks < 8 {
		t.Fatalf("AsyncWrites left paths unexercised: %+v", total)
	}
}

// TestSimulateExercisesConfChanges checks that Options.ConfChanges reaches what it is
// meant to: every kind of change committed, nodes added and caught up by snapshot, a
// leader removing itself, leadership transfers, and liveness checks passed with the
// configurations that result.
func TestSimulateExercisesConfChanges(t *testing.T) {
	var total Counters
	acks := 0
	for seed := int64(1); seed <= 8; seed++ {
		c, err := Simulate(seed, 100*time.Second, func(o *Options) { o.ConfChanges = true })
		if err != nil {
			t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed)+" -confchanges=on")
		}
		got := c.Counters()
		total.ConfChangesProposed += got.ConfChangesProposed
		for i, n := range got.ConfChangesCommitted {
			total.ConfChangesCommitted[i] += n
		}
		total.NodesAdded += got.NodesAdded
		total.SnapshotsToJoined += got.SnapshotsToJoined
		total.LeaderRemovals += got.LeaderRemovals
		total.Transfers += got.Transfers
		total.SnapshotsInstalled += got.SnapshotsInstalled
		total.LivenessChecks += got.LivenessChecks
		acks += len(c.Acks())
		t.Logf("seed %d: final configuration %v of %d nodes started", seed, c.Membership(), c.Size())
	}
	t.Logf("over 8 seeds: %+v, %d acks", total, acks)
	cc := total.ConfChangesCommitted
	if cc[raft.ConfChangeAddVoter] == 0 || cc[raft.ConfChangeAddLearner] == 0 || cc[raft.ConfChangePromote] == 0 ||
		cc[raft.ConfChangeRemove] == 0 || total.NodesAdded == 0 || total.LeaderRemovals == 0 || total.Transfers == 0 ||
		total.SnapshotsToJoined == 0 || total.LivenessChecks < 12 || acks == 0 {
		t.Fatalf("configuration changes left paths unexercised: %+v, %d acks", total, acks)
	}
}
