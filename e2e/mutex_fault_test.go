package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

var (
	mutexFaultsDuration = flag.Duration("mutexfaults.duration", 0, "how long the clients of TestMutexUnderKills contend for the lock (default 20s; 8s with -short)")
	mutexFaultsSeed     = flag.Uint64("mutexfaults.seed", 0, "seed of TestMutexUnderKills' kills (default: drawn from the clock)")
)

// mutexHold is one holder's time in the critical section, in the store's revisions:
// from the revision of its first fenced write to that of its last. A fenced write
// succeeds only while the holder's lock key exists (Mutex.IsOwner), so two holds
// that overlap would be two clients acting as the holder at once.
type mutexHold struct {
	client     int
	start, end int64
}

// TestMutexUnderKills: several clients contend for one concurrency.Mutex, each with
// a session whose lease clientv3 keeps alive, while members of a 3-member cluster of
// processes are SIGKILLed and restarted. Each holder makes fenced writes on entering
// and leaving the critical section, and increments a counter in it with a plain
// read and a fenced write (no compare of the counter itself). No two holds may
// overlap in revisions, the counter must not lose an increment, and the lock must
// keep changing hands after every kill.
func TestMutexUnderKills(t *testing.T) {
	t.Parallel()
	duration := *mutexFaultsDuration
	if duration == 0 {
		duration = 20 * time.Second
		if testing.Short() {
			duration = 8 * time.Second
		}
	}
	seed := *mutexFaultsSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d, %v; replay the kills with: go test -run TestMutexUnderKills -mutexfaults.seed=%d -mutexfaults.duration=%v", seed, duration, seed, duration)
	c := startProcCluster(t, 3)

	const clients = 4
	var (
		mu        sync.Mutex
		holds     []mutexHold
		acquired  atomic.Int64
		increment struct {
			known, uncertain int
		}
		lost int
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for k := range clients {
		cli := newClient(t, c.endpoints()...)
		wg.Go(func() {
			h := &mutexHolder{t: t, k: k, cli: cli}
			for ctx.Err() == nil {
				hold, incremented, err := h.holdOnce(ctx)
				mu.Lock()
				if hold.start != 0 {
					holds = append(holds, hold)
					acquired.Add(1)
				}
				switch incremented {
				case writeApplied:
					increment.known++
				case writeUncertain:
					increment.uncertain++
				}
				if errors.Is(err, errLockLost) {
					lost++
				}
				mu.Unlock()
			}
			h.close()
		})
	}

	// The nemesis: every 2-4s SIGKILL a member (the leader half the time) and
	// restart it 1-2s later; the lock must change hands after each restart.
	rng := rand.New(rand.NewPCG(seed, 0x10c4))
	deadline := time.Now().Add(duration)
	kills := 0
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(2000+rng.IntN(2000)) * time.Millisecond)
		victim := c.members[rng.IntN(len(c.members))]
		if rng.IntN(2) == 0 {
			victim = c.leader(10 * time.Second)
		}
		c.kill(victim)
		kills++
		time.Sleep(time.Duration(1000+rng.IntN(1000)) * time.Millisecond)
		c.start(victim)
		before := acquired.Load()
		if err := eventually(30*time.Second, 50*time.Millisecond, func() error {
			if acquired.Load() <= before {
				return errors.New("no client got the lock")
			}
			return nil
		}); err != nil {
			t.Fatalf("after kill %d (%s): %v within 30s of its restart", kills, victim.name, err)
		}
	}
	stop()
	wg.Wait()
	c.waitWritable(c.members, 30*time.Second)

	slices.SortFunc(holds, func(a, b mutexHold) int { return int(a.start - b.start) })
	for i := 1; i < len(holds); i++ {
		if prev, cur := holds[i-1], holds[i]; cur.start <= prev.end {
			t.Fatalf("client %d held the lock over revisions [%d, %d] and client %d over [%d, %d]: two holders at once",
				prev.client, prev.start, prev.end, cur.client, cur.start, cur.end)
		}
	}
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.members[0].client.Get(rctx, "mutex/counter")
	if err != nil {
		t.Fatal(err)
	}
	counter := 0
	if len(resp.Kvs) == 1 {
		counter, _ = strconv.Atoi(string(resp.Kvs[0].Value))
	}
	if counter < increment.known || counter > increment.known+increment.uncertain {
		t.Fatalf("the counter is %d after %d increments that applied and %d that may have: an increment was lost or made twice",
			counter, increment.known, increment.uncertain)
	}
	if len(holds) < 2*kills {
		t.Fatalf("only %d holds over %d kills: the lock barely changed hands", len(holds), kills)
	}
	t.Logf("%d kills; %d holds by %d clients without overlap, the counter at %d (%d increments uncertain), %d holds ended by a lost lease",
		kills, len(holds), clients, counter, increment.uncertain, lost)
}

