package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxFailover is how long, with the default timings (100ms heartbeat, 1000ms election
// timeout drawn from [1s, 2s)), a cluster may take from its leader's death to a write
// that succeeds on a survivor.
const maxFailover = 3 * time.Second

// ackedWrites records the writes a server acknowledged: key → value. Every key is
// written once, so a read must return exactly the recorded value.
type ackedWrites struct {
	mu   sync.Mutex
	kvs  map[string]string
	fail int // writes whose outcome is unknown (error or timeout)
}

func newAckedWrites() *ackedWrites { return &ackedWrites{kvs: map[string]string{}} }

// put writes key=value through cli within timeout and records it if acknowledged.
func (a *ackedWrites) put(cli *clientv3.Client, key, value string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cli.Put(ctx, key, value)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.fail++
		return err
	}
	a.kvs[key] = value
	return nil
}

func (a *ackedWrites) snapshot() (map[string]string, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.kvs))
	for k, v := range a.kvs {
		out[k] = v
	}
	return out, a.fail
}

// verifyAcked requires every acknowledged write under prefix to be readable through
// m, with a linearizable read or, if serializable, from m's own state (retrying for
// up to timeout while m catches up).
func verifyAcked(t *testing.T, m *procMember, prefix string, acked map[string]string, serializable bool, timeout time.Duration) {
	t.Helper()
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	var missing []string
	err := eventually(timeout, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := m.client.Get(ctx, prefix, opts...)
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		missing = missing[:0]
		for k, v := range acked {
			if got[k] != v {
				missing = append(missing, fmt.Sprintf("%s (want %q, got %q)", k, v, got[k]))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d acknowledged writes missing or wrong, e.g. %v", len(missing), len(acked), missing[:min(3, len(missing))])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading acknowledged writes through %s (serializable=%v): %v", m.name, serializable, err)
	}
}

// TestLeaderFailover kills the leader of a 3- and a 5-member cluster of raftkv
// processes with SIGKILL and measures the time until a surviving member takes a write
// (under maxFailover with the default timings). No acknowledged write may be lost:
// not on the survivors, nor on the old leader once it is restarted. The 5-member
// cluster loses a second leader after the first.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("members=%d", n), func(t *testing.T) {
			if n == 5 && testing.Short() {
				t.Skip("the 5-member cluster is skipped with -short")
			}
			c := startProcCluster(t, n)
			acked := newAckedWrites()
			for i := range 30 {
				m := c.members[i%n]
				if err := acked.put(m.client, fmt.Sprintf("acked/before/%03d", i), fmt.Sprintf("v%d", i), 5*time.Second); err != nil {
					t.Fatalf("write %d through %s before any failure: %v", i, m.name, err)
				}
			}
			kills := 1
			if n == 5 {
				kills = 2 // a majority of three remains
			}
			var dead []*procMember
			for k := range kills {
				lead := c.leader(10 * time.Second)
				var alive []*procMember
				for _, m := range c.members {
					if m != lead && m.running() {
						alive = append(alive, m)
					}
				}
				failover := killAndMeasureFailover(t, c, lead, alive, acked, fmt.Sprintf("acked/failover%d/", k))
				t.Logf("%d-member cluster, leader %s killed (kill %d of %d): first write on a survivor after %v",
					n, lead.name, k+1, kills, failover.Round(time.Millisecond))
				if failover > maxFailover {
					t.Errorf("failover took %v; want under %v with the default timings", failover.Round(time.Millisecond), maxFailover)
				}
				dead = append(dead, lead)
				// Some writes under the new leader, through every survivor.
				for i, m := range alive {
					if err := acked.put(m.client, fmt.Sprintf("acked/after%d/%s", k, m.name), fmt.Sprint(i), 5*time.Second); err != nil {
						t.Fatalf("write through %s after the failover: %v", m.name, err)
					}
				}
			}
			kvs, unknown := acked.snapshot()
			t.Logf("%d acknowledged writes, %d with unknown outcome (timed out or failed during the failover)", len(kvs), unknown)
			for _, m := range c.members {
				if m.running() {
					verifyAcked(t, m, "acked/", kvs, false, 10*time.Second)
				}
			}
			// The dead come back and must catch up with everything acknowledged.
			for _, m := range dead {
				c.start(m)
			}
			for _, m := range dead {
				verifyAcked(t, m, "acked/", kvs, true, 20*time.Second)
			}
		})
	}
}

