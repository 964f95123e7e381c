// Package procs runs a process on one P (GOMAXPROCS=1) while it uses less than
// a CPU, and on the runtime's default again as soon as it needs more.
//
// Why: with more than one P, every goroutine made runnable while another runs (a
// message handed from a connection's reader to the raft loop, an entry from the
// raft loop to the apply loop, an answer to a waiting request) wakes a second OS
// thread, which spins looking for work and then sleeps again: two context switches
// and a futex call or two for work one thread would have done in turn. A member
// that uses a fraction of a CPU (every follower under writes sent to the leader,
// the leader under one client) spends much of that fraction on these wake-ups.
// Measured in bench/ (raftkv alone, 3 members and the load generator on 2 CPUs,
// 2026-12-07, a build that switched as this package does, alternating with the
// same build without): members' CPU per put 941 / 979 µs against 1,262 / 1,288
// at one client, 88 / 93 against 119 / 120 at 100 clients, context switches per
// put 34 / 36 against 49 / 50 at one client. A member that needs more than one
// CPU (a leader under 100 clients) goes back to every P within a few samples.
//
// The rule, with hysteresis so that a member near the line does not flip: drop to
// one P once the process's CPU use (user and system, getrusage, sampled every
// Config.SlowInterval) has averaged below Config.Low CPUs over Config.LowFor; go
// back to the runtime's default (runtime.SetDefaultGOMAXPROCS, which follows the
// CPU count and a cgroup's CPU limit) once it has averaged above Config.High over
// Config.HighFor at one P (sampled every Config.Interval). The rise is quick
// because work that needs more than one CPU waits meanwhile: a leader at one P
// under one client that flushes its engine delayed one put by 38-43 ms with a
// 50 ms HighFor, against a slowest put of 12-15 ms on two Ps. A
// rise that comes within four times the wait after a drop doubles the wait before
// the next drop, up to Config.MaxLowFor, so a load that alternates costs a switch
// per MaxLowFor at most; a later rise sets it back to Config.LowFor. Each switch
// stops the world for tens of microseconds.
//
// A process whose GOMAXPROCS the operator set (the GOMAXPROCS environment
// variable) or whose default is already one P is left alone.
package procs

import (
	"log/slog"
	"runtime"
	"strings"
	"time"
)

// Config tunes the governor; the zero value of a field selects its default.
type Config struct {
	// Interval is how often the process's CPU use is sampled at one P, where a
	// rise must come soon. Default 10 ms.
	Interval time.Duration
	// SlowInterval is how often it is sampled on more than one P, where only a
	// drop, after LowFor, is decided. Default 100 ms.
	SlowInterval time.Duration
	// Low is the CPU use, in CPUs, below which the process drops to one P.
	// Default 0.6.
	Low float64
	// LowFor is how long the use must stay below Low on average. Default 2 s.
	LowFor time.Duration
	// MaxLowFor bounds LowFor as rises that come soon after a drop double it.
	// Default 1 minute.
	MaxLowFor time.Duration
	// High is the CPU use at one P above which the process goes back to every P.
	// Default 0.85.
	High float64
	// HighFor is how long the use must stay above High on average. Default 20 ms.
	HighFor time.Duration
	// Logger gets a debug line at each switch; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 10 * time.Millisecond
	}
	if c.SlowInterval <= 0 {
		c.SlowInterval = 100 * time.Millisecond
	}
	if c.Low <= 0 {
		c.Low = 0.6
	}
	if c.LowFor <= 0 {
		c.LowFor = 2 * time.Second
	}
	if c.MaxLowFor <= 0 {
		c.MaxLowFor = time.Minute
	}
	if c.High <= 0 {
		c.High = 0.85
	}
	if c.HighFor <= 0 {
		c.HighFor = 20 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// runtimeHooks are what the governor reads and changes; tests replace them.
type runtimeHooks struct {
	cpu        func() time.Duration // the process's CPU time so far
	procs      func() int           // GOMAXPROCS now
	setOne     func()               // GOMAXPROCS(1)
	setDefault func()               // back to the runtime's default
}

var realHooks = runtimeHooks{
	cpu:        processCPU,
	procs:      func() int { return runtime.GOMAXPROCS(0) },
	setOne:     func() { runtime.GOMAXPROCS(1) },
	setDefault: runtime.SetDefaultGOMAXPROCS,
}

// Start runs the governor until the returned stop is called; stop returns once
// the governor has stopped and the process is back on the runtime's default.
// environ is the process's environment (os.Environ()): a GOMAXPROCS in it turns
// the governor off, and Start says so with enabled false.
func Start(cfg Config, environ []string) (stop func(), enabled bool) {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok && v != "" {
			return func() {}, false // the runtime, too, takes an empty value for none
		}
	}
	if !supported || runtime.GOMAXPROCS(0) <= 1 {
		return func() {}, false
	}
	return start(cfg.withDefaults(), realHooks), true
}

