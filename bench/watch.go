package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The watch workloads. Watchers are spread over the workload's connections, all the
// watches of one connection on one gRPC stream (clientv3 puts the watches of one
// context on one stream). Each put's value starts with its sequence number and the
// time it was sent, so a watcher knows, from the event alone, which put it is and
// how long it took to arrive.
const (
	// watchFanoutPutsPerSec is the fan-out workload's write rate, spread over
	// watchFanoutWriters paced writers.
	watchFanoutPutsPerSec = 1000
	watchFanoutWriters    = 10
	// watchLatencyKey is the key the latency workload's watchers watch.
	watchLatencyKey = "watch-latency"
	// watchSetupTimeout bounds the creation of all the watches.
	watchSetupTimeout = 60 * time.Second
)

// stampedValue is benchValue with seq and the send time in its first 16 bytes.
func stampedValue(seq uint64, sent time.Time) string {
	b := []byte(benchValue)
	binary.BigEndian.PutUint64(b[0:8], seq)
	binary.BigEndian.PutUint64(b[8:16], uint64(sent.UnixNano()))
	return string(b)
}

func readStamp(value []byte) (seq uint64, sent time.Time, ok bool) {
	if len(value) < 16 {
		return 0, time.Time{}, false
	}
	return binary.BigEndian.Uint64(value[0:8]), time.Unix(0, int64(binary.BigEndian.Uint64(value[8:16]))), true
}

// openWatches opens n watches over conns (round-robin), the i-th on keyOf(i), and
// waits until every one is created. Each watch's responses go to onEvents, called
// from the watch's own goroutine; the watches end with ctx.
func openWatches(ctx context.Context, conns []*clientv3.Client, n int, keyOf func(int) string,
	onEvents func(watcher int, resp clientv3.WatchResponse)) (*sync.WaitGroup, error) {
	var wg sync.WaitGroup
	created := make(chan error, n)
	for i := range n {
		ch := conns[i%len(conns)].Watch(ctx, keyOf(i), clientv3.WithCreatedNotify())
		wg.Go(func() {
			first := true
			for resp := range ch {
				if first {
					first = false
					if !resp.Created {
						created <- fmt.Errorf("watch %d: first response is not Created: %v", i, resp.Err())
						return
					}
					created <- nil
					continue
				}
				onEvents(i, resp)
			}
			if first {
				created <- fmt.Errorf("watch %d closed before it was created", i)
			}
		})
	}
	timeout := time.After(watchSetupTimeout)
	for range n {
		select {
		case err := <-created:
			if err != nil {
				return &wg, err
			}
		case <-timeout:
			return &wg, fmt.Errorf("the %d watches were not all created within %v", n, watchSetupTimeout)
		case <-ctx.Done():
			return &wg, ctx.Err()
		}
	}
	return &wg, nil
}

// runWatchLatency: one writer puts to one key and waits until all w.clients watchers
// of the key have the event, then puts again; a request is one put, its latency the
// time from sending it to the last watcher receiving it.
func runWatchLatency(ctx context.Context, w workload, conns []*clientv3.Client, timing loadTiming, hooks windowHooks) (loadResult, error) {
	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	type round struct {
		seq     uint64
		pending atomic.Int64
		done    chan struct{}
	}
	var current atomic.Pointer[round]
	wg, err := openWatches(watchCtx, conns, w.clients, func(int) string { return watchLatencyKey },
		func(_ int, resp clientv3.WatchResponse) {
			for _, ev := range resp.Events {
				seq, _, ok := readStamp(ev.Kv.Value)
				if r := current.Load(); ok && r != nil && r.seq == seq && r.pending.Add(-1) == 0 {
					close(r.done)
				}
			}
		})
	defer func() { stopWatches(); wg.Wait() }()
	if err != nil {
		return loadResult{}, err
	}

	hist := NewHistogram()
	var errs int64
	var firstErr string
	start := time.Now()
	windowStart := start.Add(timing.warmup)
	windowEnd := windowStart.Add(timing.duration)
	hookDone := runHooks(ctx, windowStart, windowEnd, hooks)
	for seq := uint64(1); ctx.Err() == nil; seq++ {
		begin := time.Now()
		if !begin.Before(windowEnd) {
			break
		}
		r := &round{seq: seq, done: make(chan struct{})}
		r.pending.Store(int64(w.clients))
		current.Store(r)
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		_, err := conns[0].Put(rctx, watchLatencyKey, stampedValue(seq, begin))
		if err == nil {
			select {
			case <-r.done:
			case <-rctx.Done():
				err = fmt.Errorf("put %d: %d of %d watchers had no event within %v", seq, r.pending.Load(), w.clients, requestTimeout)
			}
		}
		cancel()
		end := time.Now()
		if end.Before(windowStart) || !end.Before(windowEnd) {
			continue
		}
		if err != nil {
			errs++
			if firstErr == "" {
				firstErr = err.Error()
			}
			continue
		}
		hist.Record(end.Sub(begin))
	}
	<-hookDone
	if ctx.Err() != nil {
		return loadResult{}, errInterrupted
	}
	return loadResult{requests: int64(hist.Count()), errors: errs, firstError: firstErr, window: timing.duration, hist: hist}, nil
}

