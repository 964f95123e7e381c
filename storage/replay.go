package storage

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"raftkv/raft"
)

// location names a place in the WAL, for error messages.
type location struct {
	file   string
	offset int64
}

// replay rebuilds the log from records in WAL order.
type replay struct {
	hs raft.HardState
	// ents is the run of consecutive entries read so far; runStart is where the
	// first of them was read. Their Data alias the segments' contents.
	ents     []raft.Entry
	runStart location
	// base and baseTerm: the last installed snapshot; nothing of the log before it
	// survives.
	base, baseTerm uint64
	// markIndex and markTerm: the last snapshot marker; maxMarkerIndex the highest
	// index any marker names.
	markIndex, markTerm uint64
	maxMarkerIndex      uint64

	segments       []segmentInfo
	lastInstallSeq uint64
}

// lastIndex is the index of the last entry, or the base if there is none.
func (r *replay) lastIndex() uint64 {
	if len(r.ents) == 0 {
		return r.base
	}
	return r.ents[len(r.ents)-1].Index
}

// term returns the term of entry i if the replayed log knows it.
func (r *replay) term(i uint64) (uint64, bool) {
	if i == r.base {
		return r.baseTerm, true
	}
	if len(r.ents) > 0 && i >= r.ents[0].Index && i <= r.lastIndex() {
		return r.ents[i-r.ents[0].Index].Term, true
	}
	return 0, false
}

func (r *replay) segmentStart(s segmentStart, first bool, seq uint64, loc location) error {
	r.segments = append(r.segments, segmentInfo{seq: seq})
	if first {
		// Every segment before this one is gone: its start record is the state.
		r.hs = s.hs
		r.base, r.baseTerm = s.base, s.baseTerm
		r.markIndex, r.markTerm = s.markIndex, s.markTerm
		r.maxMarkerIndex = max(s.markIndex, s.base)
		if s.base > 0 {
			r.lastInstallSeq = seq
		}
		return nil
	}
	if s.hs != r.hs || s.base != r.base || s.baseTerm != r.baseTerm || s.markIndex != r.markIndex || s.markTerm != r.markTerm {
		return corruptf(loc.file, loc.offset,
			"segment start restates hard state %+v, base %d/%d, marker %d/%d, but the records before it say %+v, %d/%d, %d/%d",
			s.hs, s.base, s.baseTerm, s.markIndex, s.markTerm, r.hs, r.base, r.baseTerm, r.markIndex, r.markTerm)
	}
	return nil
}

// entry replays e, read at loc.
func (r *replay) entry(e *raft.Entry, loc location) error {
	seg := &r.segments[len(r.segments)-1]
	if n := len(r.ents); n > 0 && n < cap(r.ents) && e.Index == r.ents[n-1].Index+1 && e.Term >= r.ents[n-1].Term {
		// The common case, kept short: the entry extends the log.
		r.ents = append(r.ents, *e)
		seg.maxEntryIndex = max(seg.maxEntryIndex, e.Index)
		return nil
	}
	if e.Index <= r.base {
		return corruptf(loc.file, loc.offset, "entry %d is at or below the installed snapshot %d", e.Index, r.base)
	}
	seg.maxEntryIndex = max(seg.maxEntryIndex, e.Index)
	if len(r.ents) == cap(r.ents) {
		// Grow by doubling: append grows long slices by a quarter, which would copy a
		// big log several times over.
		r.ents = slices.Grow(r.ents, max(len(r.ents), 1024))
	}
	if len(r.ents) == 0 {
		r.ents, r.runStart = append(r.ents, *e), loc
		return nil
	}
	first, last := r.ents[0].Index, r.lastIndex()
	switch {
	case e.Index == last+1:
		if prev := r.ents[len(r.ents)-1].Term; e.Term < prev {
			return corruptf(loc.file, loc.offset, "entry %d has term %d, below the term %d of the entry before it", e.Index, e.Term, prev)
		}
		r.ents = append(r.ents, *e)
	case e.Index > last+1:
		return corruptf(loc.file, loc.offset, "entry %d follows entry %d: entries %d to %d are missing", e.Index, last, last+1, e.Index-1)
	case e.Index > first:
		// A follower overwrote a conflicting suffix (§5.3).
		if prev := r.ents[e.Index-first-1].Term; e.Term < prev {
			return corruptf(loc.file, loc.offset, "entry %d replaces the log with term %d, below the term %d of the entry before it", e.Index, e.Term, prev)
		}
		r.ents = append(r.ents[:e.Index-first], *e)
	default:
		r.ents, r.runStart = append(r.ents[:0], *e), loc
	}
	return nil
}

