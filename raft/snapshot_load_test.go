package raft

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// loadingStorage is a MemoryStorage whose snapshot data takes a while to load: its
// LoadSnapshot answers ErrSnapshotTemporarilyUnavailable the first busyCalls times.
type loadingStorage struct {
	*MemoryStorage
	busyCalls int
	calls     int
}

func (s *loadingStorage) LoadSnapshot() (Snapshot, error) {
	s.calls++
	if s.calls <= s.busyCalls {
		return Snapshot{}, ErrSnapshotTemporarilyUnavailable
	}
	return s.Snapshot()
}

// Reference: §7 and thesis §5 (InstallSnapshot), and the SnapshotLoader rule: while
// the leader's storage loads the snapshot, the leader goes on heartbeating (so no
// follower campaigns) and sends the snapshot once it is loaded. Before
// ErrSnapshotTemporarilyUnavailable the core panicked on any Snapshot error, and a
// Snapshot that read the file in place stopped the run loop for as long as it took.
func TestLeaderRetriesASnapshotStillLoading(t *testing.T) {
	const busy = 5
	loaders := map[uint64]*loadingStorage{}
	nw := newTestNetwork(t, 3, nil)
	for _, id := range nw.ids {
		loaders[id] = &loadingStorage{MemoryStorage: nw.storages[id], busyCalls: busy}
		nw.start(id, func(c *Config) { c.Storage = loaders[id] })
	}
	lead := nw.electLeader()
	lagging := nw.otherThan(lead)
	nw.isolate(lagging)
	for i := range 20 {
		if _, _, err := nw.nodes[lead].Propose(fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nw.settle()
	applied := nw.nodes[lead].Status().Applied
	if _, err := nw.storages[lead].CreateSnapshot(applied, Membership{}, []byte("snap")); err != nil {
		t.Fatal(err)
	}
	term := nw.nodes[lead].Status().Term
	nw.heal()
	// Each heartbeat answer from the lagging follower asks the storage again: after
	// busy answers the snapshot is there. Twice as many ticks, far below the
	// election timeout of 10 ticks the follower would need to campaign.
	nw.tickAll(2 * busy)
	if got := loaders[lead].calls; got <= busy {
		t.Fatalf("leader asked for the snapshot %d times, want more than %d (retry on heartbeat answers)", got, busy)
	}
	snap, _ := nw.storages[lagging].Snapshot()
	if snap.Index != applied || string(snap.Data) != "snap" {
		t.Fatalf("lagging follower snapshot = %d %q, want %d %q", snap.Index, snap.Data, applied, "snap")
	}
	for _, id := range nw.ids {
		if st := nw.nodes[id].Status(); st.Term != term || st.Lead != lead {
			t.Fatalf("node %d: term %d leader %d, want term %d leader %d (no election while the snapshot loaded)",
				id, st.Term, st.Lead, term, lead)
		}
	}
}

// Config.MaxInflightBytes: a leader sends a follower that acknowledges nothing at
// most MaxInflightBytes of entries (plus the append that crossed it), not
// MaxInflightMsgs appends of MaxSizePerMsg. With a durable Storage those entries are
// read on the leader's run loop: a learner catching up after a 655 MB snapshot had
// the leader read ~400 MB in one go, and the cluster held two or three elections.
func TestLeaderLimitsBytesInFlight(t *testing.T) {
	for _, limit := range []uint64{0, 4096} {
		nw := newTestNetwork(t, 3, func(c *Config) { c.MaxSizePerMsg, c.MaxInflightBytes = 1024, limit })
		lead := nw.electLeader()
		if _, _, err := nw.nodes[lead].Propose([]byte("first")); err != nil {
			t.Fatal(err)
		}
		nw.settle() // every follower in replicate
		slow := nw.otherThan(lead)
		var sent uint64
		for i := range 50 {
			if _, _, err := nw.nodes[lead].Propose(bytes.Repeat([]byte{byte(i)}, 500)); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				for _, m := range nw.collect() {
					if m.To == slow {
						if m.Type == MsgApp {
							for _, e := range m.Entries {
								sent += e.size()
							}
						}
						continue // the slow follower acknowledges nothing
					}
					_ = nw.nodes[m.To].Step(m)
				}
			}
		}
		switch {
		case limit == 0 && sent < 50*500:
			t.Fatalf("without a byte limit the leader sent %d bytes of entries to the silent follower, want all %d", sent, 50*500)
		case limit > 0 && sent > limit+1024:
			t.Fatalf("MaxInflightBytes %d: the leader sent %d bytes of entries to a follower that acknowledged none, want at most %d",
				limit, sent, limit+1024)
		}
		t.Logf("MaxInflightBytes %d: %d bytes in flight to the silent follower", limit, sent)
	}
}

func TestMaxInflightBytesBelowMaxSizePerMsgRefused(t *testing.T) {
	err := Config{ID: 1, Peers: []uint64{1}, Storage: NewMemoryStorage(), MaxSizePerMsg: 1 << 20, MaxInflightBytes: 1000}.Validate()
	if err == nil || !strings.Contains(err.Error(), "MaxInflightBytes 1000 is below MaxSizePerMsg 1048576") {
		t.Fatalf("Validate = %v; want MaxInflightBytes refused below MaxSizePerMsg", err)
	}
}