// killAndMeasureFailover kills lead and returns the time from the kill to the first
// write acknowledged by a member of alive. Writes start every 50ms on the members
// of alive in turn, each allowed 2s, so a write stuck on the dead leader does not
// delay the measurement; acknowledged ones are recorded in acked.
func killAndMeasureFailover(t *testing.T, c *procCluster, lead *procMember, alive []*procMember, acked *ackedWrites, prefix string) time.Duration {
	t.Helper()
	first := make(chan time.Duration, 1)
	var wg sync.WaitGroup
	killedAt := time.Now()
	c.kill(lead)
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(15 * time.Second)
	var failover time.Duration
loop:
	for i := 0; ; i++ {
		m := alive[i%len(alive)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if acked.put(m.client, fmt.Sprintf("%s%04d", prefix, i), m.name, 2*time.Second) == nil {
				select {
				case first <- time.Since(killedAt):
				default:
				}
			}
		}()
		select {
		case failover = <-first:
			break loop
		case <-ticker.C:
		case <-deadline:
			wg.Wait()
			t.Fatalf("no write succeeded on the survivors %v within 15s of killing leader %s", names(alive), lead.name)
		}
	}
	wg.Wait()
	return failover
}

func names(ms []*procMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.name)
	}
	return out
}

// TestKillAllAndRestart kills every member of a 3-member cluster with SIGKILL while
// clients are writing, restarts them on their data dirs, and requires every
// acknowledged write to be there: what was acknowledged was on a majority's disk.
func TestKillAllAndRestart(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3)
	acked := newAckedWrites()
	allEndpoints := newClient(t, c.endpoints()...)
	clients := []*clientv3.Client{allEndpoints}
	for _, m := range c.members {
		clients = append(clients, m.client)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, cli := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = acked.put(cli, fmt.Sprintf("acked/w%d/%05d", w, i), fmt.Sprintf("%d.%d", w, i), 2*time.Second)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	// Kill them all while the writers are mid-request.
	for _, m := range c.members {
		m.mu.Lock()
		_ = m.cmd.Process.Signal(os.Kill)
		m.mu.Unlock()
	}
	for _, m := range c.members {
		c.kill(m) // waits for the exit
	}
	close(stop)
	wg.Wait()
	kvs, unknown := acked.snapshot()
	t.Logf("killed all 3 members with %d acknowledged writes (%d outcomes unknown)", len(kvs), unknown)
	if len(kvs) < 50 {
		t.Fatalf("only %d writes were acknowledged in 2s; the test needs more to mean something", len(kvs))
	}
	restartedAt := time.Now()
	for _, m := range c.members {
		c.start(m)
	}
	c.waitWritable(c.members, 30*time.Second)
	t.Logf("restarted all 3; each took a write %v after the restart", time.Since(restartedAt).Round(time.Millisecond))
	for _, m := range c.members {
		verifyAcked(t, m, "acked/", kvs, false, 10*time.Second)
		verifyAcked(t, m, "acked/", kvs, true, 10*time.Second)
	}
}

