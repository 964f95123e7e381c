package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"io"
	"testing"

	"raftkv/raft"
)

// FuzzReadFrame feeds arbitrary bytes to every decoder an inbound connection runs: the
// handshake parser, the message stream reader and the snapshot stream reader. None may
// panic or allocate past its limits, every failure must be one of the documented
// errors, and every message that decodes must re-encode to the bytes it came from.
//
// Run it with: go test -run=^$ -fuzz=FuzzReadFrame ./transport/
func FuzzReadFrame(f *testing.F) {
	msg := func(m raft.Message) []byte { return rawFrame(frameMessage, m.MarshalTo(nil)) }
	app := appMsg(2, 1, 7, []byte("data"))
	f.Add(msg(app))
	f.Add(append(msg(app), msg(raft.Message{Type: raft.MsgHeartbeat, From: 2, To: 1, Term: 3, Commit: 9})...))
	f.Add(msg(raft.Message{Type: raft.MsgReadIndex, From: 2, To: 1, Context: []byte("ctx")}))
	f.Add(rawFrame(frameStatus, []byte("\x01no")))
	f.Add(msg(app)[:12])
	hs := handshake{kind: streamMessages, clusterID: 1, from: 2, to: 1}.marshal()
	f.Add(append(hs[:], msg(app)...))
	data := []byte("snapshot data")
	snapStream := rawFrame(frameSnapHeader, encodeSnapHeader(snapMsg(2, 1, data), snapBodyData, uint64(len(data))))
	snapStream = append(snapStream, rawFrame(frameSnapChunk, data[:5])...)
	snapStream = append(snapStream, rawFrame(frameSnapChunk, data[5:])...)
	f.Add(append(snapStream, rawFrame(frameSnapEnd, encodeSnapEnd(uint64(len(data)), crc32.Checksum(data, castagnoli)))...))
	f.Add(append(snapStream, rawFrame(frameSnapAbort, []byte("disk gone"))...))

	tr, err := New(Config{ID: 1, ClusterID: 1, MaxFrameBytes: minFrameBytes, MaxSnapshotBytes: 1 << 20}, nopHandler{})
	if err != nil {
		f.Fatal(err)
	}
	defer tr.Close()
	isExpected := func(err error) bool {
		return err == io.EOF || errors.Is(err, ErrCorruptFrame) || errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrSnapshotTooLarge) ||
			errors.Is(err, ErrSnapshotAborted) || errors.Is(err, ErrSnapshotHooks)
	}

	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) >= handshakeLen {
			if hs, err := parseHandshake(in[:handshakeLen]); err == nil {
				if got := hs.marshal(); !bytes.Equal(got[:], in[:handshakeLen]) {
					t.Fatalf("handshake % x re-encodes as % x", in[:handshakeLen], got)
				}
			} else if !errors.Is(err, ErrHandshake) {
				t.Fatalf("parseHandshake: undocumented error %v", err)
			}
		}

		// Frame by frame, as any reader sees them.
		fr := frameReader{r: bytes.NewReader(in), maxPayload: minFrameBytes}
		for {
			typ, payload, err := fr.next()
			if err != nil {
				if !isExpected(err) {
					t.Fatalf("frameReader.next: undocumented error %v", err)
				}
				break
			}
			switch typ {
			case frameMessage:
				if m, err := decodeMessage(payload); err == nil {
					if again := m.MarshalTo(nil); !bytes.Equal(again, payload) {
						t.Fatalf("message %v re-encodes differently", m)
					}
				}
			case frameStatus:
				_ = decodeStatus(payload)
			case frameSnapHeader:
				_, _ = decodeSnapHeader(payload)
			}
		}

		// The message stream reader, as node 1 reading from node 2.
		if err := tr.readMessages(context.Background(), bytes.NewReader(in), nil, 2); !isExpected(err) {
			t.Fatalf("readMessages: undocumented error %v", err)
		}
		// The snapshot stream reader.
		m, _, err := tr.readSnapshot(bytes.NewReader(in), 2, func() error { return nil })
		if err != nil && !isExpected(err) {
			t.Fatalf("readSnapshot: undocumented error %v", err)
		}
		if err == nil && (m.Type != raft.MsgSnap || m.Snapshot == nil || m.To != 1 || m.From != 2) {
			t.Fatalf("readSnapshot accepted %v", m)
		}
	})
}

// nopHandler takes every message and ignores it.
type nopHandler struct{}

func (nopHandler) Step(context.Context, raft.Message) error { return nil }
func (nopHandler) ReportUnreachable(uint64)                 {}
func (nopHandler) ReportSnapshot(uint64, bool)              {}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	payloads := [][]byte{nil, []byte("a"), bytes.Repeat([]byte("xyz"), 1000)}
	for i, p := range payloads {
		if err := writeFrame(bw, frameType(1+i), p); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	fr := frameReader{r: &buf, maxPayload: 1 << 20}
	for i, want := range payloads {
		typ, got, err := fr.next()
		if err != nil || typ != frameType(1+i) || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: type %v, %d bytes, err %v; want type %v, %d bytes", i, typ, len(got), err, frameType(1+i), len(want))
		}
	}
	if _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}
