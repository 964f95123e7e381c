package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"raftkv/raft"
)

// BenchmarkNodeCommit measures three raft.Nodes on this Storage (real disk, fsync on)
// and an in-process network: each op is one 256-byte proposal, from one of `clients`
// concurrent proposers, committed and applied on the leader. It runs the Node's two
// write paths side by side: sync hides SaveAsync, so every Ready waits for its fsync
// in the run loop; async lets the Node pipeline writes. Besides ns/op it reports the
// process's CPU time per op (cpu-µs/op) and fsyncs per op on the leader.
//
//	go test -run XXX -bench NodeCommit -count 3 ./storage/
func BenchmarkNodeCommit(b *testing.B) {
	for _, clients := range []int{1, 100} {
		for _, mode := range []string{"sync", "async"} {
			b.Run(fmt.Sprintf("clients=%d/%s", clients, mode), func(b *testing.B) {
				benchmarkNodeCommit(b, clients, mode == "async")
			})
		}
	}
}

// syncOnly hides a Storage's SaveAsync, so the Node writes synchronously.
type syncOnly struct{ raft.Storage }

type benchApp struct {
	mu      sync.Mutex
	applied uint64
	cond    *sync.Cond
}

func benchmarkNodeCommit(b *testing.B, clients int, async bool) {
	dir := benchDirFor(b)
	peers := []uint64{1, 2, 3}
	net := raft.NewLocalNetwork()
	nodes := map[uint64]*raft.Node{}
	stores := map[uint64]*Storage{}
	apps := map[uint64]*benchApp{}
	var wg sync.WaitGroup
	for _, id := range peers {
		st, err := Open(NewOSFS(), filepath.Join(dir, fmt.Sprint(id)), Options{ClusterID: 7})
		if err != nil {
			b.Fatal(err)
		}
		stores[id] = st
		var rs raft.Storage = st
		if !async {
			rs = syncOnly{st}
		}
		node, err := raft.NewNode(raft.Config{ID: id, Peers: peers, Storage: rs,
			TickInterval: 10 * time.Millisecond, RandSeed: int64(id)}, net.Transport(id))
		if err != nil {
			b.Fatal(err)
		}
		app := &benchApp{}
		app.cond = sync.NewCond(&app.mu)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range node.Apply() {
				app.mu.Lock()
				app.applied = msg.Index
				app.mu.Unlock()
				app.cond.Broadcast()
			}
		}()
		nodes[id], apps[id] = node, app
	}
	defer func() {
		for _, id := range peers {
			nodes[id].Stop()
		}
		wg.Wait()
		for _, id := range peers {
			stores[id].Close()
		}
	}()

	value := make([]byte, 256)
	var leader uint64
	for deadline := time.Now().Add(10 * time.Second); leader == 0; {
		for _, id := range peers {
			if _, _, err := nodes[id].Propose(context.Background(), value); err == nil {
				leader = id
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	node, app := nodes[leader], apps[leader]
	propose := func() error {
		for {
			index, _, err := node.Propose(context.Background(), value)
			if errors.Is(err, raft.ErrTooManyUncommitted) {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			if err != nil {
				return err
			}
			app.mu.Lock()
			for app.applied < index {
				app.cond.Wait()
			}
			app.mu.Unlock()
			return nil
		}
	}

	syncsBefore := stores[leader].wal.syncs.Load()
	cpuBefore := cpuTime()
	b.ResetTimer()
	ops := make(chan struct{}, b.N)
	for range b.N {
		ops <- struct{}{}
	}
	close(ops)
	errs := make(chan error, clients)
	for range clients {
		go func() {
			var err error
			for range ops {
				if err = propose(); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpuBefore)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(stores[leader].wal.syncs.Load()-syncsBefore)/float64(b.N), "fsyncs/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
