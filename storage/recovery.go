package storage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"

	"raftkv/raft"
)

// Recovery reads every segment in order and replays its records.
//
// A segment other than the last is read strictly: its successor's start record says
// where its records end (prevEnd), and every record up to there must be sound. A
// segment is only ever followed by another once it was synced, so any failure there
// is damage, not a crash.
//
// In the last segment a crash can leave a torn write. A disk that persists unsynced
// writes in order (the model MemFS implements) leaves a bad record followed by
// nothing: after the last sound record there is at most one bad record (its header
// torn, or its payload), then only the zeros of the preallocated space. Recovery cuts
// that off and starts with the sound prefix, which holds at least every record that
// was synced. A power loss may also persist them out of order (a later page, not an
// earlier one), which leaves a bad record with a whole sector of zeros in it or after
// it, then data: that is cut off too (zeroSector), as etcd's WAL cuts a record
// holding a zeroed sector. A bad record followed by anything else (another record,
// stray bytes) and no such sector cannot come from a crash: that is damage, and
// recovery refuses to start, naming the file and offset, rather than drop what
// follows.
//
// A bit flip inside the very last record looks exactly like a torn write and is cut
// off with it, and so would a record of another cluster spliced onto the very end (its
// checksums, seeded with another cluster's id, fail ours): no log can tell those apart
// from a tear without another copy. Anywhere else they are found and refused.

// walRecovery is what recoverWAL found.
type walRecovery struct {
	replay
	fresh     bool   // no segment at all
	lastSeq   uint64 // the last segment
	lastEnd   int64  // where its sound records end
	lastClean bool   // nothing but zeros after lastEnd: appends can continue there
	// olderFormat: the first segment is of a format before segmentVersion (an
	// older build wrote it; formats only move forward).
	olderFormat bool
	// oldFormatBelow: the segments numbered below it are of format 1 (segment.go);
	// the rest, and every one made from now on, of a later format.
	oldFormatBelow uint64
	// memberID is the member the segments' headers name (format 3), and
	// memberSegment the first segment that names it; 0 and "" if none does.
	memberID      uint64
	memberSegment string
}

// segmentFile is a segment being recovered.
type segmentFile struct {
	seq      uint64
	path     string
	f        File
	size     int64
	version  uint32 // format version (segment.go)
	memberID uint64 // the member its header names, or 0
	start    segmentStart
	startEnd int64 // where the start record ends
	end      int64 // where the records end, as the next segment says (not for the last)
}

