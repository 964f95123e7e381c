package storage

import (
	"fmt"

	"raftkv/raft"
)

// readEntries reads entries lo, lo+1, ... back from the WAL records at locs, checking
// each record's checksums again, and stops before the entry that would take their
// size past maxBytes (the first is always read). It returns them and their size. It
// runs without the lock: the records it reads are durable and never written again,
// and a segment removed meanwhile (its entries compacted) is an error the caller
// checks against the snapshot.
func (s *Storage) readEntries(lo uint64, locs []entryLoc, maxBytes uint64) ([]raft.Entry, uint64, error) {
	// A capacity for what maxBytes likely lets through (16 bytes an entry; append
	// grows it past that), not for every entry asked for: raft may ask for a long
	// range with a small maxBytes.
	ents := make([]raft.Entry, 0, min(uint64(len(locs)), maxBytes/16+1))
	var size uint64
	var file File
	var fileSeq uint64
	defer func() {
		if file != nil {
			file.Close()
		}
	}()
	seed := clusterSeed(s.clusterID)
	for i := 0; i < len(locs); {
		loc := locs[i]
		if file == nil || fileSeq != loc.seq {
			if file != nil {
				file.Close()
				file = nil
			}
			f, err := s.fs.Open(s.wal.segmentPath(loc.seq))
			if err != nil {
				return nil, 0, fmt.Errorf("storage: reading entry %d back from the WAL: %w", lo+uint64(i), err)
			}
			file, fileSeq = f, loc.seq
		}
		payload, err := readRecordAt(file, int64(loc.offset), seed)
		if err != nil {
			return nil, 0, fmt.Errorf("storage: reading entry %d back from WAL segment %s: %w", lo+uint64(i), segmentName(loc.seq), err)
		}
		// Take every wanted entry this record holds: those after i that point to it.
		full := false
		version := uint32(segmentVersion)
		if loc.seq < s.wal.oldFormatBelow {
			version = 1
		}
		_, err = decodeBatch(payload, version, func(e *raft.Entry, _ []byte, _ int) error {
			if full || i >= len(locs) || locs[i] != loc {
				return nil
			}
			want := lo + uint64(i)
			if e.Index < want {
				return nil // an entry of the record before the wanted ones
			}
			if e.Index != want {
				return fmt.Errorf("the record holds entry %d where entry %d was written", e.Index, want)
			}
			size += uint64(e.Size())
			if len(ents) > 0 && size > maxBytes {
				full = true
				return nil
			}
			ents = append(ents, *e)
			i++
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("%w: WAL segment %s, record at offset %d, reading entry %d back: %v",
				ErrCorrupt, s.wal.segmentPath(loc.seq), loc.offset, lo+uint64(i), err)
		}
		if full {
			break
		}
		if i < len(locs) && locs[i] == loc {
			return nil, 0, fmt.Errorf("%w: WAL segment %s, record at offset %d: it does not hold entry %d, which the log says it does",
				ErrCorrupt, s.wal.segmentPath(loc.seq), loc.offset, lo+uint64(i))
		}
	}
	return ents, size, nil
}

// readRecordAt reads and checks the record at off of f and returns its payload.
func readRecordAt(f File, off int64, seed uint32) ([]byte, error) {
	var header [recordHeaderSize]byte
	if _, err := f.ReadAt(header[:], off); err != nil {
		return nil, err
	}
	rec, status := parseRecord(header[:], 0, seed, MaxSegmentSize)
	if status != recordTruncated {
		return nil, fmt.Errorf("%w: record at offset %d: %v", ErrCorrupt, off, status)
	}
	buf := make([]byte, rec.end)
	copy(buf, header[:])
	if _, err := f.ReadAt(buf[recordHeaderSize:], off+recordHeaderSize); err != nil {
		return nil, err
	}
	rec, status = readRecord(buf, 0, seed, MaxSegmentSize)
	if status != recordOK || rec.typ != recBatch {
		return nil, fmt.Errorf("%w: record at offset %d: %v, a %v record", ErrCorrupt, off, status, rec.typ)
	}
	return rec.payload, nil
}
