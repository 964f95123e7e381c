package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// opKind is what a workload's clients send.
type opKind int

const (
	opPut opKind = iota
	opGetLinearizable
	opGetSerializable
	opMixed // getPercent linearizable gets, the rest puts
	// The watch workloads (watch.go): clients is the number of watchers, keySpace
	// the keys they watch.
	opWatchLatency
	opWatchFanout
	// opLeaseKeepAlive: keep-alives of keySpace leases (lease.go).
	opLeaseKeepAlive
	// opBigMixed: the big workload (bigdata.go) after loading keySpace keys of 1 KiB:
	// getPercent serializable gets of a random key, the rest puts of a random key
	// (with the same value, so the data set stays checkable).
	opBigMixed
	// What opBigMixed's clients send, request by request.
	opBigGet
	opBigPut
)

// workload is one row of the table.
type workload struct {
	letter      string // the issues' (a)..(j), then (l) and (m); (k) is bigWorkload
	name        string
	description string
	op          opKind
	clients     int // goroutines issuing requests back to back
	conns       int // clientv3 clients (gRPC connections) they share
	keySpace    int // puts cycle through this many keys; gets pick one at random
	getPercent  int // for opMixed
	// viaFollower sends the requests to a follower, which forwards each write to
	// the leader and answers once it has applied it, as clients that spread their
	// requests over every member's endpoint do.
	viaFollower bool
}

const (
	keyBytes   = 8
	valueBytes = 256
	// readKeySpace is how many keys are written before the first workload, so that
	// every get finds its key.
	readKeySpace = 1000
	// requestTimeout bounds one request; a request that takes longer counts as an error.
	requestTimeout = 10 * time.Second
)

var workloads = []workload{
	{"a", "put-1c", "put, 1 client on 1 connection", opPut, 1, 1, readKeySpace, 0, false},
	{"b", "put-100c", "put, 100 clients on 10 connections", opPut, 100, 10, readKeySpace, 0, false},
	{"c", "put-1000c", "put, 1000 clients on 100 connections", opPut, 1000, 100, readKeySpace, 0, false},
	{"d", "get-lin-100c", "linearizable get, 100 clients on 10 connections", opGetLinearizable, 100, 10, readKeySpace, 0, false},
	{"e", "get-ser-100c", "serializable get, 100 clients on 10 connections", opGetSerializable, 100, 10, readKeySpace, 0, false},
	{"f", "put-100k-keys", "put, 100 clients on 10 connections, cycling through 100,000 distinct keys", opPut, 100, 10, 100_000, 0, false},
	{"g", "mixed-90get", "90% linearizable get / 10% put, 100 clients on 10 connections", opMixed, 100, 10, readKeySpace, 90, false},
	{"h", "watch-latency", "1 writer, 1,000 watchers of one key on 10 connections: put until all have the event", opWatchLatency, 1000, 10, 1, 0, false},
	{"i", "watch-fanout", "10,000 watchers over 1,000 keys on 20 connections, 1,000 puts/s: events delivered", opWatchFanout, 10000, 20, readKeySpace, 0, false},
	{"j", "lease-keepalive", "keep-alives of 10,000 leases by 10 clients, one stream each with 100 in flight", opLeaseKeepAlive, 10, 10, 10_000, 0, false},
	{"l", "put-1c-fwd", "put, 1 client on 1 connection to a follower, which forwards each to the leader", opPut, 1, 1, readKeySpace, 0, true},
	{"m", "put-100c-fwd", "put, 100 clients on 10 connections to a follower, which forwards each to the leader", opPut, 100, 10, readKeySpace, 0, true},
}

// bigWorkload is (k), the big data set then mixed reads and writes. It is not part of
// "all", because it loads a gigabyte first (minutes on a small machine): name it.
// keys sizes the data set (--data-keys) and the name says it: big-1m-1k by default.
func bigWorkload(keys int) workload {
	return workload{"k", "big-" + bigLabel(keys) + "-1k",
		fmt.Sprintf("load %d keys of 1 KiB (not timed as requests), then 80%% serializable get / 20%% put of random ones of them, 100 clients on 10 connections; not in \"all\"", keys),
		opBigMixed, 100, 10, keys, 80, false}
}

// isBigWorkloadName says whether a --workloads entry names the big workload.
func isBigWorkloadName(w string) bool { return w == "k" || w == "big" || strings.HasPrefix(w, "big-") }

// selectWorkloads parses --workloads: names or letters, comma-separated; empty or
// "all" means all but the big workload, whose data set has bigKeys keys ("all,big"
// adds it).
func selectWorkloads(list string, bigKeys int) ([]workload, error) {
	if strings.TrimSpace(list) == "" || list == "all" {
		return workloads, nil
	}
	want := map[string]bool{}
	wantBig := false
	for _, w := range strings.Split(list, ",") {
		w = strings.TrimSpace(w)
		if isBigWorkloadName(w) {
			wantBig = true
			continue
		}
		if w == "all" { // "all,big": every workload and the big one
			for _, known := range workloads {
				want[known.name] = true
			}
			continue
		}
		found := false
		for _, known := range workloads {
			if w == known.name || w == known.letter {
				want[known.name] = true
				found = true
			}
		}
		if !found {
			var names []string
			for _, known := range workloads {
				names = append(names, known.name)
			}
			return nil, fmt.Errorf("--workloads: unknown workload %q; use letters a-m or names %s,%s", w, strings.Join(names, ","), bigWorkload(defaultBigKeys).name)
		}
	}
	var out []workload
	for _, w := range workloads { // in the table's order, whatever the flag's order
		if want[w.name] {
			out = append(out, w)
		}
	}
	if wantBig {
		out = append(out, bigWorkload(bigKeys))
	}
	return out, nil
}

