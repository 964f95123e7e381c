package sim

import (
	"math/rand/v2"

	"raftkv/raft"
)

// loadingStorage is the simulator's MemoryStorage with a snapshot that is slow to
// load, as package storage's is (raft.SnapshotLoader): LoadSnapshot answers
// raft.ErrSnapshotTemporarilyUnavailable half the time, so the leader's retry on a
// later heartbeat answer runs in every seed that sends a snapshot. Its draws come
// from a generator of its own, seeded by the seed and the node id, so they change
// none of the cluster's other choices.
type loadingStorage struct {
	*raft.MemoryStorage
	rng *rand.Rand
}

func (c *Cluster) memoryStorage(id uint64) raft.Storage {
	return &loadingStorage{MemoryStorage: raft.NewMemoryStorage(), rng: rand.New(rand.NewPCG(uint64(c.opts.Seed), id))}
}

func (s *loadingStorage) LoadSnapshot() (raft.Snapshot, error) {
	if s.rng.IntN(2) == 0 {
		return raft.Snapshot{}, raft.ErrSnapshotTemporarilyUnavailable
	}
	return s.Snapshot()
}
