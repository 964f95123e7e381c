package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// memberCommand says how to start a member: the program and the arguments before the
// member's own flags.
type memberCommand struct {
	path string
	args []string
}

// clusterSpec is one system's cluster.
type clusterSpec struct {
	system    string // "etcd" or "raftkv", for messages and file names
	command   memberCommand
	dir       string // holds each member's data dir and log
	pprofPort bool   // give each member a --pprof-addr
	// extraArgs go to every member after the harness's own flags (the data
	// scenarios' --snapshot-count, say); nil for each system's defaults.
	extraArgs []string
}

// member is one running member process.
type member struct {
	name      string
	clientURL string // http://127.0.0.1:port
	peerURL   string
	pprofAddr string // host:port, or empty
	logPath   string
	args      []string // the member's command line, for a restart
	cmd       *exec.Cmd
	exited    chan struct{} // closed when the process has exited
	status    *clientv3.Client
}

// endpoint is the member's client address as clientv3 takes it.
func (m *member) endpoint() string { return strings.TrimPrefix(m.clientURL, "http://") }

// hasExited reports whether the process is gone.
func (m *member) hasExited() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

type cluster struct {
	spec    clusterSpec
	members []*member
}

// children holds every member process this harness started, so an interrupt can kill
// them wherever the run is.
var children = &processSet{procs: map[int]*os.Process{}}

type processSet struct {
	mu    sync.Mutex
	procs map[int]*os.Process
}

func (s *processSet) add(p *os.Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs[p.Pid] = p
}

func (s *processSet) remove(p *os.Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.procs, p.Pid)
}

// killAll sends SIGKILL to every process still in the set.
func (s *processSet) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, p := range s.procs {
		_ = p.Kill()
		delete(s.procs, pid)
	}
}

// startCluster starts three members and waits until all of them see the same leader.
func startCluster(ctx context.Context, spec clusterSpec) (*cluster, error) {
	ports, err := freePorts(9)
	if err != nil {
		return nil, err
	}
	c := &cluster{spec: spec}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i+1, ports[3*i+1]))
	}
	for i := range 3 {
		name := fmt.Sprintf("m%d", i+1)
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[3*i])
		peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1])
		m := &member{name: name, clientURL: clientURL, peerURL: peerURL, logPath: filepath.Join(spec.dir, name+".log"), exited: make(chan struct{})}
		args := append(append([]string(nil), spec.command.args...),
			"--name", name,
			"--data-dir", filepath.Join(spec.dir, name),
			"--listen-client-urls", clientURL,
			"--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL,
			"--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", "bench-"+spec.system,
		)
		if spec.system == "etcd" {
			// etcd-member takes a subset of the flags: drop the ones it derives.
			args = dropFlags(args, "--advertise-client-urls", "--initial-advertise-peer-urls")
		}
		args = append(args, spec.extraArgs...)
		if spec.pprofPort {
			m.pprofAddr = fmt.Sprintf("127.0.0.1:%d", ports[3*i+2])
			args = append(args, "--pprof-addr", m.pprofAddr)
		}
		m.args = args
		if err := c.start(m, args); err != nil {
			c.stop(0)
			return nil, err
		}
	}
	if err := c.waitReady(ctx, 60*time.Second); err != nil {
		c.stop(0)
		return nil, err
	}
	return c, nil
}

// dropFlags removes each named flag and its value from args.
func dropFlags(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		dropped := false
		for _, n := range names {
			if args[i] == n {
				dropped = true
				i++ // and its value
				break
			}
		}
		if !dropped {
			out = append(out, args[i])
		}
	}
	return out
}

func (c *cluster) start(m *member, args []string) error {
	if err := os.MkdirAll(c.spec.dir, 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(c.spec.command.path, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so Ctrl-C reaches the harness, which stops the members
		// in order; and SIGKILL if the harness dies without cleaning up (a panic in a
		// goroutine, a kill -9), so no member outlives a run.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s member %s (%s): %w", c.spec.system, m.name, c.spec.command.path, err)
	}
	children.add(cmd.Process)
	m.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(m.exited)
	}()
	c.members = append(c.members, m)
	return nil
}

