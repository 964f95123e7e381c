package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Importing a state described key by key (Store.Import: a backup; Store.Restore:
// a snapshot of the previous format, which members of the previous release wrote)
// into the engine. Like a restore from an engine snapshot, the engine is cleared
// and marked as restoring in one batch, the records are written a batch of about
// engineSnapshotChunkBytes at a time, and the marker goes with the last batch: an
// import cut off leaves an engine that is refused at open.

// importedState is what an import writes besides the keys.
type importedState struct {
	hdr       ImportHeader
	sessions  *sessionTable
	proposals *proposalTable
	auth      *authState
}

// importer writes an import's records in batches.
type importer struct {
	e *engine
	b *pebble.Batch
	// live counts the bytes of the version, value and change records
	// (engine.live), and changes the change records written.
	live, changes int64
	// withSubs: the changes carry their sub-revisions (ImportHeader.WithSubs);
	// without them sub, the last one given out, numbers them across keys, so
	// that a revision's changes are in key order.
	withSubs bool
	sub      uint32
}

func (im *importer) set(k, v []byte) error {
	_ = im.b.Set(k, v, nil)
	if k[0] == engineVersionPrefix || k[0] == engineChangePrefix || k[0] == engineValuePrefix {
		im.live += int64(len(k) + len(v))
	}
	if im.b.Len() >= engineSnapshotChunkBytes {
		return im.commit()
	}
	return nil
}

func (im *importer) commit() error {
	err := im.b.Commit(pebble.NoSync)
	im.b.Close()
	im.b = im.e.db.NewBatch()
	if err != nil {
		return fmt.Errorf("kv: importing into the storage engine in %q: %w", im.e.dir, err)
	}
	return nil
}

// checkImportHeader checks the store-wide part of an import.
func checkImportHeader(hdr *ImportHeader) error {
	if hdr.AppliedIndex > math.MaxInt64 {
		return fmt.Errorf("%w: applied index %d is past the engine's range", ErrCorruptSnapshot, hdr.AppliedIndex)
	}
	if hdr.Revision < 1 || hdr.CompactRevision < -1 || hdr.CompactRevision > hdr.Revision {
		return fmt.Errorf("%w: revision %d and compaction revision %d are inconsistent",
			ErrCorruptSnapshot, hdr.Revision, hdr.CompactRevision)
	}
	var prevLease int64
	for i, l := range hdr.Leases {
		if l.ID == 0 || (i > 0 && l.ID <= prevLease) || l.TTL > MaxLeaseTTL || l.RemainingTTL < 0 {
			return fmt.Errorf("%w: lease %d (TTL %d, remaining %d) out of order or out of range",
				ErrCorruptSnapshot, l.ID, l.TTL, l.RemainingTTL)
		}
		prevLease = l.ID
	}
	return nil
}

// checkKeyHistory checks h's invariants against a store at revision rev.
func checkKeyHistory(h *KeyHistory, rev int64) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: key %q: %s", ErrCorruptSnapshot, h.Key, fmt.Sprintf(format, args...))
	}
	if len(h.Key) == 0 {
		return fmt.Errorf("%w: empty key", ErrCorruptSnapshot)
	}
	if len(h.Generations) == 0 {
		return bad("no history")
	}
	var lastRev int64
	for gi, g := range h.Generations {
		if len(g.Revisions) == 0 || g.CreateRevision < max(lastRev, 1) || g.FirstVersion < 1 {
			return bad("generation %d is inconsistent", gi)
		}
		lastRev = g.CreateRevision
		for _, r := range g.Revisions {
			if r.ModRevision < lastRev || r.ModRevision > rev {
				return bad("revision %d out of order (after %d, store at %d)", r.ModRevision, lastRev, rev)
			}
			if len(r.Value) > maxCommandBytesCap {
				return bad("value of %d bytes at revision %d", len(r.Value), r.ModRevision)
			}
			lastRev = r.ModRevision
		}
		isLast := gi == len(h.Generations)-1
		switch {
		case g.TombstoneRevision == 0 && !isLast:
			return bad("generation %d is live but not the last", gi)
		case g.TombstoneRevision != 0 && (g.TombstoneRevision < lastRev || g.TombstoneRevision > rev):
			return bad("tombstone %d out of order", g.TombstoneRevision)
		case g.TombstoneRevision != 0:
			lastRev = g.TombstoneRevision
		}
	}
	return nil
}

