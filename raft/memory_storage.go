package raft

import (
	"fmt"
	"sync"
)

// MemoryStorage is a Storage held in memory: nothing survives the process, but in the
// simulator it stands for exactly what a node made durable, since every write is
// complete when the call returns.
type MemoryStorage struct {
	mu struct {
		sync.Mutex
		hardState HardState
		snapshot  Snapshot
		// ents[0] is a dummy entry at snapshot.Index with snapshot.Term, so that
		// Term(FirstIndex-1) answers without a special case.
		// Invariant: ents[i].Index == ents[0].Index + i.
		ents []Entry
	}
}

var _ Storage = (*MemoryStorage)(nil)

// NewMemoryStorage returns an empty MemoryStorage.
func NewMemoryStorage() *MemoryStorage {
	ms := &MemoryStorage{}
	ms.mu.ents = make([]Entry, 1)
	return ms
}

// InitialState implements LogReader.
func (ms *MemoryStorage) InitialState() (HardState, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.mu.hardState, nil
}

// Entries implements LogReader.
func (ms *MemoryStorage) Entries(lo, hi, maxBytes uint64) ([]Entry, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.mu.ents[0].Index
	if lo <= offset {
		return nil, ErrCompacted
	}
	if hi > ms.lastIndexLocked()+1 {
		return nil, ErrUnavailable
	}
	ents := limitSize(ms.mu.ents[lo-offset:hi-offset], maxBytes)
	// Callers may append to the result; cap it so they never write into our array.
	return ents[:len(ents):len(ents)], nil
}

// Term implements LogReader.
func (ms *MemoryStorage) Term(i uint64) (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	offset := ms.mu.ents[0].Index
	if i < offset {
		return 0, ErrCompacted
	}
	if i-offset >= uint64(len(ms.mu.ents)) {
		return 0, ErrUnavailable
	}
	return ms.mu.ents[i-offset].Term, nil
}

// FirstIndex implements LogReader.
func (ms *MemoryStorage) FirstIndex() (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.mu.ents[0].Index + 1, nil
}

// LastIndex implements LogReader.
func (ms *MemoryStorage) LastIndex() (uint64, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.lastIndexLocked(), nil
}

func (ms *MemoryStorage) lastIndexLocked() uint64 {
	return ms.mu.ents[0].Index + uint64(len(ms.mu.ents)) - 1
}

// Snapshot implements LogReader.
func (ms *MemoryStorage) Snapshot() (Snapshot, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.mu.snapshot, nil
}

// SnapshotMeta implements LogReader.
func (ms *MemoryStorage) SnapshotMeta() (Snapshot, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	meta := ms.mu.snapshot
	meta.Data = nil
	return meta, nil
}

// Save implements Storage.
func (ms *MemoryStorage) Save(st HardState, ents []Entry) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if !st.IsEmpty() {
		ms.mu.hardState = st
	}
	if len(ents) == 0 {
		return nil
	}
	first := ms.mu.ents[0].Index + 1
	last := ents[len(ents)-1].Index
	if last < first {
		// Everything offered is already compacted.
		return nil
	}
	if first > ents[0].Index {
		ents = ents[first-ents[0].Index:]
	}
	offset := ents[0].Index - ms.mu.ents[0].Index
	if offset > uint64(len(ms.mu.ents)) {
		panic(fmt.Sprintf("raft: MemoryStorage.Save of index %d leaves a gap after last index %d",
			ents[0].Index, ms.lastIndexLocked()))
	}
	if offset < uint64(len(ms.mu.ents)) {
		// Replacing a suffix: copy, since readers may hold the entries replaced.
		ms.mu.ents = append(ms.mu.ents[:offset:offset], ents...)
	} else {
		// Appending copies the structs into our array, never sharing the caller's.
		ms.mu.ents = append(ms.mu.ents, ents...)
	}
	return nil
}

// ApplySnapshot implements Storage.
func (ms *MemoryStorage) ApplySnapshot(snap Snapshot) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if snap.Index <= ms.mu.snapshot.Index {
		return ErrSnapOutOfDate
	}
	ms.mu.snapshot = snap
	ms.mu.ents = []Entry{{Term: snap.Term, Index: snap.Index}}
	return nil
}

// CreateSnapshot implements Storage.
func (ms *MemoryStorage) CreateSnapshot(index uint64, membership Membership, data []byte) (Snapshot, error) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if index <= ms.mu.snapshot.Index {
		return Snapshot{}, ErrSnapOutOfDate
	}
	if err := membership.Validate(); err != nil {
		return Snapshot{}, fmt.Errorf("raft: MemoryStorage.CreateSnapshot(%d): %w", index, err)
	}
	offset := ms.mu.ents[0].Index
	if index > ms.lastIndexLocked() {
		panic(fmt.Sprintf("raft: snapshot index %d is past last index %d", index, ms.lastIndexLocked()))
	}
	snap := Snapshot{Index: index, Term: ms.mu.ents[index-offset].Term, Membership: membership.Clone(), Data: data}
	ms.mu.snapshot = snap
	// Keep the entries after index; the entry at index becomes the dummy.
	kept := make([]Entry, 1, 1+ms.lastIndexLocked()-index)
	kept[0] = Entry{Index: snap.Index, Term: snap.Term}
	ms.mu.ents = append(kept, ms.mu.ents[index-offset+1:]...)
	return snap, nil
}

// limitSize returns the longest prefix of ents whose total size stays within maxBytes,
// but always at least one entry.
func limitSize(ents []Entry, maxBytes uint64) []Entry {
	if len(ents) == 0 {
		return ents
	}
	size := ents[0].size()
	for i := 1; i < len(ents); i++ {
		size += ents[i].size()
		if size > maxBytes {
			return ents[:i]
		}
	}
	return ents
}