// recoverWAL reads the WAL in dir and replays it.
func recoverWAL(fsys FS, dataDir, dir string, clusterID uint64, logger *slog.Logger) (*walRecovery, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: listing WAL directory: %w", err)
	}
	var segs []*segmentFile
	for _, name := range sortedNames(names) {
		seq, ok := parseSegmentName(name)
		if !ok && IsBookkeeping(name) {
			continue // a lock (a WAL dir of its own), the member record
		}
		if !ok {
			logger.Warn("ignoring a file in the WAL directory that is not a segment", "file", filepath.Join(dir, name))
			continue
		}
		segs = append(segs, &segmentFile{seq: seq, path: filepath.Join(dir, name)})
	}
	if len(segs) == 0 {
		return &walRecovery{fresh: true}, nil
	}
	defer func() {
		for _, s := range segs {
			if s.f != nil {
				s.f.Close()
			}
		}
	}()
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, corruptf(segs[i].path, 0, "the segments before it end at %s: segment %s is missing",
				segmentName(segs[i-1].seq), segmentName(segs[i-1].seq+1))
		}
	}
	seed := clusterSeed(clusterID)
	oldFormatBelow := segs[len(segs)-1].seq + 1
	rec := &walRecovery{}
	for i, s := range segs {
		if err := openSegment(fsys, s, i == 0, dataDir, clusterID, seed); err != nil {
			return nil, err
		}
		if i > 0 && s.version < segs[i-1].version {
			return nil, corruptf(s.path, 8, "a segment of format %d after one of format %d: formats only move forward",
				s.version, segs[i-1].version)
		}
		if s.version >= 2 {
			oldFormatBelow = min(oldFormatBelow, s.seq)
		}
		// Every segment that names a member names the same one: a segment of
		// another member's WAL holds that member's votes.
		if s.memberID != 0 && rec.memberID != 0 && s.memberID != rec.memberID {
			return nil, corruptf(s.path, 36, "segment of member %x in a WAL whose segment %s is of member %x",
				s.memberID, rec.memberSegment, rec.memberID)
		}
		if s.memberID != 0 && rec.memberID == 0 {
			rec.memberID, rec.memberSegment = s.memberID, s.path
		}
	}

	for i, s := range segs[:len(segs)-1] {
		end := int64(segs[i+1].start.prevEnd)
		if end < s.startEnd || end > s.size {
			return nil, corruptf(s.path, s.size, "the next segment says this one's records end at offset %d, but the file is %d bytes",
				end, s.size)
		}
		s.end = end
	}

	// Every segment but the last streams through a window (pipeline.go) and its
	// records are replayed into rec; the last segment is scanned meanwhile on a
	// goroutine of its own, through a window of its own, then replayed. Both are
	// joined before the files close.
	last := segs[len(segs)-1]
	var tail lastSegment
	var tailDone sync.WaitGroup
	tailDone.Go(func() { tail = scanLast(last, seed, logger) })
	defer tailDone.Wait()
	if err := replaySegments(segs[:len(segs)-1], seed, &rec.replay); err != nil {
		return nil, err
	}
	tailDone.Wait()
	if tail.err != nil {
		return nil, tail.err
	}
	rec.lastSeq, rec.lastEnd, rec.oldFormatBelow = last.seq, tail.end, oldFormatBelow
	// Appends continue in the last segment only if it is of the current format;
	// after a segment of format 1, Open starts a new one.
	rec.lastClean = tail.clean && last.version == segmentVersion
	rec.olderFormat = segs[0].version < segmentVersion
	if err := replaySegment(last, tail.end, len(segs) == 1, seed, false, &rec.replay); err != nil {
		return nil, err
	}
	return rec, nil
}

// lastSegment is what scanLast found in the last segment.
type lastSegment struct {
	end   int64 // where its sound records end
	clean bool
	err   error
}

func scanLast(s *segmentFile, seed uint32, logger *slog.Logger) lastSegment {
	end, clean, err := scanLastSegment(s, seed, logger)
	return lastSegment{end: end, clean: clean, err: err}
}

// openSegment opens a segment and checks its header and start record. It first
// syncs the segment and drops its cached pages (syncAndDropCache), so that every
// read of it during recovery comes from the disk.
func openSegment(fsys FS, s *segmentFile, first bool, dataDir string, clusterID uint64, seed uint32) error {
	if err := syncAndDropCache(fsys, s.path); err != nil {
		return err
	}
	f, err := fsys.Open(s.path)
	if err != nil {
		return fmt.Errorf("storage: opening WAL segment: %w", err)
	}
	s.f = f
	if s.size, err = f.Size(); err != nil {
		return fmt.Errorf("storage: WAL segment %s: %w", s.path, err)
	}
	head := make([]byte, min(s.size, maxSegmentInit))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("storage: reading WAL segment %s: %w", s.path, err)
	}
	h, problem := parseSegmentHeader(head)
	if problem != "" {
		return corruptf(s.path, 0, "%s", problem)
	}
	if h.clusterID != clusterID {
		if first {
			return &clusterMismatchError{dataDir: dataDir, found: h.clusterID, want: clusterID}
		}
		return corruptf(s.path, 16, "segment of cluster %x in the WAL of cluster %x", h.clusterID, clusterID)
	}
	if h.seq != s.seq {
		return corruptf(s.path, 24, "header says segment %d, the name says %d", h.seq, s.seq)
	}
	s.version, s.memberID = h.version, h.memberID
	r, status := readRecord(head, segmentHeaderSize, seed, maxSegmentStartPayload)
	if status != recordOK || r.typ != recSegmentStart {
		return corruptf(s.path, segmentHeaderSize, "no segment start record after the header (%v, %v)", status, r.typ)
	}
	if s.start, err = decodeSegmentStart(r.payload); err != nil {
		return corruptf(s.path, segmentHeaderSize, "segment start record: %v", err)
	}
	s.startEnd = r.end
	return nil
}

