package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"time"
	"unicode/utf8"

	"raftkv/raft"
)

// This file is the wire format: the handshake that opens a stream, the frames that
// follow, and the payloads of the frames that are not plain messages. The package doc
// draws the layout. Every reader here bounds what it allocates by a limit checked
// before allocating, allocates a large payload only as its bytes arrive
// (frameReader.payloadStep), and none of them panics on any input.

// frameType says what a frame's payload holds.
type frameType uint8

const (
	// frameMessage: one encoded raft.Message.
	frameMessage frameType = 1 + iota
	// frameStatus: the receiver's answer to a handshake or a snapshot: a status byte
	// (0 accepted, 1 refused) and a UTF-8 reason.
	frameStatus
	// frameSnapHeader: what the snapshot's body is (a byte, snapBodyKind), its size
	// as a big-endian uint64 (unknownSnapshotSize if the sender does not know it),
	// then its MsgSnap (snapshot.go says which Data it carries).
	frameSnapHeader
	// frameSnapChunk: the next bytes of the snapshot's body, never empty.
	frameSnapChunk
	// frameSnapEnd: the body is complete: its size as a big-endian uint64 and the
	// CRC-32C of all of it, big-endian uint32.
	frameSnapEnd
	// frameCluster: the answer to a cluster stream (membership.go): the cluster id,
	// big-endian uint64, then Config.ClusterInfo's bytes.
	frameCluster
	// frameRequest: a request between members (request.go), and frameAnswer its
	// answer; both opaque to the transport.
	frameRequest
	frameAnswer
	// frameSnapAbort: the sender could not produce the rest of the snapshot's body;
	// the payload is its reason, UTF-8, at most maxReasonBytes. It ends the body.
	frameSnapAbort

	numFrameTypes = iota
)

func (t frameType) String() string {
	switch t {
	case frameMessage:
		return "message"
	case frameStatus:
		return "status"
	case frameSnapHeader:
		return "snapshot header"
	case frameSnapChunk:
		return "snapshot chunk"
	case frameSnapEnd:
		return "snapshot end"
	case frameCluster:
		return "cluster"
	case frameRequest:
		return "request"
	case frameAnswer:
		return "answer"
	case frameSnapAbort:
		return "snapshot abort"
	}
	return fmt.Sprintf("frameType(%d)", uint8(t))
}

// frameHeaderLen is the size of a frame's header: length(4) type(1) crc(4).
const frameHeaderLen = 9

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// typeCRC[t] is the CRC-32C of the single byte t: the checksum of a frame starts from
// it, so that a flipped type byte fails the check too.
var typeCRC = func() (crcs [256]uint32) {
	for t := range crcs {
		crcs[t] = crc32.Update(0, castagnoli, []byte{byte(t)})
	}
	return crcs
}()

// frameChecksum returns the checksum a frame of type t and this payload carries.
func frameChecksum(t frameType, payload []byte) uint32 {
	return crc32.Update(typeCRC[t], castagnoli, payload)
}

// putFrameHeader fills hdr, of length frameHeaderLen, for a frame of type t.
func putFrameHeader(hdr []byte, t frameType, payload []byte) {
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	hdr[4] = byte(t)
	binary.BigEndian.PutUint32(hdr[5:9], frameChecksum(t, payload))
}

