package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"

	"raftkv/raft"
)

// A snapshot travels on a connection of its own:
//
//	sender                       receiver
//	handshake (streamSnapshot) → status: stream accepted or refused
//	snapshot header            → status: size and message accepted or refused
//	chunks..., end (CRC)       → status: snapshot delivered to Step, or why not
//
// Waiting for the header's status before the data costs one round trip, and lets a
// receiver refuse a snapshot over its size limit before gigabytes are sent, with a
// reason the sender can log.

// initialSnapshotBuffer bounds the memory a receiver reserves up front for a snapshot:
// the announced size is only a claim until the bytes arrive. Once they fill this
// buffer the receiver reserves the whole announced size (at most MaxSnapshotBytes):
// one copy, not one per growth.
const initialSnapshotBuffer = 64 << 20

// startSnapshot sends m, a MsgSnap, to p on a goroutine of its own and reports the
// outcome to the handler. One snapshot at a time goes to a peer: another that comes
// meanwhile is reported failed at once.
func (t *Transport) startSnapshot(p *peer, m raft.Message) {
	if !p.isSnapshotInFlight.CompareAndSwap(false, true) {
		p.snapshotsFailed.Add(1)
		p.logger.Warn("transport: a snapshot is already on its way to the peer; dropping this one",
			"index", m.Snapshot.Index, "term", m.Snapshot.Term)
		t.h.ReportSnapshot(p.id, true)
		return
	}
	isStarted := t.goTracked(func() {
		defer p.isSnapshotInFlight.Store(false)
		err := p.sendSnapshot(m)
		if err != nil {
			p.snapshotsFailed.Add(1)
			if p.ctx.Err() == nil {
				p.logger.Warn("transport: sending snapshot failed", "index", m.Snapshot.Index, "bytes", len(m.Snapshot.Data), "err", err)
			}
		} else {
			p.snapshotsSent.Add(1)
			p.logger.Info("transport: snapshot sent", "index", m.Snapshot.Index, "bytes", len(m.Snapshot.Data))
		}
		t.h.ReportSnapshot(p.id, err != nil)
	})
	if !isStarted {
		p.isSnapshotInFlight.Store(false)
		p.snapshotsFailed.Add(1)
		t.h.ReportSnapshot(p.id, true)
	}
}

// sendSnapshot dials p and sends m's snapshot in chunks, returning once the receiver
// has handed it to its node, or with the reason it did not.
func (p *peer) sendSnapshot(m raft.Message) error {
	cfg := &p.t.cfg
	header := encodeSnapHeader(m)
	if len(header) > cfg.MaxFrameBytes {
		return fmt.Errorf("%w: snapshot header of %d bytes (without data), limit %d", ErrFrameTooLarge, len(header), cfg.MaxFrameBytes)
	}
	conn, err := p.dial(p.ctx, p.addr(), streamSnapshot)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := afterFuncClose(p.ctx, conn)
	defer stop()

	bw := bufio.NewWriterSize(&deadlineWriter{conn: conn, timeout: cfg.IOTimeout}, writeBufferBytes)
	fr := frameReader{r: &deadlineReader{conn: conn, timeout: cfg.IOTimeout}, maxPayload: maxStatusBytes}
	if err := writeFrame(bw, frameSnapHeader, header); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := snapshotStatus(readStatus(&fr)); err != nil {
		return err
	}

	data := m.Snapshot.Data
	var crc uint32
	for len(data) > 0 {
		chunk := data[:min(len(data), cfg.SnapshotChunkBytes)]
		data = data[len(chunk):]
		if err := writeFrame(bw, frameSnapChunk, chunk); err != nil {
			return err
		}
		crc = crc32.Update(crc, castagnoli, chunk)
	}
	if err := writeFrame(bw, frameSnapEnd, binary.BigEndian.AppendUint32(nil, crc)); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return snapshotStatus(readStatus(&fr))
}

// snapshotStatus turns a refusal read from the receiver into ErrSnapshotFailed.
func snapshotStatus(err error) error {
	var refused *errRefused
	if errors.As(err, &refused) {
		return fmt.Errorf("%w: %s", ErrSnapshotFailed, refused.reason)
	}
	return err
}