// waitReady waits until every member answers Status and all name the same leader.
func (c *cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, m := range c.members {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.endpoint()}, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("%s member %s: client: %w", c.spec.system, m.name, err)
		}
		m.status = cli
	}
	var lastErr error
	for time.Now().Before(deadline) {
		if err := c.checkAlive(); err != nil {
			return err
		}
		_, lastErr = c.leader(ctx)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s cluster not ready after %v: %v; member logs are in %s", c.spec.system, timeout, lastErr, c.spec.dir)
}

// checkAlive returns an error with the member's last log lines if a member has exited.
func (c *cluster) checkAlive() error {
	for _, m := range c.members {
		if m.hasExited() {
			return fmt.Errorf("%s member %s exited (%v); last lines of %s:\n%s",
				c.spec.system, m.name, m.cmd.ProcessState, m.logPath, logTail(m.logPath, 15))
		}
	}
	return nil
}

// leader asks every member for its status and returns the member that all of them
// name as leader, the one that says it leads (Leader == Header.MemberId).
func (c *cluster) leader(ctx context.Context) (*member, error) {
	var leaderID uint64
	var leader *member
	for _, m := range c.members {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := m.status.Status(sctx, m.endpoint())
		cancel()
		if err != nil {
			return nil, fmt.Errorf("member %s: status: %w", m.name, err)
		}
		if st.Leader == 0 {
			return nil, fmt.Errorf("member %s knows no leader yet", m.name)
		}
		if leaderID != 0 && st.Leader != leaderID {
			return nil, fmt.Errorf("members disagree on the leader (%x, %x)", leaderID, st.Leader)
		}
		leaderID = st.Leader
		if st.Header.MemberId == st.Leader {
			leader = m
		}
	}
	if leader == nil {
		return nil, fmt.Errorf("no member says it is the leader %x", leaderID)
	}
	return leader, nil
}

// notLeader returns the first member that is not leader, nil if none.
func (c *cluster) notLeader(leader *member) *member {
	for _, m := range c.members {
		if m != leader {
			return m
		}
	}
	return nil
}

// waitLeader retries leader for up to timeout, for a cluster that may be electing.
func (c *cluster) waitLeader(ctx context.Context, timeout time.Duration) (*member, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := c.checkAlive(); err != nil {
			return nil, err
		}
		m, err := c.leader(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return m, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample reads /proc for every member, in member order.
func (c *cluster) sample() ([]procSample, error) {
	var out []procSample
	for _, m := range c.members {
		s, err := readProc(m.cmd.Process.Pid)
		if err != nil {
			if m.hasExited() {
				return nil, c.checkAlive()
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// stop shuts the members down: SIGTERM, up to grace for each to exit, then SIGKILL.
// Members go one at a time, the current leader first: an etcd leader hands its
// leadership over on SIGTERM and waits for a follower to take it, which takes seconds
// if that follower is stopping too. The data is thrown away after a run, so a short
// grace costs nothing; with no grace every member is killed at once.
func (c *cluster) stop(grace time.Duration) {
	stopOne := func(m *member) { terminate(m, grace) }
	remaining := slices.Clone(c.members)
	for len(remaining) > 0 {
		next := 0
		if grace > 0 {
			if i := c.leaderAmong(remaining); i >= 0 {
				next = i
			}
		}
		stopOne(remaining[next])
		remaining = slices.Delete(remaining, next, next+1)
	}
	for _, m := range c.members {
		if m.status != nil {
			m.status.Close()
		}
	}
}

// leaderAmong returns the index in ms of the member that says it leads, or -1.
func (c *cluster) leaderAmong(ms []*member) int {
	for i, m := range ms {
		if m.status == nil || m.hasExited() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		st, err := m.status.Status(ctx, m.endpoint())
		cancel()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return i
		}
	}
	return -1
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read the log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + string(bytes.Join(lines, []byte("\n  ")))
}

var errInterrupted = errors.New("interrupted")
