package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// Requests between members. Raft's messages are one-way; a few things a member does
// for a client need an answer from another member (the server forwards membership
// changes to the leader). Request carries one over a connection of its own to the
// peer's listener, so it has the peer transport's authentication: the handshake
// names both nodes and the cluster, and with peer TLS the certificates are checked
// as for Raft's streams. A receiver therefore trusts a request as it trusts the Raft
// messages of the same peer.
//
//	asker                          receiver
//	handshake (streamRequest)    → status: stream accepted or refused
//	request (deadline, payload)  → status: answered, or refused with OnRequest's error
//	                             ← answer

// maxRequestWait bounds how long a receiver works on one request, whatever deadline
// the asker sends.
const maxRequestWait = time.Minute

// Request sends request to peer to and returns its answer (Config.OnRequest on the
// peer). ctx bounds the whole exchange, and its deadline goes with the request. A
// refusal by the peer's OnRequest comes back as an error wrapping ErrRequestRefused
// with the peer's text.
func (t *Transport) Request(ctx context.Context, to uint64, request []byte) ([]byte, error) {
	p := (*t.peers.Load())[to]
	if p == nil {
		return nil, fmt.Errorf("%w: node %x", ErrUnknownPeer, to)
	}
	if len(request)+8 > t.cfg.MaxFrameBytes {
		return nil, fmt.Errorf("%w: request of %d bytes to node %x, limit %d", ErrFrameTooLarge, len(request), to, t.cfg.MaxFrameBytes-8)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnClose := context.AfterFunc(t.ctx, cancel)
	defer stopOnClose()
	conn, err := p.dial(ctx, p.addr(), streamRequest)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := afterFuncClose(ctx, conn)
	defer stop()

	wait := maxRequestWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	payload := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(request)), uint64(max(wait, 0)))
	payload = append(payload, request...)
	frame := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	putFrameHeader(frame, frameRequest, payload)
	conn.SetWriteDeadline(time.Now().Add(t.cfg.IOTimeout))
	if _, err := conn.Write(append(frame, payload...)); err != nil {
		return nil, t.requestError(ctx, err)
	}
	conn.SetReadDeadline(time.Now().Add(wait + t.cfg.IOTimeout))
	fr := &frameReader{r: conn, maxPayload: t.cfg.MaxFrameBytes}
	if err := readStatus(fr); err != nil {
		var refused *errRefused
		if errors.As(err, &refused) {
			return nil, fmt.Errorf("%w: %s", ErrRequestRefused, refused.reason)
		}
		return nil, t.requestError(ctx, err)
	}
	typ, answer, err := fr.next()
	if err != nil {
		return nil, t.requestError(ctx, err)
	}
	if typ != frameAnswer {
		return nil, fmt.Errorf("%w: %s frame where the answer to a request was due", ErrCorruptFrame, typ)
	}
	return answer, nil
}

func (t *Transport) requestError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return err
}

// answerRequest runs an inbound request stream from peer from.
func (t *Transport) answerRequest(conn net.Conn, from uint64) {
	logger := t.logger.With("peer", hexID(from), "remote", conn.RemoteAddr().String())
	conn.SetReadDeadline(time.Now().Add(t.cfg.IOTimeout))
	fr := &frameReader{r: conn, maxPayload: t.cfg.MaxFrameBytes}
	typ, payload, err := fr.next()
	if err == nil && (typ != frameRequest || len(payload) < 8) {
		err = fmt.Errorf("%w: %s frame of %d bytes where a request was due", ErrCorruptFrame, typ, len(payload))
	}
	if err != nil {
		logger.Info("transport: reading a request failed", "err", err)
		return
	}
	if t.cfg.OnRequest == nil {
		writeStatus(conn, errors.New("this node answers no requests"))
		return
	}
	wait := min(time.Duration(binary.BigEndian.Uint64(payload)), maxRequestWait)
	ctx, cancel := context.WithTimeout(t.ctx, wait)
	defer cancel()
	answer, err := t.cfg.OnRequest(ctx, from, payload[8:])
	if err == nil && len(answer) > t.cfg.MaxFrameBytes {
		err = fmt.Errorf("the answer is %d bytes, over the limit %d", len(answer), t.cfg.MaxFrameBytes)
	}
	if err != nil {
		writeStatus(conn, err)
		return
	}
	if err := writeStatus(conn, nil); err != nil {
		return
	}
	frame := make([]byte, frameHeaderLen, frameHeaderLen+len(answer))
	putFrameHeader(frame, frameAnswer, answer)
	conn.SetWriteDeadline(time.Now().Add(t.cfg.IOTimeout))
	if _, err := conn.Write(append(frame, answer...)); err != nil {
		logger.Debug("transport: answering a request failed", "err", err)
	}
}
