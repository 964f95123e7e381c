package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The data scenarios (--data-scenarios): what a member holding the big data set
// (bigdata.go) costs when it restarts, when a new member joins, and when its memory
// is capped below the data's size. For each system: start 3 members, load the data
// set through the leader, then run the chosen scenarios in this order, each on a
// follower (never the leader, so that no step waits for an election):
//
//   - restart: SIGTERM a follower, start it again on its data dir, and time from the
//     new process's start to the first serializable read it serves of the last loaded
//     key, with the value loaded, at a revision no older than before the stop. Then
//     the same with SIGKILL.
//   - catch-up: add a member through the Cluster API (MemberAdd, a voter), start it on
//     an empty data dir with --initial-cluster-state existing, and time until it serves
//     a serializable read of the last written key at the revision of that write. The
//     log must have been compacted for the leader to send a snapshot rather than the
//     whole log, so the harness writes small puts until the cluster has passed
//     twice --snapshot-count entries: etcd takes its snapshots at every multiple of
//     it, a raftkv member its first one earlier by its rank among the members
//     times --snapshot-count over their number (so that members do not compact at
//     once) and the later ones every --snapshot-count entries after that, and each
//     compacts its log to snapshot-catchup-entries, set to half of it, behind the
//     snapshot. A first snapshot less than that past the log's start truncates
//     nothing (the highest ranked of three takes it at a third of the count), so
//     one count is not enough: by twice the count every member has truncated.
//     The member is removed again afterwards.
//   - memory-cap: stop a follower and start it again on its data with its memory
//     capped (memcap.go), then read every key of the data set back from it
//     (serializable, so it answers from its own store) and compare every value. A
//     member killed by the OOM killer is a result, not a hang: every step is bounded
//     by --step-timeout and watches for the process's exit.

var dataScenarioNames = []string{"restart", "catch-up", "memory-cap"}

type dataOptions struct {
	scenarios      map[string]bool
	keys           int
	snapshotCount  uint64
	memoryCapBytes int64
	stepTimeout    time.Duration
	// coldRestart drops a restarting member's data files from the page cache first
	// (--cold-restart): a start after a reboot rather than a process restart.
	coldRestart bool
}

func parseDataOptions(list string, keys int, snapshotCount uint64, memoryCap string, stepTimeout time.Duration) (*dataOptions, error) {
	d := &dataOptions{scenarios: map[string]bool{}, keys: keys, snapshotCount: snapshotCount, stepTimeout: stepTimeout}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		switch {
		case s == "all":
			for _, n := range dataScenarioNames {
				d.scenarios[n] = true
			}
		case slices.Contains(dataScenarioNames, s):
			d.scenarios[s] = true
		default:
			return nil, fmt.Errorf("--data-scenarios: unknown scenario %q; use all or some of %s", s, strings.Join(dataScenarioNames, ","))
		}
	}
	if snapshotCount < 2 {
		return nil, fmt.Errorf("--snapshot-count %d: give at least 2 (etcd's catch-up entries are half of it)", snapshotCount)
	}
	if stepTimeout <= 0 {
		return nil, fmt.Errorf("--step-timeout %v: give a positive duration", stepTimeout)
	}
	d.memoryCapBytes = max(int64(keys)*bigValueBytes/2, 64<<20)
	if memoryCap != "" {
		b, err := parseDataSize(memoryCap)
		if err != nil {
			return nil, fmt.Errorf("--memory-cap: %w", err)
		}
		d.memoryCapBytes = b
	}
	return d, nil
}

// dataRun is one system's results.
type dataRun struct {
	System    string           `json:"system"`
	Load      *dataLoad        `json:"load"`
	Restarts  []*restartResult `json:"restarts,omitempty"`
	CatchUp   *restartResult   `json:"catch_up,omitempty"`
	MemoryCap *memCapResult    `json:"memory_cap,omitempty"`
	// Error is what stopped the run before its end, if anything did.
	Error string `json:"error,omitempty"`
}

