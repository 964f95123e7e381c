package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The availability scenarios (--rolling-restart): how long writes stop while an
// operator restarts every member in turn, and while leadership moves. A writer
// puts to one key, one put at a time, through a client of all three endpoints (as
// an application would be configured), each put bounded by writeTimeout. A gap is
// the time between two successive acknowledged puts, so it includes the normal
// latency of a put; the interesting number is the longest.
//
//   - rolling-restart: each member in turn (m1, m2, m3) gets SIGTERM, is started
//     again on its data dir once it has exited, and the next one goes once every
//     member names the same leader again. Both etcd and raftkv hand leadership off on
//     SIGTERM when they lead.
//   - move-leader: Maintenance.MoveLeader from the leader to each follower in turn,
//     three moves, one second apart.

const (
	writeTimeout  = 2 * time.Second
	settleBetween = time.Second
	moves         = 3
)

// gapStats summarizes the acknowledgement times of one scenario.
type gapStats struct {
	Scenario, System string
	Writes, Failed   int
	Errors           []string `json:",omitempty"`
	MaxGapMs         float64
	P99GapMs         float64
	// Restarts counts the restarts of a member that led when it got SIGTERM.
	LeaderRestarts int `json:",omitempty"`
	// CPUMicrosPerWrite is the members' CPU over the phase (restarts included) per
	// acknowledged put; PeakRSSMiB the largest VmHWM of any member process in it.
	CPUMicrosPerWrite float64
	PeakRSSMiB        float64
}

// phaseUsage adds up the members' CPU over a phase in which members restart, and
// keeps the largest VmHWM seen: a member's process is sampled as the phase starts,
// just before it is stopped, and as the phase ends, and a restarted one counts from
// zero (the CPU between its last sample and its exit, a few milliseconds, is lost).
type phaseUsage struct {
	cpuSeconds float64
	peakKiB    uint64
	base       map[*member]procSample
}

func startUsage(c *cluster) *phaseUsage {
	u := &phaseUsage{base: map[*member]procSample{}}
	for _, m := range c.members {
		u.base[m], _ = readProc(m.cmd.Process.Pid)
	}
	return u
}

// add samples m's process and adds its CPU since the last sample.
func (u *phaseUsage) add(m *member) {
	s, err := readProc(m.cmd.Process.Pid)
	if err != nil {
		return
	}
	u.cpuSeconds += s.cpuSeconds() - u.base[m].cpuSeconds()
	u.peakKiB = max(u.peakKiB, s.peakRSSKiB)
	u.base[m] = s
}

// restarted: m runs as a new process, whose CPU starts at zero.
func (u *phaseUsage) restarted(m *member) { u.base[m] = procSample{} }

// finish samples every member and fills st's CPU and memory.
func (u *phaseUsage) finish(c *cluster, st *gapStats) {
	for _, m := range c.members {
		u.add(m)
	}
	if st.Writes > 0 {
		st.CPUMicrosPerWrite = round2(u.cpuSeconds * 1e6 / float64(st.Writes))
	}
	st.PeakRSSMiB = round2(kibToMiB(u.peakKiB))
}

// writer puts sequentially until stopped and records when each put was acknowledged.
type writer struct {
	mu     sync.Mutex
	acks   []time.Time
	failed int
	// errs are the failed puts' errors, the first few of each phase.
	errs []string
	stop chan struct{}
	done chan struct{}
}

func startWriter(cli *clientv3.Client) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			_, err := cli.Put(ctx, "rolling", fmt.Sprint(i))
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acks = append(w.acks, time.Now())
			} else {
				w.failed++
				if len(w.errs) < 20 {
					w.errs = append(w.errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
				}
			}
			w.mu.Unlock()
			if err != nil {
				time.Sleep(5 * time.Millisecond) // a member refusing at once must not spin
			}
		}
	}()
	return w
}

// mark returns the acks and failures so far, for splitting the run into phases.
func (w *writer) mark() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks), w.failed
}

func (w *writer) finish() {
	close(w.stop)
	<-w.done
}

// stats summarizes the acks from index from (and the failures since failedFrom).
func (w *writer) stats(scenario, system string, from, failedFrom int) gapStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	acks := w.acks[max(from-1, 0):] // the gap into the phase's first ack counts
	var gaps []time.Duration
	for i := 1; i < len(acks); i++ {
		gaps = append(gaps, acks[i].Sub(acks[i-1]))
	}
	slices.Sort(gaps)
	st := gapStats{Scenario: scenario, System: system, Writes: len(w.acks) - from, Failed: w.failed - failedFrom}
	st.Errors = slices.Clone(w.errs[min(failedFrom, len(w.errs)):min(w.failed, len(w.errs))])
	if len(gaps) > 0 {
		st.MaxGapMs = ms(gaps[len(gaps)-1])
		st.P99GapMs = ms(gaps[min(len(gaps)-1, len(gaps)*99/100)])
	}
	return st
}