// runWatchFanout: w.clients watchers over w.keySpace keys (the same number on each)
// while paced writers put watchFanoutPutsPerSec to those keys in turn; a request is
// one event delivered, its latency the time from sending the put to the watcher
// receiving it.
func runWatchFanout(ctx context.Context, w workload, conns []*clientv3.Client, timing loadTiming, hooks windowHooks) (loadResult, error) {
	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	start := time.Now().Add(watchSetupTimeout) // moved to the real start once the watches are up
	var windowStart, windowEnd atomic.Int64
	windowStart.Store(start.UnixNano())
	windowEnd.Store(start.UnixNano())
	// One histogram per connection, its watchers taking turns.
	type shard struct {
		mu   sync.Mutex
		hist *Histogram
	}
	shards := make([]*shard, len(conns))
	for i := range shards {
		shards[i] = &shard{hist: NewHistogram()}
	}
	wg, err := openWatches(watchCtx, conns, w.clients, func(i int) string { return benchKey(i % w.keySpace) },
		func(i int, resp clientv3.WatchResponse) {
			now := time.Now()
			if n := now.UnixNano(); n < windowStart.Load() || n >= windowEnd.Load() {
				return
			}
			sh := shards[i%len(shards)]
			sh.mu.Lock()
			for _, ev := range resp.Events {
				if _, sent, ok := readStamp(ev.Kv.Value); ok {
					sh.hist.Record(now.Sub(sent))
				}
			}
			sh.mu.Unlock()
		})
	defer func() { stopWatches(); wg.Wait() }()
	if err != nil {
		return loadResult{}, err
	}

	start = time.Now()
	ws, we := start.Add(timing.warmup), start.Add(timing.warmup+timing.duration)
	windowStart.Store(ws.UnixNano())
	windowEnd.Store(we.UnixNano())
	hookDone := runHooks(ctx, ws, we, hooks)
	var errs atomic.Int64
	var firstErr atomic.Value
	var seq atomic.Uint64
	var writers sync.WaitGroup
	interval := time.Second * watchFanoutWriters / watchFanoutPutsPerSec
	for wi := range watchFanoutWriters {
		cli := conns[wi%len(conns)]
		writers.Go(func() {
			ticker := time.NewTicker(interval)
			defer ticker.Stop()
			for {
				select {
				case <-ticker.C:
				case <-ctx.Done():
					return
				}
				now := time.Now()
				if !now.Before(we) {
					return
				}
				n := seq.Add(1)
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				_, err := cli.Put(rctx, benchKey(int(n)%w.keySpace), stampedValue(n, now))
				cancel()
				if err != nil && ctx.Err() == nil && now.After(ws) {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	writers.Wait()
	<-hookDone
	if ctx.Err() != nil {
		return loadResult{}, errInterrupted
	}
	res := loadResult{window: timing.duration, hist: NewHistogram(), errors: errs.Load()}
	for _, sh := range shards {
		sh.mu.Lock()
		res.hist.Merge(sh.hist)
		sh.mu.Unlock()
	}
	res.requests = int64(res.hist.Count())
	if s, ok := firstErr.Load().(string); ok {
		res.firstError = s
	}
	return res, nil
}

// runHooks runs the window's hooks on their own clock; the channel closes when both
// have run (or ctx ended).
func runHooks(ctx context.Context, windowStart, windowEnd time.Time, hooks windowHooks) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
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
	}()
	return done
}
