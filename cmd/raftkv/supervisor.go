package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// Restart policy: a member that exits is started again after firstRestartDelay; one
// that exits again within flappingRun of its start waits twice as long each time, up
// to maxRestartDelay, so that a member that cannot start (a bad flag after "--", a
// data dir it refuses) does not spin. A member that exits with exitRemoved (it was
// removed from the cluster) is left down. One that exits with exitBadArgs refused
// its command line, environment or config file, which every restart would give it
// again: the supervisor stops the cluster and exits, saying which member and why.
const (
	firstRestartDelay = 2 * time.Second
	maxRestartDelay   = 30 * time.Second
	flappingRun       = 10 * time.Second
	// stopGrace is how long a member has to stop after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// readyWait bounds the wait for the first leader after start.
	readyWait = 60 * time.Second
)

// supervisor runs the members of "raftkv cluster" as child processes. Its event loop
// owns every member's state; each child has one goroutine that waits for it and
// reports its exit on exits.
//
// No member outlives the supervisor. The members run in their own process group,
// so that a Ctrl-C reaches the supervisor only and it stops them in order; and a
// supervisor that dies without stopping them (SIGKILL, a crash) is noticed by each
// member twice over: Linux sends it SIGTERM as its parent-death signal (see
// spawner), and the pipe whose read end it holds reaches EOF (watchSupervisor).
// Under "go run", which dies of SIGTERM without passing it on, the supervisor
// watches its own parent and stops the members when the go command is gone.
type supervisor struct {
	out       io.Writer // the supervisor's own messages
	memberLog io.Writer // the members' output, each line prefixed with its name
	noRestart bool
	members   []*supervisedMember

	exits    chan memberExit
	restarts chan *supervisedMember
	done     chan struct{} // closed when run returns: pending restarts give up
	spawner  *spawner
	// pipeWrite is the write end of the pipe every member watches; it is closed
	// only by this process's exit.
	pipeRead, pipeWrite *os.File
}

type supervisedMember struct {
	localMember
	dataDir, pidFile string
	args             []string

	cmd          *exec.Cmd // nil while the member is down
	startedAt    time.Time
	restartDelay time.Duration
}

type memberExit struct {
	m     *supervisedMember
	cmd   *exec.Cmd
	state *os.ProcessState
	// lastError is the member's last "Error: ..." line, its reason for exiting
	// with a status of its own.
	lastError string
}

func newSupervisor(a *app, opts clusterOptions) *supervisor {
	out := &lockedWriter{w: a.stdout}
	return &supervisor{
		out:       out,
		memberLog: &lockedWriter{w: a.stderr},
		noRestart: opts.noRestart,
		restarts:  make(chan *supervisedMember),
		done:      make(chan struct{}),
	}
}

func (s *supervisor) run() error {
	defer close(s.done)
	s.exits = make(chan memberExit, len(s.members))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	parentGone, goPID := watchGoRunParent(s.done)

	var err error
	s.pipeRead, s.pipeWrite, err = os.Pipe()
	if err != nil {
		return fmt.Errorf("creating the pipe the members watch: %v", err)
	}
	defer s.pipeRead.Close()
	defer s.pipeWrite.Close()
	s.spawner = newSpawner()
	defer s.spawner.stop()

	for _, m := range s.members {
		if err := s.start(m); err != nil {
			s.stopAll()
			return fmt.Errorf("starting %s: %v", m.Name, err)
		}
	}
	s.printBanner()
	ctx, cancel := context.WithCancel(context.Background())
	var readyDone sync.WaitGroup
	readyDone.Go(func() { s.announceLeader(ctx) })
	defer readyDone.Wait()
	defer cancel()

	for {
		select {
		case sig := <-sigs:
			s.printf("raftkv cluster: %s; stopping %d members", sig, s.running())
			s.stopAll()
			return nil
		case <-parentGone:
			s.printf("raftkv cluster: go run (pid %d) exited, and it does not pass SIGTERM on; stopping %d members", goPID, s.running())
			s.stopAll()
			return nil
		case e := <-s.exits:
			if e.m.cmd != e.cmd {
				continue
			}
			ranFor := time.Since(e.m.startedAt)
			e.m.cmd = nil
			os.Remove(e.m.pidFile)
			how := fmt.Sprintf("member %s (pid %d) exited: %s", e.m.Name, e.state.Pid(), e.state)
			if e.state.ExitCode() == exitRemoved {
				// Restarted on its data dir it would only stop again: it is no member.
				s.printf("%s; it was removed from the cluster, so it is left down", how)
				if s.running() == 0 {
					return errors.New("every member is down")
				}
				continue
			}
			// A usage error is status 2 with an "Error: " line; a Go panic or fatal
			// runtime error is status 2 too, without one, and is restarted below.
			if e.state.ExitCode() == exitBadArgs && e.lastError != "" {
				why := strings.TrimPrefix(e.lastError, "Error: ")
				s.printf("%s: it refused its command line, and a restart would give it the same; stopping %d members", how, s.running())
				s.stopAll()
				return fmt.Errorf("member %s refused its command line: %s; fix the flags after \"--\", "+
					"the RAFTKV_ or ETCD_ environment variables or the --config-file", e.m.Name, why)
			}
			if s.noRestart {
				s.printf("%s; left down (--no-restart)", how)
				if s.running() == 0 {
					return errors.New("every member is down")
				}
				continue
			}
			if ranFor >= flappingRun {
				e.m.restartDelay = firstRestartDelay
			}
			s.printf("%s; restarting in %v", how, e.m.restartDelay)
			s.restartLater(e.m)
		case m := <-s.restarts:
			if err := s.start(m); err != nil {
				s.printf("member %s: restart failed: %v; trying again in %v", m.Name, err, m.restartDelay)
				s.restartLater(m)
				continue
			}
			s.printf("member %s restarted (pid %d)", m.Name, m.cmd.Process.Pid)
		}
	}
}