func start(cfg Config, h runtimeHooks) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	interval := func() time.Duration {
		if h.procs() == 1 {
			return cfg.Interval
		}
		return cfg.SlowInterval
	}
	every := interval()
	t := time.NewTicker(every)
	go func() {
		defer close(done)
		defer t.Stop()
		g := newGovernor(cfg, h, time.Now())
		for {
			select {
			case <-quit:
				if h.procs() == 1 {
					h.setDefault()
				}
				return
			case now := <-t.C:
				g.sample(now)
				if d := interval(); d != every {
					every = d
					t.Reset(every)
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// governor is the rule, fed one sample at a time.
type governor struct {
	cfg    Config
	h      runtimeHooks
	lowFor time.Duration
	// lastCPU, lastAt: the previous sample.
	lastCPU time.Duration
	lastAt  time.Time
	// window holds the recent samples' CPU time and wall time, newest last, as
	// far back as the longer of the two averages needs.
	window []usage
	// droppedAt is when the process last went to one P (zero if never).
	droppedAt time.Time
}

type usage struct {
	cpu, wall time.Duration
}

func newGovernor(cfg Config, h runtimeHooks, now time.Time) *governor {
	return &governor{cfg: cfg, h: h, lowFor: cfg.LowFor, lastCPU: h.cpu(), lastAt: now}
}

// sample takes the CPU time used since the last sample and switches if the rule
// says to.
func (g *governor) sample(now time.Time) {
	cpu := g.h.cpu()
	u := usage{cpu: cpu - g.lastCPU, wall: now.Sub(g.lastAt)}
	g.lastCPU, g.lastAt = cpu, now
	if u.wall <= 0 {
		return
	}
	// One average is taken in each state, over HighFor at one P and over lowFor
	// on more: the window keeps what that one needs (it is emptied at a switch).
	atOne := g.h.procs() == 1
	span := g.lowFor
	if atOne {
		span = g.cfg.HighFor
	}
	g.window = append(g.window, u)
	use, full, from := g.average(span)
	if from > 0 {
		g.window = g.window[:copy(g.window, g.window[from:])]
	}
	if atOne {
		if full && use > g.cfg.High {
			if !g.droppedAt.IsZero() && now.Sub(g.droppedAt) < 4*g.lowFor {
				g.lowFor = min(2*g.lowFor, g.cfg.MaxLowFor)
			} else {
				g.lowFor = g.cfg.LowFor // the drop held a long while: forget past rises
			}
			g.h.setDefault()
			g.window = g.window[:0]
			g.cfg.Logger.Debug("GOMAXPROCS back to the default: the process needs more than one CPU",
				"cpu-use", use, "gomaxprocs", g.h.procs(), "next-drop-after", g.lowFor)
		}
		return
	}
	if full && use < g.cfg.Low {
		g.h.setOne()
		g.droppedAt = now
		g.window = g.window[:0]
		g.cfg.Logger.Debug("GOMAXPROCS 1: the process uses less than a CPU", "cpu-use", use)
	}
}

// average is the CPU use, in CPUs, over the newest samples that span at least
// span, and from the first of them; full is false if the samples do not reach
// back that far yet.
func (g *governor) average(span time.Duration) (use float64, full bool, from int) {
	var cpu, wall time.Duration
	for i := len(g.window) - 1; i >= 0; i-- {
		cpu += g.window[i].cpu
		wall += g.window[i].wall
		if wall >= span {
			return float64(cpu) / float64(wall), true, i
		}
	}
	return 0, false, 0
}
