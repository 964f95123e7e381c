package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"raftkv/chaos/kvmodel"
)

// The workload: clients on the host, each a clientv3 client of all five members, doing
// linearizable gets, puts and compare-and-swaps on a few keys at a time. The keys
// change every keyEpoch (all clients move on together, since the epoch is read off
// the clock), so each key's history stays a few hundred calls long and porcupine's
// search, which is per key, stays small even with the unknown outcomes faults leave.
const (
	keyPrefix    = "chaos/k/"
	keysPerEpoch = 4
	keyEpoch     = 3 * time.Second
	// opTimeout bounds one call. A call to a member that cannot reach a quorum waits
	// this long and its outcome is unknown.
	opTimeout = 1500 * time.Millisecond
)

// The watchers (watchers_test.go) watch the whole prefix the clients write under, on
// every member, and the watch verdict holds what they received to this history.

type workload struct {
	c     *cluster
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	mu    struct {
		sync.Mutex
		history []porcupine.Operation
	}
}

// startWorkload starts the clients; stopAndWait stops them.
func startWorkload(c *cluster, clients int, seed uint64) *workload {
	w := &workload{c: c, start: time.Now(), stop: make(chan struct{})}
	for id := range clients {
		cli := c.newClient(c.endpoints()...)
		rng := rand.New(rand.NewPCG(seed, uint64(id)))
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.client(id, cli, rng)
		}()
	}
	return w
}

func (w *workload) stopAndWait() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// now is the history's clock: nanoseconds since the workload started.
func (w *workload) now() int64 { return int64(time.Since(w.start)) }

func (w *workload) key(rng *rand.Rand) string {
	epoch := int(time.Since(w.start) / keyEpoch)
	return fmt.Sprintf("%s%06d", keyPrefix, epoch*keysPerEpoch+rng.IntN(keysPerEpoch))
}

func (w *workload) client(id int, cli *clientv3.Client, rng *rand.Rand) {
	// lastSeen is this client's latest idea of each key's value, so that most
	// compare-and-swaps expect the current value and some succeed.
	lastSeen := map[string]string{}
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		key := w.key(rng)
		in := kvmodel.Input{Kind: kvmodel.Get, Key: key}
		switch p := rng.Float64(); {
		case p < 0.3:
			in = kvmodel.Input{Kind: kvmodel.Put, Key: key, Value: fmt.Sprintf("c%d.%d", id, seq)}
		case p < 0.6 && lastSeen[key] != "":
			in = kvmodel.Input{Kind: kvmodel.CAS, Key: key, Value: fmt.Sprintf("c%d.%d", id, seq), Expect: lastSeen[key]}
		}
		call := w.now()
		out, ok := do(cli, in)
		ret := w.now()
		switch {
		case !ok && in.Kind == kvmodel.Get:
			continue // a failed read changed nothing
		case !ok:
			out, ret = kvmodel.Output{Unknown: true}, kvmodel.NeverReturned
		case in.Kind == kvmodel.Get:
			lastSeen[key] = out.Value
		case in.Kind == kvmodel.Put || out.Succeeded:
			lastSeen[key] = in.Value
		}
		w.mu.Lock()
		w.mu.history = append(w.mu.history, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
		w.mu.Unlock()
		time.Sleep(time.Duration(5+rng.IntN(10)) * time.Millisecond)
	}
}

// do runs one call; ok is false when it failed or timed out.
func do(cli *clientv3.Client, in kvmodel.Input) (kvmodel.Output, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	switch in.Kind {
	case kvmodel.Get:
		resp, err := cli.Get(ctx, in.Key)
		if err != nil {
			return kvmodel.Output{}, false
		}
		if len(resp.Kvs) == 0 {
			return kvmodel.Output{}, true
		}
		return kvmodel.Output{Value: string(resp.Kvs[0].Value)}, true
	case kvmodel.Put:
		_, err := cli.Put(ctx, in.Key, in.Value)
		return kvmodel.Output{}, err == nil
	default:
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(in.Key), "=", in.Expect)).
			Then(clientv3.OpPut(in.Key, in.Value)).
			Commit()
		if err != nil {
			return kvmodel.Output{}, false
		}
		return kvmodel.Output{Succeeded: resp.Succeeded}, true
	}
}

// history returns the calls recorded so far.
func (w *workload) history() []porcupine.Operation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]porcupine.Operation(nil), w.mu.history...)
}
