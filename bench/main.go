// Command bench compares raftkv with etcd: it starts a 3-member cluster of each as
// processes on loopback, one after the other, drives both with the same clientv3 load,
// and prints throughput, latency, CPU and memory side by side (and writes them as JSON).
//
//	cd bench && go run . [--quick] [--rounds N] [--workloads a,b,...] [--json path]
//
// It is a module of its own so that the main module does not depend on the etcd
// server. Linux only: it reads /proc for CPU and memory.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "etcd-member":
			os.Exit(runEtcdMember(os.Args[2:]))
		case "raftkv-member":
			os.Exit(runRaftkvMember(os.Args[2:]))
		case "cgroup-exec":
			os.Exit(runCgroupExec(os.Args[2:]))
		}
	}
	os.Exit(runBench(os.Args[1:]))
}

type options struct {
	quick  bool
	rounds int
	// interleave keeps every system's cluster up through a round and runs each
	// workload on all of them in turn, instead of all workloads on one system first.
	interleave    bool
	workloads     []workload
	systems       []string
	jsonPath      string
	keepData      bool
	timing        loadTiming
	raftkvBin     string
	cpuProfileDir string
	// rollingRestart runs the availability scenarios (rolling.go) instead of the
	// workloads.
	rollingRestart bool
	// dataKeys sizes the big data set (bigdata.go): the big workload's and the data
	// scenarios'.
	dataKeys int
	// data holds the data scenarios (scenarios.go) to run instead of the workloads;
	// nil for none.
	data *dataOptions
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "short runs for CI: 2s per workload after 0.5s of warm-up")
	fs.IntVar(&o.rounds, "rounds", 1, "run each system this many times, the order reversed every other round (use an even N); the table shows medians")
	fs.BoolVar(&o.interleave, "interleave", false, "keep every system's cluster up through a round and run each workload on all of them in turn\n"+
		"(the order reversed from one workload to the next), so that a system's and etcd's figures for a workload come\n"+
		"seconds apart, not minutes: on a machine whose speed drifts, the ratios move less (see README)")
	workloadList := fs.String("workloads", "all", "comma-separated workloads to run, by letter (a-m) or name; \"all\" is all but k, \"all,big\" adds k")
	systemList := fs.String("systems", "etcd,raftkv", "which systems to run, comma-separated: etcd, raftkv, "+floorSystem+"\n"+
		"(the gRPC floor: members that answer puts and gets from memory on grpc-go, what gRPC alone costs; see README)")
	fs.StringVar(&o.jsonPath, "json", "bench-result.json", "write the results as JSON to this file; empty for none")
	fs.BoolVar(&o.keepData, "keep-data", false, "keep the members' data dirs and logs (printed at the end) instead of deleting them")
	duration := fs.Duration("duration", 0, "measured time per workload (default 10s, or 2s with --quick)")
	warmup := fs.Duration("warmup", -1, "unmeasured warm-up per workload (default 2s, or 0.5s with --quick)")
	fs.StringVar(&o.raftkvBin, "raftkv-bin", "", "use this raftkv binary instead of building ../cmd/raftkv (to compare builds)")
	fs.BoolVar(&o.rollingRestart, "rolling-restart", false, "instead of the workloads: the write gap during a rolling restart of the 3 members\n"+
		"(SIGTERM and start again, each in turn) and during 3 MoveLeader calls, etcd against raftkv (~1 minute)")
	dataKeys := fs.Int("data-keys", defaultBigKeys, "keys of 1 KiB in the big data set: the big workload's (k) and the data scenarios'")
	dataSize := fs.String("data-size", "", "the big data set's size instead of --data-keys, e.g. 100MiB or 1GiB (size/1KiB keys)")
	scenarioList := fs.String("data-scenarios", "", "instead of the workloads: load the big data set into each system, then run these scenarios,\n"+
		"comma-separated or \"all\": "+strings.Join(dataScenarioNames, ", ")+" (see README)")
	snapshotCount := fs.Uint64("snapshot-count", 10_000, "--data-scenarios: both systems' --snapshot-count (their --snapshot-catchup-entries is set to half of it)")
	memoryCap := fs.String("memory-cap", "", "--data-scenarios memory-cap: the cap, e.g. 512MiB (default: half the data set, at least 64MiB)")
	coldRestart := fs.Bool("cold-restart", false, "--data-scenarios restart: drop the member's data files from the page cache before it starts again\n"+
		"(a start after a reboot; by default the files stay cached, as in a process restart)")
	stepTimeout := fs.Duration("step-timeout", 10*time.Minute, "--data-scenarios: how long one step (a restart, a catch-up, reading the data back) may take before it counts as failed")
	fs.StringVar(&o.cpuProfileDir, "cpuprofile", "", "write a CPU profile of every member over each measured window to this dir;\n"+
		"raftkv members then run in-process in this binary (the raftkv binary has no pprof endpoint)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run . [flags]   (in the bench directory)\n\nWorkloads:\n")
		for _, w := range append(slices.Clone(workloads), bigWorkload(defaultBigKeys)) {
			fmt.Fprintf(fs.Output(), "  %s  %-14s %s\n", w.letter, w.name, w.description)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; flags start with --", fs.Arg(0))
	}
	if o.rounds < 1 {
		return nil, fmt.Errorf("--rounds %d: run at least 1 round", o.rounds)
	}
	o.dataKeys = *dataKeys
	if *dataSize != "" {
		size, err := parseDataSize(*dataSize)
		if err != nil {
			return nil, fmt.Errorf("--data-size: %w", err)
		}
		o.dataKeys = int(size / bigValueBytes)
	}
	if o.dataKeys < loadBatchPuts {
		return nil, fmt.Errorf("--data-keys %d: give at least %d keys", o.dataKeys, loadBatchPuts)
	}
	var err error
	if o.workloads, err = selectWorkloads(*workloadList, o.dataKeys); err != nil {
		return nil, err
	}
	if *scenarioList != "" {
		if o.data, err = parseDataOptions(*scenarioList, o.dataKeys, *snapshotCount, *memoryCap, *stepTimeout); err != nil {
			return nil, err
		}
		if o.rollingRestart {
			return nil, errors.New("--data-scenarios and --rolling-restart are two runs of their own; give one")
		}
		o.data.coldRestart = *coldRestart
	}
	for _, s := range strings.Split(*systemList, ",") {
		switch s = strings.TrimSpace(s); s {
		case "etcd", "raftkv", floorSystem:
			o.systems = append(o.systems, s)
		default:
			return nil, fmt.Errorf("--systems: unknown system %q; use etcd, raftkv, %s or a comma-separated list of them", s, floorSystem)
		}
	}
	if slices.Contains(o.systems, floorSystem) {
		if o.rollingRestart || o.data != nil {
			return nil, fmt.Errorf("--systems %s: the floor serves the put and get workloads only, not --rolling-restart or --data-scenarios", floorSystem)
		}
		for _, w := range o.workloads {
			if !floorServes(w.op) {
				return nil, fmt.Errorf("--systems %s: the floor answers puts and gets only, so it cannot run workload %s (%s); drop one of them",
					floorSystem, w.letter, w.name)
			}
		}
	}
	o.timing = loadTiming{warmup: 2 * time.Second, duration: 10 * time.Second}
	if o.quick {
		o.timing = loadTiming{warmup: 500 * time.Millisecond, duration: 2 * time.Second}
	}
	if *duration > 0 {
		o.timing.duration = *duration
	}
	if *warmup >= 0 {
		o.timing.warmup = *warmup
	}
	if o.interleave && (o.rollingRestart || o.data != nil) {
		return nil, errors.New("--interleave runs the workloads of every system in turn; --rolling-restart and --data-scenarios run one system at a time: drop one of them")
	}
	if o.cpuProfileDir != "" {
		if o.data != nil {
			return nil, errors.New("--cpuprofile runs raftkv in-process, which cannot join a cluster as the data scenarios need; drop one of them")
		}
		if o.raftkvBin != "" {
			return nil, fmt.Errorf("--cpuprofile runs raftkv in-process, so --raftkv-bin %s would be ignored; give one of them", o.raftkvBin)
		}
		if o.timing.duration < time.Second {
			return nil, fmt.Errorf("--cpuprofile needs --duration of at least 1s, not %v", o.timing.duration)
		}
	}
	return o, nil
}

