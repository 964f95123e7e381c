package kv

import (
	"bytes"
	"fmt"
)

// The store's state as data, independent of how the store keeps it: what a backup
// (Maintenance.Snapshot), a restore into a new cluster and the HashKV check read
// and write. A SnapshotView exports it (EachKey and the accessors); Store.Import
// builds a store from it. A storage engine that replaces this one implements the
// same two ends, and backups and hashes keep their meaning.

// KeyHistory is one key's retained history: its generations, oldest first. A
// generation is one lifetime of the key, from the put that created it to the
// delete that ended it (TombstoneRevision, 0 while the key lives); it lists the
// puts retained, the versions of which count up from FirstVersion (1 unless
// compaction dropped the older puts). Compaction keeps, per key, the last put at or
// before the compaction revision if the key was live then, and everything after.
type KeyHistory struct {
	Key         []byte
	Generations []KeyGeneration
}

// KeyGeneration is one lifetime of a key (see KeyHistory).
type KeyGeneration struct {
	CreateRevision    int64
	FirstVersion      int64
	TombstoneRevision int64
	Revisions         []KeyRevision
}

// KeyRevision is one put: the value and lease the key held from ModRevision on.
type KeyRevision struct {
	ModRevision int64
	Lease       int64
	Value       []byte
}

// Revision returns the store's revision when the view was taken.
func (v *SnapshotView) Revision() int64 { return v.src.rev }

// CompactRevision returns the revision of the last compaction (-1 before the
// first) when the view was taken.
func (v *SnapshotView) CompactRevision() int64 { return v.src.compactRev }

// Leases returns the leases granted when the view was taken, in id order.
func (v *SnapshotView) Leases() []LeaseInfo { return v.src.grants }

// KeyCount returns the number of keys with retained history in the view.
func (v *SnapshotView) KeyCount() int { return v.src.nKeys }

// AuthState returns the users, roles and permissions, the enabled flag and the auth
// revision, in the store's own versioned encoding (the snapshot's auth section,
// auth_codec.go), which Import takes back. Callers treat it as opaque bytes.
func (v *SnapshotView) AuthState() []byte {
	var e encoder
	v.src.auth(&e)
	return e.buf
}

// EachKey calls fn with every key's history, in key order, until fn returns an
// error, which EachKey returns. The history and its values are fn's to keep.
func (v *SnapshotView) EachKey(fn func(h *KeyHistory) error) error {
	var err error
	v.src.eachKey(func(key []byte, gens []generation) bool {
		h := &KeyHistory{Key: bytes.Clone(key), Generations: make([]KeyGeneration, len(gens))}
		for gi := range gens {
			g := &gens[gi]
			out := &h.Generations[gi]
			out.CreateRevision, out.FirstVersion, out.TombstoneRevision = g.createRev, g.firstVersion, g.tombstoneRev
			out.Revisions = make([]KeyRevision, len(g.revs))
			for ri := range g.revs {
				r := &g.revs[ri]
				out.Revisions[ri] = KeyRevision{ModRevision: r.modRev, Lease: leaseID(v.src.leases, r.lease),
					Value: v.src.vals.readInto(r.value(), nil)}
			}
		}
		err = fn(h)
		return err == nil
	})
	return err
}

// ImportHeader is the store-wide part of an Import.
type ImportHeader struct {
	// AppliedIndex is the Raft index the imported state stands for.
	AppliedIndex uint64
	// Revision and CompactRevision as SnapshotView reports them.
	Revision, CompactRevision int64
	Leases                    []LeaseInfo
	// AuthState is SnapshotView.AuthState's bytes; nil for auth disabled, no users.
	AuthState []byte
}

