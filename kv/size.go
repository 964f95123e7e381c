package kv

import "unsafe"

// Sizes is how much the store takes, for Maintenance.Status's DbSize and
// DbSizeInUse (etcd reports its bbolt file there, and how much of it is in use).
type Sizes struct {
	// TotalBytes is the value log (every retained revision's value, and the values
	// compaction dropped that the log has not been rewritten without yet) plus the
	// index (keys and revisions).
	TotalBytes int64
	// InUseBytes is TotalBytes without compaction's garbage: the values the
	// retained revisions name, each counted once, plus the index.
	InUseBytes int64
	// Keys counts the keys in the index, deleted ones included until compaction
	// drops their history (etcd's keys_total counts the same).
	Keys int64
}

// Per-key and per-revision bytes of the index: a keyIndex, its first generation and
// its slot in the tree; a keyRev. An estimate of the memory, not a measure.
const (
	indexBytesPerKey = int64(unsafe.Sizeof(keyIndex{}) + unsafe.Sizeof(generation{}) + unsafe.Sizeof(uintptr(0)))
	indexBytesPerRev = int64(unsafe.Sizeof(keyRev{}))
)

// sizeCounters keep Sizes up to date without walking the store: a put adds to them,
// and compaction and Restore, which walk every revision anyway, count them again.
type sizeCounters struct {
	keyBytes   int64 // the keys' bytes
	revs       int64 // revisions in the index
	liveValues int64 // bytes of the values the revisions name, shared ones once
}

// Sizes returns how much the store takes.
func (s *Store) Sizes() Sizes {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.mu.st
	index := st.sizes.keyBytes + int64(st.index.length)*indexBytesPerKey + st.sizes.revs*indexBytesPerRev
	return Sizes{TotalBytes: st.vals.size() + index, InUseBytes: st.sizes.liveValues + index, Keys: int64(st.index.length)}
}

// recountSizes counts the size counters from scratch.
func (st *state) recountSizes() {
	var c sizeCounters
	st.index.ascend(nil, func(ki *keyIndex) bool {
		c.keyBytes += int64(len(ki.key))
		return true
	})
	st.eachRev(func(r *keyRev, sameAsPrev bool) {
		c.revs++
		if !sameAsPrev {
			c.liveValues += int64(r.valueLen)
		}
	})
	st.sizes = c
}