func runBench(args []string) int {
	opts, err := parseOptions(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "raftkv-bench-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	var cleanupOnce sync.Once
	cleanup := func() {
		cleanupOnce.Do(func() {
			children.killAll()
			removeCreatedCgroups()
			if opts.keepData {
				fmt.Fprintf(os.Stderr, "bench: data dirs and member logs kept in %s\n", tmp)
			} else {
				os.RemoveAll(tmp)
			}
		})
	}
	defer cleanup()
	defer func() {
		// A panic on this goroutine still stops the members and removes the data
		// (members also die with the harness through Pdeathsig, whichever goroutine panics).
		if r := recover(); r != nil {
			cleanup()
			panic(r)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "\nbench: %v: stopping the members (again to kill them at once)\n", sig)
		cancel()
		// The run unwinds and cleans up on its own; if it does not within 15s, or a second
		// signal comes, kill everything here.
		select {
		case <-sigs:
		case <-time.After(15 * time.Second):
		}
		cleanup()
		os.Exit(130)
	}()

	if err := benchMain(ctx, opts, tmp); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted")
			return 130
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func benchMain(ctx context.Context, opts *options, tmp string) error {
	started := time.Now()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find this program's executable to start etcd members: %w", err)
	}
	commands := map[string]memberCommand{"etcd": {path: self, args: []string{"etcd-member"}}}
	rep := &report{
		Started: started.Format(time.RFC3339), Quick: opts.quick, Rounds: opts.rounds,
		WarmupSeconds: opts.timing.warmup.Seconds(), DurationSeconds: opts.timing.duration.Seconds(),
		Machine: machineInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvgAtStart: loadAverage()},
	}
	switch {
	case opts.cpuProfileDir != "":
		if err := os.MkdirAll(opts.cpuProfileDir, 0o755); err != nil {
			return err
		}
		commands["raftkv"] = memberCommand{path: self, args: []string{"raftkv-member"}}
		rep.Machine.RaftkvServer = "in-process in the bench binary (profiling)"
	case opts.raftkvBin != "":
		commands["raftkv"] = memberCommand{path: opts.raftkvBin}
		rep.Machine.RaftkvServer = "binary " + opts.raftkvBin
	default:
		bin, err := buildRaftkv(ctx, tmp)
		if err != nil {
			return err
		}
		commands["raftkv"] = memberCommand{path: bin}
		rep.Machine.RaftkvServer = "binary built from ../cmd/raftkv"
	}

	if slices.Contains(opts.systems, floorSystem) {
		bin, err := buildFloor(ctx, tmp)
		if err != nil {
			return err
		}
		commands[floorSystem] = memberCommand{path: bin}
	}

	if opts.rollingRestart {
		return runRollingRestart(ctx, opts, commands, tmp)
	}
	if opts.data != nil {
		return runDataScenarios(ctx, opts, commands, tmp)
	}
	spec := func(system string, round int) clusterSpec {
		extra := workloadClusterArgs(opts.workloads)
		if system == floorSystem {
			extra = floorArgs
		}
		return clusterSpec{
			system:    system,
			command:   commands[system],
			dir:       filepath.Join(tmp, fmt.Sprintf("r%d-%s", round, system)),
			pprofPort: opts.cpuProfileDir != "",
			extraArgs: extra,
		}
	}
	for round := 1; round <= opts.rounds; round++ {
		if opts.interleave {
			runs, err := runInterleaved(ctx, opts, roundOrder(opts.systems, round), spec, round)
			if err != nil {
				return fmt.Errorf("round %d: %w", round, err)
			}
			rep.Runs = append(rep.Runs, runs...)
			continue
		}
		for _, system := range roundOrder(opts.systems, round) {
			run, err := runSystem(ctx, opts, spec(system, round), round)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, system, err)
			}
			rep.Runs = append(rep.Runs, run)
		}
	}

	rep.Machine.LoadAvgAtEnd = loadAverage()
	rep.WallSeconds = math.Round(time.Since(started).Seconds()*10) / 10
	rep.summarize(opts.workloads)
	fmt.Print("\n" + formatTable(rep))
	fmt.Printf("wall time %.0fs\n", rep.WallSeconds)
	if opts.jsonPath != "" {
		out, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(opts.jsonPath, append(out, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing --json %s: %w", opts.jsonPath, err)
		}
		fmt.Printf("results written to %s\n", opts.jsonPath)
	}
	return nil
}