// writeFrame writes one frame to w. The caller has checked the payload against the
// frame size limit.
func writeFrame(w *bufio.Writer, t frameType, payload []byte) error {
	var hdr [frameHeaderLen]byte
	putFrameHeader(hdr[:], t, payload)
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// frameHeader is a decoded frame header whose length and type have been checked.
type frameHeader struct {
	typ    frameType
	length int
	crc    uint32
}

// frameReader reads frames from r, refusing payloads over maxPayload bytes.
type frameReader struct {
	r          io.Reader
	maxPayload int
	// stall, if set, is the connection under r, which is then a *bufio.Reader over
	// it: next bounds the wait for the rest of a frame that has begun to arrive
	// (stallReader).
	stall *stallReader
	hdr   [frameHeaderLen]byte
}

// payloadStep bounds what a reader allocates for a payload ahead of its bytes: a
// frame header's length is only a claim until the bytes arrive. A payload that is
// larger and not yet in the read buffer is read into a buffer that starts at the
// step and grows fourfold each time it fills, so a frame holds at most about four
// times the bytes that came (and never more than its length): a peer that sends a
// header claiming the frame limit and nothing after it costs a step, and only a
// peer can (a stranger is refused at the handshake). The step is half the reader's
// frame limit, at least minPayloadStep: the server sets the limit to twice Raft's
// MaxSizePerMsg, so an append of any size Raft sends is read as before, into one
// buffer of its size, without the copies of a growing one.
func (fr *frameReader) payloadStep() int { return max(minPayloadStep, fr.maxPayload/2) }

// minPayloadStep is the least payloadStep.
const minPayloadStep = 64 << 10

// payloadGrowth is the factor by which a payload's buffer grows once it is full.
const payloadGrowth = 4

// readHeader reads the next frame header. It returns io.EOF if the stream ends cleanly
// between frames, ErrFrameTooLarge or ErrCorruptFrame for a header it refuses.
func (fr *frameReader) readHeader() (frameHeader, error) {
	if n, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return frameHeader{}, fmt.Errorf("%w: stream ends after %d of %d header bytes", ErrCorruptFrame, n, frameHeaderLen)
		}
		return frameHeader{}, err
	}
	length := binary.BigEndian.Uint32(fr.hdr[0:4])
	h := frameHeader{typ: frameType(fr.hdr[4]), crc: binary.BigEndian.Uint32(fr.hdr[5:9])}
	if h.typ == 0 || h.typ > numFrameTypes {
		return frameHeader{}, fmt.Errorf("%w: unknown frame type %d", ErrCorruptFrame, h.typ)
	}
	if uint64(length) > uint64(fr.maxPayload) {
		return frameHeader{}, fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, h.typ, length, fr.maxPayload)
	}
	h.length = int(length)
	return h, nil
}

// readPayload reads h's payload and checks it against the header's checksum. It
// reads into buf if buf's capacity holds the payload, else into a new buffer,
// grown in steps as the bytes arrive if the payload is large (payloadStep), and
// returns the payload.
func (fr *frameReader) readPayload(h frameHeader, buf []byte) ([]byte, error) {
	var err error
	switch {
	case cap(buf) >= h.length:
		buf = buf[:h.length]
		_, err = io.ReadFull(fr.r, buf)
	case h.length <= fr.payloadStep() || fr.buffered() >= h.length:
		// All of it is here already, or it is small: the common case, one
		// allocation of the exact size.
		buf = make([]byte, h.length)
		_, err = io.ReadFull(fr.r, buf)
	default:
		buf, err = readGrowing(fr.r, h.length, max(fr.payloadStep(), fr.buffered()))
	}
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: stream ends inside a %s frame of %d bytes", ErrCorruptFrame, h.typ, h.length)
		}
		return nil, err
	}
	if got := frameChecksum(h.typ, buf); got != h.crc {
		return nil, fmt.Errorf("%w: %s frame of %d bytes has checksum %08x, header says %08x", ErrCorruptFrame, h.typ, h.length, got, h.crc)
	}
	return buf, nil
}