// TestSnapshotCatchUp stops a follower while the others take enough writes, with
// --snapshot-count 100, that the log it missed is compacted away; restarted, it must
// catch up by a snapshot from the leader and serve every key from its own state.
func TestSnapshotCatchUp(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3, "--snapshot-count", "100")
	lead := c.leader(10 * time.Second)
	var lagger *procMember
	for _, m := range c.members {
		if m != lead {
			lagger = m
			break
		}
	}
	acked := newAckedWrites()
	for i := range 20 {
		if err := acked.put(c.members[i%3].client, fmt.Sprintf("snap/early/%03d", i), fmt.Sprint(i), 5*time.Second); err != nil {
			t.Fatalf("early write %d: %v", i, err)
		}
	}
	verifyAcked(t, lagger, "snap/", mustSnapshot(acked), true, 10*time.Second)
	c.stop(lagger)

	// Five snapshots' worth of writes, from four clients at once.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 130 {
				m := c.others(lagger)[i%2]
				if err := acked.put(m.client, fmt.Sprintf("snap/missed/%d/%03d", w, i), fmt.Sprint(i), 5*time.Second); err != nil {
					errs <- fmt.Errorf("write %d of writer %d through %s: %w", i, w, m.name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	kvs := mustSnapshot(acked)

	leaderLogBefore := fileSize(lead.logPath)
	laggerLogBefore := fileSize(lagger.logPath)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	leadStatus, err := lead.client.Status(ctx, hostPort(lead.clientURL))
	cancel()
	if err != nil {
		t.Fatalf("status of the leader %s: %v", lead.name, err)
	}
	c.start(lagger)
	// Watch the lagger's applied index: a snapshot moves it to the leader's in one step.
	var firstApplied uint64
	_ = eventually(10*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := lagger.client.Status(ctx, hostPort(lagger.clientURL))
		if err != nil {
			return err
		}
		if firstApplied == 0 {
			firstApplied = st.RaftAppliedIndex
		}
		if st.RaftAppliedIndex < leadStatus.RaftIndex {
			return fmt.Errorf("applied %d", st.RaftAppliedIndex)
		}
		return nil
	})
	verifyAcked(t, lagger, "snap/", kvs, true, 20*time.Second)
	t.Logf("%s restarted with applied index %d (first seen), caught up to the leader's commit index %d; it serves all %d keys",
		lagger.name, firstApplied, leadStatus.RaftIndex, len(kvs))
	if !logContainsSince(lead.logPath, leaderLogBefore, "raft: sending snapshot") {
		t.Errorf("leader %s did not log \"raft: sending snapshot\" after %s restarted; it should have caught up by snapshot", lead.name, lagger.name)
	}
	if !logContainsSince(lagger.logPath, laggerLogBefore, "transport: snapshot received") {
		t.Errorf("%s did not log \"transport: snapshot received\" after its restart", lagger.name)
	}
	// The member list came with the snapshot too (the entries that published the
	// names and client URLs were compacted away).
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	members, err := lagger.client.MemberList(ctx)
	cancel()
	if err != nil {
		t.Fatalf("member list through %s: %v", lagger.name, err)
	}
	if len(members.Members) != 3 {
		t.Errorf("%s lists %d members after catching up by snapshot, want 3", lagger.name, len(members.Members))
	}
	for _, m := range members.Members {
		if m.Name == "" || len(m.ClientURLs) == 0 {
			t.Errorf("%s lists member %x with name %q and client URLs %v after catching up by snapshot; want both",
				lagger.name, m.ID, m.Name, m.ClientURLs)
		}
	}
	// It takes part again: a write through it and a linearizable read of it.
	if err := acked.put(lagger.client, "snap/after", "1", 5*time.Second); err != nil {
		t.Fatalf("write through %s after it caught up: %v", lagger.name, err)
	}
	verifyAcked(t, lagger, "snap/", mustSnapshot(acked), false, 5*time.Second)
}

func mustSnapshot(a *ackedWrites) map[string]string {
	kvs, _ := a.snapshot()
	return kvs
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logContainsSince reports whether the file at path, from offset on, contains s.
func logContainsSince(path string, offset int64, s string) bool {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return false
	}
	return bytes.Contains(data[offset:], []byte(s))
}