// buildRaftkv builds ../cmd/raftkv into dir through the replace directive in go.mod.
func buildRaftkv(ctx context.Context, dir string) (string, error) {
	bin, err := buildPackage(ctx, dir, "raftkv/cmd/raftkv", "raftkv")
	if err != nil {
		return "", fmt.Errorf("%w\nrun from the bench directory, or give --raftkv-bin", err)
	}
	return bin, nil
}

// buildPackage builds the program pkg into dir/name, from this module's source
// directory when it can be found (so that "go run ." works from anywhere), else from
// the working directory.
func buildPackage(ctx context.Context, dir, pkg, name string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	if _, file, _, ok := runtime.Caller(0); ok {
		if _, err := os.Stat(filepath.Join(filepath.Dir(file), "go.mod")); err == nil {
			cmd.Dir = filepath.Dir(file)
		}
	}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "building %s ... ", pkg)
	if output, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintln(os.Stderr)
		return "", fmt.Errorf("go build %s (in %q): %v\n%s", pkg, cmd.Dir, err, output)
	}
	fmt.Fprintf(os.Stderr, "%.1fs\n", time.Since(start).Seconds())
	return out, nil
}

// roundOrder is the order the systems run in round: as listed in odd rounds,
// reversed in even ones. Whichever system runs second in a round has done better
// on this machine (two builds of raftkv, each second in turn: get-lin 5-20% more
// requests per second and fewer CPU µs per request as the second), so a fixed
// order favours one system in every round; with an even number of rounds each
// runs second as often as the other. An interleaved round (runInterleaved) orders
// the systems for its i-th workload as roundOrder does round i+1.
func roundOrder[T any](systems []T, round int) []T {
	if round%2 == 1 {
		return systems
	}
	r := slices.Clone(systems)
	slices.Reverse(r)
	return r
}

