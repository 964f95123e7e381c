package kv

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// The proposal table (proposals.go) in the engine. It stays in memory, bounded by
// Config.MaxProposers and MaxProposalResults; each change is written in the batch
// of the entry that made it, a result at a time rather than a proposer's whole
// list:
//
//	'P' proposer:8          -> lastUsed:uvarint lowest:uvarint
//	'p' proposer:8 seq:8    -> result (codec_result.go)
//
// lastUsed is the log index of the proposer's last use, from which opening the
// engine rebuilds the eviction order. The records are exactly the table's: a
// result the table drops (below a raised floor, or past MaxProposalResults) is
// deleted with a point delete, and an evicted proposer's results with one range
// delete. Not a range delete per raised floor: a proposer with one proposal in
// flight raises its floor at every entry, and pebble fragments a memtable's
// overlapping range deletions, [0, n) for n = 1, 2, 3..., in memory quadratic in
// their number (TestApplyOnceRisingFloorIsCheap: 302 MB for 5,000 entries).

const (
	engineProposerPrefix = 'P'
	engineProposalPrefix = 'p'
)

func proposerKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{engineProposerPrefix}, id)
}

// proposalsEnd is the least key above every result of proposer id.
func proposalsEnd(id uint64) []byte {
	return prefixSuccessor(binary.BigEndian.AppendUint64([]byte{engineProposalPrefix}, id))
}

func proposalKey(id, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte{engineProposalPrefix}, id), seq)
}

// applyOnce is Store.ApplyOnce's table logic for the engine, after the applied
// index check: it answers a copy of a proposal from the table, or runs execute
// and records its result, writing what changed into w as entry index.
func (w *engineWrite) applyOnce(t *proposalTable, id ProposalID, index uint64, execute func() Result) Result {
	if id.Proposer == 0 {
		return Result{Err: ErrInvalidCommand}
	}
	p, evicted, dropped := t.lookupEvicting(id, w.droppedSeqs[:0])
	if evicted != 0 {
		_ = w.b.DeleteRange(proposalKey(evicted, 0), proposalsEnd(evicted), nil)
		_ = w.b.Delete(proposerKey(evicted), nil)
	}
	var res Result
	switch i, found := p.find(id.Seq); {
	case id.Seq < p.lowest:
		res = Result{Err: ErrProposalExpired}
	case found:
		res = p.results[i].result
	default:
		res = execute()
		dropped = p.record(id.Seq, res, t.maxResults, dropped)
		var e encoder
		e.result(&res)
		if e.err != nil {
			panic(fmt.Sprintf("kv: encoding the result of proposal %d of proposer %d: %v", id.Seq, id.Proposer, e.err))
		}
		_ = w.b.Set(proposalKey(p.id, id.Seq), e.buf, nil)
	}
	// After the Set: record may drop the result it just kept.
	for _, seq := range dropped {
		_ = w.b.Delete(proposalKey(p.id, seq), nil)
	}
	w.droppedSeqs = dropped
	meta := binary.AppendUvarint(binary.AppendUvarint(nil, index), p.lowest)
	_ = w.b.Set(proposerKey(p.id), meta, nil)
	return res
}

// loadProposals reads the proposal records into a table with the given bounds,
// its proposers least recently used first, as they were when written.
func (e *engine) loadProposals(maxProposers, maxResults int) (proposalTable, error) {
	t := newProposalTable(maxProposers, maxResults)
	type stored struct{ id, lastUsed, lowest uint64 }
	var all []stored
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineProposerPrefix}, UpperBound: []byte{engineProposerPrefix + 1}})
	if err != nil {
		return t, err
	}
	for valid := it.First(); valid; valid = it.Next() {
		k, v := it.Key(), it.Value()
		lastUsed, n := binary.Uvarint(v)
		lowest, m := binary.Uvarint(v[max(n, 0):])
		if len(k) != 9 || n <= 0 || m <= 0 || n+m != len(v) {
			it.Close()
			return t, fmt.Errorf("%w: proposer record %x = %x", ErrCorruptEngine, k, v)
		}
		all = append(all, stored{id: binary.BigEndian.Uint64(k[1:]), lastUsed: lastUsed, lowest: lowest})
	}
	if err := it.Close(); err != nil {
		return t, err
	}
	if len(all) > maxProposers {
		return t, fmt.Errorf("%w: %d proposers but MaxProposers is %d; every replica must run with the same Config",
			ErrCorruptEngine, len(all), maxProposers)
	}
	slices.SortFunc(all, func(a, b stored) int { return cmp.Compare(a.lastUsed, b.lastUsed) })
	for _, s := range all {
		p := t.lookup(ProposalID{Proposer: s.id, LowestPending: s.lowest})
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: proposalKey(s.id, 0), UpperBound: proposalsEnd(s.id)})
		if err != nil {
			return t, err
		}
		for valid := it.First(); valid; valid = it.Next() {
			d := decoder{buf: it.Value(), copyBytes: true}
			r := proposalResult{seq: binary.BigEndian.Uint64(it.Key()[9:]), result: d.result()}
			d.end()
			if d.err != nil || r.seq < s.lowest || len(p.results) >= maxResults {
				it.Close()
				return t, fmt.Errorf("%w: result %d of proposer %d (floor %d, %d results already): %v",
					ErrCorruptEngine, r.seq, s.id, s.lowest, len(p.results), d.err)
			}
			p.results = append(p.results, r)
		}
		if err := it.Close(); err != nil {
			return t, err
		}
	}
	return t, nil
}
