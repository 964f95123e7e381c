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
//	32  u32  CRC-32C of bytes [0, 32)
//	36  [28] zero
//
// then a segmentStart record, then records up to the segment's end; the preallocated
// space after the last record reads as zeros, and the file may end anywhere after
// that record. A segment only appears under its final
// name once its header and first record are synced (see createSegment), so recovery
// never meets a half-made one.
//
// The format version says how batch records encode entries and hard states (see
// record.go): format 2 in raft's encodings, which begin with their own version byte;
// format 1, what raftkv wrote before those were versioned, in the same fields without
// that byte. New segments are of format 2. Format 1 segments are still read, so a data
// dir written before keeps opening; they are never appended to (Open starts a new
// segment after one), and none follows a segment of format 2.
const (
	segmentHeaderSize = 64
	segmentVersion    = 2
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

func appendSegmentHeader(b []byte, clusterID, seq uint64) []byte {
	start := len(b)
	b = append(b, make([]byte, segmentHeaderSize)...)
	h := b[start:]
	copy(h[0:8], segmentMagic[:])
	binary.LittleEndian.PutUint32(h[8:12], segmentVersion)
	binary.LittleEndian.PutUint64(h[16:24], clusterID)
	binary.LittleEndian.PutUint64(h[24:32], seq)
	binary.LittleEndian.PutUint32(h[32:36], crc32.Checksum(h[:32], castagnoli))
	return b
}

type segmentHeader struct {
	clusterID uint64
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
	if crc32.Checksum(h[:32], castagnoli) != binary.LittleEndian.Uint32(h[32:36]) {
		return segmentHeader{}, "segment header fails its checksum"
	}
	if !allZero(h[12:16]) || !allZero(h[36:]) {
		return segmentHeader{}, "reserved bytes of the segment header are not zero"
	}
	v := binary.LittleEndian.Uint32(h[8:12])
	if v < oldestSegmentVersion || v > segmentVersion {
		return segmentHeader{}, fmt.Sprintf("segment format version %d, this build reads versions %d to %d; was it written by a later raftkv?",
			v, oldestSegmentVersion, segmentVersion)
	}
	return segmentHeader{
		clusterID: binary.LittleEndian.Uint64(h[16:24]),
		seq:       binary.LittleEndian.Uint64(h[24:32]),
		version:   v,
	}, ""
}

// segmentInit returns the first bytes of a new segment: header and start record.
func segmentInit(clusterID uint64, seed uint32, seq uint64, start segmentStart) []byte {
	b := appendSegmentHeader(make([]byte, 0, maxSegmentInit), clusterID, seq)
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
