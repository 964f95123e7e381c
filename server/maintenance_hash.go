package server

import (
	"context"
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc32"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/kv"
)

// Hash and HashKV, with etcd's meaning: HashKV(rev) hashes the key-value history
// from the compaction revision up to rev, so every member that applied the same log
// gives the same hash for the same rev and compaction revision, whatever it has
// applied since; Hash hashes the whole store (every key's retained history, the
// leases and the auth state), which members share too, but only at the same
// revision. Both read one frozen view of the store (kv.SnapshotView), so a hash
// is of one revision even while writes apply.
//
// A hash reads every retained value while the view is out, and the store holds off
// applying a compaction (and taking a Raft snapshot) until it is released: on a large
// store a HashKV, or the corruption check, delays a compaction by the time it takes
// to read the store once. etcd's HashKV reads its backend in a read transaction the
// same way.
//
// The hash is CRC-32C, as etcd's, over a stream of which each key's history
// contributes, in key order: for every put at or below rev its key, mod revision,
// create revision, version, lease and value, and for every delete at or below rev
// its key and revision. etcd walks its bbolt keys by revision instead, so the
// numbers differ from etcd's for the same data: a hash is compared between members
// of one cluster, never with another implementation.

// viewWait bounds how long a hash or a backup waits for the store's one snapshot
// view, which a Raft snapshot being written may hold for a while.
const viewRetry = 20 * time.Millisecond

// storeView takes the store's SnapshotView, waiting while another is out, until
// ctx ends.
func (s *Server) storeView(ctx context.Context) (*kv.SnapshotView, error) {
	for {
		v, err := s.sm.store.SnapshotView()
		if !errors.Is(err, kv.ErrSnapshotInProgress) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, s.contextError(ctx)
		case <-s.stopc:
			return nil, errStopped
		case <-time.After(viewRetry):
		}
	}
}

// kvHash is a HashKV answer.
type kvHash struct {
	hash                          uint32
	compactRevision, hashRevision int64
	// revision is the store's when hashed.
	revision int64
}

// hashKV hashes the history of the store up to rev (0: the current revision), with
// etcd's errors for a revision compacted away or not yet written.
func (s *Server) hashKV(ctx context.Context, rev int64) (kvHash, error) {
	view, err := s.storeView(ctx)
	if err != nil {
		return kvHash{}, err
	}
	defer view.Release()
	return hashKVView(view, rev)
}

func hashKVView(view *kv.SnapshotView, rev int64) (kvHash, error) {
	current, compactRev := view.Revision(), view.CompactRevision()
	if rev > 0 && rev < compactRev {
		return kvHash{revision: current}, kv.ErrCompacted
	}
	if rev > current {
		return kvHash{revision: current}, kv.ErrFutureRev
	}
	if rev <= 0 {
		rev = current
	}
	h := newHistoryHasher()
	err := view.EachKey(func(kh *kv.KeyHistory) error {
		h.key(kh, rev)
		return nil
	})
	return kvHash{hash: h.Sum32(), compactRevision: compactRev, hashRevision: rev, revision: current}, err
}

// historyHasher feeds key histories to CRC-32C in the order the package doc says.
type historyHasher struct {
	hash.Hash32
	buf []byte
}

func newHistoryHasher() *historyHasher {
	return &historyHasher{Hash32: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
}

// key hashes kh's puts and deletes at or below rev.
func (h *historyHasher) key(kh *kv.KeyHistory, rev int64) {
	for _, g := range kh.Generations {
		for i, r := range g.Revisions {
			if r.ModRevision > rev {
				return
			}
			b := h.buf[:0]
			b = append(b, 'p')
			b = binary.AppendUvarint(b, uint64(len(kh.Key)))
			b = append(b, kh.Key...)
			b = binary.AppendVarint(b, r.ModRevision)
			b = binary.AppendVarint(b, g.CreateRevision)
			b = binary.AppendVarint(b, g.FirstVersion+int64(i))
			b = binary.AppendVarint(b, r.Lease)
			b = binary.AppendUvarint(b, uint64(len(r.Value)))
			h.buf = b
			_, _ = h.Write(b)
			_, _ = h.Write(r.Value)
		}
		if g.TombstoneRevision == 0 || g.TombstoneRevision > rev {
			return
		}
		b := h.buf[:0]
		b = append(b, 'd')
		b = binary.AppendUvarint(b, uint64(len(kh.Key)))
		b = append(b, kh.Key...)
		b = binary.AppendVarint(b, g.TombstoneRevision)
		h.buf = b
		_, _ = h.Write(b)
	}
}

// hashAll is Hash: every key's retained history, the leases and the auth state, as
// of the view's revision.
func hashAll(view *kv.SnapshotView) (uint32, error) {
	h := newHistoryHasher()
	var b []byte
	b = binary.AppendVarint(b, view.Revision())
	b = binary.AppendVarint(b, view.CompactRevision())
	leases, err := view.Leases()
	if err != nil {
		return 0, err
	}
	for _, l := range leases {
		b = binary.AppendVarint(b, l.ID)
		b = binary.AppendVarint(b, l.TTL)
	}
	_, _ = h.Write(b)
	_, _ = h.Write(view.AuthState())
	err = view.EachKey(func(kh *kv.KeyHistory) error {
		h.key(kh, view.Revision())
		return nil
	})
	return h.Sum32(), err
}

// Hash answers the hash of the whole store (hashAll) at the header's revision.
// Root only under auth, as etcd.
func (m *maintenanceService) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	if err := m.s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	view, err := m.s.storeView(ctx)
	if err != nil {
		return nil, toGRPC(err)
	}
	defer view.Release()
	sum, err := hashAll(view)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.HashResponse{Header: m.s.header().pb(view.Revision()), Hash: sum}, nil
}

// HashKV answers the hash of the key-value history up to r.Revision (hashKV).
// Root only under auth, as etcd.
func (m *maintenanceService) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	if err := m.s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	h, err := m.s.hashKV(ctx, r.Revision)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &pb.HashKVResponse{Header: m.s.header().pb(h.revision), Hash: h.hash,
		CompactRevision: h.compactRevision, HashRevision: h.hashRevision}, nil
}
