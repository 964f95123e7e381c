package transport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync/atomic"
	"time"

	"raftkv/raft"
)

// A snapshot travels on a connection of its own:
//
//	sender                       receiver
//	handshake (streamSnapshot) → status: stream accepted or refused
//	snapshot header            → status: header accepted or refused
//	chunk..., end (size, CRC)  → status: snapshot delivered to Step, or why not
//
// Waiting for the header's status before the body costs one round trip, and lets a
// receiver refuse a snapshot it cannot take (over its size limit, or streamed when it
// has no SnapshotReceiver) before gigabytes are sent, with a reason the sender logs.
// A receiver may also refuse in the middle of the body (its SnapshotReceiver failed,
// or the body passed MaxSnapshotBytes): the sender reads the status while it writes,
// stops, and logs the reason. A sender whose SnapshotStream fails sends an abort
// frame with the reason instead of the end, and the receiver's body read fails.
//
// The body is the MsgSnap's Snapshot.Data when Config.SnapshotStream is nil: the
// header carries the message with empty Data and the exact size, and the receiver
// collects the body into the Data it delivers. With the hooks set, the header carries
// the message with its (small) Data and no size, the body is SnapshotStream's
// output, and SnapshotReceiver consumes it and returns the Data delivered. Both ways
// run the same code; only where the body comes from and goes to differ.

// initialSnapshotBuffer bounds the memory a receiver without a SnapshotReceiver
// reserves up front for a snapshot: the announced size is only a claim until the
// bytes arrive. Once they fill this buffer it reserves the whole announced size (at
// most MaxSnapshotBytes): one copy, not one per growth.
const initialSnapshotBuffer = 64 << 20

// startSnapshot sends m, a MsgSnap, to p on a goroutine of its own and reports the
// outcome to the handler. One snapshot at a time goes to a peer: another that comes
// meanwhile is dropped without a report, because the one in flight reports how it
// ended. (The leader's raft asks again when it has waited an election timeout of
// heartbeat answers, which a large body outlasts; reporting that one failed sent
// the leader probing, and a second snapshot followed the first.)
func (t *Transport) startSnapshot(p *peer, m raft.Message) {
	if !p.isSnapshotInFlight.CompareAndSwap(false, true) {
		p.logger.Info("transport: a snapshot is already on its way to the peer; dropping this one, the one in flight reports",
			"index", m.Snapshot.Index, "term", m.Snapshot.Term)
		return
	}
	isStarted := t.goTracked(func() {
		defer p.isSnapshotInFlight.Store(false)
		bodyBytes, err := p.sendSnapshot(m)
		if err != nil {
			p.snapshotsFailed.Add(1)
			if p.ctx.Err() == nil {
				p.logger.Warn("transport: sending snapshot failed", "index", m.Snapshot.Index, "term", m.Snapshot.Term, "bytes_sent", bodyBytes, "err", err)
			}
		} else {
			p.snapshotsSent.Add(1)
			p.logger.Info("transport: snapshot sent", "index", m.Snapshot.Index, "term", m.Snapshot.Term, "bytes", bodyBytes)
		}
		t.h.ReportSnapshot(p.id, err != nil)
	})
	if !isStarted {
		p.isSnapshotInFlight.Store(false)
		p.snapshotsFailed.Add(1)
		t.h.ReportSnapshot(p.id, true)
	}
}

