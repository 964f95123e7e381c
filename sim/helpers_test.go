package sim

import (
	"fmt"
	"testing"
	"time"

	"raftkv/raft"
)

// harness wraps a Cluster with the MIT 6.824 test helpers (checkOneLeader, one, ...),
// each of which fails the test with the seed and the command that replays it.
type harness struct {
	*Cluster
	t *testing.T
	// nextStart rotates the node one() tries first, as 6.824's does.
	nextStart int
}

// defaultScenarioSeed is the seed scenario tests use unless -seed names another.
const defaultScenarioSeed = 1

// newHarness starts a cluster of n nodes for a scenario test, on a reliable network,
// with no background clients unless opts says otherwise; -writes=async runs it with
// Options.AsyncWrites.
func newHarness(t *testing.T, n int, opts Options) *harness {
	t.Helper()
	applyWritesFlag(&opts)
	return startHarness(t, n, opts)
}

// newSyncHarness is newHarness for a scenario staged on the timing of synchronous
// writes, or on what they make durable (a node seen to hold an entry is crashed and
// must come back with it): it ignores -writes.
func newSyncHarness(t *testing.T, n int, opts Options) *harness {
	t.Helper()
	return startHarness(t, n, opts)
}

func startHarness(t *testing.T, n int, opts Options) *harness {
	t.Helper()
	opts.Nodes = n
	opts.Seed = defaultScenarioSeed
	if *flagSeed >= 0 {
		opts.Seed = *flagSeed
	}
	opts.Trace = traceWriter()
	t.Logf("seed %d; replay: %s", opts.Seed, replayCommand(t.Name(), opts.Seed))
	return &harness{Cluster: NewCluster(opts), t: t}
}

func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("seed %d at %v: %s\nreplay: %s", h.Seed(), h.Now(), fmt.Sprintf(format, args...), replayCommand(h.t.Name(), h.Seed()))
}

// ok fails the test on a checker violation.
func (h *harness) ok(err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("%v\nreplay: %s", err, replayCommand(h.t.Name(), h.Seed()))
	}
}

// run advances virtual time by d.
func (h *harness) run(d time.Duration) {
	h.t.Helper()
	h.ok(h.RunFor(d))
}

// until runs until cond holds, failing the test if it does not within limit.
func (h *harness) until(limit time.Duration, what string, cond func() bool) {
	h.t.Helper()
	held, err := h.RunUntil(limit, cond)
	h.ok(err)
	if !held {
		h.fatalf("%s did not happen within %v; %s", what, limit, h.describeNodes())
	}
}

// reachesQuorum reports whether node id is up and can talk to a majority of the
// cluster, itself included: 6.824's "connected".
func (h *harness) reachesQuorum(id uint64) bool {
	if !h.IsUp(id) {
		return false
	}
	reach := 0
	for _, other := range h.peers {
		if h.IsUp(other) && h.Connected(id, other) {
			reach++
		}
	}
	return reach > len(h.peers)/2
}

// leaders maps each term to the nodes that reach a quorum and believe they lead in it.
func (h *harness) leaders() map[uint64][]uint64 {
	byTerm := map[uint64][]uint64{}
	for _, id := range h.peers {
		if !h.reachesQuorum(id) {
			continue
		}
		if st := h.Status(id); st.State == raft.StateLeader {
			byTerm[st.Term] = append(byTerm[st.Term], id)
		}
	}
	return byTerm
}

// checkOneLeader waits up to 5 s for a leader among the nodes that reach a quorum and
// returns the one of the newest term; two leaders in one term fail the test.
func (h *harness) checkOneLeader() uint64 {
	h.t.Helper()
	for range 10 {
		h.run(500 * time.Millisecond)
		var newest, leader uint64
		for term, ids := range h.leaders() {
			if len(ids) > 1 {
				h.fatalf("term %d has %d leaders: %v", term, len(ids), ids)
			}
			if term > newest {
				newest, leader = term, ids[0]
			}
		}
		if leader != 0 {
			return leader
		}
	}
	h.fatalf("expected one leader, got none; %s", h.describeNodes())
	return 0
}

