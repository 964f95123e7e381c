package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// supervisedCluster is "raftkv cluster" run by the test, on free ports (--base-port
// 0), with the members the banner lists.
type supervisedCluster struct {
	t       *testing.T
	cmd     *exec.Cmd
	dir     string
	stdout  *syncBuffer // the supervisor's messages
	logPath string      // the members' output
	exited  chan struct{}
	members []bannerMember
}

type bannerMember struct {
	name, endpoint string
	pid            int
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine of os/exec and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startSupervisedCluster runs "raftkv cluster --base-port 0" with extra flags and
// waits for its banner and its first leader. With viaGoRun it runs "go run
// ./cmd/raftkv cluster" in the main module, as the README's first command does.
func startSupervisedCluster(t *testing.T, viaGoRun bool, args ...string) *supervisedCluster {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc to see which processes run")
	}
	c := &supervisedCluster{t: t, dir: t.TempDir(), stdout: &syncBuffer{}, exited: make(chan struct{})}
	c.logPath = filepath.Join(c.dir, "members.log")
	logFile, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"cluster", "--base-port", "0", "--dir", filepath.Join(c.dir, "data")}, args...)
	if viaGoRun {
		goTool, err := exec.LookPath("go")
		if err != nil {
			t.Fatalf("the go command is not on PATH: %v", err)
		}
		c.cmd = exec.Command(goTool, append([]string{"run", "./cmd/raftkv"}, full...)...)
		c.cmd.Dir = ".." // the main module
	} else {
		c.cmd = exec.Command(raftkvBinary(t), full...)
	}
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, logFile
	// Under go run the supervisor holds the stdout pipe too: Wait returns when it has
	// exited as well, or this long after go run did.
	c.cmd.WaitDelay = 30 * time.Second
	// If the test binary dies without its cleanups, the supervisor dies with it (and
	// the members with the supervisor, which is what these tests check).
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	t.Cleanup(c.cleanup)
	// go run may compile for a while on a loaded machine.
	c.waitOutput(3*time.Minute, regexp.MustCompile(`raftkv cluster: ready; the leader is`))
	c.members = parseBanner(t, c.stdout.String())
	return c
}

var bannerRow = regexp.MustCompile(`(?m)^(infra\d+)\s+(\d+)\s+https?://(\S+)\s`)

func parseBanner(t *testing.T, out string) []bannerMember {
	t.Helper()
	var members []bannerMember
	for _, m := range bannerRow.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[2])
		members = append(members, bannerMember{name: m[1], pid: pid, endpoint: m[3]})
	}
	if len(members) == 0 {
		t.Fatalf("no members in the banner:\n%s", out)
	}
	return members
}

// cleanup kills whatever the test left running: the supervisor, and any member
// still alive (a failed test must not leave processes behind).
func (c *supervisedCluster) cleanup() {
	_ = c.cmd.Process.Kill()
	<-c.exited
	for _, pid := range c.allPids() {
		if processRunning(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if c.t.Failed() {
		c.t.Logf("supervisor output:\n%s\nlast lines of the members' output:\n%s", c.stdout.String(), tail(c.logPath, 30))
	}
}

// allPids returns every pid the supervisor has printed: its own, and each member's
// in the banner and at each restart.
func (c *supervisedCluster) allPids() []int {
	var pids []int
	for _, m := range regexp.MustCompile(`(?m)^infra\d+\s+(\d+)\s|restarted \(pid (\d+)\)|SIGTERM \(kill (\d+)\)`).FindAllStringSubmatch(c.stdout.String(), -1) {
		pid, _ := strconv.Atoi(m[1] + m[2] + m[3])
		pids = append(pids, pid)
	}
	return pids
}

// waitOutput waits until the supervisor has printed a match of re, and returns it.
func (c *supervisedCluster) waitOutput(timeout time.Duration, re *regexp.Regexp) []string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(c.stdout.String()); m != nil {
			return m
		}
		select {
		case <-c.exited:
			c.t.Fatalf("raftkv cluster exited (%v) before printing %q", c.cmd.ProcessState, re)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("raftkv cluster did not print %q within %v", re, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *supervisedCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.endpoint)
	}
	return eps
}

// member returns the banner's member of the given name.
func (c *supervisedCluster) member(name string) bannerMember {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("no member %s in the banner", name)
	return bannerMember{}
}

// leaderName asks the members which of them leads.
func (c *supervisedCluster) leaderName(cli *clientv3.Client) string {
	c.t.Helper()
	var name string
	err := eventually(20*time.Second, 50*time.Millisecond, func() error {
		for _, m := range c.members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, m.endpoint)
			cancel()
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				name = m.name
				return nil
			}
		}
		return fmt.Errorf("no member says it leads")
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return name
}

