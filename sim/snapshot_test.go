package sim

import (
	"fmt"
	"testing"
	"time"

	"raftkv/raft"
)

// countSnapshots counts the MsgSnap messages sent to each node from now on.
func (h *harness) countSnapshots() map[uint64]int {
	sent := map[uint64]int{}
	h.OnSend(func(m raft.Message) {
		if m.Type == raft.MsgSnap {
			sent[m.To]++
		}
	})
	return sent
}

// TestSnapshotLaggingFollower: a follower cut off while the others compact their logs
// past what it has is brought back by InstallSnapshot, then by appends (6.824
// TestSnapshotInstall3D).
func TestSnapshotLaggingFollower(t *testing.T) {
	h := newHarness(t, 3, Options{SnapshotEvery: 10})
	h.one("start", 3, true)
	lagging := h.others(h.checkOneLeader())[0]
	h.Disconnect(lagging)
	for i := range 50 {
		h.one(fmt.Sprintf("c%d", i), 2, true)
	}
	snaps := h.countSnapshots()
	h.Connect(lagging)
	h.one("after", 3, true)
	if snaps[lagging] == 0 {
		h.fatalf("lagging node %d caught up without a snapshot, though the others compacted past its log", lagging)
	}
	h.finish()
}

// TestSnapshotCrashedFollower: the same for a follower that was down, restarting from
// its own older snapshot (6.824 TestSnapshotInstallCrash3D).
func TestSnapshotCrashedFollower(t *testing.T) {
	h := newHarness(t, 3, Options{SnapshotEvery: 10})
	for i := range 15 {
		h.one(fmt.Sprintf("a%d", i), 3, true)
	}
	crashed := h.others(h.checkOneLeader())[0]
	h.Crash(crashed)
	for i := range 50 {
		h.one(fmt.Sprintf("b%d", i), 2, true)
	}
	snaps := h.countSnapshots()
	h.Restart(crashed)
	h.one("after", 3, true)
	if snaps[crashed] == 0 {
		h.fatalf("restarted node %d caught up without a snapshot, though the others compacted past its log", crashed)
	}
	h.finish()
}

// TestSnapshotUnreliable: snapshots on a lossy, reordering network with followers
// cut off and reconnected in turn (6.824 TestSnapshotInstallUnreliable3D).
func TestSnapshotUnreliable(t *testing.T) {
	h := newHarness(t, 3, Options{SnapshotEvery: 10, Net: UnreliableNet()})
	for round := range 6 {
		victim := h.peers[round%3]
		h.Disconnect(victim)
		for i := range 12 {
			h.one(fmt.Sprintf("r%d.%d", round, i), 2, true)
		}
		h.Connect(victim)
		h.one(fmt.Sprintf("r%d.done", round), 3, true)
	}
	h.finish()
}

// TestSnapshotRestartAppliesOnce: after compacting, each node restarts from its own
// snapshot; its application must resume exactly after the snapshot's index, neither
// re-applying nor skipping an entry (checked on every apply), and the cluster must go
// on (6.824 TestSnapshotAllCrash3D).
func TestSnapshotRestartAppliesOnce(t *testing.T) {
	h := newHarness(t, 3, Options{SnapshotEvery: 7})
	for round := range 5 {
		for i := range 11 {
			h.one(fmt.Sprintf("r%d.%d", round, i), 3, true)
		}
		before := h.CommittedIndex()
		for _, id := range h.peers {
			h.Crash(id)
		}
		for _, id := range h.peers {
			h.Restart(id)
			// The restart rebuilt the application from the snapshot and at once
			// applied the entries after it up to the durable commit index.
			first, _ := h.node(id).storage.FirstIndex()
			if got, commit := h.AppliedIndex(id), h.Status(id).Commit; got < first-1 || got > commit {
				h.fatalf("node %d restarted with its application at %d, want between its snapshot's index %d and its commit %d",
					id, got, first-1, commit)
			}
		}
		index := h.one(fmt.Sprintf("r%d.after", round), 3, true)
		if index <= before {
			h.fatalf("a command after the restart went to index %d, at or below the committed %d", index, before)
		}
	}
	h.finish()
}

// TestSnapshotDuringPartitionedLeader: a leader cut off while the others compact and
// elect anew must take a snapshot on rejoining, its stale suffix discarded.
func TestSnapshotDuringPartitionedLeader(t *testing.T) {
	h := newHarness(t, 5, Options{SnapshotEvery: 5})
	h.one("start", 5, true)
	old := h.checkOneLeader()
	h.Disconnect(old)
	for i := range 5 {
		if _, _, err := h.Propose(old, []byte(fmt.Sprintf("stale%d", i))); err != nil {
			h.fatalf("cut-off leader refused a proposal: %v", err)
		}
	}
	for i := range 30 {
		h.one(fmt.Sprintf("c%d", i), 4, true)
	}
	snaps := h.countSnapshots()
	h.Connect(old)
	h.one("after", 5, true)
	h.run(time.Second)
	if snaps[old] == 0 {
		h.fatalf("old leader %d rejoined without a snapshot", old)
	}
	h.finish()
}
