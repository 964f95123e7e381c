package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/embed"
)

// The recipes of clientv3's concurrency package (Session, Mutex, Election, STM) run
// unchanged against raftkv: they are built on Txn, Watch and Lease alone, and these
// tests hold raftkv to what they need of them.

// recipeTimeout bounds each blocking call of these tests; the waits they check are
// a lease's TTL (1s at the members' 100ms election timeout) or an unlock.
const recipeTimeout = 20 * time.Second

// newSession makes a concurrency session of ttl seconds, closed when the test ends.
func newSession(t *testing.T, cli *clientv3.Client, ttl int) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatalf("concurrency.NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lockInBackground starts m.Lock and returns a channel that gets its result and the
// time it returned.
func lockInBackground(m *concurrency.Mutex) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), recipeTimeout)
		defer cancel()
		done <- m.Lock(ctx)
	}()
	return done
}

// requireBlocked fails if the lock in done was acquired within d.
func requireBlocked(t *testing.T, done <-chan error, d time.Duration, what string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s: Lock returned (%v) while another session holds the lock", what, err)
	case <-time.After(d):
	}
}

// requireAcquired waits for the lock in done and returns how long that took.
func requireAcquired(t *testing.T, done <-chan error, what string) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: Lock: %v", what, err)
		}
	case <-time.After(recipeTimeout):
		t.Fatalf("%s: the lock was not acquired within %v", what, recipeTimeout)
	}
	return time.Since(start)
}

