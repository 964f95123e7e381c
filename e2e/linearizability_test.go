package e2e

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	linDuration = flag.Duration("lin.duration", 0, "how long the linearizability test's clients run (default 15s, 6s with -short)")
	linSeed     = flag.Uint64("lin.seed", 0, "seed of the linearizability test's clients and kills (default: drawn from the clock)")
)

const (
	linClients = 6
	linKeys    = 3
)

type linOp int

const (
	opGet linOp = iota
	opPut
	opCAS
)

// linInput is one client call: get(key), put(key, value), or cas(key, expect → value).
// Every put and cas writes a value no other call writes, and never the empty string,
// so "" reads as a missing key.
type linInput struct {
	op     linOp
	key    string
	value  string
	expect string
}

// linOutput is what the call returned. unknown marks a put or cas that failed or
// timed out: it may or may not have taken effect, at any time after its call, so it
// is recorded with an infinite return time.
type linOutput struct {
	value     string // get: the value read
	succeeded bool   // cas: whether the compare held
	unknown   bool
}

// neverReturned is the return time of a call with an unknown outcome.
const neverReturned = math.MaxInt64

// kvModel is a register per key with get, put and compare-and-swap, partitioned by
// key (each key's history is linearizable on its own iff the whole is).
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			key := op.Input.(linInput).key
			if _, ok := byKey[key]; !ok {
				keys = append(keys, key)
			}
			byKey[key] = append(byKey[key], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		current, in, out := state.(string), input.(linInput), output.(linOutput)
		switch in.op {
		case opGet:
			return out.value == current, current
		case opPut:
			return true, in.value
		default: // opCAS
			holds := current == in.expect
			switch {
			case out.unknown && holds:
				return true, in.value
			case out.unknown:
				return true, current
			case out.succeeded:
				return holds, in.value
			default:
				return !holds, current
			}
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		result := ""
		switch {
		case out.unknown:
			result = " → ?"
		case in.op == opGet:
			result = fmt.Sprintf(" → %q", out.value)
		case in.op == opCAS:
			result = fmt.Sprintf(" → %v", out.succeeded)
		}
		switch in.op {
		case opGet:
			return fmt.Sprintf("get(%s)%s", in.key, result)
		case opPut:
			return fmt.Sprintf("put(%s, %s)%s", in.key, in.value, result)
		default:
			return fmt.Sprintf("cas(%s, %s → %s)%s", in.key, in.expect, in.value, result)
		}
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
}

// TestLinearizability runs concurrent clients doing get, put and compare-and-swap on a
// few keys of a 3-member cluster of raftkv processes while a nemesis kills members
// with SIGKILL (sometimes two at once) and restarts them, and checks the history with
// porcupine.
func TestLinearizability(t *testing.T) {
	t.Parallel()
	duration := *linDuration
	if duration == 0 {
		duration = 15 * time.Second
		if testing.Short() {
			duration = 6 * time.Second
		}
	}
	seed := *linSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d, clients run for %v; replay the same choices with: go test -run TestLinearizability -lin.seed=%d -lin.duration=%v",
		seed, duration, seed, duration)
	c := startProcCluster(t, 3)

	var (
		mu      sync.Mutex
		history []porcupine.Operation
	)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	stop := make(chan struct{})
	var stopOnce sync.Once
	var wg sync.WaitGroup
	stopClients := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	// Also on a failure of the nemesis: the clients stop before the cluster does.
	t.Cleanup(stopClients)
	for id := range linClients {
		cli := newClient(t, c.endpoints()...)
		rng := rand.New(rand.NewPCG(seed, uint64(id)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			linClientLoop(cli, id, rng, stop, now, 2, 6, func(op porcupine.Operation) {
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			})
		}()
	}

	faults := runNemesis(t, c, rand.New(rand.NewPCG(seed, 0xdead)), duration)
	stopClients()

	counts := map[string]int{}
	for _, op := range history {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		kind := []string{"get", "put", "cas"}[in.op]
		switch {
		case out.unknown:
			kind += " unknown"
		case in.op == opCAS && out.succeeded:
			kind += " succeeded"
		case in.op == opCAS:
			kind += " failed"
		}
		counts[kind]++
	}
	t.Logf("%d operations in %v with %d faults: %v", len(history), duration, faults, counts)
	if len(history) < 200 {
		t.Fatalf("only %d operations completed; too few for the check to mean something", len(history))
	}
	checkStart := time.Now()
	result, info := porcupine.CheckOperationsVerbose(kvModel, history, 2*time.Minute)
	t.Logf("porcupine: %s in %v", result, time.Since(checkStart).Round(time.Millisecond))
	if result != porcupine.Ok {
		f, err := os.CreateTemp("", "raftkv-linearizability-*.html")
		if err == nil {
			f.Close()
			if err = porcupine.VisualizePath(kvModel, info, f.Name()); err == nil {
				t.Logf("visualization of the history: %s", f.Name())
			}
		}
		if err != nil {
			t.Logf("writing the visualization: %v", err)
		}
		t.Fatalf("the history is not linearizable (porcupine: %s); seed %d", result, seed)
	}
}

// linCall runs in through cli; ok is false when the call failed or timed out.
func linCall(cli *clientv3.Client, in linInput) (linOutput, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	switch in.op {
	case opGet:
		resp, err := cli.Get(ctx, in.key)
		if err != nil {
			return linOutput{}, false
		}
		if len(resp.Kvs) == 0 {
			return linOutput{value: ""}, true
		}
		return linOutput{value: string(resp.Kvs[0].Value)}, true
	case opPut:
		_, err := cli.Put(ctx, in.key, in.value)
		return linOutput{}, err == nil
	default:
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(in.key), "=", in.expect)).
			Then(clientv3.OpPut(in.key, in.value)).
			Commit()
		if err != nil {
			return linOutput{}, false
		}
		return linOutput{succeeded: resp.Succeeded}, true
	}
}