// waitProcessesGone waits until none of pids runs.
func waitProcessesGone(t *testing.T, pids []int, timeout time.Duration, what string) {
	t.Helper()
	err := eventually(timeout, 50*time.Millisecond, func() error {
		for _, pid := range pids {
			if processRunning(pid) {
				return fmt.Errorf("pid %d still runs", pid)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// processRunning reports whether pid is a live process (a zombie, exited but not
// yet reaped by whoever inherited it, is not).
func processRunning(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && data[i+2] != 'Z' && data[i+2] != 'X'
}

// putWithin retries a put until it succeeds or timeout passes, each attempt short,
// as a client riding out a failover would.
func putWithin(cli *clientv3.Client, key, value string, timeout time.Duration) error {
	return eventually(timeout, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, key, value)
		return err
	})
}

// TestClusterRestartsAKilledMember: SIGKILL the leader under "raftkv cluster"; the
// supervisor reports it with its pid and the signal, the survivors keep taking
// writes, and the member comes back with a new pid and catches up.
func TestClusterRestartsAKilledMember(t *testing.T) {
	t.Parallel()
	c := startSupervisedCluster(t, false)
	cli := newClient(t, c.endpoints()...)
	if err := putWithin(cli, "before", "1", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	victim := c.member(c.leaderName(cli))
	if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitOutput(10*time.Second, regexp.MustCompile(
		fmt.Sprintf(`member %s \(pid %d\) exited: signal: killed; restarting in 2s`, victim.name, victim.pid)))

	killed := time.Now()
	if err := putWithin(cli, "after", "2", 20*time.Second); err != nil {
		t.Fatalf("no write succeeded within 20s of killing the leader %s: %v", victim.name, err)
	}
	t.Logf("first write after killing the leader %s: %v", victim.name, time.Since(killed).Round(time.Millisecond))

	m := c.waitOutput(15*time.Second, regexp.MustCompile(fmt.Sprintf(`member %s restarted \(pid (\d+)\)`, victim.name)))
	newPid, _ := strconv.Atoi(m[1])
	if newPid == victim.pid || !processRunning(newPid) {
		t.Fatalf("%s restarted as pid %d (was %d); running: %v", victim.name, newPid, victim.pid, processRunning(newPid))
	}
	if pidFile, _ := os.ReadFile(filepath.Join(c.dir, "data", victim.name+".pid")); strings.TrimSpace(string(pidFile)) != m[1] {
		t.Errorf("%s.pid holds %q, want the new pid %s", victim.name, pidFile, m[1])
	}
	back := newClient(t, victim.endpoint)
	err := eventually(20*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := back.Get(ctx, "after", clientv3.WithSerializable())
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
			return fmt.Errorf("it has %v", resp.Kvs)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the restarted %s does not serve the write made while it was down: %v", victim.name, err)
	}
}

// TestClusterOfFiveWithoutRestart: --members 5 starts five members on distinct
// ports; with --no-restart, two killed members stay down and the other three keep
// serving.
func TestClusterOfFiveWithoutRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("the 5-member cluster is skipped with -short")
	}
	c := startSupervisedCluster(t, false, "--members", "5", "--no-restart")
	if len(c.members) != 5 || c.members[4].name != "infra5" {
		t.Fatalf("banner members: %+v", c.members)
	}
	cli := newClient(t, c.endpoints()...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	list, err := cli.MemberList(ctx)
	cancel()
	if err != nil || len(list.Members) != 5 {
		t.Fatalf("member list: %v, %v", list, err)
	}
	for _, victim := range c.members[3:] {
		if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.waitOutput(10*time.Second, regexp.MustCompile(
			fmt.Sprintf(`member %s \(pid %d\) exited: signal: killed; left down \(--no-restart\)`, victim.name, victim.pid)))
	}
	if err := putWithin(cli, "three-of-five", "ok", 20*time.Second); err != nil {
		t.Fatalf("3 of 5 members take no write: %v", err)
	}
	time.Sleep(3 * time.Second) // past the restart delay a restart would have had
	if strings.Contains(c.stdout.String(), "restarted") {
		t.Fatalf("a member was restarted despite --no-restart:\n%s", c.stdout.String())
	}
}

// TestClusterStopsEveryMemberOnSignal: SIGTERM or SIGINT to the supervisor stops
// every member and the supervisor exits 0.
func TestClusterStopsEveryMemberOnSignal(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			c := startSupervisedCluster(t, false)
			if err := c.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("raftkv cluster still runs 30s after %v", sig)
			}
			if !c.cmd.ProcessState.Success() || !strings.Contains(c.stdout.String(), "raftkv cluster: every member stopped") {
				t.Fatalf("after %v: %v, output:\n%s", sig, c.cmd.ProcessState, c.stdout.String())
			}
			waitProcessesGone(t, c.allPids(), 5*time.Second, "members after the supervisor exited")
		})
	}
}

// TestClusterMembersDieWithTheSupervisor: a supervisor killed with SIGKILL cannot
// stop its members; they stop by themselves (parent-death signal, pipe EOF).
func TestClusterMembersDieWithTheSupervisor(t *testing.T) {
	t.Parallel()
	c := startSupervisedCluster(t, false)
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	waitProcessesGone(t, c.allPids(), 15*time.Second, "members after SIGKILL of the supervisor")
}

// TestClusterUnderGoRunStopsOnSIGTERM: the README's first command run in the
// background and stopped with "kill PID" (SIGTERM to go run, which dies without
// passing it on) leaves neither the supervisor nor a member running.
func TestClusterUnderGoRunStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("compiles raftkv with go run; skipped with -short")
	}
	c := startSupervisedCluster(t, true)
	m := regexp.MustCompile(`SIGTERM \(kill (\d+)\)`).FindStringSubmatch(c.stdout.String())
	if m == nil {
		t.Fatalf("the banner does not give the supervisor's pid:\n%s", c.stdout.String())
	}
	supervisor, _ := strconv.Atoi(m[1])
	if supervisor == c.cmd.Process.Pid {
		t.Fatal("the supervisor's pid is go run's; want go run's child")
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	waitProcessesGone(t, c.allPids(), 15*time.Second, "supervisor and members after SIGTERM to go run")
	if !strings.Contains(c.stdout.String(), "raftkv cluster: every member stopped") {
		t.Errorf("the supervisor did not stop the members in order:\n%s", c.stdout.String())
	}
}
