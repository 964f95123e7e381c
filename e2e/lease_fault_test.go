package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The process clusters here run with the default timings: 100 ms heartbeats and a
// 1 s election timeout, so the minimum TTL is 2 s.
const defaultElectionTimeout = time.Second

// attachKeys grants a lease of ttl seconds through cli and puts n keys under prefix on
// it.
func attachKeys(t *testing.T, cli *clientv3.Client, ttl int64, prefix string, n int) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, ttl)
	if err != nil {
		t.Fatalf("granting a %ds lease: %v", ttl, err)
	}
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%02d", prefix, i), "v", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatalf("putting a key on lease %x: %v", lease.ID, err)
		}
	}
	return lease.ID
}

// countKeys returns how many keys are under prefix, reading through any member.
func countKeys(cli *clientv3.Client, prefix string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

// keepAlive keeps the lease alive with clientv3's KeepAlive until stop is called;
// stop returns when the last keep-alive answer arrived.
func keepAlive(t *testing.T, cli *clientv3.Client, id clientv3.LeaseID) (stop func() time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := cli.KeepAlive(ctx, id)
	if err != nil {
		t.Fatalf("starting keep-alives of lease %x: %v", id, err)
	}
	lastc := make(chan time.Time, 1)
	go func() {
		var last time.Time
		for resp := range ch {
			if resp.TTL > 0 {
				last = time.Now()
			}
		}
		lastc <- last
	}()
	return func() time.Time {
		cancel()
		return <-lastc
	}
}

// TestLeaseExpiresWhenNotKeptAlive: once its holder stops the keep-alives, a lease's
// keys are deleted within its TTL plus one election timeout, and not before its TTL;
// when the leader dies in between, within TTL plus one election timeout of a new
// leader being elected.
func TestLeaseExpiresWhenNotKeptAlive(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3)
	cli := newClient(t, c.endpoints()...)
	const ttl = 3
	bound := ttl*time.Second + defaultElectionTimeout

	t.Run("no fault", func(t *testing.T) {
		id := attachKeys(t, cli, ttl, "expire/plain/", 5)
		stop := keepAlive(t, cli, id)
		time.Sleep(2 * ttl * time.Second) // two TTLs: the keep-alives are what keeps it
		if n, err := countKeys(cli, "expire/plain/"); err != nil || n != 5 {
			t.Fatalf("after %ds of keep-alives the lease holds %d keys (%v), want 5", 2*ttl, n, err)
		}
		last := stop()
		gone := waitKeysGone(t, cli, "expire/plain/", 3*bound)
		// The allowance covers the revoke's trip through Raft and the polls, which a
		// loaded machine stretches.
		if elapsed := gone.Sub(last); elapsed > bound+time.Second || elapsed < ttl*time.Second-500*time.Millisecond {
			t.Fatalf("keys deleted %v after the last keep-alive; want between the TTL (%ds) and TTL + election timeout (%v)", elapsed, ttl, bound)
		} else {
			t.Logf("keys deleted %v after the last keep-alive (TTL %ds)", elapsed.Round(time.Millisecond), ttl)
		}
	})

	t.Run("leader killed", func(t *testing.T) {
		id := attachKeys(t, cli, ttl, "expire/kill/", 5)
		stop := keepAlive(t, cli, id)
		time.Sleep(time.Second)
		stop()
		lead := c.leader(10 * time.Second)
		c.kill(lead)
		killed := time.Now()
		newLead := c.leader(10 * time.Second)
		// A new leader is known by now (a little after it was elected: the poll takes
		// time); it promotes its lessor at its first entry, giving the lease its TTL
		// plus an election timeout from then. The allowance covers the revoke's trip
		// through Raft and the polls.
		elected := time.Now()
		gone := waitKeysGone(t, newClient(t, hostPort(newLead.clientURL)), "expire/kill/", 4*bound)
		// Not before the TTL from the kill either: the new leader promotes after it.
		if elapsed := gone.Sub(elected); elapsed > bound+time.Second || gone.Sub(killed) < ttl*time.Second {
			t.Fatalf("keys deleted %v after a new leader was seen, %v after the kill; want within TTL + election timeout (%v) of the first, and at least the TTL (%ds) after the second",
				elapsed, gone.Sub(killed), bound, ttl)
		} else {
			t.Logf("keys deleted %v after the new leader was seen", elapsed.Round(time.Millisecond))
		}
		c.start(lead)
		c.waitWritable(c.members, 30*time.Second)
	})
}

// waitKeysGone polls until no key is under prefix, and returns when it saw that.
func waitKeysGone(t *testing.T, cli *clientv3.Client, prefix string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if n, err := countKeys(cli, prefix); err == nil && n == 0 {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the keys under %q were still there %v later", prefix, timeout)
	return time.Time{}
}

// TestLeaseSurvivesLeaderKills: a lease kept alive by a client survives the leader
// being SIGKILLed three times over (each new leader gives every lease a fresh TTL plus
// an election timeout before expiring any), and so do its keys.
func TestLeaseSurvivesLeaderKills(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3)
	cli := newClient(t, c.endpoints()...)
	// clientv3 gives a lease up when no keep-alive is answered for a TTL: 8s leaves
	// room for an election and the client's reconnection on a loaded machine.
	const ttl = 8
	id := attachKeys(t, cli, ttl, "survive/", 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := cli.KeepAlive(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		for range ch {
		}
		close(closed)
	}()
	kills := 3
	if testing.Short() {
		kills = 1
	}
	for k := range kills {
		lead := c.leader(10 * time.Second)
		c.kill(lead)
		t.Logf("kill %d: SIGKILLed the leader %s", k+1, lead.name)
		// Longer than the TTL plus the extension a new leader gives: the lease would
		// be gone were nobody renewing it.
		time.Sleep(ttl*time.Second + defaultElectionTimeout + time.Second)
		c.start(lead)
		c.waitWritable(c.members, 30*time.Second)
		select {
		case <-closed:
			t.Fatalf("after kill %d the client's keep-alive channel closed: the lease was lost", k+1)
		default:
		}
		if n, err := countKeys(cli, "survive/"); err != nil || n != 10 {
			t.Fatalf("after kill %d the lease holds %d keys (%v), want 10", k+1, n, err)
		}
		ttlCtx, ttlCancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := cli.TimeToLive(ttlCtx, id)
		ttlCancel()
		if err != nil || resp.TTL <= 0 || resp.GrantedTTL != ttl {
			t.Fatalf("after kill %d: time-to-live %+v, %v", k+1, resp, err)
		}
	}
}
