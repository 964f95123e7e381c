package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"raftkv/raft"
)

// readBufferBytes is the size of an inbound stream's read buffer.
const readBufferBytes = 64 << 10

// statusWriteTimeout bounds the write of a status frame to a peer we are about to
// hang up on: the reason is a courtesy, not worth waiting for.
const statusWriteTimeout = time.Second

// serveConn runs one inbound connection: the handshake, then the stream it opens.
func (t *Transport) serveConn(conn net.Conn) {
	defer conn.Close()
	stop := afterFuncClose(t.ctx, conn)
	defer stop()
	remote := conn.RemoteAddr().String()

	// The TLS handshake, if any, and the stream's own share one deadline; a TLS
	// handshake writes too, to a dialler that may not read.
	conn.SetDeadline(time.Now().Add(t.cfg.IOTimeout))
	if !t.acceptTLS(conn) {
		return
	}
	var raw [handshakeLen]byte
	if _, err := io.ReadFull(conn, raw[:]); err != nil {
		// A port scanner or a peer that gave up: nothing worth a warning.
		t.logger.Debug("transport: inbound connection closed before its handshake", "remote", remote, "err", err)
		return
	}
	hs, err := parseHandshake(raw[:])
	if err == nil {
		err = t.checkHandshake(hs)
	}
	if err != nil {
		t.streamsRefused.Add(1)
		t.refusals.warn(t.logger, err.Error(), "transport: refusing inbound stream", "remote", remote, "err", err)
		writeStatus(conn, err)
		return
	}
	if hs.kind == streamCluster {
		t.answerCluster(conn, hs.from)
		return
	}
	if hs.kind == streamSnapshot {
		if err := t.startReceivingSnapshot(hs.from); err != nil {
			t.snapshotsRefused.Add(1)
			t.refusals.warn(t.logger, err.Error(), "transport: refusing inbound snapshot stream", "peer", hexID(hs.from), "remote", remote, "err", err)
			writeStatus(conn, err)
			return
		}
		defer t.doneReceivingSnapshot(hs.from)
	}
	if hs.kind == streamMessages {
		// Registered before the dialler hears it was accepted, so that of two streams
		// from one peer the one accepted last is the one kept.
		if !t.addInbound(hs.from, conn) {
			return
		}
		defer t.removeInbound(hs.from, conn)
	}
	if err := writeStatus(conn, nil); err != nil || hs.kind == streamProbe {
		return // a probe's answer is the status
	}
	conn.SetReadDeadline(time.Time{})
	t.streamsAccepted.Add(1)
	if hs.kind == streamSnapshot {
		t.receiveSnapshot(conn, hs.from)
		return
	}
	if hs.kind == streamRequest {
		t.answerRequest(conn, hs.from)
		return
	}

	stall := &stallReader{conn: conn, timeout: t.cfg.IOTimeout}
	err = t.readMessages(t.ctx, bufio.NewReaderSize(stall, readBufferBytes), stall, hs.from)
	logger := t.logger.With("peer", hexID(hs.from), "remote", remote)
	switch {
	case t.ctx.Err() != nil:
		// Closing: every stream ends this way.
	case errors.Is(err, errStalled):
		t.streamsBroken.Add(1)
		logger.Warn("transport: closing inbound stream: the peer stopped in the middle of a frame", "err", err)
	case errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrCorruptFrame):
		t.streamsBroken.Add(1)
		logger.Warn("transport: closing inbound stream on a bad frame", "err", err)
		writeStatus(conn, err)
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		// The peer hung up, or a newer stream from it replaced this one.
		logger.Debug("transport: inbound stream closed", "err", err)
	default:
		logger.Info("transport: inbound stream failed", "err", err)
	}
}

// checkHandshake refuses a stream that is not meant for this node.
func (t *Transport) checkHandshake(hs handshake) error {
	if hs.kind == streamCluster {
		return nil // a node that does not know the cluster yet asks what it is
	}
	if t.isRemovedPeer(hs.from) {
		return fmt.Errorf("%w: node %x %s", ErrHandshake, hs.from, removedReason)
	}
	if hs.clusterID != t.cfg.ClusterID {
		return fmt.Errorf("%w: stream from node %x of cluster %x, this is cluster %x; check the peer addresses and the cluster id",
			ErrHandshake, hs.from, hs.clusterID, t.cfg.ClusterID)
	}
	if hs.to != t.cfg.ID {
		return fmt.Errorf("%w: node %x dialled node %x, but this is node %x; check node %x's peer addresses",
			ErrHandshake, hs.from, hs.to, t.cfg.ID, hs.from)
	}
	if hs.from == t.cfg.ID {
		return fmt.Errorf("%w: stream claims to come from node %x, which is this node; two nodes share an id", ErrHandshake, hs.from)
	}
	if (*t.peers.Load())[hs.from] == nil {
		// Only members reach this node: a stream from anyone else would take a
		// place in the inbound streams, and its snapshots disk, for nothing. A
		// member just added is a peer once this node applies its addition (or sees
		// it in its log, or proposed it: the server dials it ahead); until then its
		// dialler retries with backoff, as after any refusal.
		return fmt.Errorf("%w: node %x is not a member of cluster %x as node %x knows it; a member just added is taken "+
			"once node %x has applied its addition, else check the dialling member's id and its --initial-cluster",
			ErrHandshake, hs.from, t.cfg.ClusterID, t.cfg.ID, t.cfg.ID)
	}
	return nil
}

