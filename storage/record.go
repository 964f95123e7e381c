package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"raftkv/raft"
)

// A WAL record is a 16-byte header and a payload, little-endian:
//
//	0   u32  payload length
//	4   u8   record type
//	5   [3]  zero
//	8   u32  CRC-32C of the payload
//	12  u32  CRC-32C of header bytes [0, 12)
//	16  ...  payload
//
// Both checksums start from the cluster's seed (the CRC-32C of its id), so a record
// copied from another cluster's WAL fails them. The header has a checksum of its own so
// that recovery knows whether to trust the length when the payload fails: that is what
// separates a torn tail from a corrupt record (see recovery.go). A header of zeros is
// never written (the type is never zero): it marks space nothing was written to.
const recordHeaderSize = 16

type recordType uint8

const (
	// recBatch holds what one Save writes: entries, then perhaps a HardState (see
	// appendBatchRecord). An entry at or below the last index replaces the log from
	// its index on (a follower's conflicting suffix). A Save too big for the room
	// left in a segment is split into several, the HardState in the last.
	recBatch recordType = 1 + iota
	// recSnapshot marks a snapshot (snapMarker): the file holds the data.
	recSnapshot
	// recSegmentStart opens every segment (segmentStart).
	recSegmentStart
)

func (t recordType) String() string {
	switch t {
	case recBatch:
		return "batch"
	case recSnapshot:
		return "snapshot marker"
	case recSegmentStart:
		return "segment start"
	}
	return fmt.Sprintf("record type %d", uint8(t))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// clusterSeed is the starting CRC of every checksum in the cluster's WAL.
func clusterSeed(clusterID uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], clusterID)
	return crc32.Update(0, castagnoli, b[:])
}

// snapKind says what a snapshot marker did to the log.
type snapKind uint8

const (
	// snapCompact: CreateSnapshot; the entries after the index stay.
	snapCompact snapKind = 1
	// snapInstall: ApplySnapshot; the whole log is replaced, nothing stays.
	snapInstall snapKind = 2
)

// snapMarker is the payload of recSnapshot: kind(1) index term.
type snapMarker struct {
	kind  snapKind
	index uint64
	term  uint64
}

// segmentStart is the payload of the record that opens each segment: where the
// previous segment's records end, and the state a reader needs if every segment before
// this one is gone (dropped below a snapshot): the HardState, the last snapshot marker,
// and the index and term of the last installed snapshot (below which nothing of the
// log survives). Encoded as eight uvarints in field order.
type segmentStart struct {
	prevEnd   uint64
	hs        raft.HardState
	markIndex uint64
	markTerm  uint64
	base      uint64
	baseTerm  uint64
}

// maxSegmentStartPayload bounds the payload of a segmentStart: eight uvarints.
const maxSegmentStartPayload = 8 * binary.MaxVarintLen64

var zeroHeader [recordHeaderSize]byte

// beginRecord reserves a header; the caller appends the payload and calls finishRecord.
func beginRecord(b []byte) ([]byte, int) {
	return append(b, zeroHeader[:]...), len(b)
}

func finishRecord(b []byte, start int, t recordType, seed uint32) []byte {
	h, payload := b[start:start+recordHeaderSize], b[start+recordHeaderSize:]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	h[4] = byte(t)
	binary.LittleEndian.PutUint32(h[8:12], crc32.Update(seed, castagnoli, payload))
	binary.LittleEndian.PutUint32(h[12:16], crc32.Update(seed, castagnoli, h[:12]))
	return b
}

// A batch payload is: flags(1), then if flags&batchHasHardState a uvarint length and
// the HardState (raft codec), then a uvarint count and count times a uvarint length
// and an Entry (raft codec). One checksum covers the lot: a Save of many entries costs
// one CRC over a long buffer, not one per entry.
//
// In segments of format 1 (segment.go) the HardState and the entries are in the
// encoding raftkv wrote before raft's encodings were versioned: the same fields
// without the leading version byte. decodeBatch reads both; only the current one is
// written.
const batchHasHardState = 1

// batchPayloadSize returns the payload size of a batch record; entrySizes[i] is
// ents[i].Size().
func batchPayloadSize(entrySizes []int, hs *raft.HardState) int {
	n := 1 + uvarintLen(uint64(len(entrySizes)))
	if hs != nil {
		n += uvarintLen(uint64(hs.Size())) + hs.Size()
	}
	for _, size := range entrySizes {
		n += uvarintLen(uint64(size)) + size
	}
	return n
}