// scanLastSegment finds where the sound records of the last segment end, and decides
// whether what follows is clean (zeros), a torn write to cut off, or damage (an
// error). It streams the file through a window (segReader) and keeps nothing of it:
// most of a preallocated last segment is zeros, checked and dropped.
func scanLastSegment(s *segmentFile, seed uint32, logger *slog.Logger) (end int64, clean bool, err error) {
	rd := newSegReader(s.f, s.path, s.size)
	off := s.startEnd
	var r record
	var status recordStatus
	for {
		buf, base, err := rd.view(off, recordHeaderSize)
		if err != nil {
			return 0, false, err
		}
		r, status = parseRecord(buf, off-base, seed, MaxSegmentSize)
		if status == recordTruncated && r.end+base <= s.size {
			// The window cuts the record: widen it to hold the whole record.
			if buf, base, err = rd.view(off, r.end+base-off); err != nil {
				return 0, false, err
			}
		}
		r, status = readRecord(buf, off-base, seed, MaxSegmentSize)
		r.end += base
		if status != recordOK {
			break
		}
		off = r.end
	}
	var skip int64
	switch status {
	case recordEnd:
		skip = off
	case recordBadHeader:
		skip = off + recordHeaderSize
	case recordTruncated, recordBadPayload:
		skip = r.end
	default:
		return 0, false, corruptf(s.path, off, "%v", status)
	}
	next, err := firstNonZero(s, skip)
	if err != nil {
		return 0, false, err
	}
	hole := int64(-1)
	if next >= 0 {
		if hole, err = zeroSector(s, off, next); err != nil {
			return 0, false, err
		}
	}
	switch {
	case next < 0 && status == recordEnd:
		clean = true
	case next >= 0 && hole >= 0:
		// Error, not Warn: media damage to a synced record whose payload holds a
		// zeroed sector would look the same (see zeroSector). The bytes stay in the
		// segment file, which a new segment now follows, until the log is compacted.
		logger.Error("cutting off a write torn by a power loss at the end of the WAL: a sector of it never reached the disk, "+
			"and what was written after it was never reported durable either; the bytes stay in the file",
			"file", s.path, "offset", off, "problem", status.String(), "zero_sector", hole, "data_after", next)
	case next >= 0 && status == recordEnd:
		return 0, false, corruptf(s.path, off, "no record here but data at offset %d, so it is not a write torn by a crash", next)
	case next >= 0:
		return 0, false, corruptf(s.path, off, "%v, and data follows at offset %d, so it is not a write torn by a crash", status, next)
	default:
		logger.Warn("cutting off a torn write at the end of the WAL (a crash interrupted it; it was never reported durable)",
			"file", s.path, "offset", off, "problem", status.String())
	}
	return off, clean, nil
}

// sectorSize is the unit a disk writes whole, or not at all, in a power loss: the
// smallest there is, as etcd's WAL assumes (minSectorSize).
const sectorSize = 512