// runSystem starts one cluster, runs every selected workload against it, and stops it.
func runSystem(ctx context.Context, opts *options, spec clusterSpec, round int) (*systemRun, error) {
	s, err := startSession(ctx, opts, spec, round)
	if err != nil {
		return nil, err
	}
	defer s.stop(ctx)
	for _, w := range opts.workloads {
		if err := s.runWorkload(ctx, w); err != nil {
			return nil, err
		}
	}
	return s.finish(ctx), nil
}

// runInterleaved starts a cluster of every system in systems, runs each selected
// workload on all of them in turn, the order reversed from one workload to the
// next, and stops them: each workload's figures for the systems are seconds apart.
// The clusters not being measured idle meanwhile (heartbeats only).
func runInterleaved(ctx context.Context, opts *options, systems []string, spec func(string, int) clusterSpec, round int) ([]*systemRun, error) {
	sessions := make([]*session, 0, len(systems))
	defer func() {
		for _, s := range sessions {
			s.stop(ctx)
		}
	}()
	for _, system := range systems {
		s, err := startSession(ctx, opts, spec(system, round), round)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", system, err)
		}
		sessions = append(sessions, s)
	}
	for i, w := range opts.workloads {
		// The first workload in the round's order, the next reversed, and so on:
		// no system is always measured right after another's load.
		for _, s := range roundOrder(sessions, i+1) {
			othersBefore, start := othersCPUSeconds(sessions, s), time.Now()
			if err := s.runWorkload(ctx, w); err != nil {
				return nil, fmt.Errorf("%s: %w", s.spec.system, err)
			}
			// What the idle clusters took of the machine meanwhile (background
			// flushes and compactions after their own last workload, heartbeats):
			// CPU taken from the one being measured.
			wr := s.run.Workloads[len(s.run.Workloads)-1]
			wr.IdleClustersCPUShare = round3((othersCPUSeconds(sessions, s) - othersBefore) / time.Since(start).Seconds())
		}
	}
	runs := make([]*systemRun, 0, len(sessions))
	for _, s := range sessions {
		runs = append(runs, s.finish(ctx))
	}
	return runs, nil
}

// othersCPUSeconds sums the CPU seconds used so far by the members of every session
// but s (a member that cannot be read counts 0).
func othersCPUSeconds(sessions []*session, s *session) float64 {
	var total float64
	for _, o := range sessions {
		if o == s {
			continue
		}
		for _, m := range o.c.members {
			if p, err := readProc(m.cmd.Process.Pid); err == nil {
				total += p.cpuSeconds()
			}
		}
	}
	return total
}

// session is one system's cluster through a round: started and preloaded, then
// measured one workload at a time.
type session struct {
	opts        *options
	spec        clusterSpec
	round       int
	c           *cluster
	run         *systemRun
	cpuByMember map[string]float64
	last        []procSample
}