// writeStatus sends a status frame directly on conn: accepted if refusal is nil.
func writeStatus(conn net.Conn, refusal error) error {
	payload := encodeStatus(refusal)
	frame := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	putFrameHeader(frame, frameStatus, payload)
	frame = append(frame, payload...)
	conn.SetWriteDeadline(time.Now().Add(statusWriteTimeout))
	_, err := conn.Write(frame)
	conn.SetWriteDeadline(time.Time{})
	return err
}

// addInbound records conn as the live message stream from peer from, closing the one
// it replaces: a peer that redials has given up on the old stream, which may be half
// open. It reports false if the Transport is closed or from is no longer a peer
// (removed or forgotten since its handshake was checked), so that the inbound
// streams are never more than the peers.
func (t *Transport) addInbound(from uint64, conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.isClosed || t.mu.removed[from] || (*t.peers.Load())[from] == nil {
		return false
	}
	if old := t.mu.inbound[from]; old != nil {
		closeNow(old)
	}
	t.mu.inbound[from] = conn
	return true
}

// maxSnapshotReceives bounds the snapshots received at once. Only a leader sends
// snapshots, one at a time to each follower; two leave room for a leader's to
// start while its deposed predecessor's is still on its way. Each may take
// Config.MaxSnapshotBytes of disk (the server writes a temporary directory).
const maxSnapshotReceives = 2

// startReceivingSnapshot takes a place for a snapshot from peer from, or says why
// there is none: one from that peer is already coming (its sender gave up on it
// and redialled, and it ends within IOTimeout of the sender's silence), or
// maxSnapshotReceives are. The sender's dial fails with the reason, which it logs;
// it reports the snapshot failed, and its Raft sends another later.
func (t *Transport) startReceivingSnapshot(from uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.mu.snapshotsIn[from]:
		return fmt.Errorf("%w: node %x is still receiving a snapshot from node %x; send it again once that one has ended",
			errSnapshotBusy, t.cfg.ID, from)
	case len(t.mu.snapshotsIn) >= maxSnapshotReceives:
		return fmt.Errorf("%w: node %x is receiving %d snapshots, as many as it takes at once; send it again once one has ended",
			errSnapshotBusy, t.cfg.ID, len(t.mu.snapshotsIn))
	}
	t.mu.snapshotsIn[from] = true
	return nil
}

func (t *Transport) doneReceivingSnapshot(from uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mu.snapshotsIn, from)
}

func (t *Transport) removeInbound(from uint64, conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.inbound[from] == conn {
		delete(t.mu.inbound, from)
	}
}

// readMessages decodes message frames from r, a stream from peer from, and hands each
// to the handler, until the stream ends, a frame is bad, or the handler fails. If
// stall is not nil, r is a *bufio.Reader reading from it, and a frame that stops
// arriving part way fails with errStalled.
func (t *Transport) readMessages(ctx context.Context, r io.Reader, stall *stallReader, from uint64) error {
	fr := frameReader{r: r, maxPayload: t.cfg.MaxFrameBytes, stall: stall}
	// The bytes received are counted on the peer's outbound side, looked up once per
	// stream; a stream from a node that is not a peer (yet) is not counted.
	var receivedBytes *atomic.Uint64
	if p := (*t.peers.Load())[from]; p != nil {
		receivedBytes = &p.receivedBytes
	}
	for {
		typ, payload, err := fr.next()
		if err != nil {
			return err
		}
		if typ != frameMessage {
			return fmt.Errorf("%w: %s frame on a message stream", ErrCorruptFrame, typ)
		}
		m, err := decodeMessage(payload)
		if err != nil {
			return err
		}
		if err := t.checkInbound(&m, from); err != nil {
			return err
		}
		if err := t.h.Step(ctx, m); err != nil {
			return fmt.Errorf("handler refused %s from %d: %w", m.Type, m.From, err)
		}
		t.received.Add(1)
		if receivedBytes != nil {
			receivedBytes.Add(uint64(frameHeaderLen + len(payload)))
		}
	}
}

// checkInbound refuses a message that could not have been sent to this node by the
// peer at the other end of the stream.
func (t *Transport) checkInbound(m *raft.Message, from uint64) error {
	switch {
	case m.Type.IsLocal():
		return fmt.Errorf("%w: %s is local to a node and never crosses the network", ErrCorruptFrame, m.Type)
	case m.To != t.cfg.ID:
		return fmt.Errorf("%w: %s addressed to node %d arrived at node %d", ErrCorruptFrame, m.Type, m.To, t.cfg.ID)
	case m.From != from:
		return fmt.Errorf("%w: %s claims to come from node %d on the stream from node %d", ErrCorruptFrame, m.Type, m.From, from)
	}
	return nil
}