// Import replaces the store's state with the one described: hdr, and the keys' histories
// that next returns in key order, nil after the last. Sessions and proposals start
// empty (a restored store is the start of a new cluster). Every history is checked
// as a snapshot's is; on error the store is unchanged.
func (s *Store) Import(hdr ImportHeader, next func() (*KeyHistory, error)) error {
	st, err := newState(s.cfg, s.newValues)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		_ = st.vals.close()
		return err
	}
	if hdr.Revision < 1 || hdr.CompactRevision < -1 || hdr.CompactRevision > hdr.Revision {
		return fail(fmt.Errorf("%w: revision %d and compaction revision %d are inconsistent",
			ErrCorruptSnapshot, hdr.Revision, hdr.CompactRevision))
	}
	st.appliedIndex, st.rev, st.compactRev = hdr.AppliedIndex, hdr.Revision, hdr.CompactRevision
	var prevLease int64
	for _, l := range hdr.Leases {
		if l.ID <= prevLease || l.TTL > MaxLeaseTTL || l.RemainingTTL < 0 {
			return fail(fmt.Errorf("%w: lease %d (TTL %d, remaining %d) out of order or out of range",
				ErrCorruptSnapshot, l.ID, l.TTL, l.RemainingTTL))
		}
		st.grants.add(l)
		prevLease = l.ID
	}
	if hdr.AuthState != nil {
		d := decoder{buf: hdr.AuthState, copyBytes: true}
		d.authState(&st.auth)
		d.end()
		if d.err != nil {
			return fail(fmt.Errorf("%w: auth state: %v", ErrCorruptSnapshot, d.err))
		}
	}
	var prevKey []byte
	for {
		h, err := next()
		if err != nil {
			return fail(err)
		}
		if h == nil {
			break
		}
		if prevKey != nil && bytes.Compare(prevKey, h.Key) >= 0 {
			return fail(fmt.Errorf("%w: key %q follows %q out of order", ErrCorruptSnapshot, h.Key, prevKey))
		}
		ki, err := st.importKey(h)
		if err != nil {
			return fail(err)
		}
		st.index.insert(ki)
		st.grants.attach(ki.liveLease(&st.leases), ki)
		prevKey = ki.key
	}
	st.recountSizes()
	st.rebuildHistory()
	st.snapMu = &s.snapMu
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return fail(ErrClosed)
	}
	old := s.mu.st
	s.mu.st = st
	s.mu.Unlock()
	s.snapMu.Lock()
	_ = old.vals.close()
	s.snapMu.Unlock()
	return nil
}

// importKey builds h's keyIndex, checking the invariants decoder.keyIndex checks.
func (st *state) importKey(h *KeyHistory) (*keyIndex, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: key %q: %s", ErrCorruptSnapshot, h.Key, fmt.Sprintf(format, args...))
	}
	if len(h.Key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrCorruptSnapshot)
	}
	if len(h.Generations) == 0 {
		return nil, bad("no history")
	}
	ki := &keyIndex{key: bytes.Clone(h.Key), gens: make([]generation, len(h.Generations))}
	var lastRev int64
	for gi, g := range h.Generations {
		if len(g.Revisions) == 0 || g.CreateRevision < max(lastRev, 1) || g.FirstVersion < 1 {
			return nil, bad("generation %d is inconsistent", gi)
		}
		out := &ki.gens[gi]
		out.createRev, out.firstVersion, out.tombstoneRev = g.CreateRevision, g.FirstVersion, g.TombstoneRevision
		out.revs = make([]keyRev, len(g.Revisions))
		lastRev = g.CreateRevision
		for ri, r := range g.Revisions {
			if r.ModRevision < lastRev || r.ModRevision > st.rev {
				return nil, bad("revision %d out of order (after %d, store at %d)", r.ModRevision, lastRev, st.rev)
			}
			if len(r.Value) > maxCommandBytesCap {
				return nil, bad("value of %d bytes at revision %d", len(r.Value), r.ModRevision)
			}
			out.revs[ri] = keyRev{modRev: r.ModRevision, lease: st.leases.intern(r.Lease)}
			out.revs[ri].setValue(st.vals.append(r.Value))
			lastRev = r.ModRevision
		}
		isLast := gi == len(h.Generations)-1
		switch {
		case g.TombstoneRevision == 0 && !isLast:
			return nil, bad("generation %d is live but not the last", gi)
		case g.TombstoneRevision != 0 && (g.TombstoneRevision < lastRev || g.TombstoneRevision > st.rev):
			return nil, bad("tombstone %d out of order", g.TombstoneRevision)
		case g.TombstoneRevision != 0:
			lastRev = g.TombstoneRevision
		}
	}
	return ki, nil
}

// ErrSnapshotInProgress: SnapshotView was called while another view is out (a
// Raft snapshot being written, say); try again once it is released.
var ErrSnapshotInProgress = errSnapshotInProgress