// startSession starts spec's cluster, waits for a leader and preloads the read keys.
func startSession(ctx context.Context, opts *options, spec clusterSpec, round int) (*session, error) {
	fmt.Fprintf(os.Stderr, "round %d/%d %s: starting 3 members ... ", round, opts.rounds, spec.system)
	start := time.Now()
	c, err := startCluster(ctx, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr)
		return nil, err
	}
	s := &session{opts: opts, spec: spec, round: round, c: c, cpuByMember: map[string]float64{},
		run: &systemRun{Round: round, System: spec.system, StartSeconds: math.Round(time.Since(start).Seconds()*100) / 100}}
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err == nil {
		fmt.Fprintf(os.Stderr, "ready in %.1fs, leader %s\n", s.run.StartSeconds, leader.name)
		if err = preload(ctx, leader.endpoint(), readKeySpace); err != nil {
			err = fmt.Errorf("preloading %d keys: %w", readKeySpace, err)
		}
	}
	if err != nil {
		s.stop(ctx)
		return nil, err
	}
	return s, nil
}

// stop stops the session's cluster and, unless --keep-data, removes its data.
func (s *session) stop(ctx context.Context) {
	// An interrupted run kills at once; a finished one lets members shut down.
	grace := 5 * time.Second
	if ctx.Err() != nil {
		grace = 0
	}
	stopStart := time.Now()
	s.c.stop(grace)
	fmt.Fprintf(os.Stderr, "  %s stopped in %.1fs\n", s.spec.system, time.Since(stopStart).Seconds())
	if !s.opts.keepData {
		os.RemoveAll(s.spec.dir) // a full run writes hundreds of MiB per cluster
	}
}

// runWorkload measures w on the session's cluster and adds it to the session's run.
func (s *session) runWorkload(ctx context.Context, w workload) error {
	c := s.c
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	var loaded *dataLoad
	if w.op == opBigMixed {
		if loaded, err = loadBigMeasured(ctx, c, leader, w.keySpace); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		fmt.Fprintf(os.Stderr, "  %-14s loaded %d keys in %.1fs (%.0f keys/s, members' CPU %.0f µs/key, rss %.1f MiB)\n", w.name,
			w.keySpace, loaded.Seconds, float64(w.keySpace)/loaded.Seconds, loaded.CPUMicrosPerKey, loaded.PeakRSSMiB)
	}
	wr, samples, err := runWorkload(ctx, s.opts, c, w, leader, s.round)
	if err != nil {
		return fmt.Errorf("%s: %w", w.name, err)
	}
	wr.DataLoad = loaded
	s.run.Workloads = append(s.run.Workloads, wr)
	for _, m := range wr.Members {
		s.cpuByMember[m.Name] += m.CPUSeconds
	}
	s.last = samples
	label := w.name
	if s.opts.interleave {
		label = s.spec.system + " " + w.name
	}
	fmt.Fprintf(os.Stderr, "  %-14s %8.0f req/s  p50 %-7s p99 %-7s cpu %5.2fs  rss %5.1f MiB",
		label, wr.RequestsPerSec, formatLatency(wr.P50Ms), formatLatency(wr.P99Ms), wr.CPUSeconds, wr.PeakRSSMiB)
	if wr.Errors > 0 {
		fmt.Fprintf(os.Stderr, "  %d errors, first: %s", wr.Errors, wr.FirstError)
	}
	if wr.LeaderChanged {
		fmt.Fprintf(os.Stderr, "  (leader changed)")
	}
	fmt.Fprintln(os.Stderr)
	return nil
}

// finish returns the session's run with its members' totals, leader first, then
// by name, so that per-member columns line up across rounds.
func (s *session) finish(ctx context.Context) *systemRun {
	finalLeader, _ := s.c.leader(ctx)
	for i, m := range s.c.members {
		if s.last == nil {
			break
		}
		total := memberTotal{Name: m.name, IsLeader: m == finalLeader, CPUSeconds: round2(s.cpuByMember[m.name]),
			LifetimeCPUSeconds: round2(s.last[i].cpuSeconds()), PeakRSSMiB: round2(kibToMiB(s.last[i].peakRSSKiB))}
		if total.IsLeader {
			s.run.Members = append([]memberTotal{total}, s.run.Members...)
		} else {
			s.run.Members = append(s.run.Members, total)
		}
	}
	return s.run
}