// restartResult is one member start that is timed to its first served read.
type restartResult struct {
	Kind   string `json:"kind"` // SIGTERM, SIGKILL, catch-up
	Member string `json:"member"`
	// StopSeconds is from the signal to the process's exit (restarts).
	StopSeconds float64 `json:"stop_s,omitempty"`
	// FirstReadSeconds is from the process's start to its first served read.
	FirstReadSeconds float64 `json:"first_read_s"`
	// SinceAddSeconds is from MemberAdd to the first served read (catch-up).
	SinceAddSeconds float64 `json:"since_member_add_s,omitempty"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"` // the member's VmHWM up to then
	// CPUSeconds is the member's CPU from its start to its first served read: what
	// the restart (or the catch-up) cost it, less noisy than the time on a shared
	// machine.
	CPUSeconds float64 `json:"cpu_s"`
	Error      string  `json:"error,omitempty"`
}

// cpuSoFar is m's CPU seconds since its start, or 0 if it is gone.
func cpuSoFar(m *member) float64 {
	s, err := readProc(m.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	return round2(s.cpuSeconds())
}

type memCapResult struct {
	Method   string  `json:"method"`
	CapMiB   float64 `json:"cap_mib"`
	Member   string  `json:"member"`
	Survived bool    `json:"survived"` // alive at the end, and every key read back intact
	Outcome  string  `json:"outcome"`
	// FirstReadSeconds: process start to first served read; VerifySeconds: reading
	// every key back.
	FirstReadSeconds float64 `json:"first_read_s,omitempty"`
	VerifySeconds    float64 `json:"verify_s,omitempty"`
	KeysOK           int     `json:"keys_ok"`
	KeysWrong        int     `json:"keys_wrong"`
	KeysMissing      int     `json:"keys_missing"`
	PeakRSSMiB       float64 `json:"peak_rss_mib"`    // the member's VmHWM, last seen
	CgroupPeakMiB    float64 `json:"cgroup_peak_mib"` // page cache included; -1 unknown
	// CgroupPeakAnonMiB is the group's anonymous memory at its highest, sampled every
	// 100 ms (no page cache); -1 unknown.
	CgroupPeakAnonMiB float64 `json:"cgroup_peak_anon_mib"`
	OOMKills          int     `json:"oom_kills"`         // -1 unknown
	Skipped           string  `json:"skipped,omitempty"` // why the scenario did not run
}

// runDataScenarios is --data-scenarios: each system in turn, then the table.
func runDataScenarios(ctx context.Context, opts *options, commands map[string]memberCommand, tmp string) error {
	d := opts.data
	var capper *memoryCapper
	capWhy := ""
	if d.scenarios["memory-cap"] {
		capper, capWhy = detectMemoryCapper()
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var runs []*dataRun
	var firstErr error
	for _, system := range opts.systems {
		extra := []string{"--snapshot-count", strconv.FormatUint(d.snapshotCount, 10)}
		extra = append(extra, bigQuotaArgs...)
		// Both take etcd's flag (raftkv since it keeps catch-up entries too).
		extra = append(extra, "--snapshot-catchup-entries", strconv.FormatUint(d.snapshotCount/2, 10))
		spec := clusterSpec{system: system, command: commands[system], dir: filepath.Join(tmp, "data-"+system), extraArgs: extra}
		run, err := runDataSystem(ctx, d, spec, self, capper, capWhy)
		runs = append(runs, run)
		if err != nil {
			run.Error = err.Error()
			fmt.Fprintf(os.Stderr, "%s: %v\n", system, err)
			if ctx.Err() != nil {
				return err
			}
			firstErr = cmp.Or(firstErr, fmt.Errorf("%s: %w", system, err))
		}
		if !opts.keepData {
			os.RemoveAll(spec.dir)
		}
	}
	fmt.Print("\n" + formatDataTable(d, capper, runs))
	// A step that failed let the others run, but the run as a whole did not pass: a
	// member that does not serve after a restart or a catch-up is a bug. (A member
	// killed under the memory cap is a result, not a failure.)
	for _, run := range runs {
		for _, r := range append(slices.Clone(run.Restarts), run.CatchUp) {
			if r != nil && r.Error != "" {
				firstErr = cmp.Or(firstErr, fmt.Errorf("%s: %s of %s failed (see the notes under the table)", run.System, r.Kind, r.Member))
			}
		}
	}
	if opts.jsonPath != "" {
		out, err := json.MarshalIndent(struct {
			Keys          int        `json:"keys"`
			ValueBytes    int        `json:"value_bytes"`
			SnapshotCount uint64     `json:"snapshot_count"`
			Runs          []*dataRun `json:"runs"`
		}{d.keys, bigValueBytes, d.snapshotCount, runs}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(opts.jsonPath, append(out, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing --json %s: %w", opts.jsonPath, err)
		}
		fmt.Printf("results written to %s\n", opts.jsonPath)
	}
	return firstErr
}

// runDataSystem runs the scenarios on one system's cluster. The run it returns holds
// whatever was measured, even with an error.
func runDataSystem(ctx context.Context, d *dataOptions, spec clusterSpec, self string, capper *memoryCapper, capWhy string) (*dataRun, error) {
	run := &dataRun{System: spec.system}
	fmt.Fprintf(os.Stderr, "%s: starting 3 members ... ", spec.system)
	c, err := startCluster(ctx, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr)
		return run, err
	}
	defer func() {
		grace := 5 * time.Second
		if ctx.Err() != nil {
			grace = 0
		}
		c.stop(grace)
	}()
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return run, err
	}
	fmt.Fprintf(os.Stderr, "ready; loading %d keys of 1 KiB\n", d.keys)
	if run.Load, err = loadBigMeasured(ctx, c, leader, d.keys); err != nil {
		return run, err
	}
	fmt.Fprintf(os.Stderr, "  loaded in %.1fs (members' CPU %.0f µs/key, largest member %.1f MiB)\n",
		run.Load.Seconds, run.Load.CPUMicrosPerKey, run.Load.PeakRSSMiB)
	if d.scenarios["catch-up"] {
		if err := fillToRevision(ctx, c, int64(2*d.snapshotCount+d.snapshotCount/10+10)); err != nil {
			return run, err
		}
	}
	if d.scenarios["restart"] {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			r, err := restartFollower(ctx, c, sig, d)
			if r != nil && err != nil && r.Error == "" {
				r.Error = err.Error()
			}
			if r != nil {
				run.Restarts = append(run.Restarts, r)
				fmt.Fprintf(os.Stderr, "  restart (%s) of %s: first read %.2fs after start, rss %.1f MiB %s\n", r.Kind, r.Member, r.FirstReadSeconds, r.PeakRSSMiB, r.Error)
			}
			if err := afterStep(ctx, c, r != nil, err); err != nil {
				return run, err
			}
		}
	}
	if d.scenarios["catch-up"] {
		r, err := catchUpNewMember(ctx, c, d.keys, d.stepTimeout)
		if r != nil && err != nil && r.Error == "" {
			r.Error = err.Error()
		}
		if r != nil {
			run.CatchUp = r
			fmt.Fprintf(os.Stderr, "  catch-up of a new member: first read %.2fs after start (%.2fs after MemberAdd), rss %.1f MiB %s\n",
				r.FirstReadSeconds, r.SinceAddSeconds, r.PeakRSSMiB, r.Error)
		}
		if err := afterStep(ctx, c, r != nil, err); err != nil {
			return run, err
		}
	}
	if d.scenarios["memory-cap"] {
		if capper == nil {
			run.MemoryCap = &memCapResult{CapMiB: round2(float64(d.memoryCapBytes) / (1 << 20)), Skipped: "no way to cap memory here: " + capWhy}
			fmt.Fprintf(os.Stderr, "  memory-cap skipped: %s\n", run.MemoryCap.Skipped)
		} else {
			r, err := memoryCappedRestart(ctx, c, capper, self, d)
			run.MemoryCap = r
			if r != nil {
				fmt.Fprintf(os.Stderr, "  memory-cap %.0f MiB: %s\n", r.CapMiB, r.Outcome)
			}
			if err != nil {
				return run, err
			}
		}
	}
	return run, nil
}

// afterStep decides whether the scenarios go on after a step that ended with err. A
// step that failed once its member was started (measured is true: it did not serve in
// time, or it exited) is a result, recorded in the step's Error: the next scenario
// still runs, once every member runs again (an exited one is started again on its
// data) and they agree on a leader. A failure before that is the harness's or the
// cluster's, and ends the system's run.
func afterStep(ctx context.Context, c *cluster, measured bool, err error) error {
	if err == nil {
		return nil
	}
	if !measured || ctx.Err() != nil {
		return err
	}
	for _, m := range c.members {
		if m.hasExited() {
			if rerr := c.restart(m); rerr != nil {
				return fmt.Errorf("%w; then starting %s again: %w", err, m.name, rerr)
			}
		}
		// The step may have ended before it connected to its member again.
		if rerr := m.reconnectStatus(); rerr != nil {
			return fmt.Errorf("%w; then connecting to %s again: %w", err, m.name, rerr)
		}
	}
	if _, lerr := c.waitLeader(ctx, time.Minute); lerr != nil {
		return fmt.Errorf("%w; then the cluster did not recover: %w", err, lerr)
	}
	fmt.Fprintf(os.Stderr, "  (going on with the next scenario)\n")
	return nil
}

// fillToRevision puts small values to one key, 50 at a time, until the cluster's
// revision reaches target, so that both systems have passed --snapshot-count entries
// (one entry per revision, plus a few of their own) and compacted their logs.
func fillToRevision(ctx context.Context, c *cluster, target int64) error {
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	cli := leader.status
	gctx, cancel := context.WithTimeout(ctx, requestTimeout)
	resp, err := cli.Get(gctx, "filler")
	cancel()
	if err != nil {
		return fmt.Errorf("reading the revision before the filler puts: %w", err)
	}
	missing := target - resp.Header.Revision
	if missing <= 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "  %d small puts to pass --snapshot-count entries\n", missing)
	errs := make(chan error, 50)
	next := make(chan struct{})
	go func() {
		defer close(next)
		for range missing {
			select {
			case next <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range 50 {
		go func() {
			var err error
			for range next {
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				_, e := cli.Put(rctx, "filler", "x")
				cancel()
				err = cmp.Or(err, e)
			}
			errs <- err
		}()
	}
	for range 50 {
		err = cmp.Or(err, <-errs)
	}
	if err != nil {
		return fmt.Errorf("filler puts: %w", err)
	}
	return ctx.Err()
}

// follower returns a member that does not lead.
func (c *cluster) follower(ctx context.Context) (*member, error) {
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if m := c.notLeader(leader); m != nil {
		return m, nil
	}
	return nil, errors.New("the cluster has no follower")
}

// lastKeyRevision writes the last key of the data set again (with its value) through
// the leader and returns the revision of that write: a member that serves the key at
// that revision or later has everything written so far.
func lastKeyRevision(ctx context.Context, c *cluster, keys int) (int64, error) {
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := leader.status.Put(rctx, bigKey(keys-1), string(bigValue(keys-1)))
	if err != nil {
		return 0, fmt.Errorf("writing the last key: %w", err)
	}
	return resp.Header.Revision, nil
}

// stopMember stops m with sig (SIGTERM: up to 30s before SIGKILL) and returns how long
// it took to exit.
func stopMember(m *member, sig syscall.Signal) time.Duration {
	start := time.Now()
	if sig == syscall.SIGKILL {
		terminate(m, 0)
	} else {
		terminate(m, 30*time.Second)
	}
	return time.Since(start)
}

// reconnectStatus gives m a new status client after a restart, so that the old one's
// reconnection backoff cannot delay finding the leader.
func (m *member) reconnectStatus() error {
	if m.status != nil {
		m.status.Close()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.endpoint()}, DialTimeout: time.Second, Logger: zap.NewNop()})
	m.status = cli
	return err
}

// restartFollower stops a follower with sig, starts it again, and times its first
// served read.
func restartFollower(ctx context.Context, c *cluster, sig syscall.Signal, d *dataOptions) (*restartResult, error) {
	keys, timeout := d.keys, d.stepTimeout
	m, err := c.follower(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := lastKeyRevision(ctx, c, keys)
	if err != nil {
		return nil, err
	}
	name := "SIGTERM"
	if sig == syscall.SIGKILL {
		name = "SIGKILL"
	}
	r := &restartResult{Kind: name, Member: m.name}
	r.StopSeconds = round3(stopMember(m, sig).Seconds())
	if d.coldRestart {
		if _, err := evictFromPageCache(filepath.Join(c.spec.dir, m.name)); err != nil {
			return r, fmt.Errorf("dropping %s's data from the page cache (--cold-restart): %w", m.name, err)
		}
	}
	if err := c.restart(m); err != nil {
		return r, err
	}
	started := time.Now()
	rss := watchRSS(m)
	at, readErr := waitFirstRead(ctx, m, bigKey(keys-1), bigValue(keys-1), rev, timeout)
	r.CPUSeconds = cpuSoFar(m)
	r.PeakRSSMiB = rss.stop(m)
	if readErr != nil {
		r.Error = readErr.Error()
		if errors.Is(readErr, errMemberExited) {
			r.Error = fmt.Sprintf("exited (%v) before serving a read; last lines of %s:\n%s", m.cmd.ProcessState, m.logPath, logTail(m.logPath, 10))
		}
		return r, fmt.Errorf("restart after %s of %s: %s", name, m.name, r.Error)
	}
	r.FirstReadSeconds = round3(at.Sub(started).Seconds())
	if err := m.reconnectStatus(); err != nil {
		return r, err
	}
	_, err = c.waitLeader(ctx, 30*time.Second)
	return r, err
}

// catchUpNewMember adds a fourth member, times its first read at the current
// revision, and removes it again.
func catchUpNewMember(ctx context.Context, c *cluster, keys int, timeout time.Duration) (*restartResult, error) {
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("m%d", len(c.members)+1)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	rev, err := lastKeyRevision(ctx, c, keys)
	if err != nil {
		return nil, err
	}
	r := &restartResult{Kind: "catch-up", Member: name}
	addResp, added, err := addMember(ctx, leader.status, peerURL)
	if err != nil {
		return r, err
	}
	var initial []string
	for _, mem := range addResp.Members {
		n := mem.Name
		if mem.ID == addResp.Member.ID {
			n = name
		}
		if n != "" && len(mem.PeerURLs) > 0 {
			initial = append(initial, n+"="+mem.PeerURLs[0])
		}
	}
	m := &member{name: name, clientURL: clientURL, peerURL: peerURL, logPath: filepath.Join(c.spec.dir, name+".log"), exited: make(chan struct{})}
	args := append(append([]string(nil), c.spec.command.args...),
		"--name", name,
		"--data-dir", filepath.Join(c.spec.dir, name),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", "existing",
		"--initial-cluster-token", "bench-"+c.spec.system,
	)
	if c.spec.system == "etcd" {
		args = dropFlags(args, "--advertise-client-urls", "--initial-advertise-peer-urls")
	}
	m.args = append(args, c.spec.extraArgs...)
	if err := c.start(m, m.args); err != nil {
		return r, err
	}
	started := time.Now()
	if err := m.reconnectStatus(); err != nil {
		return r, err
	}
	rss := watchRSS(m)
	at, readErr := waitFirstRead(ctx, m, bigKey(keys-1), bigValue(keys-1), rev, timeout)
	r.CPUSeconds = cpuSoFar(m)
	r.PeakRSSMiB = rss.stop(m)
	if readErr == nil {
		r.FirstReadSeconds = round3(at.Sub(started).Seconds())
		r.SinceAddSeconds = round3(at.Sub(added).Seconds())
		if line := snapshotReceivedLine[c.spec.system]; !logHas(m.logPath, line) {
			// The leader still had the whole log and sent it: not what this
			// scenario measures.
			readErr = fmt.Errorf("caught up without a snapshot (no %q in %s): the leader's log was not compacted", line, m.logPath)
			r.Error = readErr.Error()
		}
	} else {
		r.Error = readErr.Error()
		if errors.Is(readErr, errMemberExited) {
			r.Error = fmt.Sprintf("exited (%v) before serving a read; last lines of %s:\n%s", m.cmd.ProcessState, m.logPath, logTail(m.logPath, 10))
		}
	}

	// Back to three members, so that the next scenario starts where the others did.
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	_, rmErr := leader.status.MemberRemove(rctx, addResp.Member.ID)
	cancel()
	terminate(m, 10*time.Second)
	m.status.Close()
	c.members = slices.DeleteFunc(c.members, func(x *member) bool { return x == m })
	if readErr != nil {
		return r, fmt.Errorf("new member %s: %s", name, r.Error)
	}
	if rmErr != nil {
		return r, fmt.Errorf("MemberRemove %s: %w", name, rmErr)
	}
	_, err = c.waitLeader(ctx, 30*time.Second)
	return r, err
}

// snapshotReceivedLine is what each system logs when a snapshot from its leader
// has arrived.
var snapshotReceivedLine = map[string]string{
	"etcd":   "receiving database snapshot",
	"raftkv": "snapshot body received",
}

// logHas reports whether the log at path holds s.
func logHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}

// addMember adds a voter with peerURL, trying again for up to 30s while the leader
// refuses with etcd's "unhealthy cluster": etcd's leader adds a member only once every
// member has been connected to it for 5s (its HealthInterval), which a member just
// restarted by the previous scenario has not. It returns when the add succeeded.
func addMember(ctx context.Context, cli *clientv3.Client, peerURL string) (*clientv3.MemberAddResponse, time.Time, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, requestTimeout)
		resp, err := cli.MemberAdd(actx, []string{peerURL})
		cancel()
		if err == nil {
			return resp, time.Now(), nil
		}
		if !strings.Contains(err.Error(), "unhealthy cluster") || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, time.Time{}, fmt.Errorf("MemberAdd %s: %w", peerURL, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// memoryCappedRestart restarts a follower with its memory capped and reads every key
// back from it. A member killed on the way is the result, not an error; an error is
// a harness or cluster failure.
func memoryCappedRestart(ctx context.Context, c *cluster, capper *memoryCapper, self string, d *dataOptions) (*memCapResult, error) {
	m, err := c.follower(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := lastKeyRevision(ctx, c, d.keys)
	if err != nil {
		return nil, err
	}
	r := &memCapResult{Method: capper.String(), CapMiB: round2(float64(d.memoryCapBytes) / (1 << 20)), Member: m.name, OOMKills: -1, CgroupPeakMiB: -1, CgroupPeakAnonMiB: -1}
	g, err := capper.create(c.spec.system+"-"+m.name, d.memoryCapBytes)
	if err != nil {
		return r, err
	}
	defer func() {
		if err := g.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}()
	stopMember(m, syscall.SIGTERM)
	if _, err := evictFromPageCache(filepath.Join(c.spec.dir, m.name)); err != nil {
		return r, fmt.Errorf("dropping %s's data from the page cache before its capped start: %w", m.name, err)
	}
	path, args := g.command(self, c.spec.command.path, m.args)
	if err := c.restartCommand(m, path, args); err != nil {
		return r, err
	}
	started := time.Now()
	rss := watchRSS(m)
	anon := g.watchAnon()
	defer func() { r.CgroupPeakAnonMiB = anon.stop() }()
	// Whatever happens, the member leaves its cgroup before the cgroup goes, and the
	// cluster is stopped next.
	defer terminate(m, 10*time.Second)

	var v verifyResult // what the read-back found, for the outcome of a member killed during it
	killed := func(phase string) {
		_ = rss.stop(m)
		r.CgroupPeakAnonMiB = anon.stop()
		r.OOMKills, r.CgroupPeakMiB = g.oomKills(), g.peakMiB()
		r.Outcome = fmt.Sprintf("died %s (%v, OOM kills in its cgroup: %s) %.1fs after its start", phase, m.cmd.ProcessState, unknownIfNegative(r.OOMKills), time.Since(started).Seconds())
		if phase != "before serving a read" {
			r.Outcome += fmt.Sprintf(" (%d keys intact before%s)", v.ok, v.pageTimes())
		}
	}
	at, err := waitFirstRead(ctx, m, bigKey(d.keys-1), bigValue(d.keys-1), rev, d.stepTimeout)
	switch {
	case errors.Is(err, errMemberExited):
		killed("before serving a read")
		r.PeakRSSMiB = rss.stop(m)
		return r, nil
	case err != nil:
		r.PeakRSSMiB = rss.stop(m)
		r.Outcome = "no read served: " + err.Error()
		return r, nil
	}
	r.FirstReadSeconds = round3(at.Sub(started).Seconds())
	vctx, cancel := context.WithTimeout(ctx, d.stepTimeout)
	var verr error
	v, verr = verifyBig(vctx, m.endpoint(), d.keys)
	r.CgroupPeakAnonMiB = anon.stop()
	cancel()
	r.KeysOK, r.KeysWrong, r.KeysMissing, r.VerifySeconds = v.ok, v.wrong, v.missing, round3(v.duration.Seconds())
	r.PeakRSSMiB = rss.stop(m)
	switch {
	case m.hasExited():
		killed("while the keys were read back")
	case verr != nil:
		r.OOMKills, r.CgroupPeakMiB = g.oomKills(), g.peakMiB()
		r.Outcome = fmt.Sprintf("reading the keys back failed: %v (%d keys intact before%s)", verr, v.ok, v.pageTimes())
	default:
		r.OOMKills, r.CgroupPeakMiB = g.oomKills(), g.peakMiB()
		r.Survived = v.ok == d.keys
		r.Outcome = v.String()
	}
	return r, ctx.Err()
}

func unknownIfNegative(n int) string {
	if n < 0 {
		return "unknown"
	}
	return strconv.Itoa(n)
}