// importState replaces the engine's records with the state described: st, the
// keys' histories next returns in key order (nil after the last), and the deletes
// at the compaction revision that deletes returns (nil after the last; deletes may
// be nil). The changes of one revision go into the history at the sub-revisions
// the histories and deletes carry (st.hdr.WithSubs), or else in key order, the
// deletes after the histories. It is flushed when it returns. On an error the
// engine is left marked as restoring.
func (e *engine) importState(st importedState, next func() (*KeyHistory, error), deletes func() (*CompactionDelete, error)) error {
	hdr := &st.hdr
	if err := checkImportHeader(hdr); err != nil {
		return err
	}
	b := e.db.NewBatch()
	_ = b.DeleteRange([]byte{0}, []byte{0xff}, nil)
	_ = b.Set(metaRestoring, []byte{1}, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		b.Close()
		return fmt.Errorf("kv: clearing the storage engine in %q for an import: %w", e.dir, err)
	}
	b.Close()
	e.restoring = true
	e.newestCache.reset()
	im := &importer{e: e, b: e.db.NewBatch(), withSubs: hdr.WithSubs}
	defer func() { im.b.Close() }()
	granted := map[int64]bool{}
	for _, l := range hdr.Leases {
		granted[l.ID] = true
		if err := im.set(grantKey(l.ID), encodeLease(l)); err != nil {
			return err
		}
	}
	w := &engineWrite{e: e, b: im.b}
	if st.auth != nil {
		w.writeAuth(st.auth)
	}
	// Sessions and proposers keep their order of use: their last use is numbered
	// 1, 2, ... from the least recent, all below the next entry's index.
	var used uint64
	if st.sessions != nil {
		st.sessions.oldestFirst(func(s *session) {
			used++
			w.writeSession(s.clientID, s.seq, &s.result, used)
		})
	}
	if st.proposals != nil {
		st.proposals.oldestFirst(func(p *proposer) {
			used++
			_ = im.b.Set(proposerKey(p.id), binary.AppendUvarint(binary.AppendUvarint(nil, used), p.lowest), nil)
			for i := range p.results {
				var enc encoder
				enc.result(&p.results[i].result)
				if enc.err != nil {
					panic(fmt.Sprintf("kv: encoding the result of proposal %d of proposer %d: %v", p.results[i].seq, p.id, enc.err))
				}
				_ = im.b.Set(proposalKey(p.id, p.results[i].seq), enc.buf, nil)
			}
		})
	}
	var keys int64
	var prevKey []byte
	var rec []byte
	for {
		h, err := next()
		if err != nil {
			return err
		}
		if h == nil {
			break
		}
		if prevKey != nil && bytes.Compare(prevKey, h.Key) >= 0 {
			return fmt.Errorf("%w: key %q follows %q out of order", ErrCorruptSnapshot, h.Key, prevKey)
		}
		if err := checkKeyHistory(h, hdr.Revision); err != nil {
			return err
		}
		prevKey = append(prevKey[:0], h.Key...)
		keys++
		for gi := range h.Generations {
			g := &h.Generations[gi]
			for ri := range g.Revisions {
				r := &g.Revisions[ri]
				v := versionRecord{createRevision: g.CreateRevision, version: g.FirstVersion + int64(ri), lease: r.Lease, value: r.Value}
				at, err := im.place(h.Key, r.Sub)
				if err != nil {
					return err
				}
				if e.separates(v.value) {
					if err := im.set(valueKey(nil, r.ModRevision, at), v.value); err != nil {
						return err
					}
					v.separated, v.separatedLen, v.value = true, len(v.value), nil
				}
				rec = v.appendTo(rec[:0])
				if err := im.set(versionKey(nil, h.Key, r.ModRevision, at), rec); err != nil {
					return err
				}
				if err := im.change(h.Key, r.ModRevision, at, recordPut); err != nil {
					return err
				}
			}
			if g.TombstoneRevision != 0 {
				rec = (&versionRecord{tombstone: true}).appendTo(rec[:0])
				at, err := im.place(h.Key, g.TombstoneSub)
				if err != nil {
					return err
				}
				if err := im.set(versionKey(nil, h.Key, g.TombstoneRevision, at), rec); err != nil {
					return err
				}
				if err := im.change(h.Key, g.TombstoneRevision, at, recordTombstone); err != nil {
					return err
				}
			} else if lease := g.Revisions[len(g.Revisions)-1].Lease; lease != 0 && granted[lease] {
				// A key naming a lease that does not exist (a snapshot from before
				// leases were granted) stays attached to nothing.
				if err := im.set(attachKey(lease, h.Key), nil); err != nil {
					return err
				}
			}
		}
	}
	if deletes != nil {
		// The keys' versions are read back below.
		if err := im.commit(); err != nil {
			return err
		}
	}
	for deletes != nil {
		d, err := deletes()
		if err != nil {
			return err
		}
		if d == nil {
			break
		}
		if len(d.Key) == 0 || hdr.CompactRevision < 1 {
			return fmt.Errorf("%w: a delete of key %q at compaction revision %d", ErrCorruptSnapshot, d.Key, hdr.CompactRevision)
		}
		// The delete ended the key's lifetime at the compaction revision, which
		// the compaction dropped: no version of the key is left at or below it.
		if alive, err := im.versionAtOrBelow(d.Key, hdr.CompactRevision); err != nil || alive {
			if err == nil {
				err = fmt.Errorf("%w: key %q is deleted at the compaction revision %d and its history keeps a version at or below it",
					ErrCorruptSnapshot, d.Key, hdr.CompactRevision)
			}
			return err
		}
		at, err := im.place(d.Key, d.Sub)
		if err != nil {
			return err
		}
		if err := im.change(d.Key, hdr.CompactRevision, at, recordTombstone); err != nil {
			return err
		}
	}
	if err := im.checkPlaces(); err != nil {
		return err
	}
	e.rev, e.compactRev, e.appliedIndex, e.appliedTerm, e.keys, e.live = hdr.Revision, hdr.CompactRevision, hdr.AppliedIndex, e.term, keys, im.live
	_ = im.b.Set(metaFormat, binary.AppendUvarint(nil, engineFormat), nil)
	e.setMeta(im.b)
	_ = im.b.Delete(metaRestoring, nil)
	if err := im.commit(); err != nil {
		return err
	}
	if err := e.loadMeta(); err != nil {
		return err
	}
	if _, err := e.flush(); err != nil {
		return err
	}
	e.restoring = false
	return nil
}