// readGrowing reads length bytes from r into a buffer of first bytes' capacity that
// grows by payloadGrowth each time it fills. Its errors are io.ReadFull's.
func readGrowing(r io.Reader, length, first int) ([]byte, error) {
	buf := make([]byte, 0, min(length, first))
	for len(buf) < length {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(length, payloadGrowth*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// buffered returns how many bytes r holds already read from the connection.
func (fr *frameReader) buffered() int {
	if br, ok := fr.r.(*bufio.Reader); ok {
		return br.Buffered()
	}
	return 0
}

// next reads the next frame into a freshly allocated payload, which the caller owns:
// a decoded message aliases it.
func (fr *frameReader) next() (frameType, []byte, error) {
	if fr.stall != nil {
		if err := fr.stall.startFrame(fr.r.(*bufio.Reader)); err != nil {
			return 0, nil, err
		}
	}
	h, err := fr.readHeader()
	var payload []byte
	if err == nil {
		payload, err = fr.readPayload(h, nil)
	}
	if fr.stall != nil {
		err = fr.stall.endFrame(err)
	}
	if err != nil {
		return 0, nil, err
	}
	return h.typ, payload, nil
}

// stallReader is the connection under a message stream's read buffer. An idle
// stream is fine (two followers may have nothing to say to each other for hours),
// so no deadline bounds the wait for a frame to start; but once a frame has begun to
// arrive, each read of the rest must return within timeout, or the stream is closed
// (errStalled): a peer that sent a header and stalled holds nothing for long.
//
// The deadline costs nothing in the common case: startFrame arms it only if the
// frame is not already whole in the read buffer, so a stream of small messages,
// which arrive many to a read, never sets one.
type stallReader struct {
	conn    net.Conn
	timeout time.Duration
	// armed: a frame has started and is not all in the buffer; each read from the
	// connection sets the deadline.
	armed bool
}

func (r *stallReader) Read(b []byte) (int, error) {
	if r.armed {
		if err := r.conn.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
			return 0, err
		}
	}
	return r.conn.Read(b)
}

// startFrame waits, without a deadline, for the first byte of the next frame in br,
// which reads from r, and then arms the deadline unless the whole frame is in br.
func (r *stallReader) startFrame(br *bufio.Reader) error {
	if _, err := br.Peek(1); err != nil {
		return err
	}
	if n := br.Buffered(); n >= frameHeaderLen {
		hdr, _ := br.Peek(frameHeaderLen)
		if uint64(n-frameHeaderLen) >= uint64(binary.BigEndian.Uint32(hdr)) {
			return nil
		}
	}
	r.armed = true
	return nil
}

// endFrame disarms the deadline once a frame has been read, and turns a deadline
// that passed inside the frame into errStalled.
func (r *stallReader) endFrame(err error) error {
	if !r.armed {
		return err
	}
	r.armed = false
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w: no bytes for %v in the middle of a frame", errStalled, r.timeout)
		}
		return err
	}
	return r.conn.SetReadDeadline(time.Time{})
}

// decodeMessage decodes a message frame's payload. m aliases payload.
func decodeMessage(payload []byte) (raft.Message, error) {
	var m raft.Message
	if err := m.Unmarshal(payload); err != nil {
		return raft.Message{}, fmt.Errorf("%w: %w", ErrCorruptFrame, err)
	}
	return m, nil
}

// The handshake: magic(4) version(1) kind(1) clusterID(8) from(8) to(8), integers
// big-endian. It has a fixed size so that a receiver can read it whole before it
// trusts anything about the stream.
//
// protocolVersion 2 carries messages in the raft package's versioned encoding (format
// 1, which starts every message with its format version); version 1 carried them
// without that byte. Version 3 streams a snapshot's body in frames of unknown
// number, ended by a frame with its size and CRC (snapshot.go); version 2 announced
// the size up front and ended with the CRC alone. A node refuses a peer of another
// protocol version at the handshake, naming both, rather than misread its frames.
const (
	handshakeLen    = 30
	protocolVersion = 3
)

var handshakeMagic = [4]byte{'R', 'K', 'V', 'P'}

// streamKind says what a stream carries.
type streamKind uint8

const (
	// streamMessages: message frames, for as long as the connection lives.
	streamMessages streamKind = 1
	// streamSnapshot: one snapshot (header, chunks, end), then the receiver's status.
	streamSnapshot streamKind = 2
	// streamProbe: nothing after the handshake; the receiver's status answers it and
	// the connection closes. It times a round trip (Config.OnRoundTrip).
	streamProbe streamKind = 3
	// streamCluster: a node that does not know the cluster yet asks what it is (its id
	// and Config.ClusterInfo); its handshake carries cluster id 0 and node id 0 as the
	// receiver, and the answer is a status and a cluster frame (membership.go).
	streamCluster streamKind = 4
	// streamRequest: one request frame from a member, answered with a status and an
	// answer frame (request.go).
	streamRequest streamKind = 5
)

