package raft

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// readRoundHeartbeats starts a ReadIndex round with ctx on the leader and returns the
// followers its heartbeats went to, delivering every message of that Ready (a cut
// link drops it).
func (nw *testNetwork) readRoundHeartbeats(lead uint64, ctx []byte) []uint64 {
	nw.t.Helper()
	if err := nw.nodes[lead].ReadIndex(ctx); err != nil {
		nw.t.Fatal(err)
	}
	var to []uint64
	for _, m := range nw.collect() {
		if m.Type == MsgHeartbeat && m.From == lead && bytes.Equal(m.Context, ctx) {
			to = append(to, m.To)
		}
		if !nw.cut[[2]uint64{m.From, m.To}] {
			_ = nw.nodes[m.To].Step(m)
		}
	}
	nw.settle()
	return to
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
			nw := newTestNetwork(t, n, nil)
			lead := nw.electLeader()
			if _, _, err := nw.nodes[lead].Propose([]byte("w")); err != nil {
				t.Fatal(err)
			}
			nw.settle()
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
			lost := peers[0]
			nw.isolate(lost)
			if to := nw.readRoundHeartbeats(lead, []byte("r3")); !slices.Equal(to, peers) {
				t.Fatalf("third round's heartbeats went to %v, want %v", to, peers)
			}
			if nw.released(lead, []byte("r3")) {
				t.Fatal("third round released without a quorum's answers")
			}
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