// runWorkload runs w against the leader and samples every member's CPU and memory at
// the measured window's start and end. It returns the end samples too.
func runWorkload(ctx context.Context, opts *options, c *cluster, w workload, leader *member, round int) (*workloadRun, []procSample, error) {
	var before, after []procSample
	var genBefore, genAfter procSample
	var sampleErr error
	var profiles sync.WaitGroup
	var profilePaths []string
	hooks := windowHooks{
		atStart: func() {
			genBefore, _ = readProc(os.Getpid())
			before, sampleErr = c.sample()
			if opts.cpuProfileDir == "" {
				return
			}
			for _, m := range c.members {
				path := profilePath(opts.cpuProfileDir, round, c.spec.system, w.name, m, leader, "cpu")
				profilePaths = append(profilePaths, path)
				seconds := max(int(math.Round(opts.timing.duration.Seconds())), 1)
				profiles.Go(func() {
					url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", m.pprofAddr, seconds)
					if err := fetchProfile(ctx, url, path); err != nil {
						fmt.Fprintf(os.Stderr, "bench: CPU profile of %s %s: %v\n", c.spec.system, m.name, err)
					}
				})
			}
		},
		atEnd: func() {
			genAfter, _ = readProc(os.Getpid())
			if sampleErr == nil {
				after, sampleErr = c.sample()
			}
			if opts.cpuProfileDir == "" {
				return
			}
			// The heap as the window closes, for the RSS column.
			for _, m := range c.members {
				path := profilePath(opts.cpuProfileDir, round, c.spec.system, w.name, m, leader, "heap")
				profilePaths = append(profilePaths, path)
				profiles.Go(func() {
					if err := fetchProfile(ctx, "http://"+m.pprofAddr+"/debug/pprof/heap", path); err != nil {
						fmt.Fprintf(os.Stderr, "bench: heap profile of %s %s: %v\n", c.spec.system, m.name, err)
					}
				})
			}
		},
	}
	endpoint := leader.endpoint()
	if f := c.notLeader(leader); w.viaFollower && f != nil {
		endpoint = f.endpoint()
	}
	res, err := runLoad(ctx, w, endpoint, opts.timing, hooks)
	profiles.Wait()
	if err != nil {
		return nil, nil, err
	}
	if err := c.checkAlive(); err != nil {
		return nil, nil, err
	}
	if sampleErr != nil {
		return nil, nil, fmt.Errorf("reading /proc: %w", sampleErr)
	}
	if before == nil || after == nil {
		return nil, nil, errors.New("the measured window's /proc samples are missing")
	}
	h := res.hist
	wr := &workloadRun{
		Workload: w.name, Requests: res.requests, Errors: res.errors, FirstError: res.firstError,
		WindowSeconds:  res.window.Seconds(),
		RequestsPerSec: round2(float64(res.requests) / res.window.Seconds()),
		P50Ms:          round3(ms(h.Percentile(50))), P90Ms: round3(ms(h.Percentile(90))),
		P99Ms: round3(ms(h.Percentile(99))), P999Ms: round3(ms(h.Percentile(99.9))),
		MaxMs: round3(ms(h.Max())), MeanMs: round3(ms(h.Mean())),
		Leader:   leader.name,
		Profiles: profilePaths,
	}
	if now, err := c.leader(ctx); err != nil || now != leader {
		wr.LeaderChanged = true
	}
	var cpu float64
	var switches uint64
	for i, m := range c.members {
		// A thread that exited in the window takes its count with it: never below 0.
		switches += after[i].switches - min(before[i].switches, after[i].switches)
		usage := memberUsage{
			Name: m.name, IsLeader: m == leader,
			CPUSeconds: round2(after[i].cpuSeconds() - before[i].cpuSeconds()),
			PeakRSSMiB: round2(kibToMiB(after[i].peakRSSKiB)),
		}
		wr.Members = append(wr.Members, usage)
		cpu += usage.CPUSeconds
		wr.PeakRSSMiB = max(wr.PeakRSSMiB, usage.PeakRSSMiB)
	}
	wr.CPUSeconds = round2(cpu)
	if res.requests > 0 {
		wr.CPUMicrosPerRequest = round2(cpu * 1e6 / float64(res.requests))
		wr.SwitchesPerRequest = round2(float64(switches) / float64(res.requests))
		// The load generator is this process (members in it too with --cpuprofile).
		wr.LoadGenMicrosPerRequest = round2((genAfter.cpuSeconds() - genBefore.cpuSeconds()) * 1e6 / float64(res.requests))
	}
	return wr, after, nil
}

// profilePath names a profile file: r1-raftkv-put-100c-m2-leader.cpu.pprof.
func profilePath(dir string, round int, system, workload string, m, leader *member, kind string) string {
	role := ""
	if m == leader {
		role = "-leader"
	}
	return filepath.Join(dir, fmt.Sprintf("r%d-%s-%s-%s%s.%s.pprof", round, system, workload, m.name, role, kind))
}

// fetchProfile saves the profile that url serves to path.
func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
