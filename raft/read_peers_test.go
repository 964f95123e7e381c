package raft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// readRoundHeartbeats starts a ReadIndex round with ctx on the leader and returns the
// followers its heartbeats went to, delivering every message of that Ready (a cut
// link drops it).
func (nw *testNetwork) readRoundHeartbeats(lead uint64, ctx []byte) []uint64 {
	nw.t.Helper()
	if err := nw.nodes[lead].ReadIndex(ctx); err != nil {
		nw.t.Fatal(err)
	}
	return nw.deliverHeartbeats(lead, ctx)
}

// deliverHeartbeats delivers every message the nodes have to send (a cut link drops
// it), settles the network, and returns the followers that lead's heartbeats went to:
// those carrying ctx, or all of them for a nil ctx.
func (nw *testNetwork) deliverHeartbeats(lead uint64, ctx []byte) []uint64 {
	nw.t.Helper()
	var to []uint64
	for _, m := range nw.collect() {
		if m.Type == MsgHeartbeat && m.From == lead && (ctx == nil || bytes.Equal(m.Context, ctx)) {
			to = append(to, m.To)
		}
		if !nw.cut[[2]uint64{m.From, m.To}] {
			_ = nw.nodes[m.To].Step(m)
		}
	}
	nw.settle()
	return to
}

// stallRoundOnALostPeer cuts off peers[0], the first of the followers that completed
// the last round, and starts a round with ctx, which must ask peers alone and wait
// for want of a quorum's answers. It returns the lost follower.
func (nw *testNetwork) stallRoundOnALostPeer(lead uint64, peers []uint64, ctx []byte) uint64 {
	nw.t.Helper()
	lost := peers[0]
	nw.isolate(lost)
	if to := nw.readRoundHeartbeats(lead, ctx); !slices.Equal(to, peers) {
		nw.t.Fatalf("round %s's heartbeats went to %v, want %v", ctx, to, peers)
	}
	if nw.released(lead, ctx) {
		nw.t.Fatalf("round %s released without a quorum's answers", ctx)
	}
	return lost
}

// leaderWithAWrite is a network of n nodes whose leader has committed a write of its
// term, so that it may serve ReadIndex requests.
func leaderWithAWrite(t *testing.T, n int) (*testNetwork, uint64) {
	nw := newTestNetwork(t, n, nil)
	lead := nw.electLeader()
	if _, _, err := nw.nodes[lead].Propose([]byte("w")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	return nw, lead
}

// released reports whether the leader has handed out the read state of ctx, and
// forgets the read states seen.
func (nw *testNetwork) released(lead uint64, ctx []byte) bool {
	ok := slices.ContainsFunc(nw.readStates[lead], func(rs ReadState) bool { return bytes.Equal(rs.RequestCtx, ctx) })
	nw.readStates[lead] = nil
	return ok
}

// Reference: thesis §6.4 needs a majority's answers to a ReadIndex round. Once a round
// has completed, the next asks only the followers that completed it; if one of them
// is lost, the next regular heartbeat asks everyone, the round completes with the
// others, and they are asked from then on.
func TestReadIndexRoundAsksTheLastQuorum(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d voters", n), func(t *testing.T) {
			nw, lead := leaderWithAWrite(t, n)
			quorum := n/2 + 1

			// The first round knows no quorum yet: every follower is asked.
			if to := nw.readRoundHeartbeats(lead, []byte("r1")); len(to) != n-1 {
				t.Fatalf("first round's heartbeats went to %v, want all %d followers", to, n-1)
			}
			if !nw.released(lead, []byte("r1")) {
				t.Fatal("first round not released")
			}

			// The next asks the quorum-1 followers that completed it, and completes.
			peers := nw.readRoundHeartbeats(lead, []byte("r2"))
			if len(peers) != quorum-1 {
				t.Fatalf("second round's heartbeats went to %v, want %d followers", peers, quorum-1)
			}
			if !nw.released(lead, []byte("r2")) {
				t.Fatal("second round not released")
			}

			// One of them is lost: the round waits for the next heartbeat, which
			// asks every follower, and completes without it.
			lost := nw.stallRoundOnALostPeer(lead, peers, []byte("r3"))
			nw.nodes[lead].Tick() // HeartbeatTicks is 1
			nw.settle()
			if !nw.released(lead, []byte("r3")) {
				t.Fatal("third round not released by the next heartbeat")
			}

			// The followers that completed it are asked next, the lost one not.
			to := nw.readRoundHeartbeats(lead, []byte("r4"))
			if len(to) != quorum-1 || slices.Contains(to, lost) {
				t.Fatalf("fourth round's heartbeats went to %v, want %d followers without %d", to, quorum-1, lost)
			}
			if !nw.released(lead, []byte("r4")) {
				t.Fatal("fourth round not released")
			}
		})
	}
}

