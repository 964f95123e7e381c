package procs

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// fakeRuntime is a process whose CPU use the test sets per sample.
type fakeRuntime struct {
	cpu      time.Duration
	procs    int
	def      int
	switches []int
}

func (f *fakeRuntime) hooks() runtimeHooks {
	return runtimeHooks{
		cpu:        func() time.Duration { return f.cpu },
		procs:      func() int { return f.procs },
		setOne:     func() { f.procs = 1; f.switches = append(f.switches, 1) },
		setDefault: func() { f.procs = f.def; f.switches = append(f.switches, f.def) },
	}
}

// run feeds the governor samples of use CPUs each for d, one Interval apart,
// and returns the time after the last.
func run(g *governor, f *fakeRuntime, now time.Time, use float64, d time.Duration) time.Time {
	for end := now.Add(d); now.Before(end); {
		now = now.Add(g.cfg.Interval)
		f.cpu += time.Duration(use * float64(g.cfg.Interval))
		g.sample(now)
	}
	return now
}

// newTestGovernor is a governor with the default Config on a fake process of two
// Ps, and the time it starts at.
func newTestGovernor() (*fakeRuntime, *governor, time.Time) {
	f := &fakeRuntime{procs: 2, def: 2}
	now := time.Unix(0, 0)
	return f, newGovernor(Config{}.withDefaults(), f.hooks(), now), now
}

func TestDropsToOneProcAfterLowForBelowLow(t *testing.T) {
	f, g, now := newTestGovernor()
	now = run(g, f, now, 0.3, 1900*time.Millisecond)
	if f.procs != 2 {
		t.Fatalf("dropped to %d procs after 1.9 s at 0.3 CPUs; LowFor is 2 s", f.procs)
	}
	run(g, f, now, 0.3, 200*time.Millisecond)
	if f.procs != 1 || len(f.switches) != 1 {
		t.Fatalf("after 2.1 s at 0.3 CPUs: procs %d, switches %v; want one drop to 1", f.procs, f.switches)
	}
}

func TestStaysOnEveryProcAboveLow(t *testing.T) {
	f, g, now := newTestGovernor()
	// 0.7 CPUs on average, in bursts: below Low in half the samples.
	for range 500 {
		now = run(g, f, now, 0.2, g.cfg.Interval)
		now = run(g, f, now, 1.2, g.cfg.Interval)
	}
	if len(f.switches) != 0 {
		t.Fatalf("switched %v at an average of 0.7 CPUs, above Low (0.6)", f.switches)
	}
}

func TestRisesWhenBusyAtOneProc(t *testing.T) {
	f, g, now := newTestGovernor()
	now = run(g, f, now, 0.2, 2100*time.Millisecond)
	if f.procs != 1 {
		t.Fatalf("procs %d after 2.1 s at 0.2 CPUs", f.procs)
	}
	// One busy sample (a collection) is not a rise.
	now = run(g, f, now, 1.0, g.cfg.Interval)
	now = run(g, f, now, 0.2, 500*time.Millisecond)
	if f.procs != 1 {
		t.Fatalf("rose to %d procs on one busy sample", f.procs)
	}
	run(g, f, now, 0.95, g.cfg.HighFor)
	if f.procs != 2 || len(f.switches) != 2 {
		t.Fatalf("procs %d, switches %v after %v at 0.95 CPUs on one proc; want back to 2", f.procs, f.switches, g.cfg.HighFor)
	}
}

func TestFlappingDoublesTheWaitBeforeTheNextDrop(t *testing.T) {
	f, g, now := newTestGovernor()
	wantWait := 2 * time.Second
	for round := range 7 {
		// Below Low until the drop: it takes the current wait.
		start := now
		for f.procs != 1 {
			now = run(g, f, now, 0.1, g.cfg.Interval)
			if now.Sub(start) > 2*time.Minute {
				t.Fatalf("round %d: no drop in 2 minutes", round)
			}
		}
		if took := now.Sub(start); took < wantWait || took > wantWait+g.cfg.Interval {
			t.Fatalf("round %d: dropped after %v; want %v", round, took, wantWait)
		}
		// Busy right after the drop: a rise within HighFor, and the next wait
		// doubles, up to a minute.
		busy := now
		for f.procs != 2 {
			now = run(g, f, now, 1.0, g.cfg.Interval)
			if now.Sub(busy) > g.cfg.HighFor+g.cfg.Interval {
				t.Fatalf("round %d: no rise after %v busy", round, now.Sub(busy))
			}
		}
		wantWait = min(2*wantWait, time.Minute)
	}
	// A drop that holds for long: the next rise resets the wait.
	for f.procs != 1 {
		now = run(g, f, now, 0.1, g.cfg.Interval)
	}
	now = run(g, f, now, 0.1, 10*time.Minute)
	run(g, f, now, 1.0, g.cfg.HighFor)
	if f.procs != 2 || g.lowFor != 2*time.Second {
		t.Fatalf("after a 10-minute drop and a rise: procs %d, wait %v; want 2 and 2s", f.procs, g.lowFor)
	}
}

func TestStartOffWhenTheOperatorSetGOMAXPROCS(t *testing.T) {
	stop, enabled := Start(Config{}, []string{"HOME=/", "GOMAXPROCS=2"})
	stop()
	if enabled {
		t.Fatal("the governor started with GOMAXPROCS in the environment")
	}
}

// TestStartRealProcess runs the governor on this process: it must leave it on the
// runtime's default when it stops, and its goroutine must end.
func TestStartRealProcess(t *testing.T) {
	if runtime.GOMAXPROCS(0) <= 1 {
		t.Skip("one CPU: the governor does not start")
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		t.Skip("GOMAXPROCS set for this test run")
	}
	before := runtime.GOMAXPROCS(0)
	stop, enabled := Start(Config{Interval: time.Millisecond, LowFor: 5 * time.Millisecond}, nil)
	if !enabled {
		t.Fatal("the governor did not start")
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // an idle test process: well below 0.6 CPUs
	}
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("GOMAXPROCS %d after 10 s of an idle process; want 1", got)
	}
	stop()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS %d after stop; want the default, %d", got, before)
	}
}
