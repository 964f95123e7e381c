package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"raftkv/raft"
)

// writeBufferBytes is the size of a stream's write buffer: a batch larger than this
// goes out in several writes, so it also bounds the memory a stream holds.
const writeBufferBytes = 64 << 10

// oversizedLogInterval limits the warnings about messages over MaxFrameBytes.
const oversizedLogInterval = 10 * time.Second

// maxScratchBytes bounds the encoding buffer a peer keeps between messages; a larger
// message gets a buffer of its own, freed after it is written.
const maxScratchBytes = 1 << 20

// peer is the sending side towards one other node: its bounded queue and the writer
// goroutine (run) that owns the stream.
type peer struct {
	t      *Transport
	id     uint64
	logger *slog.Logger
	queue  chan raft.Message
	// ctx ends when the peer is removed or the Transport closed.
	ctx    context.Context
	cancel context.CancelFunc
	// redial wakes the writer from its backoff when the address changes.
	redial chan struct{}

	mu struct {
		sync.Mutex
		addr string
		// conn is the stream while it is up; closing it makes the writer redial.
		conn net.Conn
	}

	// Only the writer goroutine touches these. scratch is the encoding buffer for
	// messages that do not fit in the write buffer's free space; oversized counts the
	// messages dropped for exceeding MaxFrameBytes.
	scratch          []byte
	oversized        uint64
	lastOversizedLog time.Time

	isSnapshotInFlight atomic.Bool
	// lastUnreachable is when the peer was last reported unreachable, in Unix ns.
	lastUnreachable atomic.Int64

	isConnected     atomic.Bool
	connectedSince  atomic.Int64 // Unix ns when the stream now up came up; 0 if none is
	sent            atomic.Uint64
	sentBytes       atomic.Uint64
	receivedBytes   atomic.Uint64
	dropped         atomic.Uint64
	flushes         atomic.Uint64
	connects        atomic.Uint64
	dialFailures    atomic.Uint64
	snapshotsSent   atomic.Uint64
	snapshotsFailed atomic.Uint64
}

func (t *Transport) newPeer(id uint64, addr string) *peer {
	p := &peer{
		t:      t,
		id:     id,
		logger: t.logger.With("peer", hexID(id)),
		queue:  make(chan raft.Message, t.cfg.SendQueueLen),
		redial: make(chan struct{}, 1),
	}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	p.mu.addr = addr
	return p
}

func (p *peer) addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.addr
}

// setAddr changes the address to dial; a stream to the old address is closed.
func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if addr == p.mu.addr {
		return
	}
	p.mu.addr = addr
	if p.mu.conn != nil {
		p.mu.conn.Close()
	}
	select {
	case p.redial <- struct{}{}:
	default:
	}
}

// setConn records conn, dialled at addr, as the live stream, so that an address
// change can close it. It reports false, and records nothing, if the address changed
// while conn was being dialled.
func (p *peer) setConn(conn net.Conn, addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn != nil && addr != p.mu.addr {
		return false
	}
	p.mu.conn = conn
	return true
}

func (p *peer) stats() PeerStats {
	// The stream sets its start before the flag and clears the flag before its start:
	// read as connected only with a start, so that a read across a disconnect never
	// says connected since the zero time.
	since := p.connectedSince.Load()
	return PeerStats{
		Addr:            p.addr(),
		IsConnected:     since != 0 && p.isConnected.Load(),
		ConnectedSince:  unixNanoTime(since),
		Sent:            p.sent.Load(),
		SentBytes:       p.sentBytes.Load(),
		ReceivedBytes:   p.receivedBytes.Load(),
		Dropped:         p.dropped.Load(),
		Flushes:         p.flushes.Load(),
		Connects:        p.connects.Load(),
		DialFailures:    p.dialFailures.Load(),
		SnapshotsSent:   p.snapshotsSent.Load(),
		SnapshotsFailed: p.snapshotsFailed.Load(),
	}
}

// run is the peer's writer goroutine: dial, stream until the stream breaks, wait with
// backoff, dial again, until the peer is removed or the Transport closed.
func (p *peer) run() {
	b := backoff{min: p.t.cfg.MinBackoff, max: p.t.cfg.MaxBackoff}
	var outage outageLog
	for {
		addr := p.addr()
		conn, err := p.dial(p.ctx, addr, streamMessages)
		if err == nil {
			b.reset()
			p.connects.Add(1)
			p.logger.Info("transport: stream to peer up", "addr", addr)
			outage = outageLog{}
			err = p.stream(conn, addr)
		} else {
			p.dialFailures.Add(1)
			p.t.noteRefusal(p.id, err)
		}
		if p.ctx.Err() != nil {
			return
		}
		p.t.reportUnreachable(p)
		level := slog.LevelDebug
		if outage.shouldWarn(err, time.Now()) {
			level = slog.LevelWarn
		}
		p.logger.Log(p.ctx, level, "transport: peer unreachable; redialling with backoff", "addr", addr, "err", err)
		if !p.waitDropping(b.next()) {
			return
		}
	}
}

