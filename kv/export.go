package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
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
	// TombstoneSub is the delete's place among its revision's changes (see
	// KeyRevision.Sub).
	TombstoneSub uint32
	Revisions    []KeyRevision
}

// KeyRevision is one put: the value and lease the key held from ModRevision on.
// Sub is its place among the changes of its revision (etcd's sub-revision: a
// txn's puts and deletes in the order it made them), which Events and watches
// replay; an import uses it when ImportHeader.WithSubs says the histories carry it.
type KeyRevision struct {
	ModRevision int64
	Sub         uint32
	Lease       int64
	Value       []byte
}

// A SnapshotView is the store frozen at the index it had applied when the view
// was taken (a pebble snapshot), to be read or written out while Apply goes on.
// Release it when done: it holds the engine files its records are in. Several
// views may be out at once.
type SnapshotView struct {
	s               *Store
	e               *engine // whose failure a failed read records
	snap            *engineSnapshot
	rev, compactRev int64
	keys            int64
	auth            []byte
	released        bool
}

// ErrSnapshotInProgress was returned when a second SnapshotView was asked for
// while one was out; views on the engine no longer exclude each other, so it is
// no longer returned.
var ErrSnapshotInProgress = errors.New("kv: a snapshot view is already out; Release it first")

// SnapshotView freezes the store for reading and writing out.
func (s *Store) SnapshotView() (*SnapshotView, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	st := s.mu.st
	if st.failed != nil {
		return nil, st.failed
	}
	var ae encoder
	st.auth.encode(&ae)
	s.reads.Add(1)
	return &SnapshotView{s: s, e: st.e, snap: st.e.snapshot(), rev: st.e.rev, compactRev: st.e.compactRev,
		keys: st.e.keys, auth: ae.buf}, nil
}

// WriteTo writes the view as the engine's snapshot stream (Store.WriteSnapshot)
// and returns the bytes written.
func (v *SnapshotView) WriteTo(w io.Writer) (int64, error) {
	return v.snap.writeTo(w)
}

// Release ends the view.
func (v *SnapshotView) Release() {
	if v.released {
		return
	}
	v.released = true
	_ = v.snap.close()
	v.s.reads.Done()
}

// Revision returns the store's revision when the view was taken.
func (v *SnapshotView) Revision() int64 { return v.rev }

// CompactRevision returns the revision of the last compaction (-1 before the
// first) when the view was taken.
func (v *SnapshotView) CompactRevision() int64 { return v.compactRev }

// AppliedIndex returns the index the view was taken at.
func (v *SnapshotView) AppliedIndex() uint64 { return v.snap.appliedIndex }

// Leases returns the leases granted when the view was taken, in id order. A
// failed read stops the store, as any failed engine read does, and returns an
// error wrapping ErrEngineFailed: never a short list, which a backup would
// write out as the whole.
func (v *SnapshotView) Leases() ([]LeaseInfo, error) {
	it, err := v.snap.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{engineGrantPrefix}, UpperBound: []byte{engineGrantPrefix + 1}})
	if err != nil {
		return nil, v.e.readFailed(engineReadFailed("the leases", err))
	}
	defer it.Close()
	var out []LeaseInfo
	for valid := it.First(); valid; valid = it.Next() {
		id := int64(binary.BigEndian.Uint64(it.Key()[1:]) ^ (1 << 63))
		info, _, err := leaseOf(v.snap.snap, id)
		if err != nil {
			return nil, v.e.readFailed(engineReadFailed(fmt.Sprintf("lease %d", id), err))
		}
		out = append(out, info)
	}
	if err := it.Error(); err != nil {
		return nil, v.e.readFailed(engineReadFailed("the leases", err))
	}
	return out, nil
}

// CompactionDelete is a delete made at the compaction revision. Its key's history
// (EachKey) holds nothing at or below that revision, as the compaction dropped the
// lifetime the delete ended, but etcd keeps the delete: a watch from exactly the
// compaction revision reports it. Sub is its place among the revision's changes.
type CompactionDelete struct {
	Key []byte
	Sub uint32
}

// EachCompactionDelete calls fn with every delete made at the compaction revision,
// in the order the revision made them, until fn returns an error, which it
// returns. It holds one delete at a time; the key is fn's to keep.
func (v *SnapshotView) EachCompactionDelete(fn func(d CompactionDelete) error) error {
	if v.compactRev < 1 {
		return nil
	}
	var fnErr error
	err := readChanges(v.snap.snap, v.compactRev, v.compactRev, func(c engineChange) bool {
		if c.deleted {
			fnErr = fn(CompactionDelete{Key: c.key, Sub: c.sub})
		}
		return fnErr == nil
	})
	if err != nil {
		return v.e.readFailed(engineReadFailed("the changes at the compaction revision", err))
	}
	return fnErr
}