func (k streamKind) String() string {
	switch k {
	case streamMessages:
		return "messages"
	case streamSnapshot:
		return "snapshot"
	case streamProbe:
		return "probe"
	case streamCluster:
		return "cluster"
	case streamRequest:
		return "request"
	}
	return fmt.Sprintf("streamKind(%d)", uint8(k))
}

// handshake opens a stream: who is calling whom, in which cluster, for what.
type handshake struct {
	kind      streamKind
	clusterID uint64
	from, to  uint64
}

func (h handshake) marshal() [handshakeLen]byte {
	var b [handshakeLen]byte
	copy(b[0:4], handshakeMagic[:])
	b[4] = protocolVersion
	b[5] = byte(h.kind)
	binary.BigEndian.PutUint64(b[6:14], h.clusterID)
	binary.BigEndian.PutUint64(b[14:22], h.from)
	binary.BigEndian.PutUint64(b[22:30], h.to)
	return b
}

// parseHandshake decodes b and checks what it can without knowing the receiver: the
// magic, the version, the stream kind, non-zero ids. The receiver checks the cluster
// and its own id.
func parseHandshake(b []byte) (handshake, error) {
	if len(b) != handshakeLen {
		return handshake{}, fmt.Errorf("%w: handshake of %d bytes, want %d", ErrHandshake, len(b), handshakeLen)
	}
	if [4]byte(b[0:4]) != handshakeMagic {
		return handshake{}, fmt.Errorf("%w: magic %q is not %q; is this a raftkv peer port?", ErrHandshake, b[0:4], handshakeMagic[:])
	}
	if b[4] != protocolVersion {
		return handshake{}, fmt.Errorf("%w: peer speaks protocol version %d, this node %d; run the same raftkv version on every node", ErrHandshake, b[4], protocolVersion)
	}
	h := handshake{
		kind:      streamKind(b[5]),
		clusterID: binary.BigEndian.Uint64(b[6:14]),
		from:      binary.BigEndian.Uint64(b[14:22]),
		to:        binary.BigEndian.Uint64(b[22:30]),
	}
	if h.kind != streamMessages && h.kind != streamSnapshot && h.kind != streamProbe && h.kind != streamCluster && h.kind != streamRequest {
		return handshake{}, fmt.Errorf("%w: unknown stream kind %d", ErrHandshake, b[5])
	}
	if h.from == 0 || (h.to == 0 && h.kind != streamCluster) {
		return handshake{}, fmt.Errorf("%w: node id 0 (from %d, to %d)", ErrHandshake, h.from, h.to)
	}
	return h, nil
}

// maxReasonBytes bounds the reason a status frame carries, and maxStatusBytes the
// whole status payload a sender will read.
const (
	maxReasonBytes = 512
	maxStatusBytes = 1 + maxReasonBytes
)

