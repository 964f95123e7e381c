package sim

import (
	"testing"
	"time"

	"raftkv/raft"
)

// staleNet delays every message by 20 ms, so that crashes find messages in flight.
func staleNet() NetConfig {
	return NetConfig{MinDelay: 20 * time.Millisecond, MaxDelay: 20 * time.Millisecond}
}

// TestStaleMessagesReachTheNextIncarnation stages each way a message outlives a crash
// with StaleRate 1: a follower's ReadIndex request, in flight as it crashes, still
// reaches the leader; the leader's answer, in flight as the follower crashes again,
// reaches its next incarnation, which issued no such read and must take none; appends
// sent while the follower is down are queued and delivered when it restarts. With
// StaleRate 0 every one of them is lost.
func TestStaleMessagesReachTheNextIncarnation(t *testing.T) {
	for _, rate := range []float64{1, 0} {
		h := newSyncHarness(t, 3, Options{Net: staleNet(), StaleRate: rate})
		h.one("a", 3, true)
		leader := h.checkOneLeader()
		f := h.others(leader)[0]

		// The request leaves, the follower crashes and restarts at once.
		answerSent := false
		h.OnSend(func(m raft.Message) {
			if m.Type == raft.MsgReadIndexResp && m.To == f {
				answerSent = true
			}
		})
		ctx, err := h.ReadIndex(f)
		if err != nil {
			h.fatalf("ReadIndex at n%d: %v", f, err)
		}
		h.Crash(f)
		h.Restart(f)
		h.until(time.Second, "the leader answering", func() bool { return answerSent || rate == 0 })
		if rate == 0 {
			h.run(200 * time.Millisecond)
			if answerSent {
				h.fatalf("the leader answered a read whose request was lost with its sender")
			}
		}
		// The answer is in flight: the follower crashes and restarts again.
		h.Crash(f)
		h.Restart(f)
		h.run(100 * time.Millisecond)
		if _, answered := h.ReadResult(ctx); answered {
			h.fatalf("read %s, issued by n%d's previous incarnation, was answered", ctx, f)
		}

		// Appends to the follower while it is down wait for its restart.
		h.Crash(f)
		index := h.one("b", 2, true)
		h.run(100 * time.Millisecond)
		h.Restart(f)
		h.waitApplied(index, 3)
		h.run(100 * time.Millisecond)

		st := h.Stats()
		t.Logf("StaleRate %v: stale deliveries %v, parked %d", rate, st.StaleDelivered, st.StaleParked)
		for _, typ := range []raft.MessageType{raft.MsgReadIndex, raft.MsgReadIndexResp, raft.MsgApp, raft.MsgHeartbeat} {
			if got := st.StaleDelivered[typ]; (got > 0) != (rate > 0) {
				h.fatalf("StaleRate %v: %d stale %v delivered", rate, got, typ)
			}
		}
		if (st.StaleParked > 0) != (rate > 0) {
			h.fatalf("StaleRate %v: %d messages parked", rate, st.StaleParked)
		}
		h.finish()
	}
}

// TestSimulateDeliversStaleMessages checks that TestSimulate's random schedule, with
// StaleRate drawn per seed, brings messages of every kind that matters across crashes.
func TestSimulateDeliversStaleMessages(t *testing.T) {
	var stale [32]int
	parked := 0
	for seed := int64(1); seed <= 8; seed++ {
		c, err := Simulate(seed, 100*time.Second, nil)
		if err != nil {
			t.Fatalf("%v\nreplay: %s", err, replayCommand("TestSimulate", seed))
		}
		st := c.Stats()
		for i, n := range st.StaleDelivered {
			stale[i] += n
		}
		parked += st.StaleParked
	}
	t.Logf("over 8 seeds: stale deliveries %v, %d parked", stale, parked)
	for _, typ := range []raft.MessageType{raft.MsgApp, raft.MsgAppResp, raft.MsgVote, raft.MsgPreVote, raft.MsgHeartbeat, raft.MsgReadIndex} {
		if stale[typ] == 0 {
			t.Errorf("no stale %v delivered", typ)
		}
	}
	if parked == 0 {
		t.Errorf("no message parked for a node that was down")
	}
}
