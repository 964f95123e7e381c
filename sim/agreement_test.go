package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"raftkv/raft"
)

// TestBasicAgree: commands commit at consecutive indexes, each on every node, and
// nothing is applied before it is proposed (6.824 TestBasicAgree3B). Index 1 holds the
// first leader's no-op (§8), so commands start at 2.
func TestBasicAgree(t *testing.T) {
	h := newHarness(t, 3, Options{})
	leader := h.checkOneLeader()
	h.waitApplied(h.Status(leader).LastIndex, 3)
	want := h.CommittedIndex() + 1
	for i := range 3 {
		if n, _ := h.nCommitted(want); n > 0 {
			h.fatalf("%d nodes applied index %d before it was proposed", n, want)
		}
		got := h.one(fmt.Sprintf("cmd%d", i+1), 3, false)
		if got != want {
			h.fatalf("command %d went to index %d, want %d", i+1, got, want)
		}
		want++
	}
	h.finish()
}

// TestFollowerFailure: the cluster keeps committing with one follower down, commits
// nothing with a majority down, and catches the follower up when it returns
// (6.824 TestFailAgree3B and TestFollowerFailure3B).
func TestFollowerFailure(t *testing.T) {
	h := newHarness(t, 3, Options{})
	h.one("101", 3, false)

	leader1 := h.checkOneLeader()
	follower := h.others(leader1)[0]
	h.Disconnect(follower)
	h.one("102", 2, false)
	h.run(electionTimeout)
	h.one("103", 2, false)

	// With the follower back, everyone catches up.
	h.Connect(follower)
	h.one("104", 3, true)

	// With both followers gone, nothing commits.
	leader2 := h.checkOneLeader()
	for _, id := range h.others(leader2) {
		h.Disconnect(id)
	}
	index, _, err := h.Propose(leader2, []byte("105"))
	if err != nil {
		h.fatalf("leader %d refused a proposal: %v", leader2, err)
	}
	h.run(2 * electionTimeout)
	if n, _ := h.nCommitted(index); n > 0 {
		h.fatalf("%d nodes applied index %d with a majority cut off", n, index)
	}

	h.Heal()
	h.one("106", 3, true)
	h.finish()
}

// TestConcurrentStarts: proposals made back to back at one instant all commit, at
// consecutive indexes, in the order proposed (6.824 TestConcurrentStarts3B).
func TestConcurrentStarts(t *testing.T) {
	h := newHarness(t, 3, Options{})
	leader := h.checkOneLeader()
	h.waitApplied(h.Status(leader).LastIndex, 3)
	var indexes []uint64
	for i := range 5 {
		index, _, err := h.Propose(leader, []byte(fmt.Sprintf("c%d", i)))
		if err != nil {
			h.fatalf("proposal %d refused: %v", i, err)
		}
		indexes = append(indexes, index)
	}
	for i, index := range indexes {
		if i > 0 && index != indexes[i-1]+1 {
			h.fatalf("indexes %v are not consecutive", indexes)
		}
		if data := h.waitApplied(index, 3); string(data) != fmt.Sprintf("c%d", i) {
			h.fatalf("index %d holds %q, want %q", index, data, fmt.Sprintf("c%d", i))
		}
	}
	h.finish()
}

// TestRejoin: a leader cut off with entries it could not commit rejoins after others
// moved on; its stale entries are overwritten, never applied (6.824 TestRejoin3B).
func TestRejoin(t *testing.T) {
	h := newHarness(t, 3, Options{})
	h.one("101", 3, true)

	leader1 := h.checkOneLeader()
	h.Disconnect(leader1)
	for _, cmd := range []string{"stale102", "stale103", "stale104"} {
		if _, _, err := h.Propose(leader1, []byte(cmd)); err != nil {
			h.fatalf("cut-off leader %d refused %q: %v", leader1, cmd, err)
		}
	}
	h.one("103", 2, true)

	leader2 := h.checkOneLeader()
	h.Disconnect(leader2)
	h.Connect(leader1)
	h.one("104", 2, true)

	h.Connect(leader2)
	h.one("105", 3, true)
	for index := uint64(1); index <= h.CommittedIndex(); index++ {
		if data, _ := h.Command(index); strings.HasPrefix(string(data), "stale") {
			h.fatalf("index %d committed %q, proposed by the cut-off leader %d", index, data, leader1)
		}
	}
	h.finish()
}