// sendSnapshot dials p and sends m's snapshot: the header, then the body in chunks
// of Config.SnapshotChunkBytes, one chunk in memory at a time. It returns the body
// bytes sent and nil once the receiver has handed the snapshot to its node, or the
// reason it did not.
func (p *peer) sendSnapshot(m raft.Message) (uint64, error) {
	cfg := &p.t.cfg
	kind, size := snapBodyData, uint64(len(m.Snapshot.Data))
	if cfg.SnapshotStream != nil {
		kind, size = snapBodyStream, unknownSnapshotSize
	}
	header := encodeSnapHeader(m, kind, size)
	if len(header) > cfg.MaxFrameBytes {
		return 0, fmt.Errorf("%w: snapshot header of %d bytes (without the body), limit %d", ErrFrameTooLarge, len(header), cfg.MaxFrameBytes)
	}
	conn, err := p.dial(p.ctx, p.addr(), streamSnapshot)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := afterFuncClose(p.ctx, conn)
	defer stop()

	sw := snapWriter{
		bw:        bufio.NewWriterSize(&deadlineWriter{conn: conn, timeout: cfg.IOTimeout}, writeBufferBytes),
		sentBytes: &p.sentBytes,
	}
	if err := sw.frame(frameSnapHeader, header); err != nil {
		return 0, err
	}
	if err := sw.bw.Flush(); err != nil {
		return 0, err
	}
	if err := snapshotStatus(readStatus(&frameReader{r: &deadlineReader{conn: conn, timeout: cfg.IOTimeout}, maxPayload: maxStatusBytes})); err != nil {
		return 0, err
	}

	// From here on the receiver may refuse at any time: a watcher reads its status
	// while the body goes out, so that a refusal stops the sending and its reason is
	// what the sender reports, not the broken pipe that follows.
	conn.SetReadDeadline(time.Time{})
	status := make(chan error, 1)
	go func() { status <- snapshotStatus(readStatus(&frameReader{r: conn, maxPayload: maxStatusBytes})) }()
	defer func() {
		conn.Close()
		<-status // the watcher ends with the connection
	}()

	var body io.ReadCloser
	if kind == snapBodyStream {
		body, err = cfg.SnapshotStream(m.To, *m.Snapshot)
		if err == nil && body == nil {
			err = errors.New("it returned no stream and no error")
		}
		if err != nil {
			err = fmt.Errorf("SnapshotStream for the snapshot at index %d: %w", m.Snapshot.Index, err)
			sw.abort(err)
			return 0, err
		}
	} else {
		body = io.NopCloser(bytes.NewReader(m.Snapshot.Data))
	}
	defer body.Close()

	chunk := make([]byte, cfg.SnapshotChunkBytes)
	for {
		select {
		case err := <-status:
			status <- err // for the deferred wait
			return sw.total, receiverStoppedEarly(err, sw.total)
		default:
		}
		n, readErr := io.ReadFull(body, chunk)
		if n > 0 {
			if err := sw.chunk(chunk[:n]); err != nil {
				return sw.total, writeFailed(err, status, sw.total)
			}
		}
		if readErr == io.EOF || readErr == io.ErrUnexpectedEOF {
			break
		}
		if readErr != nil {
			err := fmt.Errorf("reading the snapshot body after %d bytes: %w", sw.total, readErr)
			sw.abort(err)
			return sw.total, err
		}
	}
	if kind == snapBodyData && sw.total != size {
		panic(fmt.Sprintf("transport: sent %d bytes of a snapshot whose data is %d bytes", sw.total, size))
	}
	if err := sw.frame(frameSnapEnd, encodeSnapEnd(sw.total, sw.crc)); err != nil {
		return sw.total, writeFailed(err, status, sw.total)
	}
	if err := sw.bw.Flush(); err != nil {
		return sw.total, writeFailed(err, status, sw.total)
	}
	timer := time.NewTimer(cfg.IOTimeout)
	defer timer.Stop()
	select {
	case err := <-status:
		status <- err
		return sw.total, err
	case <-timer.C:
		return sw.total, fmt.Errorf("no answer from the receiver within %v after the snapshot's %d bytes", cfg.IOTimeout, sw.total)
	}
}

// snapWriter writes a snapshot's frames, counting the body's bytes and its CRC.
type snapWriter struct {
	bw        *bufio.Writer
	sentBytes *atomic.Uint64
	total     uint64
	crc       uint32
}

func (w *snapWriter) frame(t frameType, payload []byte) error {
	if err := writeFrame(w.bw, t, payload); err != nil {
		return err
	}
	w.sentBytes.Add(uint64(frameHeaderLen + len(payload)))
	return nil
}

func (w *snapWriter) chunk(b []byte) error {
	if err := w.frame(frameSnapChunk, b); err != nil {
		return err
	}
	w.total += uint64(len(b))
	w.crc = crc32.Update(w.crc, castagnoli, b)
	return nil
}

// abort tells the receiver, as a courtesy, why the body stops here.
func (w *snapWriter) abort(reason error) {
	if w.frame(frameSnapAbort, encodeStatus(reason)[1:]) == nil {
		w.bw.Flush()
	}
}

// receiverStoppedEarly is the error of a sender whose receiver answered before the
// body's end: a refusal, or a protocol error.
func receiverStoppedEarly(status error, sent uint64) error {
	if status == nil {
		return fmt.Errorf("%w: the receiver accepted the snapshot after %d bytes, before its end", ErrCorruptFrame, sent)
	}
	return status
}

