package storage

import (
	"encoding/binary"
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

// entryRef is a replayed entry: its term and type, and where it lies in the WAL (its
// batch record), 24 bytes. Replay keeps these, not the entries: the segments stream
// through a window of bounded size (segReader), and the entries the log cache is to
// hold are read back from the files at the end of recovery. They hold no pointers, so
// while a log of millions of entries is rebuilt the garbage collector has nothing to
// scan in them.
type entryRef struct {
	term    uint64
	seg     uint32 // index in replay.segments
	recOff  uint32 // offset of the entry's batch record in its segment
	dataLen uint32 // length of its Data, to size the log cache
	typ     raft.EntryType
}

// replay rebuilds the log from records in WAL order.
type replay struct {
	hs raft.HardState
	// refs is the run of consecutive entries read so far, from index first; runStart
	// is where the first of them was read.
	first    uint64
	refs     []entryRef
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
	// currentFormatRecords: a segment of the current format holds a record past
	// its start (entries, a hard state or a snapshot marker): a build of this
	// format has written to the WAL.
	currentFormatRecords bool
}

// lastIndex is the index of the last entry, or the base if there is none.
func (r *replay) lastIndex() uint64 {
	if len(r.refs) == 0 {
		return r.base
	}
	return r.first + uint64(len(r.refs)) - 1
}

// term returns the term of entry i if the replayed log knows it.
func (r *replay) term(i uint64) (uint64, bool) {
	if i == r.base {
		return r.baseTerm, true
	}
	if len(r.refs) > 0 && i >= r.first && i <= r.lastIndex() {
		return r.refs[i-r.first].term, true
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

// entry replays entry index, described by ref, read at loc.
func (r *replay) entry(index uint64, ref entryRef, loc location) error {
	seg := &r.segments[len(r.segments)-1]
	if n := len(r.refs); n > 0 && n < cap(r.refs) && index == r.first+uint64(n) && ref.term >= r.refs[n-1].term {
		// The common case, kept short: the entry extends the log.
		r.refs = append(r.refs, ref)
		seg.maxEntryIndex = max(seg.maxEntryIndex, index)
		return nil
	}
	if index <= r.base {
		return corruptf(loc.file, loc.offset, "entry %d is at or below the installed snapshot %d", index, r.base)
	}
	seg.maxEntryIndex = max(seg.maxEntryIndex, index)
	if len(r.refs) == cap(r.refs) {
		// Grow by doubling: append grows long slices by a quarter, which would copy a
		// big log several times over.
		r.refs = slices.Grow(r.refs, max(len(r.refs), 1024))
	}
	if len(r.refs) == 0 {
		r.first, r.refs, r.runStart = index, append(r.refs, ref), loc
		return nil
	}
	last := r.lastIndex()
	switch {
	case index == last+1:
		if prev := r.refs[len(r.refs)-1].term; ref.term < prev {
			return corruptf(loc.file, loc.offset, "entry %d has term %d, below the term %d of the entry before it", index, ref.term, prev)
		}
		r.refs = append(r.refs, ref)
	case index > last+1:
		return corruptf(loc.file, loc.offset, "entry %d follows entry %d: entries %d to %d are missing", index, last, last+1, index-1)
	case index > r.first:
		// A follower overwrote a conflicting suffix (§5.3).
		if prev := r.refs[index-r.first-1].term; ref.term < prev {
			return corruptf(loc.file, loc.offset, "entry %d replaces the log with term %d, below the term %d of the entry before it", index, ref.term, prev)
		}
		r.refs = append(r.refs[:index-r.first], ref)
	default:
		r.first, r.refs, r.runStart = index, append(r.refs[:0], ref), loc
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
		r.refs = r.refs[:0]
		r.base, r.baseTerm = m.index, m.term
		r.lastInstallSeq = seq
	}
	return nil
}

// missingSnapshot returns the name of the snapshot file the last marker records if
// files lacks it, else "".
func (r *replay) missingSnapshot(files []snapFile) string {
	if r.markIndex == 0 {
		return ""
	}
	for _, f := range files {
		if f.index == r.markIndex && f.term == r.markTerm {
			return ""
		}
	}
	return snapshotName(r.markIndex, r.markTerm)
}

// trim drops the entries at or below index.
func (r *replay) trim(index uint64) {
	switch {
	case len(r.refs) == 0 || index < r.first:
	case index >= r.lastIndex():
		r.refs = nil
	default:
		r.refs = r.refs[index-r.first+1:]
		r.first = index + 1
	}
}

// index builds the log index of the replayed log, which follows snapshot base.
func (r *replay) index(base uint64) logIndex {
	var x logIndex
	x.reset(base)
	for i := range r.refs {
		ref := &r.refs[i]
		x.appendEntry(ref.term, r.segments[ref.seg].seq, int64(ref.recOff))
	}
	return x
}

// confIndexes returns the indexes of the configuration entries in the replayed log.
func (r *replay) confIndexes() []uint64 {
	var out []uint64
	for i := range r.refs {
		if r.refs[i].typ == raft.EntryConfChange {
			out = append(out, r.first+uint64(i))
		}
	}
	return out
}

// tailLen returns how many of the last entries of the log fit in maxBytes, counting
// a bound on their encoded size: those the log cache holds after recovery.
func (r *replay) tailLen(maxBytes int64) int {
	n, size := 0, int64(0)
	for n < len(r.refs) {
		ref := &r.refs[len(r.refs)-1-n]
		// Bound the encoding: index, term, type and length as varints, then data.
		size += int64(ref.dataLen) + 4*binary.MaxVarintLen64
		if size > maxBytes {
			break
		}
		n++
	}
	return n
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
	if missing := r.missingSnapshot(files); missing != "" {
		// The WAL records each snapshot after its file is durable, and retention
		// keeps the newest files, so this one was removed by hand or lost.
		logger.Warn("the snapshot file the WAL records last is missing; recovering from an older snapshot or the log",
			"file", filepath.Join(dir, missing), "index", r.markIndex, "term", r.markTerm)
		failed = append(failed, missing+" (missing)")
	}
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
			r.refs = nil
			return snap, &snapMarker{kind: snapInstall, index: snap.Index, term: snap.Term}, nil
		}
		if len(r.refs) > 0 && r.first > snap.Index+1 {
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
	if r.base == 0 && (len(r.refs) == 0 || r.first == 1) {
		return raft.Snapshot{}, nil, nil // the log is whole from the start
	}
	need := r.base
	if len(r.refs) > 0 {
		need = max(need, r.first-1)
	}
	return raft.Snapshot{}, nil, corruptf(dir, 0,
		"the WAL's log starts after index %d (first entry read at %s offset %d), so it needs a snapshot at index %d or later, "+
			"and none is usable (%d snapshot files; missing or failing their checks: %v)",
		need, r.runStart.file, r.runStart.offset, need, len(files), failed)
}
