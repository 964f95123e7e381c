package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"raftkv/internal/testport"
)

// procCluster is a raftkv cluster of child processes running the built binary on
// loopback ports. Every member's output goes to its own log file, which the test
// prints the end of when it fails. The cluster kills whatever still runs when the
// test ends, failed or not.
type procCluster struct {
	t       *testing.T
	bin     string
	members []*procMember
}

type procMember struct {
	name      string
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	args      []string
	// env, if set, is added to the process's environment (ETCD_ variables).
	env []string
	// client talks to this member only; it outlives restarts of the process.
	client *clientv3.Client

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	starts int
}

// startProcCluster starts n members of the raftkv binary with default timings plus
// extraArgs, and waits until every member takes a write.
func startProcCluster(t *testing.T, n int, extraArgs ...string) *procCluster {
	t.Helper()
	return startProcClusterWith(t, n, nil, extraArgs...)
}

// startProcClusterWith is startProcCluster with setup called for each member before
// its flags are made: it may change the member (its data dir) and returns flags for
// it alone.
func startProcClusterWith(t *testing.T, n int, setup func(i int, m *procMember) []string, extraArgs ...string) *procCluster {
	t.Helper()
	c := &procCluster{t: t, bin: raftkvBinary(t)}
	dir := t.TempDir()
	ports := testport.Free(t, 2*n)
	var initial []string
	for i := range n {
		m := &procMember{
			name:      fmt.Sprintf("m%d", i+1),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(dir, m.name)
		m.logPath = filepath.Join(dir, m.name+".log")
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for i, m := range c.members {
		var own []string
		if setup != nil {
			own = setup(i, m)
		}
		m.args = append(append(m.memberArgs(t, initial), extraArgs...), own...)
		m.client = newClient(t, hostPort(m.clientURL))
	}
	t.Cleanup(c.cleanup)
	started := time.Now()
	for _, m := range c.members {
		c.start(m)
	}
	c.waitWritable(c.members, 30*time.Second)
	t.Logf("%d-member cluster took a write through every member %v after starting", n, time.Since(started).Round(time.Millisecond))
	return c
}

func (c *procCluster) cleanup() {
	for _, m := range c.members {
		c.kill(m)
	}
	if c.t.Failed() {
		for _, m := range c.members {
			c.t.Logf("last lines of %s's log (%s):\n%s", m.name, m.logPath, tail(m.logPath, 30))
		}
	}
}

// start launches m's process on its data dir. Its output is appended to its log.
func (c *procCluster) start(m *procMember) {
	c.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		select {
		case <-m.exited:
		default:
			c.t.Fatalf("starting %s: it is already running (pid %d)", m.name, m.cmd.Process.Pid)
		}
	}
	logFile, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	m.starts++
	fmt.Fprintf(logFile, "=== e2e: start #%d of %s at %s\n", m.starts, m.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, m.args...)
	if m.env != nil {
		cmd.Env = append(os.Environ(), m.env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies without running its cleanups, the members die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		c.t.Fatalf("starting %s: %v", m.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
}

// running reports whether m's process is alive.
func (m *procMember) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to m's process, if it runs, and waits for it to exit.
func (c *procCluster) kill(m *procMember) {
	c.signalAndWait(m, syscall.SIGKILL, 10*time.Second)
}

// stop sends SIGTERM and requires a clean exit within 10s; it kills the process
// (and fails the test) otherwise.
func (c *procCluster) stop(m *procMember) {
	c.t.Helper()
	if !c.signalAndWait(m, syscall.SIGTERM, 10*time.Second) {
		c.t.Errorf("%s did not exit within 10s of SIGTERM; killed it", m.name)
		c.kill(m)
		return
	}
	m.mu.Lock()
	state := m.cmd.ProcessState
	m.mu.Unlock()
	if state != nil && !state.Success() {
		c.t.Errorf("%s exited with %v after SIGTERM; want status 0", m.name, state)
	}
}

func (c *procCluster) signalAndWait(m *procMember, sig syscall.Signal, timeout time.Duration) bool {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-exited:
		return true
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// waitWritable waits until a put through each of members succeeds.
func (c *procCluster) waitWritable(members []*procMember, timeout time.Duration) {
	c.t.Helper()
	for _, m := range members {
		err := eventually(timeout, 100*time.Millisecond, func() error {
			if !m.running() {
				return fmt.Errorf("process exited")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := m.client.Put(ctx, "ready/"+m.name, "1")
			return err
		})
		if err != nil {
			c.t.Fatalf("%s did not take a write within %v: %v", m.name, timeout, err)
		}
	}
}

// leader returns the member that a running member reports as leader, and that
// member agrees it leads (Maintenance.Status: Leader == Header.MemberId).
func (c *procCluster) leader(timeout time.Duration) *procMember {
	c.t.Helper()
	var lead *procMember
	err := eventually(timeout, 50*time.Millisecond, func() error {
		for _, m := range c.members {
			if !m.running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := m.client.Status(ctx, hostPort(m.clientURL))
			cancel()
			if err != nil {
				continue
			}
			if st.Leader != 0 && st.Leader == st.Header.MemberId {
				lead = m
				return nil
			}
		}
		return errors.New("no running member says it is the leader")
	})
	if err != nil {
		c.t.Fatalf("finding the leader: %v", err)
	}
	return lead
}

// others returns the members other than m.
func (c *procCluster) others(m *procMember) []*procMember {
	var out []*procMember
	for _, o := range c.members {
		if o != m {
			out = append(out, o)
		}
	}
	return out
}

func (c *procCluster) endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, hostPort(m.clientURL))
	}
	return out
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// memberArgs are the flags that start m as a member of the cluster initial lists.
func (m *procMember) memberArgs(t *testing.T, initial []string) []string {
	return []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-token", "e2e-" + t.Name(),
	}
}