// outageReminderInterval is how often a peer that stays down is logged at WARN again.
const outageReminderInterval = time.Minute

// outageLog keeps a peer that stays down from logging a warning on every redial. It
// warns at the start of an outage, when the failure changes kind (the peer starts or
// stops refusing the handshake, or refuses for another reason: a misconfiguration
// deserves a line of its own), and every outageReminderInterval.
type outageLog struct {
	lastWarn time.Time
	kind     string
}

func (o *outageLog) shouldWarn(err error, now time.Time) bool {
	kind := "unreachable"
	if errors.Is(err, ErrHandshake) {
		kind = err.Error()
	}
	if !o.lastWarn.IsZero() && kind == o.kind && now.Sub(o.lastWarn) < outageReminderInterval {
		return false
	}
	o.lastWarn, o.kind = now, kind
	return true
}

// waitDropping waits for d, or for an address change, dropping whatever is queued
// meanwhile: the peer is down and Raft will resend. It reports false if the peer's
// context ended.
func (p *peer) waitDropping(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-p.redial:
			return true
		case <-p.queue:
			p.dropped.Add(1)
			p.t.reportUnreachable(p)
		case <-p.ctx.Done():
			return false
		}
	}
}

// dial connects to the peer at addr and completes the handshake for a stream of this
// kind, within Config.DialTimeout.
func (p *peer) dial(ctx context.Context, addr string, kind streamKind) (net.Conn, error) {
	cfg := &p.t.cfg
	dialCtx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	hostPort, isTLS := splitAddr(addr)
	d := net.Dialer{Control: setAckTimeout(ackTimeout(cfg, kind))}
	conn, err := d.DialContext(dialCtx, "tcp", hostPort)
	if err != nil {
		return nil, err
	}
	if isTLS {
		tc, err := dialTLS(dialCtx, conn, hostPort, cfg.TLS)
		if err != nil {
			return nil, err
		}
		conn = tc
	}
	// The handshake shares the dial's deadline and its cancellation.
	stop := afterFuncClose(dialCtx, conn)
	hs := handshake{kind: kind, clusterID: cfg.ClusterID, from: cfg.ID, to: p.id}.marshal()
	sent := time.Now()
	_, err = conn.Write(hs[:])
	if err == nil {
		err = readStatus(&frameReader{r: conn, maxPayload: maxStatusBytes})
		var refused *errRefused
		if cfg.OnRoundTrip != nil && (err == nil || errors.As(err, &refused)) {
			// The status, accepting or refusing, answered the handshake.
			cfg.OnRoundTrip(p.id, time.Since(sent))
		}
		if errors.As(err, &refused) {
			err = fmt.Errorf("%w: %s", ErrHandshake, refused.reason)
		}
	}
	if !stop() {
		conn.Close()
		if ctxErr := dialCtx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("handshake with %s: %w", addr, ctxErr)
		}
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	return conn, nil
}

// stream writes queued messages to conn, dialled at addr, until conn breaks or the
// peer's context ends. It closes conn.
func (p *peer) stream(conn net.Conn, addr string) error {
	if !p.setConn(conn, addr) {
		conn.Close()
		return fmt.Errorf("address changed from %s to %s", addr, p.addr())
	}
	ctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	p.connectedSince.Store(time.Now().UnixNano())
	p.isConnected.Store(true)
	defer func() {
		p.isConnected.Store(false)
		p.connectedSince.Store(0)
		p.setConn(nil, "")
	}()

	// The receiver sends nothing on a message stream until it closes it, perhaps with
	// a status frame saying why. Watching for that notices a closed stream at once,
	// not at the next write, and logs the receiver's reason.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		cancel(watchStream(conn))
	}()
	stopClose := afterFuncClose(ctx, conn)
	defer func() {
		stopClose()
		conn.Close()
		<-watchDone
	}()

	err := p.writeLoop(ctx, conn)
	if cause := context.Cause(ctx); cause != nil {
		// The write failed because the connection was closed under it: the cause
		// says why.
		return cause
	}
	return err
}