// writeFailed is the error of a sender whose write failed: the receiver's refusal
// if one comes soon (the receiver refused and hung up), else the write's error.
func writeFailed(writeErr error, status chan error, sent uint64) error {
	timer := time.NewTimer(statusWriteTimeout)
	defer timer.Stop()
	select {
	case err := <-status:
		status <- err
		if err != nil && errors.Is(err, ErrSnapshotFailed) {
			return err
		}
	case <-timer.C:
	}
	return fmt.Errorf("writing the snapshot body after %d bytes: %w", sent, writeErr)
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
// header, lets the body through to Config.SnapshotReceiver (or collects it), hands
// the message to the handler, and tells the sender the outcome.
func (t *Transport) receiveSnapshot(conn net.Conn, from uint64) {
	logger := t.logger.With("peer", hexID(from), "remote", conn.RemoteAddr().String())
	r := bufio.NewReaderSize(&deadlineReader{conn: conn, timeout: t.cfg.IOTimeout}, readBufferBytes)
	accept := func() error { return writeStatus(conn, nil) }
	m, body, err := t.readSnapshot(r, from, accept)
	if err == nil {
		if err = t.h.Step(t.ctx, m); err != nil {
			err = fmt.Errorf("handler refused the snapshot: %w", err)
		}
	}
	if err != nil {
		t.snapshotsRefused.Add(1)
		if t.ctx.Err() == nil {
			logger.Warn("transport: refusing inbound snapshot", "err", err)
			if writeStatus(conn, err) == nil && body != nil && body.needsDrain() {
				conn.SetReadDeadline(time.Now().Add(statusWriteTimeout))
				io.Copy(io.Discard, conn)
			}
		}
		return
	}
	t.received.Add(1)
	t.snapshotsReceived.Add(1)
	logger.Info("transport: snapshot received", "index", m.Snapshot.Index, "term", m.Snapshot.Term, "bytes", body.total)
	writeStatus(conn, nil)
}

// readSnapshot reads a snapshot's header, calls accept once the header passes its
// checks, then passes the body to Config.SnapshotReceiver, or collects it if that is
// nil, and checks that it came whole. It returns the MsgSnap to deliver, whose Data
// is what the receiver returned (or the body collected), and the body, which says
// how far it got (nil if the header was refused).
func (t *Transport) readSnapshot(r io.Reader, from uint64, accept func() error) (raft.Message, *snapBody, error) {
	fr := frameReader{r: r, maxPayload: t.cfg.MaxFrameBytes}
	typ, payload, err := fr.next()
	if err != nil {
		return raft.Message{}, nil, err
	}
	if typ != frameSnapHeader {
		return raft.Message{}, nil, fmt.Errorf("%w: %s frame where a snapshot header was due", ErrCorruptFrame, typ)
	}
	h, err := decodeSnapHeader(payload)
	if err != nil {
		return raft.Message{}, nil, err
	}
	m := h.m
	if err := t.checkInbound(&m, from); err != nil {
		return raft.Message{}, nil, err
	}
	if h.size != unknownSnapshotSize && h.size > uint64(t.cfg.MaxSnapshotBytes) {
		return raft.Message{}, nil, fmt.Errorf("%w: snapshot at index %d is %d bytes, node %d accepts at most %d; raise its MaxSnapshotBytes",
			ErrSnapshotTooLarge, m.Snapshot.Index, h.size, t.cfg.ID, t.cfg.MaxSnapshotBytes)
	}
	if isStreamed := t.cfg.SnapshotReceiver != nil; isStreamed != (h.kind == snapBodyStream) {
		return raft.Message{}, nil, fmt.Errorf("%w: node %d sends as the snapshot's body %s, and node %d (SnapshotReceiver set: %v) cannot take it; set both SnapshotStream and SnapshotReceiver on every member, or neither",
			ErrSnapshotHooks, from, h.kind, t.cfg.ID, isStreamed)
	}
	if err := accept(); err != nil {
		return raft.Message{}, nil, err
	}

	body := &snapBody{fr: &fr, size: h.size, limit: uint64(t.cfg.MaxSnapshotBytes), index: m.Snapshot.Index, nodeID: t.cfg.ID}
	// The bytes received are counted on the peer's outbound side, as on a message
	// stream; a snapshot from a node that is not a peer (yet) is not counted.
	if p := (*t.peers.Load())[from]; p != nil {
		body.receivedBytes = &p.receivedBytes
		body.countFrame(len(payload))
	}
	var data []byte
	if h.kind == snapBodyStream {
		snap := *m.Snapshot
		data, err = t.cfg.SnapshotReceiver(from, snap, body)
		if err != nil {
			err = fmt.Errorf("SnapshotReceiver refused the snapshot at index %d: %w", m.Snapshot.Index, err)
			if body.err != nil && !errors.Is(err, body.err) {
				// The body's failure is the cause, whatever the receiver made of it.
				err = fmt.Errorf("%w (%v)", body.err, err)
			}
			return raft.Message{}, body, err
		}
	} else {
		data, err = collectBody(body, h.size)
		if err != nil {
			return raft.Message{}, body, err
		}
	}
	if err := body.finish(); err != nil {
		return raft.Message{}, body, err
	}
	snap := *m.Snapshot
	snap.Data = data
	m.Snapshot = &snap
	return m, body, nil
}