// TestFastBackup: a node whose log diverges from the leader's by 60 entries is brought
// back in a handful of AppendEntries round trips, not one per entry: the follower's
// rejection names the conflicting term and where it starts (§5.3, the optimisation at
// its end; 6.824 TestBackup3B).
func TestFastBackup(t *testing.T) {
	h := newHarness(t, 5, Options{})
	h.one("start", 5, true)
	oldLeader := h.checkOneLeader()
	rest := h.others(oldLeader)
	follower, majority := rest[0], rest[1:]

	// The old leader and one follower take 60 entries they cannot commit.
	h.Partition([]uint64{oldLeader, follower}, majority)
	for i := range 60 {
		if _, _, err := h.Propose(oldLeader, []byte(fmt.Sprintf("stale%d", i))); err != nil {
			h.fatalf("leader %d refused stale%d: %v", oldLeader, i, err)
		}
	}
	h.until(time.Second, "the follower persisting the stale entries", func() bool {
		return h.Status(follower).LastIndex >= h.Status(oldLeader).LastIndex
	})

	// The majority moves on by 60 entries of its own.
	newLeader := h.leaderAmong(majority, 0)
	var last uint64
	for i := range 60 {
		index, _, err := h.Propose(newLeader, []byte(fmt.Sprintf("fresh%d", i)))
		if err != nil {
			h.fatalf("leader %d refused fresh%d: %v", newLeader, i, err)
		}
		last = index
	}
	h.waitApplied(last, 3)

	// A fresh election in the majority: its leader knows nothing of the stale pair and
	// starts probing them at the end of its long log.
	h.Crash(newLeader)
	h.Restart(newLeader)
	h.leaderAmong(majority, h.Status(newLeader).Term)

	// Heal and count the rejections on the way back.
	rejections := map[uint64]int{}
	h.OnSend(func(m raft.Message) {
		if m.Type == raft.MsgAppResp && m.Reject {
			rejections[m.From]++
		}
	})
	h.Heal()
	h.waitApplied(last, 5)
	h.OnSend(nil)
	t.Logf("rejections while backing up: %v", rejections)
	if rejections[oldLeader]+rejections[follower] == 0 {
		h.fatalf("no append was rejected: the scenario did not exercise backing up")
	}
	for _, id := range []uint64{oldLeader, follower} {
		if rejections[id] > 5 {
			h.fatalf("node %d rejected %d appends while backing up over 60 divergent entries; want at most 5", id, rejections[id])
		}
	}
	h.finish()
}

// TestMessageCount: elections, agreement and idleness cost a bounded number of
// messages: heartbeats, not floods (6.824 TestCount3B). Bounds count every message,
// a request and its answer separately.
func TestMessageCount(t *testing.T) {
	h := newHarness(t, 3, Options{})
	leader := h.checkOneLeader()
	// checkOneLeader ran until the first 500ms poll: an election plus a few heartbeats.
	if sent := h.Stats().TotalSent(); sent > 60 || sent < 1 {
		h.fatalf("%d messages to elect the first leader, want 1..60", sent)
	}
	h.waitApplied(h.Status(leader).LastIndex, 3)

	// Ten commands at once: each follower needs an append and an answer per batch, and
	// another to learn the commit.
	const commands = 10
	before := h.Stats().TotalSent()
	var last uint64
	for i := range commands {
		index, _, err := h.Propose(leader, []byte(fmt.Sprintf("c%d", i)))
		if err != nil {
			h.fatalf("proposal refused: %v", err)
		}
		last = index
	}
	h.waitApplied(last, 3)
	if sent := h.Stats().TotalSent() - before; sent > (commands+1+3)*3*2 {
		h.fatalf("%d messages to agree on %d commands, want at most %d", sent, commands, (commands+1+3)*3*2)
	}

	// One command at a time.
	before = h.Stats().TotalSent()
	for i := range commands {
		h.one(fmt.Sprintf("seq%d", i), 3, false)
	}
	if perCommand := float64(h.Stats().TotalSent()-before) / commands; perCommand > 12 {
		h.fatalf("%.1f messages per sequential agreement on 3 nodes, want at most 12", perCommand)
	}

	// Idle: one heartbeat and answer per follower per tick, nothing else.
	h.run(time.Second)
	before = h.Stats().TotalSent()
	h.run(time.Second)
	if idle := h.Stats().TotalSent() - before; idle > 3*20 {
		h.fatalf("%d messages in one idle second, want at most %d", idle, 3*20)
	}
	h.finish()
}