// watchStream waits for the receiver to close a message stream and returns why.
func watchStream(conn net.Conn) error {
	err := readStatus(&frameReader{r: conn, maxPayload: maxStatusBytes})
	var refused *errRefused
	switch {
	case errors.As(err, &refused):
		return fmt.Errorf("receiver closed the stream: %s", refused.reason)
	case err == nil:
		return fmt.Errorf("%w: receiver sent an unexpected status", ErrCorruptFrame)
	case err == io.EOF:
		return errors.New("receiver closed the stream")
	}
	return err
}

// writeLoop encodes queued messages into a buffered writer and flushes when the queue
// is momentarily empty: under load, one write carries many messages (batching), and
// the writer never waits for the receiver between them (pipelining).
func (p *peer) writeLoop(ctx context.Context, conn net.Conn) error {
	bw := bufio.NewWriterSize(&deadlineWriter{conn: conn, timeout: p.t.cfg.IOTimeout}, writeBufferBytes)
	for {
		select {
		case m := <-p.queue:
			if err := p.encode(bw, &m); err != nil {
				return err
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		for isDrained := false; !isDrained; {
			select {
			case m := <-p.queue:
				if err := p.encode(bw, &m); err != nil {
					return err
				}
			default:
				isDrained = true
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		p.flushes.Add(1)
	}
}

// encode writes m as a frame to bw, or drops it if it is over the frame size limit.
func (p *peer) encode(bw *bufio.Writer, m *raft.Message) error {
	size := m.Size()
	if size > p.t.cfg.MaxFrameBytes {
		p.dropped.Add(1)
		p.oversized++
		// Raft resends what is lost, so one misconfiguration would log on every
		// retry: log the first and then a count now and then.
		if now := time.Now(); now.Sub(p.lastOversizedLog) >= oversizedLogInterval {
			p.logger.Warn("transport: dropping a message over the frame size limit; raise MaxFrameBytes above the Raft MaxSizePerMsg",
				"type", m.Type, "bytes", size, "max_frame_bytes", p.t.cfg.MaxFrameBytes, "dropped_so_far", p.oversized)
			p.lastOversizedLog = now
		}
		return nil
	}
	var err error
	if free := bw.AvailableBuffer(); cap(free) >= frameHeaderLen+size {
		// Encode in place in the write buffer: no copy.
		frame := m.MarshalTo(free[:frameHeaderLen])
		putFrameHeader(frame[:frameHeaderLen], frameMessage, frame[frameHeaderLen:])
		_, err = bw.Write(frame)
	} else {
		p.scratch = m.MarshalTo(p.scratch[:0])
		err = writeFrame(bw, frameMessage, p.scratch)
		if cap(p.scratch) > maxScratchBytes {
			p.scratch = nil
		}
	}
	if err != nil {
		return err
	}
	p.sent.Add(1)
	p.sentBytes.Add(uint64(frameHeaderLen + size))
	return nil
}

// deadlineWriter fails a write that makes no progress for timeout.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, err
	}
	return w.conn.Write(b)
}

// deadlineReader fails a read that waits longer than timeout.
type deadlineReader struct {
	conn    net.Conn
	timeout time.Duration
}

func (r *deadlineReader) Read(b []byte) (int, error) {
	if err := r.conn.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
		return 0, err
	}
	return r.conn.Read(b)
}

// backoff is exponential backoff with jitter between min and max.
type backoff struct {
	min, max time.Duration
	current  time.Duration
}

// next returns the wait before the next attempt: the current step, doubled from the
// last, less up to half of it at random so that peers that failed together do not
// redial together.
func (b *backoff) next() time.Duration {
	if b.current == 0 {
		b.current = b.min
	} else {
		b.current = min(2*b.current, b.max)
	}
	half := b.current / 2
	return b.current - half + rand.N(half+1)
}

func (b *backoff) reset() { b.current = 0 }

// afterFuncClose closes conn when ctx ends, unless the returned stop is called first.
func afterFuncClose(ctx context.Context, conn net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { closeNow(conn) })
}

// ackTimeout is the TCP_USER_TIMEOUT of a stream of kind. A snapshot stream gets
// IOTimeout if that is longer than AckTimeout: a receiver reading hundreds of
// megabytes pauses now and then (allocating, collecting garbage, on a loaded host),
// and at 3 s a 655 MB snapshot failed with "write: connection timed out" and was
// sent again, several times. AckTimeout is there to notice a vanished peer within
// a few election timeouts on the message stream; a snapshot stream's writes and its
// final answer are bounded by IOTimeout anyway.
func ackTimeout(cfg *Config, kind streamKind) time.Duration {
	if kind == streamSnapshot {
		return max(cfg.AckTimeout, cfg.IOTimeout)
	}
	return cfg.AckTimeout
}

// unixNanoTime is the time ns Unix nanoseconds name, or the zero time for 0.
func unixNanoTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