// receiveSnapshot runs an inbound snapshot stream from peer from: it reads the
// snapshot, hands it to the handler, and tells the sender the outcome.
func (t *Transport) receiveSnapshot(conn net.Conn, from uint64) {
	logger := t.logger.With("peer", hexID(from), "remote", conn.RemoteAddr().String())
	r := bufio.NewReaderSize(&deadlineReader{conn: conn, timeout: t.cfg.IOTimeout}, readBufferBytes)
	accept := func() error { return writeStatus(conn, nil) }
	m, err := t.readSnapshot(r, from, accept)
	if err == nil {
		if err = t.h.Step(t.ctx, m); err != nil {
			err = fmt.Errorf("handler refused the snapshot: %w", err)
		}
	}
	if err != nil {
		t.snapshotsRefused.Add(1)
		if t.ctx.Err() == nil {
			logger.Warn("transport: refusing inbound snapshot", "err", err)
			writeStatus(conn, err)
		}
		return
	}
	t.received.Add(1)
	t.snapshotsReceived.Add(1)
	logger.Info("transport: snapshot received", "index", m.Snapshot.Index, "term", m.Snapshot.Term, "bytes", len(m.Snapshot.Data))
	writeStatus(conn, nil)
}

// readSnapshot reads a snapshot's header, calls accept once the header passes its
// checks, then reads the chunks and the end frame. It returns the MsgSnap with its
// data reassembled and checked against the sender's CRC.
func (t *Transport) readSnapshot(r io.Reader, from uint64, accept func() error) (raft.Message, error) {
	fr := frameReader{r: r, maxPayload: t.cfg.MaxFrameBytes}
	typ, payload, err := fr.next()
	if err != nil {
		return raft.Message{}, err
	}
	if typ != frameSnapHeader {
		return raft.Message{}, fmt.Errorf("%w: %s frame where a snapshot header was due", ErrCorruptFrame, typ)
	}
	m, size, err := decodeSnapHeader(payload)
	if err != nil {
		return raft.Message{}, err
	}
	if err := t.checkInbound(&m, from); err != nil {
		return raft.Message{}, err
	}
	if size > uint64(t.cfg.MaxSnapshotBytes) {
		return raft.Message{}, fmt.Errorf("%w: snapshot at index %d is %d bytes, node %d accepts at most %d; raise its MaxSnapshotBytes",
			ErrSnapshotTooLarge, m.Snapshot.Index, size, t.cfg.ID, t.cfg.MaxSnapshotBytes)
	}
	if err := accept(); err != nil {
		return raft.Message{}, err
	}

	var data []byte
	if size > 0 {
		data = make([]byte, 0, min(size, initialSnapshotBuffer))
	}
	var crc uint32
	for uint64(len(data)) < size {
		h, err := fr.readHeader()
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%w: stream ends after %d of %d snapshot bytes", ErrCorruptFrame, len(data), size)
			}
			return raft.Message{}, err
		}
		left := size - uint64(len(data))
		if h.typ != frameSnapChunk || h.length == 0 || uint64(h.length) > left {
			return raft.Message{}, fmt.Errorf("%w: %s frame of %d bytes with %d of %d snapshot bytes still to come",
				ErrCorruptFrame, h.typ, h.length, left, size)
		}
		if len(data)+h.length > cap(data) {
			// The first initialSnapshotBuffer bytes came: make room for the rest of
			// the announced size at once. Growing by append copied a 655 MB snapshot
			// about four times, each copy a pause in reading long enough, on a
			// loaded host, for the sender's unacknowledged writes to pass its
			// AckTimeout (TCP_USER_TIMEOUT) and fail with "connection timed out".
			grown := make([]byte, len(data), size)
			copy(grown, data)
			data = grown
		}
		chunk := data[len(data) : len(data)+h.length]
		if err := fr.readPayload(h, chunk); err != nil {
			return raft.Message{}, err
		}
		data = data[:len(data)+h.length]
		crc = crc32.Update(crc, castagnoli, chunk)
	}
	typ, payload, err = fr.next()
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: stream ends before the snapshot's end frame", ErrCorruptFrame)
		}
		return raft.Message{}, err
	}
	if typ != frameSnapEnd || len(payload) != 4 {
		return raft.Message{}, fmt.Errorf("%w: %s frame of %d bytes where the snapshot's end was due", ErrCorruptFrame, typ, len(payload))
	}
	if want := binary.BigEndian.Uint32(payload); crc != want {
		return raft.Message{}, fmt.Errorf("%w: snapshot data of %d bytes has CRC %08x, the sender's is %08x", ErrCorruptFrame, size, crc, want)
	}
	m.Snapshot.Data = data
	return m, nil
}