// With ReadIndexToAll every round asks every follower, as etcd's raft does.
func TestReadIndexToAllAsksEveryFollower(t *testing.T) {
	nw := newTestNetwork(t, 3, func(c *Config) { c.ReadIndexToAll = true })
	lead := nw.electLeader()
	if _, _, err := nw.nodes[lead].Propose([]byte("w")); err != nil {
		t.Fatal(err)
	}
	nw.settle()
	for i := range 3 {
		ctx := fmt.Appendf(nil, "r%d", i)
		if to := nw.readRoundHeartbeats(lead, ctx); len(to) != 2 {
			t.Fatalf("round %d's heartbeats went to %v, want both followers", i, to)
		}
		if !nw.released(lead, ctx) {
			t.Fatalf("round %d not released", i)
		}
	}
}

// hedgeHeartbeats has the leader hedge its pending ReadIndex round and returns the
// followers the hedge's heartbeats went to, delivering every message.
func (nw *testNetwork) hedgeHeartbeats(lead uint64) []uint64 {
	nw.t.Helper()
	nw.nodes[lead].HedgeReadIndex()
	return nw.deliverHeartbeats(lead, nil)
}

// A round that asked only the last quorum, one of which does not answer, is
// completed by the hedge, which asks the followers the round skipped, without
// waiting for the next heartbeat; a second hedge, or one of a round that asked
// everyone, sends nothing.
func TestReadIndexHedgeAsksTheSkippedFollowers(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d voters", n), func(t *testing.T) {
			nw, lead := leaderWithAWrite(t, n)
			quorum := n/2 + 1

			everyone := nw.readRoundHeartbeats(lead, []byte("r1"))
			if !nw.released(lead, []byte("r1")) {
				t.Fatal("first round not released")
			}
			if to := nw.hedgeHeartbeats(lead); len(to) != 0 {
				t.Fatalf("hedging after a round that asked everyone sent heartbeats to %v", to)
			}
			peers := nw.readRoundHeartbeats(lead, []byte("r2"))
			if !nw.released(lead, []byte("r2")) {
				t.Fatal("second round not released")
			}

			lost := nw.stallRoundOnALostPeer(lead, peers, []byte("r3"))
			skipped := slices.DeleteFunc(slices.Clone(everyone), func(id uint64) bool { return slices.Contains(peers, id) })
			to := nw.hedgeHeartbeats(lead)
			slices.Sort(to)
			if !slices.Equal(to, skipped) {
				t.Fatalf("the hedge's heartbeats went to %v, want the %d followers the round skipped, %v", to, n-quorum, skipped)
			}
			if !nw.released(lead, []byte("r3")) {
				t.Fatal("third round not released by the hedge")
			}
			if to := nw.hedgeHeartbeats(lead); len(to) != 0 {
				t.Fatalf("a second hedge sent heartbeats to %v", to)
			}
			if to := nw.readRoundHeartbeats(lead, []byte("r4")); len(to) != quorum-1 || slices.Contains(to, lost) {
				t.Fatalf("fourth round's heartbeats went to %v, want %d followers without %d", to, quorum-1, lost)
			}
		})
	}
}

// The leader's Node hedges a round that is out for ReadIndexHedgeDelay, for its own
// reads and for those a follower forwards: with the follower that completed the last
// round silent to read rounds, each read completes within a few milliseconds, not at
// the next heartbeat (100ms apart here).
func TestNodeReadIndexHedgesASilentFollower(t *testing.T) {
	checkNoGoroutineLeak(t)
	var silent atomic.Uint64 // the follower whose answers to read rounds are dropped
	c := newWrappedTestCluster(t, 3, func(_ uint64, tr Transport) Transport {
		return filterTransport{next: tr, drop: func(m Message) bool {
			return m.Type == MsgHeartbeatResp && len(m.Context) > 0 && m.From == silent.Load()
		}}
	}, func(c *testCluster) {
		c.tick = 100 * time.Millisecond
		c.config = func(cfg *Config) { cfg.ReadIndexHedgeDelay = time.Millisecond }
	})
	lead, index := c.propose([]byte("w"))
	c.waitApplied(index, []byte("w"), c.peers...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	read := func(at uint64) time.Duration {
		began := time.Now()
		for {
			got, err := c.nodes[at].ReadIndex(ctx)
			if err == nil {
				if got < index {
					t.Fatalf("read index %d below the applied write at %d", got, index)
				}
				return time.Since(began)
			}
			if !errors.Is(err, ErrReadIndexNotReady) {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
			began = time.Now()
		}
	}
	read(lead)
	followers := c.others(lead)
	for _, at := range []uint64{lead, followers[0]} {
		// Silence each follower in turn, so that every round asks only a silent one.
		var took []time.Duration
		for i := range 10 {
			silent.Store(followers[i%2])
			took = append(took, read(at))
		}
		t.Logf("reads on node %d (leader %d) took %v", at, lead, took)
		if slow := slices.IndexFunc(took, func(d time.Duration) bool { return d > 60*time.Millisecond }); slow >= 0 {
			t.Fatalf("read %d on node %d took %v with follower %d silent: the round waited for a heartbeat instead of hedging (all: %v)",
				slow, at, took[slow], followers[slow%2], took)
		}
	}
}