// place returns the sub-revision a change of key is written at: the one it
// carries (withSubs), or the next in key order.
func (im *importer) place(key []byte, carried uint32) (uint32, error) {
	if im.withSubs {
		if carried == 1<<32-1 {
			return 0, fmt.Errorf("%w: key %q: sub-revision %d out of range", ErrCorruptSnapshot, key, carried)
		}
		return carried, nil
	}
	if im.sub == 1<<32-1 {
		return 0, fmt.Errorf("%w: more than 2^32-1 changes to import", ErrCorruptSnapshot)
	}
	im.sub++
	return im.sub - 1, nil
}

// versionAtOrBelow reports whether the engine holds a version of key at or below
// rev, from what the import committed.
func (im *importer) versionAtOrBelow(key []byte, rev int64) (bool, error) {
	prefix := versionPrefix(nil, key)
	it, err := im.e.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return false, err
	}
	found := it.SeekGE(prefixSeekKey(nil, prefix, rev))
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("kv: reading back the import in %q: %w", im.e.dir, err)
	}
	return found, nil
}

// change writes the change record of key's put or delete (kind) at (rev, at).
func (im *importer) change(key []byte, rev int64, at uint32, kind byte) error {
	im.changes++
	return im.set(changeKey(rev, at), append([]byte{kind}, key...))
}

// checkPlaces commits what the import wrote so far and fails if two changes
// were imported at the same revision and sub-revision (histories carried with
// their subs, WithSubs): the second would have overwritten the first's change
// record and, for a separated value, its value, giving one key another's. It
// counts the change records, so its memory does not grow with the import.
func (im *importer) checkPlaces() error {
	if err := im.commit(); err != nil {
		return err
	}
	it, err := im.e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineChangePrefix}, UpperBound: []byte{engineChangePrefix + 1}})
	if err != nil {
		return err
	}
	var n int64
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("kv: reading back the import in %q: %w", im.e.dir, err)
	}
	if n != im.changes {
		return fmt.Errorf("%w: %d changes imported into %d places: two changes (of the keys' histories or the deletes at the compaction revision) share a revision and sub-revision", ErrCorruptSnapshot, im.changes, n)
	}
	return nil
}
