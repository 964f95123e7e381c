package sim

import (
	"testing"
	"time"

	"raftkv/raft"
)

// TestFigure8Paper stages Figure 8 of the Raft paper (§5.4.2) step by step. An entry X
// of an old term comes to sit on a majority under a later leader, yet must not count as
// committed: a leader of an even later term, elected without X, overwrites it. The
// leader's no-op (§8) shifts indexes by one against the figure; MaxSizePerMsg lets
// one entry through per message so that X can be replicated without the no-op.
func TestFigure8Paper(t *testing.T) {
	h := newSyncHarness(t, 5, Options{Configure: func(cfg *raft.Config) { cfg.MaxSizePerMsg = 40 }})
	h.one("base", 5, true)
	s1 := h.checkOneLeader()

	// (a) S1 leads and replicates X to S2 only.
	rest := h.others(s1)
	s2, others := rest[0], rest[1:]
	h.Partition([]uint64{s1, s2}, others)
	xIndex, xTerm, err := h.Propose(s1, []byte("X"))
	if err != nil {
		h.fatalf("leader %d refused X: %v", s1, err)
	}
	h.until(time.Second, "S2 persisting X", func() bool { return h.Status(s2).LastIndex >= xIndex })
	h.Crash(s1)

	// (b) S5 is elected by S3, S4 and itself, and appends an entry (its no-op) at X's
	// index that reaches nobody.
	s5 := h.leaderAmong(others, xTerm)
	h.Partition([]uint64{s2}, []uint64{others[0]}, []uint64{others[1]}, []uint64{others[2]})
	s5Term := h.Status(s5).Term
	h.Crash(s5)
	var s3, s4 uint64
	for _, id := range others {
		if id != s5 {
			if s3 == 0 {
				s3 = id
			} else {
				s4 = id
			}
		}
	}

	// (c) S1 restarts and is elected by S3 and S4. It replicates X to them, so X is on
	// a majority (S1, S2, S3, S4), but none of S1's own-term entries get through.
	h.Restart(s1)
	h.Partition([]uint64{s1, s3, s4}, []uint64{s2})
	h.Intercept(func(m *raft.Message) bool {
		if m.From != s1 || m.Type != raft.MsgApp {
			return m.From != s1 || m.Type != raft.MsgSnap
		}
		for i, e := range m.Entries {
			if e.Term > xTerm {
				m.Entries = m.Entries[:i]
				break
			}
		}
		return true
	})
	h.leaderAmong([]uint64{s1}, s5Term)
	h.until(3*time.Second, "X reaching S3 and S4", func() bool {
		return h.Status(s3).LastIndex >= xIndex && h.Status(s4).LastIndex >= xIndex
	})
	h.run(electionTimeout / 2)
	if commit := h.Status(s1).Commit; commit >= xIndex {
		h.fatalf("leader %d of term %d committed index %d (X, term %d) by counting replicas of an old-term entry",
			s1, h.Status(s1).Term, xIndex, xTerm)
	}

	// (d) S1 crashes; S5 restarts, is elected by S3 and S4 (its last term is newer than
	// X's) and overwrites X everywhere.
	h.Crash(s1)
	h.Intercept(nil)
	h.Restart(s5)
	h.Partition([]uint64{s5, s3, s4}, []uint64{s2})
	h.leaderAmong([]uint64{s5}, h.Status(s3).Term)
	h.until(3*time.Second, "S5's entry committing at X's index", func() bool {
		_, ok := h.Command(xIndex)
		return ok
	})
	if data, _ := h.Command(xIndex); string(data) == "X" {
		h.fatalf("X committed at %d, although S5 held a newer entry there", xIndex)
	}

	h.Heal()
	h.Restart(s1)
	h.one("after", 5, true)
	h.finish()
}