// leaderAmong waits up to 5 s for a leader among ids of a term above afterTerm.
func (h *harness) leaderAmong(ids []uint64, afterTerm uint64) uint64 {
	h.t.Helper()
	var leader uint64
	h.until(5*time.Second, fmt.Sprintf("a leader among %v after term %d", ids, afterTerm), func() bool {
		for _, id := range ids {
			if st := h.Status(id); h.IsUp(id) && st.State == raft.StateLeader && st.Term > afterTerm {
				leader = id
				return true
			}
		}
		return false
	})
	return leader
}

// checkNoLeader fails the test if any running node among ids believes it leads.
func (h *harness) checkNoLeader(ids ...uint64) {
	h.t.Helper()
	for _, id := range ids {
		if h.IsUp(id) && h.Status(id).State == raft.StateLeader {
			h.fatalf("node %d is leader of term %d, but it should not be; %s", id, h.Status(id).Term, h.describeNodes())
		}
	}
}

// checkTerms returns the term every running node agrees on, failing if they differ.
func (h *harness) checkTerms(ids ...uint64) uint64 {
	h.t.Helper()
	var term uint64
	for _, id := range ids {
		st := h.Status(id)
		if term == 0 {
			term = st.Term
		} else if st.Term != term {
			h.fatalf("nodes disagree on the term; %s", h.describeNodes())
		}
	}
	return term
}

// nCommitted counts the running nodes that have applied index, and returns the command
// there (nil for a no-op).
func (h *harness) nCommitted(index uint64) (int, []byte) {
	count := 0
	for _, id := range h.peers {
		if h.IsUp(id) && h.AppliedIndex(id) >= index {
			count++
		}
	}
	data, _ := h.Command(index)
	return count, data
}

// one is 6.824's cfg.one: offer cmd to each running node in turn until a leader takes
// it, then wait up to 2 s for at least expected nodes to apply it at the index the
// leader gave. With retry, a proposal that did not commit is offered again; the whole
// attempt has 10 s.
func (h *harness) one(cmd string, expected int, retry bool) uint64 {
	h.t.Helper()
	deadline := h.Now() + 10*time.Second
	for h.Now() < deadline {
		index := uint64(0)
		for range h.peers {
			id := h.peers[h.nextStart%len(h.peers)]
			h.nextStart++
			if !h.IsUp(id) {
				continue
			}
			if i, _, err := h.Propose(id, []byte(cmd)); err == nil {
				index = i
				break
			}
		}
		if index == 0 {
			h.run(50 * time.Millisecond)
			continue
		}
		committed := false
		_, err := h.RunUntil(2*time.Second, func() bool {
			n, data := h.nCommitted(index)
			committed = n >= expected && string(data) == cmd
			return committed
		})
		h.ok(err)
		if committed {
			return index
		}
		if !retry {
			n, data := h.nCommitted(index)
			h.fatalf("one(%q) failed to reach agreement: index %d applied by %d nodes (want %d), holds %q; %s",
				cmd, index, n, expected, data, h.describeNodes())
		}
	}
	h.fatalf("one(%q) failed to reach agreement within 10s; %s", cmd, h.describeNodes())
	return 0
}

// waitApplied waits until at least n running nodes have applied index and returns the
// command there.
func (h *harness) waitApplied(index uint64, n int) []byte {
	h.t.Helper()
	var data []byte
	h.until(5*time.Second, fmt.Sprintf("%d nodes applying %d", n, index), func() bool {
		count, d := h.nCommitted(index)
		data = d
		return count >= n
	})
	return data
}

// others returns the peers except the given ones.
func (h *harness) others(except ...uint64) []uint64 {
	var rest []uint64
next:
	for _, id := range h.peers {
		for _, x := range except {
			if id == x {
				continue next
			}
		}
		rest = append(rest, id)
	}
	return rest
}

// finish settles the cluster and runs the end-of-run checks.
func (h *harness) finish() {
	h.t.Helper()
	h.ok(h.Settle())
	h.ok(h.CheckFinal())
}