func TestConcurrencyMutex(t *testing.T) {
	t.Parallel()
	members := startRaftkv(t, 3, 0)
	// Each client on its own member: a follower forwards the writes, and serves the
	// watch that waits for the holder's key to go.
	cli := func(i int) *clientv3.Client { return newClient(t, hostPort(members[i%3].clientURL)) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("Lock TryLock Unlock", func(t *testing.T) {
		s1, s2 := newSession(t, cli(0), 10), newSession(t, cli(1), 10)
		m1, m2 := concurrency.NewMutex(s1, "/locks/a"), concurrency.NewMutex(s2, "/locks/a")
		if err := m1.Lock(ctx); err != nil {
			t.Fatalf("m1.Lock: %v", err)
		}
		if err := m2.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
			t.Fatalf("m2.TryLock while m1 holds the lock: %v, want ErrLocked", err)
		}
		// The holder's key is the oldest under the prefix; uncontended, the lock's
		// header is that of the txn that created it.
		resp, err := cli(2).Get(ctx, "/locks/a/", clientv3.WithFirstCreate()...)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != m1.Key() || resp.Kvs[0].CreateRevision != m1.Header().Revision {
			t.Fatalf("the first key under /locks/a/ is %v (%v); want m1's %q created at %d", resp, err, m1.Key(), m1.Header().Revision)
		}
		done := lockInBackground(m2)
		requireBlocked(t, done, 500*time.Millisecond, "m2")
		if err := m1.Unlock(ctx); err != nil {
			t.Fatalf("m1.Unlock: %v", err)
		}
		requireAcquired(t, done, "m2 after m1.Unlock")
		if err := m1.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
			t.Fatalf("m1.TryLock while m2 holds the lock: %v, want ErrLocked", err)
		}
		if err := m2.Unlock(ctx); err != nil {
			t.Fatalf("m2.Unlock: %v", err)
		}
		if err := m1.TryLock(ctx); err != nil {
			t.Fatalf("m1.TryLock of a free lock: %v", err)
		}
		if err := m1.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("released when the lease is revoked", func(t *testing.T) {
		holder, waiter := newSession(t, cli(1), 10), newSession(t, cli(2), 10)
		if err := concurrency.NewMutex(holder, "/locks/b").Lock(ctx); err != nil {
			t.Fatal(err)
		}
		done := lockInBackground(concurrency.NewMutex(waiter, "/locks/b"))
		requireBlocked(t, done, 300*time.Millisecond, "waiter")
		if _, err := cli(0).Revoke(ctx, holder.Lease()); err != nil {
			t.Fatalf("revoking the holder's lease: %v", err)
		}
		requireAcquired(t, done, "waiter after the holder's lease was revoked")
		select {
		case <-holder.Done():
		case <-time.After(recipeTimeout):
			t.Fatal("the holder's session did not end when its lease was revoked")
		}
	})

	t.Run("released when the lease expires", func(t *testing.T) {
		// The minimum TTL at the members' 100ms election timeout: 1s.
		const ttl = time.Second
		holder, waiter := newSession(t, cli(2), 1), newSession(t, cli(0), 10)
		if err := concurrency.NewMutex(holder, "/locks/c").Lock(ctx); err != nil {
			t.Fatal(err)
		}
		done := lockInBackground(concurrency.NewMutex(waiter, "/locks/c"))
		requireBlocked(t, done, 2*ttl, "waiter while the holder's lease is kept alive")
		holder.Orphan() // the keep-alives stop, as when the holder's process pauses
		waited := requireAcquired(t, done, "waiter after the holder stopped its keep-alives")
		// Within the TTL plus an election timeout (the lease's expiry bound), plus the
		// revoke's trip through Raft and the watch on a loaded machine: far less than
		// the waiter's own 10s lease, which would be a lock released by the wrong
		// expiry.
		if waited > ttl+100*time.Millisecond+4*time.Second {
			t.Fatalf("the waiter got the lock %v after the holder's keep-alives stopped; want about the TTL (%v)", waited, ttl)
		}
		t.Logf("the waiter got the lock %v after the holder's keep-alives stopped (TTL %v)", waited.Round(time.Millisecond), ttl)
	})
}

func TestConcurrencyElection(t *testing.T) {
	t.Parallel()
	members := startRaftkv(t, 3, 0)
	cli := func(i int) *clientv3.Client { return newClient(t, hostPort(members[i%3].clientURL)) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s1, s2, s3 := newSession(t, cli(0), 10), newSession(t, cli(1), 10), newSession(t, cli(2), 10)
	e1, e2 := concurrency.NewElection(s1, "/election/x"), concurrency.NewElection(s2, "/election/x")
	observer := concurrency.NewElection(s3, "/election/x")
	if _, err := observer.Leader(ctx); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Fatalf("Leader of an election nobody campaigned in: %v, want ErrElectionNoLeader", err)
	}
	if err := e1.Proclaim(ctx, "x"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Fatalf("Proclaim before Campaign: %v, want ErrElectionNotLeader", err)
	}
	if err := e1.Campaign(ctx, "a"); err != nil {
		t.Fatalf("e1.Campaign: %v", err)
	}

	// Observe reports each leader value as it changes.
	var mu sync.Mutex
	var observed []string
	observeCtx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	obs := observer.Observe(observeCtx)
	go func() {
		for resp := range obs {
			mu.Lock()
			observed = append(observed, string(resp.Kvs[0].Value))
			mu.Unlock()
		}
	}()
	waitObserved := func(want ...string) {
		t.Helper()
		err := eventually(recipeTimeout, 10*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(observed) != fmt.Sprint(want) {
				return fmt.Errorf("observed %q, want %q", observed, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitObserved("a")

	campaigned := make(chan error, 1)
	go func() { campaigned <- e2.Campaign(ctx, "b") }()
	select {
	case err := <-campaigned:
		t.Fatalf("e2.Campaign returned (%v) while e1 leads", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := e1.Proclaim(ctx, "a2"); err != nil {
		t.Fatalf("e1.Proclaim: %v", err)
	}
	waitObserved("a", "a2")
	if resp, err := observer.Leader(ctx); err != nil || string(resp.Kvs[0].Value) != "a2" || string(resp.Kvs[0].Key) != e1.Key() {
		t.Fatalf("Leader after Proclaim: %v, %v; want e1's key with a2", resp, err)
	}
	if err := e1.Resign(ctx); err != nil {
		t.Fatalf("e1.Resign: %v", err)
	}
	select {
	case err := <-campaigned:
		if err != nil {
			t.Fatalf("e2.Campaign: %v", err)
		}
	case <-time.After(recipeTimeout):
		t.Fatal("e2 was not elected after e1 resigned")
	}
	waitObserved("a", "a2", "b")
	if resp, err := observer.Leader(ctx); err != nil || string(resp.Kvs[0].Value) != "b" || resp.Kvs[0].CreateRevision != e2.Rev() {
		t.Fatalf("Leader after e1 resigned: %v, %v; want e2's value b at revision %d", resp, err, e2.Rev())
	}
	// A leader whose lease is revoked is no longer leader: the election is empty.
	if _, err := cli(0).Revoke(ctx, s2.Lease()); err != nil {
		t.Fatal(err)
	}
	err := eventually(recipeTimeout, 20*time.Millisecond, func() error {
		_, err := observer.Leader(ctx)
		if !errors.Is(err, concurrency.ErrElectionNoLeader) {
			return fmt.Errorf("Leader: %v, want ErrElectionNoLeader", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after the leader's lease was revoked: %v", err)
	}
}

// TestConcurrencySTM runs a bank: accounts whose balances concurrent STM
// transactions move money between, under each isolation level that promises a
// consistent read set, through every member; the total must be conserved and no
// balance go negative, on raftkv as on etcd.
func TestConcurrencySTM(t *testing.T) {
	t.Parallel()
	members := startRaftkv(t, 3, 0)
	var eps []string
	for _, m := range members {
		eps = append(eps, hostPort(m.clientURL))
	}
	etcd := startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for _, side := range []struct {
		name string
		eps  []string
	}{{"etcd", []string{etcd}}, {"raftkv", eps}} {
		for _, iso := range []struct {
			name  string
			level concurrency.Isolation
		}{{"SerializableSnapshot", concurrency.SerializableSnapshot}, {"Serializable", concurrency.Serializable}, {"RepeatableReads", concurrency.RepeatableReads}} {
			t.Run(side.name+"/"+iso.name, func(t *testing.T) {
				runBank(t, side.eps, iso.level, seed)
			})
		}
	}
}

func runBank(t *testing.T, endpoints []string, level concurrency.Isolation, seed uint64) {
	const (
		accounts  = 8
		initial   = 100
		workers   = 6
		transfers = 40
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	account := func(i int) string { return fmt.Sprintf("/bank/%02d", i) }
	setup := newClient(t, endpoints...)
	if _, err := setup.Delete(ctx, "/bank/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	for i := range accounts {
		if _, err := setup.Put(ctx, account(i), strconv.Itoa(initial)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed int
		firstErr  error
	)
	for w := range workers {
		// A client per worker, each on a member of its own where there are several.
		cli := newClient(t, endpoints[w%len(endpoints)])
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for range transfers {
				from, to := rng.IntN(accounts), rng.IntN(accounts-1)
				if to >= from {
					to++
				}
				amount := 1 + rng.IntN(30)
				_, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
					a, _ := strconv.Atoi(stm.Get(account(from)))
					b, _ := strconv.Atoi(stm.Get(account(to)))
					if a < amount {
						return nil // not enough money: commit nothing
					}
					stm.Put(account(from), strconv.Itoa(a-amount))
					stm.Put(account(to), strconv.Itoa(b+amount))
					return nil
				}, concurrency.WithIsolation(level), concurrency.WithAbortContext(ctx))
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				committed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("an STM transaction failed: %v", firstErr)
	}
	resp, err := setup.Get(ctx, "/bank/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, kv := range resp.Kvs {
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil || n < 0 {
			t.Fatalf("account %s holds %q", kv.Key, kv.Value)
		}
		total += n
	}
	if len(resp.Kvs) != accounts || total != accounts*initial {
		t.Fatalf("after %d transfers: %d accounts hold %d in all; want %d accounts holding %d", committed, len(resp.Kvs), total, accounts, accounts*initial)
	}
	t.Logf("%d transfers by %d clients; the %d accounts still hold %d (revision %d)", committed, workers, accounts, total, resp.Header.Revision)
}