func (r *replay) marker(m snapMarker, seq uint64, loc location) error {
	r.markIndex, r.markTerm = m.index, m.term
	r.maxMarkerIndex = max(r.maxMarkerIndex, m.index)
	switch m.kind {
	case snapCompact:
		// The entries stay: a snapshot that fails its checksum at the next start can
		// fall back to an older one and replay from there. Recovery trims at the end.
		if t, ok := r.term(m.index); ok && t != m.term {
			return corruptf(loc.file, loc.offset, "snapshot marker says entry %d has term %d, the log says %d", m.index, m.term, t)
		}
	case snapInstall:
		r.ents = r.ents[:0]
		r.base, r.baseTerm = m.index, m.term
		r.lastInstallSeq = seq
	}
	return nil
}

// trim drops the entries at or below index.
func (r *replay) trim(index uint64) {
	switch {
	case len(r.ents) == 0 || index < r.ents[0].Index:
	case index >= r.lastIndex():
		r.ents = nil
	default:
		r.ents = r.ents[index-r.ents[0].Index+1:]
	}
}

// chooseSnapshot picks the newest snapshot file that passes its checks and fits the
// replayed log, skipping (with a warning) those that fail, and trims the log to what
// follows it. It returns the marker to append if the WAL never recorded the chosen
// snapshot (a crash between the file and the marker).
func chooseSnapshot(fsys FS, dir string, clusterID uint64, r *replay, logger *slog.Logger) (raft.Snapshot, *snapMarker, error) {
	files, err := listSnapshots(fsys, dir)
	if err != nil {
		return raft.Snapshot{}, nil, fmt.Errorf("storage: listing snapshot directory: %w", err)
	}
	var failed []string
	for _, sf := range files {
		if sf.index < r.base || (sf.index == r.base && sf.term != r.baseTerm) {
			continue // older than the last installed snapshot: the log after it is gone
		}
		snap, kind, err := readSnapshot(fsys, dir, sf, clusterID)
		if err != nil {
			logger.Warn("skipping a snapshot that fails its checks; trying an older one", "file", filepath.Join(dir, sf.name), "err", err)
			failed = append(failed, sf.name)
			continue
		}
		unrecorded := snap.Index > r.maxMarkerIndex
		if unrecorded && kind == snapInstall {
			// Received from the leader, persisted, then the crash came before its
			// marker: finish the job, the whole log gives way to it. The base stays
			// as the WAL has it until the marker, appended at open, moves it.
			r.ents = nil
			return snap, &snapMarker{kind: snapInstall, index: snap.Index, term: snap.Term}, nil
		}
		if len(r.ents) > 0 && r.ents[0].Index > snap.Index+1 {
			continue // the entries between it and the log are gone
		}
		if t, ok := r.term(snap.Index); ok && t != snap.Term {
			if unrecorded {
				logger.Warn("skipping a snapshot whose term disagrees with the log", "file", filepath.Join(dir, sf.name), "log_term", t)
				continue
			}
			return raft.Snapshot{}, nil, corruptf(filepath.Join(dir, sf.name), 0,
				"snapshot of index %d has term %d, the WAL says %d", snap.Index, snap.Term, t)
		}
		r.trim(snap.Index)
		var adopt *snapMarker
		if unrecorded {
			adopt = &snapMarker{kind: snapCompact, index: snap.Index, term: snap.Term}
		}
		return snap, adopt, nil
	}
	if r.base == 0 && (len(r.ents) == 0 || r.ents[0].Index == 1) {
		return raft.Snapshot{}, nil, nil // the log is whole from the start
	}
	need := r.base
	if len(r.ents) > 0 {
		need = max(need, r.ents[0].Index-1)
	}
	return raft.Snapshot{}, nil, corruptf(dir, 0,
		"the WAL's log starts after index %d (first entry read at %s offset %d), so it needs a snapshot at index %d or later, "+
			"and none is usable (%d snapshot files, failing their checks: %v)",
		need, r.runStart.file, r.runStart.offset, need, len(files), failed)
}
