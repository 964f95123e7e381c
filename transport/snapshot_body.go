package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync/atomic"
)

// A snapshot's body crosses the wire as chunk frames, each with its own CRC, then
// one end frame with the body's size and the CRC-32C of all of it; or, if the sender
// cannot produce the rest, an abort frame with its reason. Its length need not be
// known when the first chunk goes, so a body read from a database snapshot as it
// streams needs no copy of the whole on either end.

// snapEndLen is the payload of an end frame: size(8) crc(4).
const snapEndLen = 12

func encodeSnapEnd(size uint64, crc uint32) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, snapEndLen), size)
	return binary.BigEndian.AppendUint32(b, crc)
}

// snapBody is the receiving side of a snapshot's body: an io.Reader over its chunk
// frames, for Config.SnapshotReceiver (or collectBody). It holds one chunk at a time,
// checks each chunk's CRC before handing out its bytes, counts the bytes against the
// receiver's limit as they come, and checks the end frame. Its first error sticks:
// every later Read returns it.
type snapBody struct {
	fr *frameReader
	// size is the length the header announced, or unknownSnapshotSize.
	size uint64
	// limit is Config.MaxSnapshotBytes; index and nodeID name the snapshot and this
	// node in the error that refuses a body over it.
	limit  uint64
	index  uint64
	nodeID uint64
	// receivedBytes, if not nil, counts the frames' bytes as they arrive (the peer's
	// PeerStats.ReceivedBytes).
	receivedBytes *atomic.Uint64

	// chunk holds the last chunk read, pending the part of it not yet handed out.
	chunk   []byte
	pending []byte
	// total and crc cover the chunks read so far.
	total uint64
	crc   uint32
	// isDone is set once the end frame was read and matched.
	isDone bool
	err    error
}

// Read hands out the body's bytes; io.EOF once the end frame has been checked.
func (b *snapBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.isDone {
			return 0, io.EOF
		}
		if err := b.nextFrame(); err != nil {
			b.err = err
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// nextFrame reads the next frame of the body: a chunk into b.chunk, or the end.
func (b *snapBody) nextFrame() error {
	h, err := b.fr.readHeader()
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("%w: stream ends after %d snapshot bytes, before the snapshot's end frame", ErrCorruptFrame, b.total)
		}
		return fmt.Errorf("reading the snapshot body after %d bytes: %w", b.total, err)
	}
	switch h.typ {
	case frameSnapChunk:
		if h.length == 0 {
			return fmt.Errorf("%w: empty snapshot chunk after %d bytes", ErrCorruptFrame, b.total)
		}
		if b.size != unknownSnapshotSize && uint64(h.length) > b.size-b.total {
			return fmt.Errorf("%w: snapshot chunk of %d bytes with %d of %d snapshot bytes still to come",
				ErrCorruptFrame, h.length, b.size-b.total, b.size)
		}
		if b.total+uint64(h.length) > b.limit {
			return fmt.Errorf("%w: snapshot at index %d goes past %d bytes (%d received, a chunk of %d next), node %d accepts at most %d; raise its MaxSnapshotBytes",
				ErrSnapshotTooLarge, b.index, b.limit, b.total, h.length, b.nodeID, b.limit)
		}
		// The buffer is reused: the sender's chunks are all of one size but the
		// last, so it is allocated once (and grows with the bytes of the first
		// chunk as they arrive, not with what its header claims).
		chunk, err := b.fr.readPayload(h, b.chunk[:0])
		if err != nil {
			return err
		}
		b.chunk = chunk
		b.countFrame(h.length)
		b.total += uint64(h.length)
		b.crc = crc32.Update(b.crc, castagnoli, b.chunk)
		b.pending = b.chunk
		return nil
	case frameSnapEnd:
		if h.length != snapEndLen {
			return fmt.Errorf("%w: snapshot end frame of %d bytes, want %d", ErrCorruptFrame, h.length, snapEndLen)
		}
		var end [snapEndLen]byte
		if _, err := b.fr.readPayload(h, end[:]); err != nil {
			return err
		}
		b.countFrame(h.length)
		size, crc := binary.BigEndian.Uint64(end[:8]), binary.BigEndian.Uint32(end[8:])
		if size != b.total || (b.size != unknownSnapshotSize && size != b.size) {
			return fmt.Errorf("%w: snapshot end frame says %d bytes, %d arrived (header said %d)", ErrCorruptFrame, size, b.total, int64(b.size))
		}
		if crc != b.crc {
			return fmt.Errorf("%w: snapshot body of %d bytes has CRC %08x, the sender's is %08x", ErrCorruptFrame, b.total, b.crc, crc)
		}
		b.isDone = true
		return nil
	case frameSnapAbort:
		if h.length > maxReasonBytes {
			return fmt.Errorf("%w: snapshot abort frame of %d bytes, limit %d", ErrCorruptFrame, h.length, maxReasonBytes)
		}
		reason, err := b.fr.readPayload(h, nil)
		if err != nil {
			return err
		}
		return fmt.Errorf("%w after %d bytes: %s", ErrSnapshotAborted, b.total, reason)
	}
	return fmt.Errorf("%w: %s frame inside a snapshot body, after %d bytes", ErrCorruptFrame, h.typ, b.total)
}

func (b *snapBody) countFrame(length int) {
	if b.receivedBytes != nil {
		b.receivedBytes.Add(uint64(frameHeaderLen + length))
	}
}

// finish checks, once the receiver has returned, that the body was read to its
// checked end: a receiver that stops at its own end marker has not yet read the
// transport's end frame, so finish reads it; one that left bytes unread is refused.
func (b *snapBody) finish() error {
	if b.err == nil && !b.isDone && len(b.pending) == 0 {
		b.err = b.nextFrame()
	}
	switch {
	case b.err != nil:
		return b.err
	case len(b.pending) > 0 || !b.isDone:
		return fmt.Errorf("SnapshotReceiver returned after reading %d bytes, with the rest of the body unread; it must read the body to its end",
			b.total-uint64(len(b.pending)))
	}
	return nil
}

// needsDrain reports whether the sender may still be writing the body when the
// receiver refuses it: it then waits a moment for the sender to read the refusal
// and hang up, rather than close on unread bytes, which resets the connection and
// may lose the refusal's reason on the way.
func (b *snapBody) needsDrain() bool {
	return !b.isDone && (b.err == nil || errors.Is(b.err, ErrSnapshotTooLarge))
}

// collectBody reads a body whose size is known into memory: the receiver of
// snapshots whose body is their Data (no Config.SnapshotReceiver).
func collectBody(body io.Reader, size uint64) ([]byte, error) {
	var data []byte
	if size > 0 {
		data = make([]byte, 0, min(size, initialSnapshotBuffer))
	}
	for uint64(len(data)) < size {
		if len(data) == cap(data) {
			// The first initialSnapshotBuffer bytes came: make room for the rest
			// of the announced size at once. Growing by append copied a 655 MB
			// snapshot about four times, each copy a pause in reading long enough,
			// on a loaded host, for the sender's unacknowledged writes to pass its
			// AckTimeout (TCP_USER_TIMEOUT) and fail with "connection timed out".
			grown := make([]byte, len(data), size)
			copy(grown, data)
			data = grown
		}
		n, err := body.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err != nil {
			if err == io.EOF {
				// snapBody checks the end against the size; this is a bug.
				panic(fmt.Sprintf("transport: snapshot body ended after %d of its %d bytes without an error", len(data), size))
			}
			return nil, err
		}
	}
	return data, nil
}