// benchKey returns the i-th key: 8 bytes, lowercase hex.
func benchKey(i int) string { return fmt.Sprintf("%0*x", keyBytes, i) }

var benchValue = strings.Repeat("v", valueBytes)

// loadTiming is how long a workload runs: a warm-up whose requests are not recorded,
// then the measured window.
type loadTiming struct {
	warmup, duration time.Duration
}

// loadResult is what the clients saw during the measured window.
type loadResult struct {
	requests   int64 // completed without error inside the window
	errors     int64
	firstError string
	window     time.Duration
	hist       *Histogram
}

// windowHooks run when the measured window opens and closes (for /proc samples and
// profiles); either may be nil.
type windowHooks struct {
	atStart, atEnd func()
}

// dialConns opens n clientv3 clients of endpoint.
func dialConns(endpoint string, n int) ([]*clientv3.Client, error) {
	conns := make([]*clientv3.Client, 0, n)
	for range n {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{endpoint},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			closeConns(conns)
			return nil, fmt.Errorf("connecting to %s: %w", endpoint, err)
		}
		conns = append(conns, cli)
	}
	return conns, nil
}

func closeConns(conns []*clientv3.Client) {
	for _, c := range conns {
		c.Close()
	}
}

// preload writes keys 0..n-1 so that gets find them, with 20 writers on one connection.
func preload(ctx context.Context, endpoint string, n int) error {
	conns, err := dialConns(endpoint, 1)
	if err != nil {
		return err
	}
	defer closeConns(conns)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				_, err := conns[0].Put(rctx, benchKey(i), benchValue)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("preloading key %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// runLoad drives endpoint with w's clients for the warm-up and the window. Each client
// issues its next request as soon as the previous one returns (a closed loop), so the
// throughput is what the server sustains at that concurrency, and the latencies are
// those of requests that completed inside the window.
func runLoad(ctx context.Context, w workload, endpoint string, timing loadTiming, hooks windowHooks) (loadResult, error) {
	if w.op == opLeaseKeepAlive {
		return runLeaseLoad(ctx, w, endpoint, timing, hooks)
	}
	conns, err := dialConns(endpoint, w.conns)
	if err != nil {
		return loadResult{}, err
	}
	defer closeConns(conns)
	switch w.op {
	case opWatchLatency:
		return runWatchLatency(ctx, w, conns, timing, hooks)
	case opWatchFanout:
		return runWatchFanout(ctx, w, conns, timing, hooks)
	}

	start := time.Now()
	windowStart := start.Add(timing.warmup)
	windowEnd := windowStart.Add(timing.duration)
	var nextKey atomic.Int64 // puts cycle through the key space in order
	hists := make([]*Histogram, w.clients)
	errCounts := make([]int64, w.clients)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range w.clients {
		hists[i] = NewHistogram()
		cli := conns[i%len(conns)]
		rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
		wg.Go(func() {
			for ctx.Err() == nil {
				begin := time.Now()
				if !begin.Before(windowEnd) {
					return
				}
				op := w.op
				switch op {
				case opMixed:
					op = opPut
					if rng.IntN(100) < w.getPercent {
						op = opGetLinearizable
					}
				case opBigMixed:
					op = opBigPut
					if rng.IntN(100) < w.getPercent {
						op = opBigGet
					}
				}
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				var err error
				switch op {
				case opPut:
					key := benchKey(int(nextKey.Add(1)-1) % w.keySpace)
					_, err = cli.Put(rctx, key, benchValue)
				case opGetLinearizable:
					_, err = cli.Get(rctx, benchKey(rng.IntN(readKeySpace)))
				case opGetSerializable:
					_, err = cli.Get(rctx, benchKey(rng.IntN(readKeySpace)), clientv3.WithSerializable())
				case opBigGet:
					var resp *clientv3.GetResponse
					i := rng.IntN(w.keySpace)
					if resp, err = cli.Get(rctx, bigKey(i), clientv3.WithSerializable()); err == nil && len(resp.Kvs) == 0 {
						err = fmt.Errorf("key %s of the loaded data set is missing", bigKey(i))
					}
				case opBigPut:
					i := rng.IntN(w.keySpace)
					_, err = cli.Put(rctx, bigKey(i), string(bigValue(i)))
				}
				cancel()
				end := time.Now()
				if end.Before(windowStart) || !end.Before(windowEnd) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						errCounts[i]++
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				hists[i].Record(end.Sub(begin))
			}
		})
	}

	// The hooks run on their own clock so that a slow request cannot delay them.
	var hookWG sync.WaitGroup
	hookWG.Go(func() {
		for _, at := range []struct {
			when time.Time
			fn   func()
		}{{windowStart, hooks.atStart}, {windowEnd, hooks.atEnd}} {
			select {
			case <-time.After(time.Until(at.when)):
			case <-ctx.Done():
				return
			}
			if at.fn != nil {
				at.fn()
			}
		}
	})
	wg.Wait()
	hookWG.Wait()
	if ctx.Err() != nil {
		return loadResult{}, errInterrupted
	}

	res := loadResult{window: timing.duration, hist: NewHistogram()}
	for i, h := range hists {
		res.hist.Merge(h)
		res.errors += errCounts[i]
	}
	res.requests = int64(res.hist.Count())
	if s, ok := firstErr.Load().(string); ok {
		res.firstError = s
	}
	return res, nil
}
