package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"raftkv/internal/testport"
)

// Helpers of the membership tests (member_*_test.go): a workload that runs through
// every change, with its linearizability and lost-write checks, and members added to
// a procCluster.

// memberWorkload is linClients clients doing get/put/cas on linKeys keys, recorded
// for porcupine (as TestLinearizability's), and a writer of unique keys, each
// acknowledged one recorded, to check that none is lost.
type memberWorkload struct {
	t       *testing.T
	seed    uint64
	clients []*clientv3.Client
	acked   *ackedWrites
	start   time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	history []porcupine.Operation
}

func startMemberWorkload(t *testing.T, endpoints []string) *memberWorkload {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	w := &memberWorkload{t: t, seed: seed, acked: newAckedWrites(), start: time.Now(), stop: make(chan struct{})}
	now := func() int64 { return int64(time.Since(w.start)) }
	for id := range linClients {
		cli := newClient(t, endpoints...)
		w.clients = append(w.clients, cli)
		rng := rand.New(rand.NewPCG(seed, uint64(id)))
		w.wg.Go(func() {
			linClientLoop(cli, id, rng, w.stop, now, 5, 10, func(op porcupine.Operation) {
				w.mu.Lock()
				w.history = append(w.history, op)
				w.mu.Unlock()
			})
		})
	}
	writer := newClient(t, endpoints...)
	w.clients = append(w.clients, writer)
	w.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			_ = w.acked.put(writer, fmt.Sprintf("acked/%06d", i), fmt.Sprint(i), 3*time.Second)
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Cleanup(w.halt)
	return w
}

// setEndpoints points every client at endpoints (the members to use from now on).
func (w *memberWorkload) setEndpoints(endpoints []string) {
	for _, cli := range w.clients {
		cli.SetEndpoints(endpoints...)
	}
}

func (w *memberWorkload) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// finish stops the workload and checks it: the history is linearizable, and m
// (read linearizably) holds every acknowledged write.
func (w *memberWorkload) finish(m *procMember) {
	t := w.t
	t.Helper()
	w.halt()
	counts := map[string]int{}
	for _, op := range w.history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		kind := []string{"get", "put", "cas"}[in.op]
		if out.unknown {
			kind += " unknown"
		}
		counts[kind]++
	}
	acked, failed := w.acked.snapshot()
	t.Logf("workload: %d operations in %v %v; %d unique writes acknowledged, %d with unknown outcome",
		len(w.history), time.Since(w.start).Round(time.Millisecond), counts, len(acked), failed)
	if len(w.history) < 100 || len(acked) < 50 {
		t.Fatalf("only %d operations and %d acknowledged writes completed; too few for the checks to mean something", len(w.history), len(acked))
	}
	result, info := porcupine.CheckOperationsVerbose(kvModel, w.history, 2*time.Minute)
	if result != porcupine.Ok {
		if f, err := os.CreateTemp("", "raftkv-members-*.html"); err == nil {
			f.Close()
			if porcupine.VisualizePath(kvModel, info, f.Name()) == nil {
				t.Logf("visualization of the history: %s", f.Name())
			}
		}
		t.Fatalf("the history is not linearizable (porcupine: %s); workload seed %d", result, w.seed)
	}
	t.Logf("porcupine: %s", result)
	verifyAcked(t, m, "acked/", acked, false, 20*time.Second)
}

// newJoiner returns a member with fresh ports and data dir, not started, joining
// with --initial-cluster-state existing and the --initial-cluster given.
func (c *procCluster) newJoiner(name, initialCluster string, extraArgs ...string) *procMember {
	ports := testport.Free(c.t, 2)
	m := &procMember{
		name:      name,
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	}
	dir := filepath.Dir(c.members[0].dataDir)
	m.dataDir = filepath.Join(dir, name)
	m.logPath = filepath.Join(dir, name+".log")
	m.args = append([]string{
		"--name", name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster-state", "existing",
	}, extraArgs...)
	if initialCluster != "" {
		m.args = append(m.args, "--initial-cluster", initialCluster)
	}
	m.client = newClient(c.t, hostPort(m.clientURL))
	c.members = append(c.members, m)
	return m
}

// initialClusterOf is --initial-cluster for a member just added: every member's
// name=peerURL, the new one under name, as etcdctl member add prints it.
func initialClusterOf(resp *clientv3.MemberAddResponse, name string) string {
	var parts []string
	for _, m := range resp.Members {
		n := m.Name
		if m.ID == resp.Member.ID {
			n = name
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// memberID returns the id of the member named name, asking through cli.
func memberID(t *testing.T, cli *clientv3.Client, name string) uint64 {
	t.Helper()
	var id uint64
	err := eventually(10*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		for _, m := range resp.Members {
			if m.Name == name {
				id = m.ID
				return nil
			}
		}
		return fmt.Errorf("no member named %s in %v", name, resp.Members)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// waitListed waits until the linearizable member list, asked through cli, names
// exactly names, every member started.
func waitListed(t *testing.T, cli *clientv3.Client, names ...string) {
	t.Helper()
	want := append([]string(nil), names...)
	sort.Strings(want)
	err := eventually(30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		var got []string
		for _, m := range resp.Members {
			got = append(got, m.Name)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("members %v, want %v", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitRemovedExit waits for m's process to exit on its own after its removal: exit
// status 3 and the log line saying why.
func (c *procCluster) waitRemovedExit(m *procMember, timeout time.Duration) {
	c.t.Helper()
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(timeout):
		c.t.Fatalf("%s still runs %v after its removal", m.name, timeout)
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		c.t.Fatalf("%s exited with %v after its removal; want exit status 3", m.name, cmd.ProcessState)
	}
	if !logContainsSince(m.logPath, 0, "this member was removed from the cluster") {
		c.t.Fatalf("%s's log does not say it was removed:\n%s", m.name, tail(m.logPath, 20))
	}
}

// runEtcdctl runs etcdctl with args against endpoints and returns its output.
func runEtcdctl(t *testing.T, endpoints []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(etcdctlBinary(t), append([]string{"--endpoints", strings.Join(endpoints, ","), "--command-timeout", "10s"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// untilHealthyEnough runs a membership change until it succeeds or fails with
// anything but etcd's "unhealthy cluster", for up to 20 s: with
// --strict-reconfig-check the leader counts a member as connected only once its
// stream has been up for 5 s, as etcd's does, so a change right after a start (or
// after a member came back) is refused at first. out is the change's output, if it
// has one.
func untilHealthyEnough(change func() (out string, err error)) (string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := change()
		if err == nil || !strings.Contains(out+fmt.Sprint(err), "unhealthy cluster") || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runEtcdctlChange is runEtcdctl for a membership change (untilHealthyEnough).
func runEtcdctlChange(t *testing.T, endpoints []string, args ...string) (string, error) {
	t.Helper()
	return untilHealthyEnough(func() (string, error) { return runEtcdctl(t, endpoints, args...) })
}

func runningEndpoints(c *procCluster) []string {
	var out []string
	for _, m := range c.members {
		if m.running() {
			out = append(out, hostPort(m.clientURL))
		}
	}
	return out
}

// runRaftkvCLI runs the raftkv binary with args (a client command) and returns its
// output.
func runRaftkvCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(raftkvBinary(t), args...).CombinedOutput()
	return string(out), err
}

func clientv3WithPrefixCountOnly() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}