// appendBatchRecord appends a batch record of ents and hs (nil for none). sizes[i]
// is ents[i].Size(), or sizes is nil to have them computed.
func appendBatchRecord(b []byte, seed uint32, ents []raft.Entry, sizes []int, hs *raft.HardState) []byte {
	b, start := beginRecord(b)
	if hs == nil {
		b = append(b, 0)
	} else {
		b = append(b, batchHasHardState)
		b = binary.AppendUvarint(b, uint64(hs.Size()))
		b = hs.MarshalTo(b)
	}
	b = binary.AppendUvarint(b, uint64(len(ents)))
	for i := range ents {
		size := 0
		if sizes != nil {
			size = sizes[i]
		} else {
			size = ents[i].Size()
		}
		b = binary.AppendUvarint(b, uint64(size))
		b = ents[i].MarshalTo(b)
	}
	return finishRecord(b, start, recBatch, seed)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendSnapshotRecord(b []byte, seed uint32, m snapMarker) []byte {
	b, start := beginRecord(b)
	b = append(b, byte(m.kind))
	b = binary.AppendUvarint(b, m.index)
	b = binary.AppendUvarint(b, m.term)
	return finishRecord(b, start, recSnapshot, seed)
}

func appendSegmentStartRecord(b []byte, seed uint32, s segmentStart) []byte {
	b, start := beginRecord(b)
	for _, v := range [...]uint64{s.prevEnd, s.hs.Term, s.hs.Vote, s.hs.Commit, s.markIndex, s.markTerm, s.base, s.baseTerm} {
		b = binary.AppendUvarint(b, v)
	}
	return finishRecord(b, start, recSegmentStart, seed)
}

// recordStatus is what readRecord found at an offset.
type recordStatus uint8

const (
	recordOK recordStatus = iota
	// recordEnd: a header of zeros, where nothing was written.
	recordEnd
	// recordBadHeader: the header is cut by the end of the data or fails its checksum;
	// its length cannot be trusted.
	recordBadHeader
	// recordTruncated: the header is sound but the payload runs past the end of the data.
	recordTruncated
	// recordBadPayload: the header is sound but the payload fails its checksum.
	recordBadPayload
	// recordBadShape: the header is sound but says something impossible (unknown type,
	// reserved bytes set, a length over the limit): not a torn write, a bug or damage.
	recordBadShape
)

func (s recordStatus) String() string {
	switch s {
	case recordOK:
		return "ok"
	case recordEnd:
		return "end of records"
	case recordBadHeader:
		return "record header is truncated or fails its checksum"
	case recordTruncated:
		return "record payload runs past the end of the file"
	case recordBadPayload:
		return "record payload fails its checksum"
	case recordBadShape:
		return "record header is impossible (unknown type, reserved bytes set or length over the limit)"
	}
	return fmt.Sprintf("recordStatus(%d)", uint8(s))
}

// record is a record read from a buffer; payload aliases the buffer.
type record struct {
	typ     recordType
	payload []byte
	// end is the offset just past the record; for recordTruncated and recordBadPayload
	// it is where the header says the record ends (possibly past the buffer).
	end int64
}

// readRecord reads the record at buf[off:]. It never panics, and it trusts a length
// only after the header checksum passed and the length is at most maxPayload.
func readRecord(buf []byte, off int64, seed uint32, maxPayload int) (record, recordStatus) {
	rec, status := parseRecord(buf, off, seed, maxPayload)
	if status == recordOK && crc32.Update(seed, castagnoli, rec.payload) != binary.LittleEndian.Uint32(buf[off+8:off+12]) {
		return rec, recordBadPayload
	}
	return rec, status
}

// parseRecord is readRecord without the payload checksum, for records already
// verified by readRecord.
func parseRecord(buf []byte, off int64, seed uint32, maxPayload int) (record, recordStatus) {
	if off < 0 || off > int64(len(buf)) {
		return record{}, recordBadHeader
	}
	rest := buf[off:]
	if len(rest) < recordHeaderSize {
		if allZero(rest) {
			return record{}, recordEnd
		}
		return record{}, recordBadHeader
	}
	h := rest[:recordHeaderSize]
	if [recordHeaderSize]byte(h) == zeroHeader {
		return record{}, recordEnd
	}
	if crc32.Update(seed, castagnoli, h[:12]) != binary.LittleEndian.Uint32(h[12:16]) {
		return record{}, recordBadHeader
	}
	length := binary.LittleEndian.Uint32(h[0:4])
	typ := recordType(h[4])
	if typ < recBatch || typ > recSegmentStart || h[5] != 0 || h[6] != 0 || h[7] != 0 || uint64(length) > uint64(maxPayload) {
		return record{}, recordBadShape
	}
	end := off + recordHeaderSize + int64(length)
	rec := record{typ: typ, end: end}
	if end > int64(len(buf)) {
		return rec, recordTruncated
	}
	rec.payload = buf[off+recordHeaderSize : end : end]
	return rec, recordOK
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	var zeros [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if string(b[:n]) != string(zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// errBadPayload is wrapped by payload decoding errors of the storage's own records.
var errBadPayload = errors.New("malformed payload")

// payloadReader reads canonical uvarints (no overlong forms, so that a valid payload
// re-encodes to the same bytes) and bytes; after the first failure it returns zeros.
type payloadReader struct {
	b   []byte
	bad bool
}

func (r *payloadReader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || (n > 1 && r.b[n-1] == 0) {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) byte() byte {
	if r.bad || len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *payloadReader) done(what string) error {
	if r.bad || len(r.b) != 0 {
		return fmt.Errorf("%w: %s", errBadPayload, what)
	}
	return nil
}

// bytes reads a uvarint length and that many bytes, aliasing the payload.
func (r *payloadReader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// decodeBatch decodes a batch payload of a segment of format version, calling entry
// with each entry (its Data aliasing p), its encoding and the encoding's offset in p,
// in order. It returns the HardState, or nil if the batch has none.
func decodeBatch(p []byte, version uint32, entry func(e *raft.Entry, enc []byte, off int) error) (*raft.HardState, error) {
	r := payloadReader{b: p}
	flags := r.byte()
	if flags&^batchHasHardState != 0 {
		return nil, fmt.Errorf("%w: batch flags %#x", errBadPayload, flags)
	}
	var hs *raft.HardState
	if flags&batchHasHardState != 0 {
		hs = new(raft.HardState)
		if err := unmarshalHardState(r.bytes(), version, hs); err != nil {
			return nil, fmt.Errorf("%w: batch hard state: %w", errBadPayload, err)
		}
	}
	count := r.uvarint()
	var e raft.Entry
	for i := uint64(0); i < count && !r.bad; i++ {
		enc := r.bytes()
		if r.bad {
			break
		}
		if err := unmarshalEntry(enc, version, &e); err != nil {
			return nil, fmt.Errorf("%w: entry %d of the batch: %w", errBadPayload, i, err)
		}
		if err := entry(&e, enc, len(p)-len(r.b)-len(enc)); err != nil {
			return nil, err
		}
	}
	if err := r.done("batch"); err != nil {
		return nil, err
	}
	return hs, nil
}

func decodeSnapMarker(p []byte) (snapMarker, error) {
	r := payloadReader{b: p}
	m := snapMarker{kind: snapKind(r.byte()), index: r.uvarint(), term: r.uvarint()}
	if err := r.done("snapshot marker"); err != nil {
		return snapMarker{}, err
	}
	if m.kind != snapCompact && m.kind != snapInstall {
		return snapMarker{}, fmt.Errorf("%w: snapshot marker of unknown kind %d", errBadPayload, m.kind)
	}
	return m, nil
}

func decodeSegmentStart(p []byte) (segmentStart, error) {
	r := payloadReader{b: p}
	var s segmentStart
	s.prevEnd = r.uvarint()
	s.hs.Term, s.hs.Vote, s.hs.Commit = r.uvarint(), r.uvarint(), r.uvarint()
	s.markIndex, s.markTerm = r.uvarint(), r.uvarint()
	s.base, s.baseTerm = r.uvarint(), r.uvarint()
	if err := r.done("segment start"); err != nil {
		return segmentStart{}, err
	}
	return s, nil
}

// unmarshalEntry decodes an entry of a batch record in a segment of format version.
func unmarshalEntry(enc []byte, version uint32, e *raft.Entry) error {
	if version >= 2 {
		return e.Unmarshal(enc)
	}
	// Format 1: Term Index Type(1) len(Data) Data, canonical uvarints.
	r := payloadReader{b: enc}
	e.Term, e.Index, e.Type = r.uvarint(), r.uvarint(), raft.EntryType(r.byte())
	if e.Data = r.bytes(); len(e.Data) == 0 {
		e.Data = nil
	}
	return r.done("entry of format 1")
}

// unmarshalHardState decodes the hard state of a batch record in a segment of format
// version.
func unmarshalHardState(enc []byte, version uint32, hs *raft.HardState) error {
	if version >= 2 {
		return hs.Unmarshal(enc)
	}
	// Format 1: Term Vote Commit, canonical uvarints.
	r := payloadReader{b: enc}
	hs.Term, hs.Vote, hs.Commit = r.uvarint(), r.uvarint(), r.uvarint()
	return r.done("hard state of format 1")
}
