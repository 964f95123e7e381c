package kv

import (
	"errors"
	"slices"
)

// proposalTable makes a proposal that its proposer may put in the log more than
// once apply at most once. The server proposes a write it forwarded to the leader
// again when it learns of a new leader (the old one may have died with it), under
// the same ProposalID; both copies can commit, and the second must not apply again.
//
// Each proposer (a server process: it draws a new random Proposer id each time it
// starts) numbers its proposals 1, 2, 3..., and tells with each one the lowest
// number it still waits for (LowestPending): every proposal below it has been
// answered, applied or not. The table keeps, per proposer, that floor and the
// Results of the proposals at or above it that have applied. A proposal applies if
// it is new; a copy of one that applied returns the first copy's Result; a copy below
// the floor is not applied at all (ErrProposalExpired): its proposer has stopped
// waiting for it, so either it applied before or its client was told the outcome is
// unknown. Nothing here depends on time: the floor and the Results move only with the
// entries applied, in log order, so every replica keeps the same table.
//
// Bounds, and what each costs:
//   - Results per proposer: at most MaxProposalResults. A proposer's results are
//     those of its proposals applied while an earlier one is still pending, so the
//     table holds about as many as the proposer has in flight. Past the bound, the
//     floor rises above the lowest result, which is dropped: any pending proposal
//     below the new floor is then refused (ErrProposalExpired) rather than applied,
//     so the price of the bound is a failed request, never a second application.
//   - Proposers: at most MaxProposers. A new one beyond that evicts the proposer
//     whose proposal applied longest ago (in log order). If a copy of one of the
//     evicted proposer's proposals applies later, it is taken as new, and a proposal
//     that had applied applies a second time. A server starts a new proposer at each
//     start, so this needs MaxProposers restarts (or members) to propose after the
//     evicted one's last proposal while one of its copies is still to commit.
type proposalTable struct {
	maxProposers, maxResults int
	byProposer               map[uint64]*proposer
	// The proposers form a list ordered by last use, as the session table's do:
	// head is the most recent, tail the next to evict.
	head, tail *proposer
}

// proposer is one proposer's entry.
type proposer struct {
	id uint64
	// lowest is the floor: proposals numbered below it are not applied.
	lowest uint64
	// results are the Results of the proposals numbered lowest or above that have
	// applied, in increasing seq. They are shared with the callers who got them
	// first, so nobody may modify them.
	results    []proposalResult
	prev, next *proposer
}

type proposalResult struct {
	seq    uint64
	result Result
}

// ProposalID names a proposal its proposer may put in the log more than once; see
// proposalTable.
type ProposalID struct {
	// Proposer is the proposer's id, unique in the cluster's life (the server draws
	// 64 random bits when it starts). Non-zero.
	Proposer uint64
	// Seq numbers the proposer's proposals, increasing; a copy keeps its number.
	Seq uint64
	// LowestPending is the lowest Seq the proposer still waited for when it sent
	// this copy: it has answered every proposal below it.
	LowestPending uint64
}

// ErrProposalExpired: a copy of a proposal whose proposer had stopped waiting for
// it, or whose result the table had to drop (see proposalTable), reached the log. It
// was not applied.
var ErrProposalExpired = errors.New("kv: proposal expired: its proposer no longer waits for it, or dropped it from the deduplication window; it was not applied")

func newProposalTable(maxProposers, maxResults int) proposalTable {
	return proposalTable{maxProposers: maxProposers, maxResults: maxResults, byProposer: map[uint64]*proposer{}}
}

// lookup finds id's proposer, adding it (and evicting the least recently used one
// if the table is full) if it is new, raises its floor to id.LowestPending, and
// marks it used.
func (t *proposalTable) lookup(id ProposalID) *proposer {
	p, _, _ := t.lookupEvicting(id, nil)
	return p
}

// lookupEvicting is lookup that also returns the id of the proposer it evicted to
// make room, 0 if none (proposer ids are not 0), and dropped with the numbers of
// the results that raising the floor dropped appended.
func (t *proposalTable) lookupEvicting(id ProposalID, dropped []uint64) (_ *proposer, evicted uint64, _ []uint64) {
	p := t.byProposer[id.Proposer]
	if p == nil {
		if len(t.byProposer) >= t.maxProposers {
			oldest := t.tail
			t.unlink(oldest)
			delete(t.byProposer, oldest.id)
			evicted = oldest.id
		}
		p = &proposer{id: id.Proposer}
		t.byProposer[id.Proposer] = p
		t.pushFront(p)
	} else if t.head != p {
		t.unlink(p)
		t.pushFront(p)
	}
	return p, evicted, p.raiseFloor(id.LowestPending, dropped)
}

// raiseFloor moves the floor up to lowest and drops the results below it,
// appending their numbers to dropped.
func (p *proposer) raiseFloor(lowest uint64, dropped []uint64) []uint64 {
	if lowest <= p.lowest {
		return dropped
	}
	p.lowest = lowest
	i, _ := slices.BinarySearchFunc(p.results, lowest, func(r proposalResult, seq uint64) int {
		switch {
		case r.seq < seq:
			return -1
		case r.seq > seq:
			return 1
		}
		return 0
	})
	for _, r := range p.results[:i] {
		dropped = append(dropped, r.seq)
	}
	p.results = slices.Delete(p.results, 0, i)
	return dropped
}

// find returns the result of proposal seq, if it applied and is kept.
func (p *proposer) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(p.results, seq, func(r proposalResult, seq uint64) int {
		switch {
		case r.seq < seq:
			return -1
		case r.seq > seq:
			return 1
		}
		return 0
	})
}

// record keeps the result of proposal seq, which was not in the table, dropping the
// lowest result (and raising the floor past it) if the proposer has too many; it
// returns dropped with the number of a result it dropped appended.
func (p *proposer) record(seq uint64, result Result, maxResults int, dropped []uint64) []uint64 {
	i, _ := p.find(seq)
	p.results = slices.Insert(p.results, i, proposalResult{seq: seq, result: result})
	if len(p.results) > maxResults {
		dropped = p.raiseFloor(p.results[0].seq+1, dropped)
	}
	return dropped
}

func (t *proposalTable) pushFront(p *proposer) {
	p.prev, p.next = nil, t.head
	if t.head != nil {
		t.head.prev = p
	}
	t.head = p
	if t.tail == nil {
		t.tail = p
	}
}

func (t *proposalTable) unlink(p *proposer) {
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		t.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		t.tail = p.prev
	}
	p.prev, p.next = nil, nil
}

// oldestFirst calls fn for each proposer from least to most recently used.
func (t *proposalTable) oldestFirst(fn func(*proposer)) {
	for p := t.tail; p != nil; p = p.prev {
		fn(p)
	}
}
