package sim

import (
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

var (
	flagSeeds     = flag.Int("seeds", 0, "number of seeds TestSimulate runs (default 100; 16 under -race or -short)")
	flagSeedStart = flag.Int64("seedstart", 1, "first seed TestSimulate runs")
	flagSeed      = flag.Int64("seed", -1, "run only this seed: TestSimulate replays it, scenario tests run with it")
	flagTrace     = flag.Bool("simtrace", false, "write every event and the cores' logs to stderr (use with -seed; go test keeps -trace for itself)")
	flagDuration  = flag.Duration("duration", 100*time.Second, "virtual time each TestSimulate seed runs under faults")
	flagWrites    = flag.String("writes", "mixed", "how nodes persist: sync, async (Options.AsyncWrites), or mixed (TestSimulate draws it per seed; scenario tests use sync)")
)

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
	}
	if _, err := Simulate(seed, *flagDuration, configure); err != nil {
		t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed))
	}
}

// TestSimulateIsDeterministic runs one seed twice and requires identical traces: replay
// is only as good as the simulator's determinism.
// It does so once with synchronous writes and once with AsyncWrites.
func TestSimulateIsDeterministic(t *testing.T) {
	seed := int64(7)
	if *flagSeed >= 0 {
		seed = *flagSeed
	}
	for _, async := range []bool{false, true} {
		run := func() string {
			var b traceBuffer
			configure := func(o *Options) {
				o.Trace = &b
				o.AsyncWrites = async
			}
			if _, err := Simulate(seed, 20*time.Second, configure); err != nil {
				t.Fatalf("AsyncWrites=%v: %v\nreplay: %s", async, err, replayCommand(t.Name(), seed))
			}
			return b.String()
		}
		first, second := run(), run()
		if first != second {
			t.Fatalf("seed %d (AsyncWrites=%v) gave two different traces (%d and %d bytes); something depends on map order or wall time\nreplay: %s",
				seed, async, len(first), len(second), replayCommand(t.Name(), seed))
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
