package storage

import (
	"bytes"
	"reflect"
	"testing"

	"raftkv/raft"
)

// FuzzBatchPayload checks the decoding of batch payloads of both segment formats
// (record.go): it never panics; a payload of the current format that decodes
// re-encodes to the same bytes; and format 1 reads every entry and hard state exactly
// as raft's format 1 reads the same bytes behind a version byte, which is what the
// two formats are. Run it with
//
//	go test ./storage -run '^$' -fuzz '^FuzzBatchPayload$' -fuzztime 30s
func FuzzBatchPayload(f *testing.F) {
	seed := clusterSeed(testClusterID)
	hs := &raft.HardState{Term: 3, Vote: 2, Commit: 1 << 20}
	for _, ents := range [][]raft.Entry{nil, makeEntries(1, 1, 1, 0), makeEntries(7, 5, 2, 30)} {
		rec := appendBatchRecord(nil, seed, ents, nil, hs)
		f.Add(rec[recordHeaderSize:], false)
		rec = appendBatchRecord(nil, seed, ents, nil, nil)
		f.Add(rec[recordHeaderSize:], true)
	}
	f.Add([]byte{1, 4, 3, 2, 0x80, 0x01, 1, 5, 5, 9, 0, 1, 'x'}, true)
	f.Fuzz(func(t *testing.T, payload []byte, format1 bool) {
		version := uint32(segmentVersion)
		if format1 {
			version = 1
		}
		var ents []raft.Entry
		var encs [][]byte
		hs, err := decodeBatch(payload, version, func(e *raft.Entry, enc []byte, off int) error {
			if !bytes.Equal(payload[off:off+len(enc)], enc) {
				t.Fatalf("entry encoding at offset %d is not the payload's bytes there", off)
			}
			ents, encs = append(ents, *e), append(encs, enc)
			return nil
		})
		if err != nil {
			return
		}
		if !format1 {
			if re := appendBatchRecord(nil, seed, ents, nil, hs)[recordHeaderSize:]; !bytes.Equal(re, payload) {
				t.Fatalf("re-encoding differs:\n in %x\nout %x", payload, re)
			}
			return
		}
		for i, enc := range encs {
			var e raft.Entry
			if err := e.Unmarshal(append([]byte{raft.EncodingVersion}, enc...)); err != nil {
				t.Fatalf("entry %d reads in format 1 as %+v but not behind a version byte: %v", i, ents[i], err)
			}
			if e.Term != ents[i].Term || e.Index != ents[i].Index || e.Type != ents[i].Type || !bytes.Equal(e.Data, ents[i].Data) {
				t.Fatalf("entry %d reads as %+v in format 1, as %+v behind a version byte", i, ents[i], e)
			}
		}
		if hs != nil {
			old := payload[1:] // flags, then the hard state's length and encoding
			r := payloadReader{b: old}
			var v raft.HardState
			if err := v.Unmarshal(append([]byte{raft.EncodingVersion}, r.bytes()...)); err != nil || !reflect.DeepEqual(v, *hs) {
				t.Fatalf("hard state reads as %+v in format 1, as %+v (%v) behind a version byte", *hs, v, err)
			}
		}
	})
}