// zeroSector returns the offset of the first sector-aligned sector of zeros in the
// segment between from and to, or -1 if there is none. After a bad record, such a
// sector with data after it is the mark of a write a power loss tore out of order
// (the page cache wrote a later page and not an earlier one; the space was
// preallocated as zeros). The flusher writes its records in file order and reports
// them durable only after the fdatasync that follows, which persists every page
// written before it. So a sector that never reached the disk was written after the
// last fdatasync that completed, and so was everything after it: none of it was
// reported durable, and it is cut off as a torn tail is. A bit flip leaves no such
// sector (unless a record's payload holds 512 zeros just there, which makes it look
// torn: etcd's WAL, whose rule this is, takes the same risk), and stays refused.
func zeroSector(s *segmentFile, from, to int64) (int64, error) {
	first := (from + sectorSize - 1) / sectorSize * sectorSize
	buf := make([]byte, sectorSize)
	for at := first; at+sectorSize <= to; at += sectorSize {
		if _, err := s.f.ReadAt(buf, at); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("storage: reading WAL segment %s: %w", s.path, err)
		}
		if allZero(buf) {
			return at, nil
		}
	}
	return -1, nil
}

// firstNonZero returns the offset of the first non-zero byte of the segment at or
// after from, or -1 if there is none.
func firstNonZero(s *segmentFile, from int64) (int64, error) {
	chunk := make([]byte, min(readChunk, max(s.size-from, 0)))
	for from < s.size {
		n := min(int64(len(chunk)), s.size-from)
		if _, err := s.f.ReadAt(chunk[:n], from); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("storage: reading WAL segment %s: %w", s.path, err)
		}
		if !allZero(chunk[:n]) {
			return from + int64(slices.IndexFunc(chunk[:n], func(b byte) bool { return b != 0 })), nil
		}
		from += n
	}
	return -1, nil
}

// replaySegment replays a segment: its start record, then its records after it, up
// to exactly end. It streams the file through a window (segReader); what it keeps of
// an entry is where it lies (an entryRef). verify checks the payload checksums
// (scanLastSegment has already checked those of the last segment); decoding runs
// right after the check, while the bytes are still in the CPU's caches.
func replaySegment(s *segmentFile, end int64, first bool, seed uint32, verify bool, r *replay) error {
	if err := r.segmentStart(s.start, first, s.seq, location{s.path, segmentHeaderSize}); err != nil {
		return err
	}
	seg := uint32(len(r.segments) - 1)
	rd := newSegReader(s.f, s.path, end)
	off := s.startEnd
	for {
		buf, base, err := rd.view(off, recordHeaderSize)
		if err != nil {
			return err
		}
		rec, status := parseRecord(buf, off-base, seed, MaxSegmentSize)
		if status == recordTruncated && rec.end+base <= end {
			if buf, base, err = rd.view(off, rec.end+base-off); err != nil {
				return err
			}
		}
		if verify {
			rec, status = readRecord(buf, off-base, seed, MaxSegmentSize)
		} else {
			rec, status = parseRecord(buf, off-base, seed, MaxSegmentSize)
		}
		rec.end += base
		if status == recordEnd && off == end {
			return nil
		}
		if status != recordOK {
			return corruptf(s.path, off, "%v, before the end of the segment's records at offset %d", status, end)
		}
		loc := location{s.path, off}
		switch rec.typ {
		case recBatch:
			hs, err := decodeBatch(rec.payload, s.version, func(e *raft.Entry, _ []byte, _ int) error {
				ref := entryRef{term: e.Term, seg: seg, dataLen: uint32(len(e.Data)), recOff: uint32(off), typ: e.Type}
				return r.entry(e.Index, ref, loc)
			})
			var ce *CorruptError
			switch {
			case errors.As(err, &ce):
				return err
			case err != nil:
				return corruptf(s.path, off, "%v", err)
			}
			if hs != nil {
				r.hs = *hs
			}
			r.currentFormatRecords = r.currentFormatRecords || s.version == segmentVersion
		case recSnapshot:
			m, err := decodeSnapMarker(rec.payload)
			if err != nil {
				return corruptf(s.path, off, "%v", err)
			}
			if err := r.marker(m, s.seq, loc); err != nil {
				return err
			}
			r.currentFormatRecords = r.currentFormatRecords || s.version == segmentVersion
		default:
			return corruptf(s.path, off, "a %v record in the middle of a segment", rec.typ)
		}
		off = rec.end
	}
}
