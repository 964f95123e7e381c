package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strconv"
)

// A segment is one file of the WAL, named by its sequence number in hex
// ("000000000000002a.wal"), holding at most Options.SegmentSize bytes and
// preallocated ahead of its writes by what the free space allows (wal.reserve): the
// whole segment on a roomy disk. It starts with a 64-byte header, little-endian:
//
//	0   [8]  magic "raftkvWL"
//	8   u32  format version (segmentVersion; see below)
//	12  u32  zero
//	16  u64  cluster id
//	24  u64  sequence number (the same as in the name)
//	32  u32  CRC-32C of bytes [0, 32), and from format 3 on of bytes [36, 64) after them
//	36  u64  member id (format 3; zero if the WAL was opened without one, and in
//	         formats 1 and 2)
//	44  [20] zero
//
// then a segmentStart record, then records up to the segment's end; the preallocated
// space after the last record reads as zeros, and the file may end anywhere after
// that record. A segment only appears under its final
// name once its header and first record are synced (see createSegment), so recovery
// never meets a half-made one.
//
// The format version says how batch records encode entries and hard states (see
// record.go), and what the header holds: format 1, what raftkv wrote before raft's
// encodings were versioned, encodes them without their version byte; formats 2 and 3
// in raft's encodings, which begin with their own version byte; format 3 names the
// member whose log and votes the segment holds, so that a segment of another member
// is refused wherever it turns up (the member record, walmember.go, covers only the
// directory). New segments are of format 3. Older segments are still read, so a data
// dir written before keeps opening; they are never appended to (Open starts a new
// segment after one), and formats only move forward from one segment to the next.
const (
	segmentHeaderSize = 64
	segmentVersion    = 3
	segmentExt        = ".wal"
)

// oldestSegmentVersion is the oldest segment format this build reads.
const oldestSegmentVersion = 1

var segmentMagic = [8]byte{'r', 'a', 'f', 't', 'k', 'v', 'W', 'L'}

// maxSegmentInit bounds a segment's header and start record.
const maxSegmentInit = segmentHeaderSize + recordHeaderSize + maxSegmentStartPayload

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segmentExt) }

// parseSegmentName returns the sequence number of a segment's file name.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != 16+len(segmentExt) || filepath.Ext(name) != segmentExt {
		return 0, false
	}
	seq, err := strconv.ParseUint(name[:16], 16, 64)
	if err != nil || seq == 0 || segmentName(seq) != name {
		return 0, false
	}
	return seq, true
}

func appendSegmentHeader(b []byte, clusterID, memberID, seq uint64) []byte {
	start := len(b)
	b = append(b, make([]byte, segmentHeaderSize)...)
	h := b[start:]
	copy(h[0:8], segmentMagic[:])
	binary.LittleEndian.PutUint32(h[8:12], segmentVersion)
	binary.LittleEndian.PutUint64(h[16:24], clusterID)
	binary.LittleEndian.PutUint64(h[24:32], seq)
	binary.LittleEndian.PutUint64(h[36:44], memberID)
	binary.LittleEndian.PutUint32(h[32:36], segmentHeaderChecksum(h, segmentVersion))
	return b
}

// segmentHeaderChecksum is the checksum a header h of format version holds at
// [32, 36): of the bytes before it, and from format 3 on of those after it too.
func segmentHeaderChecksum(h []byte, version uint32) uint32 {
	sum := crc32.Checksum(h[:32], castagnoli)
	if version >= 3 {
		sum = crc32.Update(sum, castagnoli, h[36:segmentHeaderSize])
	}
	return sum
}

type segmentHeader struct {
	clusterID uint64
	memberID  uint64 // 0 if the segment names none
	seq       uint64
	version   uint32
}

// parseSegmentHeader checks a header; on failure it says what is wrong.
func parseSegmentHeader(b []byte) (segmentHeader, string) {
	if len(b) < segmentHeaderSize {
		return segmentHeader{}, fmt.Sprintf("file is %d bytes, shorter than a segment header", len(b))
	}
	h := b[:segmentHeaderSize]
	if [8]byte(h[0:8]) != segmentMagic {
		return segmentHeader{}, fmt.Sprintf("no segment magic (found %q): not a WAL segment", h[0:8])
	}
	sum := binary.LittleEndian.Uint32(h[32:36])
	v := binary.LittleEndian.Uint32(h[8:12])
	if v < oldestSegmentVersion || v > segmentVersion {
		// A version this build does not know, or a damaged one: the checksum of
		// either layout tells which.
		if sum != segmentHeaderChecksum(h, 2) && sum != segmentHeaderChecksum(h, 3) {
			return segmentHeader{}, "segment header fails its checksum"
		}
		return segmentHeader{}, fmt.Sprintf("segment format version %d, this build reads versions %d to %d; was it written by a later raftkv?",
			v, oldestSegmentVersion, segmentVersion)
	}
	if sum != segmentHeaderChecksum(h, v) {
		return segmentHeader{}, "segment header fails its checksum"
	}
	reserved := h[36:]
	if v >= 3 {
		reserved = h[44:]
	}
	if !allZero(h[12:16]) || !allZero(reserved) {
		return segmentHeader{}, "reserved bytes of the segment header are not zero"
	}
	out := segmentHeader{
		clusterID: binary.LittleEndian.Uint64(h[16:24]),
		seq:       binary.LittleEndian.Uint64(h[24:32]),
		version:   v,
	}
	if v >= 3 {
		out.memberID = binary.LittleEndian.Uint64(h[36:44])
	}
	return out, ""
}

// segmentInit returns the first bytes of a new segment of member memberID (0:
// unknown): header and start record.
func segmentInit(clusterID, memberID uint64, seed uint32, seq uint64, start segmentStart) []byte {
	b := appendSegmentHeader(make([]byte, 0, maxSegmentInit), clusterID, memberID, seq)
	return appendSegmentStartRecord(b, seed, start)
}

// createSegment makes segment seq in dir durable before anyone uses it: it writes init
// to a temporary file, preallocates it (w.reserve), syncs it, renames it to its final
// name and syncs the directory. A crash at any point leaves either no segment seq
// (the temporary file is removed at the next open) or a complete one. It returns the
// file, open for writing, and how many bytes of it are preallocated.
func (w *wal) createSegment(seq uint64, init []byte) (File, int64, error) {
	fsys, dir := w.fs, w.dir
	final := filepath.Join(dir, segmentName(seq))
	tmp := final + tmpSuffix
	f, err := fsys.Create(tmp)
	if err != nil {
		return nil, 0, fatalError(fsys, "create of WAL segment", tmp, 0, err)
	}
	fail := func(err error) (File, int64, error) {
		f.Close()
		fsys.Remove(tmp) // best effort; the next open removes it anyway
		return nil, 0, err
	}
	allocated, err := w.reserve(f, tmp, 0, int64(len(init)))
	if err != nil {
		return fail(err)
	}
	if _, err := f.WriteAt(init, 0); err != nil {
		return fail(fatalError(fsys, "write of the header of WAL segment", tmp, int64(len(init)), err))
	}
	if err := f.Sync(); err != nil {
		return fail(fatalError(fsys, "fdatasync of new WAL segment", tmp, 0, err))
	}
	if err := fsys.Rename(tmp, final); err != nil {
		return fail(fatalError(fsys, "rename of new WAL segment to", final, 0, err))
	}
	if err := fsys.SyncDir(dir); err != nil {
		f.Close()
		return nil, 0, fatalError(fsys, "fsync of WAL directory", dir, 0, err)
	}
	return f, allocated, nil
}