// KeyCount returns the number of keys with retained history in the view.
func (v *SnapshotView) KeyCount() int { return int(v.keys) }

// AuthState returns the users, roles and permissions, the enabled flag and the auth
// revision, in the store's own versioned encoding (auth_codec.go), which Import
// takes back. Callers treat it as opaque bytes.
func (v *SnapshotView) AuthState() []byte { return bytes.Clone(v.auth) }

// EachKey calls fn with every key's history, in key order, until fn returns an
// error, which EachKey returns. The history and its values are fn's to keep.
// It holds one key's versions at a time.
func (v *SnapshotView) EachKey(fn func(h *KeyHistory) error) error {
	it, err := v.snap.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{engineVersionPrefix}, UpperBound: []byte{engineVersionPrefix + 1}})
	if err != nil {
		return v.e.readFailed(engineReadFailed("the keys", err))
	}
	defer it.Close()
	var prefix []byte
	type version struct {
		rev int64
		sub uint32
		rec versionRecord
	}
	var versions []version // newest first
	var values *pebble.Iterator
	emit := func() error {
		if len(versions) == 0 {
			return nil
		}
		h := &KeyHistory{Key: unescapeKey(prefix)}
		var g *KeyGeneration
		for i := len(versions) - 1; i >= 0; i-- {
			ver := &versions[i]
			if ver.rec.tombstone {
				if g != nil {
					g.TombstoneRevision, g.TombstoneSub = ver.rev, ver.sub
					g = nil
				}
				continue
			}
			if g == nil {
				h.Generations = append(h.Generations, KeyGeneration{CreateRevision: ver.rec.createRevision, FirstVersion: ver.rec.version})
				g = &h.Generations[len(h.Generations)-1]
			}
			g.Revisions = append(g.Revisions, KeyRevision{ModRevision: ver.rev, Sub: ver.sub, Lease: ver.rec.lease, Value: ver.rec.value})
		}
		versions = versions[:0]
		if len(h.Generations) == 0 {
			return nil
		}
		return fn(h)
	}
	for valid := it.First(); valid; valid = it.Next() {
		p, rev, sub := splitVersionKey(it.Key())
		if !bytes.Equal(p, prefix) {
			if err := emit(); err != nil {
				return err
			}
			prefix = append(prefix[:0], p...)
		}
		rec, err := decodeVersionRecord(it.Value())
		if err != nil {
			return v.e.readFailed(engineReadFailed(fmt.Sprintf("a version of key %q", unescapeKey(p)), err))
		}
		if rec.separated {
			// One iterator for every separated value, not a point read's each.
			if values == nil {
				if values, err = v.snap.snap.NewIter(nil); err != nil {
					return v.e.readFailed(engineReadFailed("the values", err))
				}
				defer values.Close()
			}
			if rec.value, err = readValue(values, false, rev, sub, rec.separatedLen); err != nil {
				return v.e.readFailed(engineReadFailed(fmt.Sprintf("the value of key %q at revision %d", unescapeKey(p), rev), err))
			}
			rec.separated, rec.separatedLen = false, 0
		} else {
			rec.value = bytes.Clone(rec.value)
		}
		versions = append(versions, version{rev: rev, sub: sub, rec: rec})
	}
	if err := it.Error(); err != nil {
		return v.e.readFailed(engineReadFailed("the keys", err))
	}
	return emit()
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
	// WithSubs says the histories carry each change's place in its revision
	// (KeyRevision.Sub, KeyGeneration.TombstoneSub), as EachKey exports them, and
	// the import keeps it; without it (a backup of format 1, an old full-state
	// snapshot) a revision's changes are imported in key order.
	WithSubs bool
}

// Import replaces the store's state with the one described: hdr, the keys'
// histories that next returns in key order, nil after the last, and the deletes at
// the compaction revision that deletes returns, nil after the last (deletes may be
// nil for none; EachCompactionDelete lists a view's). Sessions and
// proposals start empty (a restored store is the start of a new cluster). Every
// history is checked as a snapshot's is. On an error in hdr the store is
// unchanged; on one in a history it is left refusing Apply, and its engine
// refused by OpenStore, until a restore or an import succeeds.
func (s *Store) Import(hdr ImportHeader, next func() (*KeyHistory, error), deletes func() (*CompactionDelete, error)) error {
	auth := newAuthState()
	if hdr.AuthState != nil {
		d := decoder{buf: hdr.AuthState, copyBytes: true}
		d.authState(&auth)
		d.end()
		if d.err != nil {
			return fmt.Errorf("%w: auth state: %v", ErrCorruptSnapshot, d.err)
		}
	}
	return s.importState(importedState{hdr: hdr, auth: &auth}, next, deletes)
}