// restartLater sends m to the loop after its restart delay, and doubles the delay
// for the next time (reset by a run longer than flappingRun).
func (s *supervisor) restartLater(m *supervisedMember) {
	delay := m.restartDelay
	m.restartDelay = min(2*m.restartDelay, maxRestartDelay)
	go func() {
		select {
		case <-time.After(delay):
			select {
			case s.restarts <- m:
			case <-s.done:
			}
		case <-s.done:
		}
	}()
}

// start launches m and a goroutine that reports its exit.
func (s *supervisor) start(m *supervisedMember) error {
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Args[0] = "raftkv"
	cmd.Args = append(cmd.Args, "--"+supervisorFDFlag, "3")
	cmd.ExtraFiles = []*os.File{s.pipeRead} // fd 3 in the member
	w := &prefixWriter{prefix: m.Name + " | ", w: s.memberLog}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = memberProcAttr()
	if err := s.spawner.start(cmd); err != nil {
		return err
	}
	m.cmd, m.startedAt = cmd, time.Now()
	if err := os.WriteFile(m.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		s.printf("member %s: writing %s: %v", m.Name, m.pidFile, err)
	}
	go func() {
		_ = cmd.Wait()
		// Wait returns once the member's output is copied: w is written no more.
		s.exits <- memberExit{m: m, cmd: cmd, state: cmd.ProcessState, lastError: w.lastError}
	}()
	return nil
}

func (s *supervisor) running() int {
	n := 0
	for _, m := range s.members {
		if m.cmd != nil {
			n++
		}
	}
	return n
}

// stopAll stops the running members one after another: SIGTERM, then a wait for the
// member to exit. One at a time, because a leader that stops hands leadership to a
// follower whose stream is up (Server.handOffTarget): stopped together, the leader
// tried to hand off to members that were stopping too, and waited three election
// timeouts before it gave up; in turn, each leader hands off to a member still
// running and the last stops alone, and every member stops at once. The whole stop
// has stopGrace: then every member still running, signalled yet or not, is killed
// (each is crash-safe: what it acknowledged is in its log).
func (s *supervisor) stopAll() {
	grace := time.After(stopGrace)
	for _, m := range s.members {
		if m.cmd == nil {
			continue
		}
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		for m.cmd != nil {
			select {
			case e := <-s.exits:
				if e.m.cmd == e.cmd {
					e.m.cmd = nil
					os.Remove(e.m.pidFile)
				}
			case <-grace:
				s.killRunning()
				grace = nil
			}
		}
	}
	s.printf("raftkv cluster: every member stopped")
}

// killRunning kills every member still running, saying so.
func (s *supervisor) killRunning() {
	for _, m := range s.members {
		if m.cmd != nil {
			s.printf("member %s (pid %d) still runs %v into the stop; killing it", m.Name, m.cmd.Process.Pid, stopGrace)
			_ = m.cmd.Process.Kill()
		}
	}
}

