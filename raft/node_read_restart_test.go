package raft

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The answer to a follower's read round that arrives after the follower restarted
// must not answer the restarted follower's reads: its index predates writes
// acknowledged since, which the follower may not have applied. A round's request
// context was the node id and a count from 1 in every run of the node, so the held
// answer to the old run's first round matched the new run's first round, which
// then read below an acknowledged write.
func TestNodeReadIndexAnswerFromBeforeARestartIsIgnored(t *testing.T) {
	var hold atomic.Bool
	var mu sync.Mutex
	var held []Message
	c := newWrappedTestCluster(t, 3, func(_ uint64, tr Transport) Transport {
		return filterTransport{next: tr, drop: func(m Message) bool {
			if hold.Load() && m.Type == MsgReadIndexResp {
				mu.Lock()
				held = append(held, m)
				mu.Unlock()
				return true
			}
			return false
		}}
	})
	takeHeld := func(to uint64) []Message {
		mu.Lock()
		defer mu.Unlock()
		var out, rest []Message
		for _, m := range held {
			if m.To == to {
				out = append(out, m)
			} else {
				rest = append(rest, m)
			}
		}
		held = rest
		return out
	}
	lead, index := c.propose([]byte("w0"))
	c.waitApplied(index, []byte("w0"), c.peers...)
	follower := c.others(lead)[0]

	hold.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.nodes[follower].ReadIndex(ctx); err == nil {
		t.Fatal("a read whose answer was held back was answered")
	}
	old := takeHeld(follower)
	if len(old) == 0 {
		t.Fatal("the leader sent no answer to the follower's read round")
	}
	c.stop(follower)
	var last uint64
	for i := range 5 {
		cmd := []byte{'w', byte('1' + i)}
		_, last = c.propose(cmd)
		c.waitApplied(last, cmd, lead)
	}
	c.start(follower, 0)
	// Its first round must be its first request: it knows the leader once it has
	// applied what the leader sent.
	c.waitApplied(last, []byte("w5"), follower)

	type result struct {
		index uint64
		err   error
	}
	done := make(chan result, 1)
	go func() {
		for {
			read, err := c.nodes[follower].ReadIndex(ctx)
			if errors.Is(err, ErrReadIndexNotReady) || errors.Is(err, ErrLeadershipLost) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			done <- result{read, err}
			return
		}
	}()
	// Hand the restarted follower the old answer once its own round is held too.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, m := range held {
			if m.To == follower {
				n++
			}
		}
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restarted follower's read round got no answer from the leader")
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, m := range old {
		if err := c.nodes[follower].Step(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case r := <-done:
		if r.err == nil && r.index < last {
			t.Fatalf("the restarted follower read at index %d, below the write acknowledged at %d: "+
				"it took the answer to its round from before the restart", r.index, last)
		}
		t.Fatalf("the restarted follower's read ended before its own answer came: %d, %v", r.index, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	hold.Store(false)
	for _, m := range takeHeld(follower) {
		if err := c.nodes[follower].Step(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.err != nil || r.index < last {
		t.Fatalf("the restarted follower's read: index %d, %v; want at least the acknowledged write at %d", r.index, r.err, last)
	}
}
