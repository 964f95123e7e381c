package storage

import (
	"fmt"
	"sort"
)

// logIndex knows, for every entry of the log after the snapshot, its term and where
// its batch record lies in the WAL, without holding the entries: the Storage keeps
// only a tail of them in memory (logCache) and reads older ones back from the
// segments. Terms are kept as runs (one per change of term, so a handful for a long
// log) to keep Term cheap; locations as one record offset per entry, 4 bytes each,
// grouped in spans of consecutive entries in one segment.
//
// Invariant: terms and spans cover exactly (first-1, last]: terms[0].first == first
// and spans[0].first == first when the log is not empty.
type logIndex struct {
	first, last uint64 // the log is [first, last]; empty if last < first
	terms       []termRun
	spans       []locSpan
}

// termRun says that the entries from first up to the next run's first have term.
type termRun struct {
	first, term uint64
}

// locSpan places entries first, first+1, ... in segment seq: entry first+i is in the
// batch record at offset offsets[i].
type locSpan struct {
	seq     uint64
	first   uint64
	offsets []uint32
}

func (s *locSpan) last() uint64 { return s.first + uint64(len(s.offsets)) - 1 }

// placement says where appendBatch put a run of entries: n of them, from the batch
// record at offset in segment seq.
type placement struct {
	seq    uint64
	offset int64
	n      int
}

// reset empties the index; the log continues after index.
func (x *logIndex) reset(index uint64) {
	x.first, x.last, x.terms, x.spans = index+1, index, nil, nil
}

// term returns the term of entry i, which must be in [first, last].
func (x *logIndex) term(i uint64) uint64 {
	if i < x.first || i > x.last {
		panic(fmt.Sprintf("storage: term of entry %d outside the indexed log [%d, %d]", i, x.first, x.last))
	}
	k := sort.Search(len(x.terms), func(k int) bool { return x.terms[k].first > i })
	return x.terms[k-1].term
}

// truncate drops the entries after index (index >= first-1).
func (x *logIndex) truncate(index uint64) {
	if index >= x.last {
		return
	}
	x.last = index
	k := sort.Search(len(x.terms), func(k int) bool { return x.terms[k].first > index })
	x.terms = x.terms[:k]
	k = sort.Search(len(x.spans), func(k int) bool { return x.spans[k].first > index })
	x.spans = x.spans[:k]
	if k > 0 {
		s := &x.spans[k-1]
		// Later appends must not write into offsets a reader may hold a copy of the
		// span's slice header to: cap it.
		n := index - s.first + 1
		s.offsets = s.offsets[:n:n]
	}
}

// compact drops the entries up to index (first-1 <= index). Entries past last
// vanish too: the log then starts after index.
func (x *logIndex) compact(index uint64) {
	if index < x.first {
		return
	}
	if index >= x.last {
		x.reset(index)
		return
	}
	k := sort.Search(len(x.terms), func(k int) bool { return x.terms[k].first > index+1 })
	x.terms = append([]termRun(nil), x.terms[k-1:]...)
	x.terms[0].first = index + 1
	k = sort.Search(len(x.spans), func(k int) bool { return x.spans[k].last() > index })
	x.spans = append([]locSpan(nil), x.spans[k:]...)
	if s := &x.spans[0]; s.first <= index {
		s.offsets = append([]uint32(nil), s.offsets[index+1-s.first:]...)
		s.first = index + 1
	}
	x.first = index + 1
}

// appendEntry adds entry last+1 of term, in the record at offset of segment seq.
func (x *logIndex) appendEntry(term, seq uint64, offset int64) {
	i := x.last + 1
	if n := len(x.terms); n == 0 || x.terms[n-1].term != term {
		x.terms = append(x.terms, termRun{first: i, term: term})
	}
	if n := len(x.spans); n > 0 && x.spans[n-1].seq == seq && x.spans[n-1].last() == i-1 {
		x.spans[n-1].offsets = append(x.spans[n-1].offsets, uint32(offset))
	} else {
		x.spans = append(x.spans, locSpan{seq: seq, first: i, offsets: []uint32{uint32(offset)}})
	}
	x.last = i
}

// entryLoc is where one entry lies: its batch record.
type entryLoc struct {
	seq    uint64
	offset uint32
}

// locate returns the locations of entries [lo, hi), which must lie in [first, last].
func (x *logIndex) locate(lo, hi uint64) []entryLoc {
	if lo < x.first || hi > x.last+1 {
		panic(fmt.Sprintf("storage: locate [%d, %d) outside the indexed log [%d, %d]", lo, hi, x.first, x.last))
	}
	locs := make([]entryLoc, 0, hi-lo)
	k := sort.Search(len(x.spans), func(k int) bool { return x.spans[k].last() >= lo })
	for i := lo; i < hi; k++ {
		s := &x.spans[k]
		for ; i < hi && i <= s.last(); i++ {
			locs = append(locs, entryLoc{seq: s.seq, offset: s.offsets[i-s.first]})
		}
	}
	return locs
}

// sizeBytes is roughly the memory the index holds.
func (x *logIndex) sizeBytes() int {
	n := 16 * cap(x.terms)
	for _, s := range x.spans {
		n += 40 + 4*cap(s.offsets)
	}
	return n
}
