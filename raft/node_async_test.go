package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// asyncResult is what ProposeAsync's done was given.
type asyncResult struct {
	index, term uint64
	err         error
}

// TestNodeProposeAsyncGivesIndexThenApplies: on the leader, done gets the index and
// term the command then applies at, once; a follower refuses at once and never
// calls done.
func TestNodeProposeAsyncGivesIndexThenApplies(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newTestCluster(t, 3)
	lead, first := c.propose([]byte("first"))
	c.waitApplied(first, []byte("first"), c.peers...)

	results := make(chan asyncResult, 2)
	done := func(index, term uint64, err error) { results <- asyncResult{index, term, err} }
	follower := c.others(lead)[0]
	if err := c.nodes[follower].ProposeAsync(context.Background(), nil, []byte("refused"), done); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ProposeAsync on follower %d: %v, want ErrNotLeader", follower, err)
	}
	if err := c.nodes[lead].ProposeAsync(context.Background(), nil, []byte("second"), done); err != nil {
		t.Fatalf("ProposeAsync on leader %d: %v", lead, err)
	}
	var got asyncResult
	select {
	case got = <-results:
	case <-time.After(10 * time.Second):
		t.Fatal("done not called within 10s")
	}
	term, _ := c.nodes[lead].State()
	if got.err != nil || got.index != first+1 || got.term != term {
		t.Fatalf("done(%d, %d, %v), want (%d, %d, nil)", got.index, got.term, got.err, first+1, term)
	}
	c.waitApplied(got.index, []byte("second"), c.peers...)
	select {
	case extra := <-results:
		t.Fatalf("done called again: %+v (the follower's refused call, or a second answer)", extra)
	case <-time.After(20 * time.Millisecond):
	}
}

// TestNodeProposeAsyncAnswersEveryQueuedProposalOnStop: proposals racing with Stop
// either are refused by ProposeAsync itself, or have done called exactly once, with
// an index or with ErrStopped; none is left without an answer (the run loop's
// refuseQueued as it ends, and the sender's own when it queued after that).
func TestNodeProposeAsyncAnswersEveryQueuedProposalOnStop(t *testing.T) {
	checkNoGoroutineLeak(t)
	for round := range 20 {
		node, err := NewNode(Config{ID: 1, Peers: []uint64{1}, Storage: NewMemoryStorage(), TickInterval: time.Millisecond},
			NewLocalNetwork().Transport(1))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range node.Apply() {
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !node.isLeader.Load() {
			if time.Now().After(deadline) {
				t.Fatal("single node not leader within 10s")
			}
			time.Sleep(time.Millisecond)
		}
		var (
			queued, answered, stopped atomic.Int64
			twice                     atomic.Int64
			wg                        sync.WaitGroup
		)
		for g := range 4 {
			wg.Go(func() {
				for i := range 500 {
					var calls atomic.Int32
					err := node.ProposeAsync(context.Background(), nil, fmt.Appendf(nil, "%d-%d", g, i), func(_, _ uint64, err error) {
						if calls.Add(1) > 1 {
							twice.Add(1)
						}
						answered.Add(1)
						if errors.Is(err, ErrStopped) {
							stopped.Add(1)
						}
					})
					if err == nil {
						queued.Add(1)
					}
				}
			})
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		node.Stop()
		wg.Wait()
		for answered.Load() < queued.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if a, q := answered.Load(), queued.Load(); a != q || twice.Load() != 0 {
			t.Fatalf("round %d: %d proposals queued, %d answers (%d ErrStopped), %d answered twice", round, q, a, stopped.Load(), twice.Load())
		}
	}
}