// encodeStatus returns the payload of a status frame: accepted if refusal is nil,
// refused with its text as the reason otherwise.
func encodeStatus(refusal error) []byte {
	if refusal == nil {
		return []byte{0}
	}
	reason := refusal.Error()
	if len(reason) > maxReasonBytes {
		reason = reason[:maxReasonBytes]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	return append([]byte{1}, reason...)
}

// errRefused carries the reason a peer gave for refusing.
type errRefused struct{ reason string }

func (e *errRefused) Error() string { return "peer refused: " + e.reason }

// decodeStatus returns nil for an accepted status, an *errRefused for a refusal, and
// ErrCorruptFrame for a payload that is neither.
func decodeStatus(payload []byte) error {
	if len(payload) == 0 || payload[0] > 1 || (payload[0] == 0 && len(payload) > 1) {
		return fmt.Errorf("%w: status payload % x", ErrCorruptFrame, payload[:min(len(payload), 16)])
	}
	if payload[0] == 0 {
		return nil
	}
	return &errRefused{reason: string(payload[1:])}
}

// readStatus reads one status frame from fr.
func readStatus(fr *frameReader) error {
	t, payload, err := fr.next()
	if err != nil {
		return err
	}
	if t != frameStatus {
		return fmt.Errorf("%w: %s frame where a status was due", ErrCorruptFrame, t)
	}
	return decodeStatus(payload)
}

// snapBodyKind says what a snapshot's body is, so that a receiver knows before the
// body comes whether it can take it.
type snapBodyKind uint8

const (
	// snapBodyData: the body is the MsgSnap's Snapshot.Data, of the header's size;
	// the header's message carries empty Data (neither end sets the stream hooks).
	snapBodyData snapBodyKind = 0
	// snapBodyStream: the body is what the sender's Config.SnapshotStream produced,
	// for the receiver's Config.SnapshotReceiver; the header's message carries the
	// sender's (small) Snapshot.Data.
	snapBodyStream snapBodyKind = 1
)

func (k snapBodyKind) String() string {
	switch k {
	case snapBodyData:
		return "the snapshot's data"
	case snapBodyStream:
		return "a stream from Config.SnapshotStream"
	}
	return fmt.Sprintf("snapBodyKind(%d)", uint8(k))
}

// unknownSnapshotSize is the size a snapshot header gives when the sender does not
// know how long the body will be.
const unknownSnapshotSize = ^uint64(0)

// snapHeaderPrefix is the body kind and size in front of a snapshot header's message.
const snapHeaderPrefix = 9

// snapHeader is what a snapshot header frame says.
type snapHeader struct {
	kind snapBodyKind
	// size is the body's length in bytes, or unknownSnapshotSize.
	size uint64
	// m is the MsgSnap to deliver; with snapBodyData its Snapshot.Data is empty.
	m raft.Message
}

// encodeSnapHeader returns the payload of a snapshot header frame. With
// snapBodyData, m's Snapshot.Data is left out: it is the body.
func encodeSnapHeader(m raft.Message, kind snapBodyKind, size uint64) []byte {
	if kind == snapBodyData {
		snap := *m.Snapshot
		snap.Data = nil
		m.Snapshot = &snap
	}
	b := make([]byte, snapHeaderPrefix, snapHeaderPrefix+m.Size())
	b[0] = byte(kind)
	binary.BigEndian.PutUint64(b[1:], size)
	return m.MarshalTo(b)
}

// decodeSnapHeader decodes a snapshot header frame's payload. The message must be a
// MsgSnap, with empty Data and a known size if the body is the data.
func decodeSnapHeader(payload []byte) (snapHeader, error) {
	if len(payload) < snapHeaderPrefix {
		return snapHeader{}, fmt.Errorf("%w: snapshot header of %d bytes", ErrCorruptFrame, len(payload))
	}
	h := snapHeader{kind: snapBodyKind(payload[0]), size: binary.BigEndian.Uint64(payload[1:])}
	if h.kind != snapBodyData && h.kind != snapBodyStream {
		return snapHeader{}, fmt.Errorf("%w: snapshot header announces a body of unknown kind %d", ErrCorruptFrame, payload[0])
	}
	m, err := decodeMessage(payload[snapHeaderPrefix:])
	if err != nil {
		return snapHeader{}, err
	}
	if m.Type != raft.MsgSnap || m.Snapshot == nil {
		return snapHeader{}, fmt.Errorf("%w: snapshot header holds %s (snapshot present: %v), want a MsgSnap",
			ErrCorruptFrame, m.Type, m.Snapshot != nil)
	}
	if h.kind == snapBodyData && (len(m.Snapshot.Data) != 0 || h.size == unknownSnapshotSize) {
		return snapHeader{}, fmt.Errorf("%w: snapshot header whose body is the data carries %d bytes of data itself and size %d; want none and a known size",
			ErrCorruptFrame, len(m.Snapshot.Data), h.size)
	}
	h.m = m
	return h, nil
}
