package storage

import (
	"bytes"
	"math"
	"testing"

	"raftkv/raft"
)

func sampleRecords(seed uint32) [][]byte {
	ents := []raft.Entry{{Term: 3, Index: 42, Type: raft.EntryNoOp, Data: []byte("hello")}, {Term: 3, Index: 43}}
	hs := raft.HardState{Term: 3, Vote: 1, Commit: 40}
	return [][]byte{
		appendBatchRecord(nil, seed, ents, nil, &hs),
		appendBatchRecord(nil, seed, ents[:1], nil, nil),
		appendBatchRecord(nil, seed, nil, nil, &hs),
		appendSnapshotRecord(nil, seed, snapMarker{kind: snapCompact, index: 30, term: 2}),
		appendSnapshotRecord(nil, seed, snapMarker{kind: snapInstall, index: math.MaxUint64, term: 9}),
		appendSegmentStartRecord(nil, seed, segmentStart{prevEnd: 4096, hs: hs, markIndex: 30, markTerm: 2, base: 10, baseTerm: 1}),
	}
}

func TestRecordRoundTrip(t *testing.T) {
	seed := clusterSeed(testClusterID)
	for i, rec := range sampleRecords(seed) {
		got, status := readRecord(rec, 0, seed, MaxSegmentSize)
		if status != recordOK || got.end != int64(len(rec)) {
			t.Fatalf("record %d: status %v end %d; want ok at %d", i, status, got.end, len(rec))
		}
		if re := reencode(t, got, seed); !bytes.Equal(re, rec) {
			t.Errorf("record %d re-encodes differently", i)
		}
		// Another cluster's seed fails the header checksum.
		if _, status := readRecord(rec, 0, clusterSeed(testClusterID+1), MaxSegmentSize); status != recordBadHeader {
			t.Errorf("record %d read with another cluster's seed: %v; want a bad header", i, status)
		}
	}
}

func TestReadRecordClassifiesDamage(t *testing.T) {
	seed := clusterSeed(testClusterID)
	rec := sampleRecords(seed)[0]
	damaged := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(rec)) }
	cases := []struct {
		name string
		buf  []byte
		want recordStatus
	}{
		{"zeros", make([]byte, 40), recordEnd},
		{"short zeros", make([]byte, 5), recordEnd},
		{"empty", nil, recordEnd},
		{"short header", rec[:10], recordBadHeader},
		{"header flip", damaged(func(b []byte) []byte { b[1] ^= 1; return b }), recordBadHeader},
		{"payload cut", rec[:len(rec)-1], recordTruncated},
		{"payload flip", damaged(func(b []byte) []byte { b[len(b)-1] ^= 0x10; return b }), recordBadPayload},
	}
	for _, c := range cases {
		if _, got := readRecord(c.buf, 0, seed, MaxSegmentSize); got != c.want {
			t.Errorf("%s: %v; want %v", c.name, got, c.want)
		}
	}
	// A sound header whose length is over the limit is not a torn write.
	big := finishRecord(append(bytes.Clone(zeroHeader[:]), make([]byte, 100)...), 0, recBatch, seed)
	if _, got := readRecord(big, 0, seed, 99); got != recordBadShape {
		t.Errorf("length over the limit: %v; want bad shape", got)
	}
}

// reencode decodes a sound record's payload and encodes the record again.
func reencode(t testing.TB, rec record, seed uint32) []byte {
	switch rec.typ {
	case recBatch:
		var ents []raft.Entry
		hs, err := decodeBatch(rec.payload, segmentVersion, func(e *raft.Entry, _ []byte, _ int) error {
			ents = append(ents, *e)
			return nil
		})
		if err != nil {
			return nil
		}
		return appendBatchRecord(nil, seed, ents, nil, hs)
	case recSnapshot:
		m, err := decodeSnapMarker(rec.payload)
		if err != nil {
			return nil
		}
		return appendSnapshotRecord(nil, seed, m)
	case recSegmentStart:
		s, err := decodeSegmentStart(rec.payload)
		if err != nil {
			return nil
		}
		return appendSegmentStartRecord(nil, seed, s)
	}
	t.Fatalf("readRecord accepted record type %d", rec.typ)
	return nil
}

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder, both as they are and
// wrapped in a record with valid checksums (so that the fuzzer reaches the payload
// decoders without forging CRCs). It must never panic, and whatever decodes must
// encode back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	seed := clusterSeed(testClusterID)
	for _, rec := range sampleRecords(seed) {
		f.Add(rec)
		f.Add(rec[recordHeaderSize-1:]) // type byte + payload, for the wrapped path
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(buf []byte) {
			rec, status := readRecord(buf, 0, seed, MaxSegmentSize)
			if status != recordOK {
				return
			}
			if rec.end > int64(len(buf)) || rec.end < recordHeaderSize {
				t.Fatalf("record end %d outside the %d-byte input", rec.end, len(buf))
			}
			if re := reencode(t, rec, seed); re != nil && !bytes.Equal(re, buf[:rec.end]) {
				t.Fatalf("re-encoding differs:\n in %x\nout %x", buf[:rec.end], re)
			}
		}
		check(data)
		if len(data) > 0 {
			wrapped := append(bytes.Clone(zeroHeader[:]), data[1:]...)
			check(finishRecord(wrapped, 0, recordType(data[0]), seed))
		}
	})
}

// FuzzRecoverSegment puts arbitrary bytes after a valid header and start record, in
// the last segment or (when the first byte is odd) in a segment followed by a valid,
// empty last one, and opens the WAL: recovery must refuse or succeed, never panic, and
// what it reads must survive a second open unchanged.
func FuzzRecoverSegment(f *testing.F) {
	seed := clusterSeed(testClusterID)
	for _, rec := range sampleRecords(seed)[:3] {
		f.Add(append([]byte{0}, rec...))
		f.Add(append([]byte{1}, rec...))
	}
	f.Add(append(append([]byte{0}, sampleRecords(seed)[0]...), 1, 2, 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		twoSegments := data[0]%2 == 1
		fsys := NewMemFS()
		opts := Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize}
		if err := fsys.MkdirAll("/d/wal"); err != nil {
			t.Fatal(err)
		}
		write := func(seq uint64, content []byte) {
			file, err := fsys.Create("/d/wal/" + segmentName(seq))
			if err != nil {
				t.Fatal(err)
			}
			file.WriteAt(content, 0)
			file.Close()
		}
		seg := append(segmentInit(testClusterID, 0, seed, 1, segmentStart{}), data[1:]...)
		write(1, seg)
		if twoSegments {
			write(2, segmentInit(testClusterID, 0, seed, 2, segmentStart{prevEnd: uint64(len(seg))}))
		}
		s, err := Open(fsys, "/d", opts)
		if err != nil {
			return
		}
		first := readState(t, s)
		s.Close()
		s, err = Open(fsys, "/d", opts)
		if err != nil {
			t.Fatalf("second open of a WAL that opened once: %v", err)
		}
		defer s.Close()
		if again := readState(t, s); !equalState(first, again) {
			t.Fatalf("second open read %v, the first %v", again, first)
		}
	})
}