// restart starts m again on its data dir, with its command line, appending to its log.
func (c *cluster) restart(m *member) error {
	return c.restartCommand(m, c.spec.command.path, m.args)
}

// restartCommand starts m again with program path and args (m's command line wrapped
// to cap its memory, say), appending to its log.
func (c *cluster) restartCommand(m *member, path string, args []string) error {
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restarting %s member %s: %w", c.spec.system, m.name, err)
	}
	children.add(cmd.Process)
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
	return nil
}

// terminate sends m SIGTERM and waits up to grace for it to exit, then kills it;
// with no grace it kills m at once.
func terminate(m *member, grace time.Duration) {
	if grace > 0 {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-m.exited:
	case <-time.After(grace):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	children.remove(m.cmd.Process)
}

// runAvailability runs both scenarios against one system's cluster.
func runAvailability(ctx context.Context, spec clusterSpec) ([]gapStats, error) {
	fmt.Fprintf(os.Stderr, "%s: starting 3 members ... ", spec.system)
	c, err := startCluster(ctx, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr)
		return nil, err
	}
	defer c.stop(5 * time.Second)
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.endpoint())
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	if _, err := c.waitLeader(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "ready")
	w := startWriter(cli)
	defer w.finish()
	time.Sleep(settleBetween)

	// Rolling restart.
	from, failedFrom := w.mark()
	usage := startUsage(c)
	leaderRestarts := 0
	for _, m := range c.members {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		lead, err := c.waitLeader(ctx, 30*time.Second)
		if err != nil {
			return nil, err
		}
		if lead == m {
			leaderRestarts++
		}
		started := time.Now()
		usage.add(m)
		terminate(m, 10*time.Second)
		stopped := time.Since(started)
		if err := c.restart(m); err != nil {
			return nil, err
		}
		usage.restarted(m)
		if _, err := c.waitLeader(ctx, 30*time.Second); err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "  %s: restarted %s (leader: %v) in %.1fs (stop %.1fs)\n", spec.system, m.name, lead == m,
			time.Since(started).Seconds(), stopped.Seconds())
		time.Sleep(settleBetween)
	}
	rolling := w.stats("rolling-restart", spec.system, from, failedFrom)
	rolling.LeaderRestarts = leaderRestarts
	usage.finish(c, &rolling)

	// MoveLeader.
	from, failedFrom = w.mark()
	usage = startUsage(c)
	for i := range moves {
		lead, err := c.waitLeader(ctx, 30*time.Second)
		if err != nil {
			return nil, err
		}
		var followers []*member
		for _, m := range c.members {
			if m != lead {
				followers = append(followers, m)
			}
		}
		target := followers[i%len(followers)]
		st, err := target.status.Status(ctx, target.endpoint())
		if err != nil {
			return nil, err
		}
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = lead.status.Maintenance.MoveLeader(mctx, st.Header.MemberId)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("move leader from %s to %s: %w", lead.name, target.name, err)
		}
		time.Sleep(settleBetween)
	}
	move := w.stats("move-leader", spec.system, from, failedFrom)
	usage.finish(c, &move)
	return []gapStats{rolling, move}, nil
}

// runRollingRestart is --rolling-restart: both scenarios on each system, then the
// table.
func runRollingRestart(ctx context.Context, opts *options, commands map[string]memberCommand, tmp string) error {
	var all []gapStats
	for _, system := range opts.systems {
		res, err := runAvailability(ctx, clusterSpec{system: system, command: commands[system],
			dir: filepath.Join(tmp, "avail-"+system)})
		if err != nil {
			return fmt.Errorf("%s: %w", system, err)
		}
		all = append(all, res...)
	}
	fmt.Print("\n" + formatGapTable(all))
	return nil
}

func formatGapTable(rows []gapStats) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tsystem\tacked writes\tfailed writes\tmax gap\tp99 gap\tleader restarts\tµs/write\tRSS MiB")
	slices.SortStableFunc(rows, func(a, b gapStats) int { return strings.Compare(a.Scenario, b.Scenario) })
	for _, r := range rows {
		lr := "-"
		if r.Scenario == "rolling-restart" {
			lr = fmt.Sprint(r.LeaderRestarts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f ms\t%.1f ms\t%s\t%.0f\t%.1f\n", r.Scenario, r.System, r.Writes, r.Failed, r.MaxGapMs, r.P99GapMs, lr,
			r.CPUMicrosPerWrite, r.PeakRSSMiB)
	}
	tw.Flush()
	b.WriteString("µs/write: the members' CPU over the phase (restarts included) per acknowledged put;\n" +
		"RSS MiB: the largest peak resident set (VmHWM) of any member process in the phase\n")
	for _, r := range rows {
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %s %s failed put at %s\n", r.Scenario, r.System, e)
		}
	}
	return b.String()
}
