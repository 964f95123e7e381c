package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The lease keep-alive workload (h): w.keySpace leases granted before the warm-up (not
// measured), then kept alive by w.clients clients, each with its own connection and
// one LeaseKeepAlive stream, cycling through its share of the leases. A client keeps up
// to leaseInFlight requests outstanding on its stream: both servers answer a stream's
// requests one at a time and in order, so the stream is a pipeline, and a request's
// latency is from its send to its answer, queueing on the stream included.

const (
	// leaseInFlight is how many keep-alives a client has outstanding on its stream.
	leaseInFlight = 100
	// leaseTTLSeconds outlives any run: only the keep-alives' cost is measured.
	leaseTTLSeconds = 3600
	// leaseGrantWorkers grant the leases in parallel before the load.
	leaseGrantWorkers = 50
)

// grantLeases grants n leases through endpoint and returns their ids.
func grantLeases(ctx context.Context, endpoint string, n int) ([]int64, error) {
	conns, err := dialConns(endpoint, 1)
	if err != nil {
		return nil, err
	}
	defer closeConns(conns)
	ids := make([]int64, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, leaseGrantWorkers)
	for range leaseGrantWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				resp, err := conns[0].Grant(rctx, leaseTTLSeconds)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("granting lease %d of %d: %w", i+1, n, err)
					return
				}
				ids[i] = int64(resp.ID)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return ids, ctx.Err()
}

// runLeaseLoad is runLoad for the keep-alive workload.
func runLeaseLoad(ctx context.Context, w workload, endpoint string, timing loadTiming, hooks windowHooks) (loadResult, error) {
	ids, err := grantLeases(ctx, endpoint, w.keySpace)
	if err != nil {
		return loadResult{}, err
	}
	conns, err := dialConns(endpoint, w.clients)
	if err != nil {
		return loadResult{}, err
	}
	defer closeConns(conns)

	start := time.Now()
	windowStart := start.Add(timing.warmup)
	windowEnd := windowStart.Add(timing.duration)
	hists := make([]*Histogram, w.clients)
	errCounts := make([]int64, w.clients)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := range w.clients {
		hists[i] = NewHistogram()
		share := ids[i*len(ids)/w.clients : (i+1)*len(ids)/w.clients]
		wg.Go(func() {
			err := keepAliveClient(ctx, conns[i], share, windowStart, windowEnd, hists[i], &errCounts[i])
			if err != nil && ctx.Err() == nil {
				errCounts[i]++
				firstErr.CompareAndSwap(nil, err.Error())
			}
		})
	}
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

// keepAliveClient sends keep-alives for leases, round robin, on one stream until
// windowEnd, with up to leaseInFlight outstanding, and records the latency of those
// answered inside the window. An answer with TTL 0 (the lease is gone) is an error.
func keepAliveClient(ctx context.Context, cli *clientv3.Client, leases []int64, windowStart, windowEnd time.Time,
	hist *Histogram, errCount *int64) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(sctx)
	if err != nil {
		return err
	}
	// sent holds the send times of the requests outstanding, oldest first; its
	// capacity is the pipeline's depth.
	sent := make(chan time.Time, leaseInFlight)
	sendErr := make(chan error, 1)
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			now := time.Now()
			if !now.Before(windowEnd) {
				sendErr <- nil
				return
			}
			select {
			case sent <- now:
			case <-sctx.Done():
				sendErr <- nil
				return
			}
			if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: leases[i%len(leases)]}); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	for begin := range sent {
		resp, err := stream.Recv()
		if err != nil {
			cancel()
			for range sent {
			}
			return errors.Join(err, <-sendErr)
		}
		end := time.Now()
		if end.Before(windowStart) || !end.Before(windowEnd) {
			continue
		}
		if resp.TTL <= 0 {
			*errCount++
			continue
		}
		hist.Record(end.Sub(begin))
	}
	cancel()
	return <-sendErr
}