// runNemesis makes a fault every 2-3.5s until duration has passed, and returns how
// many it made. A fault kills with SIGKILL one member (often the leader) or,
// one time in four, two members, so the cluster loses its quorum; they restart
// 0.5-1.5s later. All members run again when it returns.
func runNemesis(t *testing.T, c *procCluster, rng *rand.Rand, duration time.Duration) int {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(duration)
	faults := 0
	for {
		pause := time.Duration(2000+rng.IntN(1500)) * time.Millisecond
		if time.Until(deadline) < pause+time.Second {
			time.Sleep(max(0, time.Until(deadline)))
			return faults
		}
		time.Sleep(pause)
		victims := []*procMember{c.members[rng.IntN(len(c.members))]}
		switch p := rng.Float64(); {
		case p < 0.25:
			victims = append(victims, c.others(victims[0])[rng.IntN(len(c.members)-1)])
		case p < 0.6:
			victims[0] = c.leader(5 * time.Second)
		}
		for _, v := range victims {
			c.kill(v)
		}
		faults++
		t.Logf("nemesis: killed %v at %v", names(victims), time.Since(begin).Round(time.Millisecond))
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		for _, v := range victims {
			c.start(v)
		}
	}
}

// linClientLoop is one client of a linearizability workload: get, put and cas on
// linKeys keys (a cas expects the value the client last saw), until stop closes.
// Each operation goes to record with its call and return times from now; one that
// failed is recorded as unknown (it may have taken effect), except a failed get.
// Between operations it sleeps minSleep+[0,spread) ms.
func linClientLoop(cli *clientv3.Client, id int, rng *rand.Rand, stop <-chan struct{}, now func() int64,
	minSleep, spread int, record func(porcupine.Operation)) {
	lastSeen := map[string]string{}
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		key := fmt.Sprintf("lin/%d", rng.IntN(linKeys))
		in := linInput{op: opGet, key: key}
		switch p := rng.Float64(); {
		case p < 0.3:
			in = linInput{op: opPut, key: key, value: fmt.Sprintf("c%d.%d", id, seq)}
		case p < 0.6 && lastSeen[key] != "":
			in = linInput{op: opCAS, key: key, value: fmt.Sprintf("c%d.%d", id, seq), expect: lastSeen[key]}
		}
		call := now()
		out, ok := linCall(cli, in)
		ret := now()
		switch {
		case !ok && in.op == opGet:
			continue // a failed read changed nothing
		case !ok:
			out, ret = linOutput{unknown: true}, neverReturned
		case in.op == opGet:
			lastSeen[key] = out.value
		case in.op == opPut || out.succeeded:
			lastSeen[key] = in.value // the next cas on the key likely expects the current value
		}
		record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
		time.Sleep(time.Duration(minSleep+rng.IntN(spread)) * time.Millisecond)
	}
}