// errLockLost is a fenced write refused: the holder's lock key is gone (its lease
// expired), so it no longer holds the lock.
var errLockLost = errors.New("the lock was lost")

type writeOutcome int

const (
	writeNotMade writeOutcome = iota
	writeApplied
	writeUncertain // the request failed in a way that does not say whether it applied
)

// mutexHolder is one client of TestMutexUnderKills: its session, renewed when one
// ends, and its lock.
type mutexHolder struct {
	t       *testing.T
	k       int
	cli     *clientv3.Client
	session *concurrency.Session
}

func (h *mutexHolder) close() {
	if h.session != nil {
		h.session.Close()
	}
}

// holdOnce takes the lock, makes its fenced writes, and unlocks. hold.start is 0 if
// no fenced write was known to apply.
func (h *mutexHolder) holdOnce(ctx context.Context) (hold mutexHold, incremented writeOutcome, err error) {
	hold.client = h.k
	if h.session != nil {
		select {
		case <-h.session.Done():
			h.session = nil // its lease is gone: a new one
		default:
		}
	}
	if h.session == nil {
		// 8s, as in TestLeaseSurvivesLeaderKills: room for an election and clientv3's
		// reconnection on a loaded machine before it gives the lease up.
		s, err := concurrency.NewSession(h.cli, concurrency.WithTTL(8), concurrency.WithContext(ctx))
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			return hold, writeNotMade, err
		}
		h.session = s
	}
	m := concurrency.NewMutex(h.session, "mutex/lock")
	lockCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err = m.Lock(lockCtx)
	cancel()
	if err != nil {
		time.Sleep(50 * time.Millisecond)
		return hold, writeNotMade, err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Unlock(uctx) // if it fails, the lease's expiry releases the lock
	}()
	fenced := func(ops ...clientv3.Op) (writeOutcome, error) {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := h.cli.Txn(wctx).If(m.IsOwner()).Then(ops...).Commit()
		switch {
		case err != nil:
			return writeUncertain, err
		case !resp.Succeeded:
			return writeNotMade, errLockLost
		}
		if hold.start == 0 {
			hold.start = resp.Header.Revision
		}
		hold.end = resp.Header.Revision
		return writeApplied, nil
	}
	me := fmt.Sprintf("client-%d", h.k)
	if _, err := fenced(clientv3.OpPut("mutex/owner", me)); err != nil {
		return hold, writeNotMade, err
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	resp, err := h.cli.Get(rctx, "mutex/counter")
	cancel()
	if err != nil {
		return hold, writeNotMade, err
	}
	n := 0
	if len(resp.Kvs) == 1 {
		n, _ = strconv.Atoi(string(resp.Kvs[0].Value))
	}
	time.Sleep(10 * time.Millisecond) // a window for another holder's increment, were there one
	incremented, err = fenced(clientv3.OpPut("mutex/counter", strconv.Itoa(n+1)))
	if err != nil {
		return hold, incremented, err
	}
	_, err = fenced(clientv3.OpPut("mutex/owner", ""))
	return hold, incremented, err
}