func (s *supervisor) printf(format string, args ...any) {
	fmt.Fprintf(s.out, format+"\n", args...)
}

func (s *supervisor) endpoints() []string {
	var eps []string
	for _, m := range s.members {
		eps = append(eps, m.endpoint())
	}
	return eps
}

func (s *supervisor) printBanner() {
	var b strings.Builder
	fmt.Fprintf(&b, "raftkv cluster: %d members; Ctrl-C or SIGTERM (kill %d) stops them all\n", len(s.members), os.Getpid())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tCLIENT URL\tPEER URL\tDATA DIR")
	for _, m := range s.members {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", m.Name, m.cmd.Process.Pid, m.ClientURL, m.PeerURL, m.dataDir)
	}
	tw.Flush()
	eps := strings.Join(s.endpoints(), ",")
	flag := ""
	if !slices.Equal(s.endpoints(), defaultEndpoints) {
		flag = " --endpoints " + eps
	}
	ctlFlags := ""
	if s.members[0].isTLS() {
		// Self-signed certificates (--tls): encrypted, nothing to verify them by.
		flag += " --insecure-skip-tls-verify"
		ctlFlags = " --insecure-transport=false --insecure-skip-tls-verify"
	}
	fmt.Fprintf(&b, "try:  raftkv%s watch foo      # in a second terminal: each change of foo as it happens\n", flag)
	for _, try := range []string{"put foo bar", "get foo", "status"} {
		fmt.Fprintf(&b, "      raftkv%s %s\n", flag, try)
	}
	fmt.Fprintf(&b, "      etcdctl%s --endpoints=%s endpoint status -w table\n", ctlFlags, eps)
	fmt.Fprintf(&b, "each member's pid is also in %s/<name>.pid", filepath.Dir(s.members[0].pidFile))
	s.printf("%s", b.String())
}

// announceLeader waits for the first leader and names it with its pid, the process
// to stop to see a failover.
func (s *supervisor) announceLeader(ctx context.Context) {
	c := &clientFlags{dialTimeout: time.Second, maxRecvBytes: defaultMaxRecvBytes}
	// With --tls the members' certificates are self-signed: nothing to verify them by.
	c.tls.insecureSkipVerify = true
	if err := c.tls.begin(); err != nil {
		panic(fmt.Sprintf("raftkv cluster: TLS settings without files failed: %v", err))
	}
	for _, m := range s.members {
		c.tls.secure[m.endpoint()] = m.isTLS()
	}
	deadline := time.Now().Add(readyWait)
	for time.Now().Before(deadline) {
		for _, m := range s.members {
			if ctx.Err() != nil {
				return
			}
			callCtx, cancel := context.WithTimeout(ctx, time.Second)
			conn, err := c.dial(callCtx, m.endpoint())
			if err == nil {
				st, err := pb.NewMaintenanceClient(conn).Status(callCtx, &pb.StatusRequest{})
				if err == nil && st.Leader != 0 && st.Leader == st.Header.GetMemberId() && isMember(callCtx, conn, st.Leader, m.PeerURL) {
					conn.Close()
					cancel()
					s.printf("raftkv cluster: ready; the leader is %s (pid %s)", m.Name, readPid(m.pidFile))
					return
				}
				conn.Close()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	s.printf("raftkv cluster: no leader after %v; see the members' logs above", readyWait)
}

// isMember reports whether the member that answers on conn, id, is the one this
// cluster runs on peerURL, and not another process on its client port.
func isMember(ctx context.Context, conn *grpc.ClientConn, id uint64, peerURL string) bool {
	list, err := pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{})
	if err != nil {
		return false
	}
	for _, m := range list.Members {
		if m.ID == id {
			return slices.Contains(m.PeerURLs, peerURL)
		}
	}
	return false
}

func readPid(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(data))
}

// lockedWriter serializes writes from the loop, the members' output copiers and
// announceLeader, so that lines do not interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// prefixWriter writes each whole line of a member's output with the member's name
// in front. os/exec calls it from one goroutine at a time (Stdout and Stderr are the
// same writer).
type prefixWriter struct {
	prefix  string
	w       io.Writer
	partial []byte
	// lastError is the last line that starts with "Error: ", as run prints a
	// command's error.
	lastError string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial[:i])
		if bytes.HasPrefix(p.partial[:i], []byte("Error: ")) {
			p.lastError = string(p.partial[:i])
		}
		p.partial = p.partial[i+1:]
	}
}
