package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"raftkv/raft"
)

// Handler is the node a Transport serves: the raft.Handler that raft.NewNode gives the
// function making its transport, which calls New with it:
//
//	node, err := raft.NewNode(cfg, func(h raft.Handler) (raft.Transport, error) {
//		return transport.New(tcfg, h)
//	})
type Handler interface {
	// Step takes a message from a peer. It may block, which holds up that peer's stream
	// and so, through TCP, the peer's writer, until ctx ends; ctx ends when the
	// Transport is closed. An error closes the stream the message came on.
	Step(ctx context.Context, m raft.Message) error
	// ReportUnreachable says that messages to peer id were dropped or its stream
	// broke. It must not block: Send may call it.
	ReportUnreachable(id uint64)
	// ReportSnapshot says how sending a snapshot to peer id ended. It must not block:
	// Send may call it.
	ReportSnapshot(id uint64, failed bool)
}

// Transport sends Raft messages to the peers in Config.Peers and hands the messages
// they send to Handler.Step. Its methods are safe for concurrent use.
type Transport struct {
	cfg    Config
	h      Handler
	logger *slog.Logger

	// ctx is cancelled by Close; every goroutine and connection ends with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	// peers is replaced whole under mu.Lock, so that Send reads it without locking.
	peers atomic.Pointer[map[uint64]*peer]

	mu struct {
		sync.Mutex
		// isClosed is set by Close before it waits for the goroutines, so that no new
		// one starts after the wait began.
		isClosed bool
		// inbound is the live message stream from each peer; a newer stream from the
		// same peer closes the older.
		inbound map[uint64]net.Conn
		// removed holds the ids RemovePeer removed and no UpdatePeer added back:
		// their streams are refused, so a removed node never reaches this one's
		// Raft (membership.go).
		removed map[uint64]bool
		// snapshotsIn holds the peers whose snapshot is being received, at most
		// maxSnapshotReceives (startReceivingSnapshot).
		snapshotsIn map[uint64]bool
	}
	// isRemoved is set once a peer refused this node as removed (OnRemoved).
	isRemoved atomic.Bool

	unroutable        atomic.Uint64
	received          atomic.Uint64
	streamsAccepted   atomic.Uint64
	streamsRefused    atomic.Uint64
	refusals          refusalLog
	streamsBroken     atomic.Uint64
	snapshotsReceived atomic.Uint64
	snapshotsRefused  atomic.Uint64
}

// New returns a Transport that starts dialling every peer at once. Give it a listener
// with Serve to receive, and stop it with Close.
func New(cfg Config, h Handler) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("transport: New needs a Handler (the raft.Node to deliver to)")
	}
	cfg = cfg.withDefaults()
	cfg.Peers = maps.Clone(cfg.Peers)
	t := &Transport{
		cfg:    cfg,
		h:      h,
		logger: cfg.Logger.With("raft_id", hexID(cfg.ID)),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.inbound = map[uint64]net.Conn{}
	t.mu.removed = map[uint64]bool{}
	t.mu.snapshotsIn = map[uint64]bool{}
	peers := make(map[uint64]*peer, len(cfg.Peers))
	for id, addr := range cfg.Peers {
		if id != cfg.ID {
			peers[id] = t.newPeer(id, addr)
		}
	}
	t.peers.Store(&peers)
	for _, p := range peers {
		t.goTracked(p.run)
		if cfg.OnRoundTrip != nil {
			t.goTracked(p.probe)
		}
	}
	return t, nil
}

// goTracked runs fn on a goroutine that Close waits for. It reports false, and does
// not run fn, once Close has begun.
func (t *Transport) goTracked(fn func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.isClosed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn()
	}()
	return true
}

// Send queues msgs for their peers and returns at once. A message for a peer whose
// queue is full is dropped and the peer reported unreachable; a message for an unknown
// peer, for this node, or of a local type is dropped. A MsgSnap goes on a connection
// of its own (see the package doc). The Transport keeps the messages until they are
// written: the caller must not modify them, nor the entries and buffers they point to.
func (t *Transport) Send(msgs []raft.Message) {
	if t.closed.Load() {
		t.unroutable.Add(uint64(len(msgs)))
		return
	}
	peers := *t.peers.Load()
	for i := range msgs {
		m := &msgs[i]
		p := peers[m.To]
		if p == nil || m.Type.IsLocal() {
			t.unroutable.Add(1)
			t.logger.Debug("transport: dropping a message with nowhere to go", "type", m.Type, "to", m.To)
			continue
		}
		if m.Type == raft.MsgSnap && m.Snapshot != nil {
			t.startSnapshot(p, *m)
			continue
		}
		select {
		case p.queue <- *m:
		default:
			p.dropped.Add(1)
			t.reportUnreachable(p)
		}
	}
}

// unreachableReportInterval limits how often one peer is reported unreachable: a full
// queue drops many messages in a row, and one report is enough for Raft to slow down.
const unreachableReportInterval = 100 * time.Millisecond

// reportUnreachable tells the handler that p is unreachable, unless it was told less
// than unreachableReportInterval ago.
func (t *Transport) reportUnreachable(p *peer) {
	now := time.Now().UnixNano()
	last := p.lastUnreachable.Load()
	if now-last < int64(unreachableReportInterval) || !p.lastUnreachable.CompareAndSwap(last, now) {
		return
	}
	t.h.ReportUnreachable(p.id)
}

// Serve accepts the streams peers dial to this node from l, until l is closed or the
// Transport is. It always returns a non-nil error, ErrClosed after Close, and closes
// l.
func (t *Transport) Serve(l net.Listener) error {
	defer l.Close()
	stop := context.AfterFunc(t.ctx, func() { l.Close() })
	defer stop()
	var retryDelay time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and try again, as net/http
			// does, rather than give up on every peer.
			retryDelay = min(max(2*retryDelay, 5*time.Millisecond), time.Second)
			t.logger.Warn("transport: accept failed; retrying", "err", err, "retry_in", retryDelay)
			select {
			case <-time.After(retryDelay):
			case <-t.ctx.Done():
				return ErrClosed
			}
			continue
		}
		retryDelay = 0
		if !t.goTracked(func() { t.serveConn(conn) }) {
			conn.Close()
			return ErrClosed
		}
	}
}

// Close stops every goroutine the Transport started, closes every connection and the
// listeners given to Serve, and waits for all of it. Messages still queued are
// dropped. It is safe to call more than once and always returns nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.mu.isClosed = true
	t.closed.Store(true)
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	return nil
}

// UpdatePeer sets the address of peer id, adding the peer if it is new. A changed
// address closes the current stream and redials at once.
func (t *Transport) UpdatePeer(id uint64, addr string) error {
	if id == 0 || id == t.cfg.ID {
		return fmt.Errorf("transport: UpdatePeer(%d, %q): id must be non-zero and not this node's", id, addr)
	}
	if err := t.cfg.checkPeerAddr(addr); err != nil {
		return fmt.Errorf("transport: UpdatePeer(%d, %q): %v", id, addr, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.isClosed {
		return ErrClosed
	}
	delete(t.mu.removed, id)
	peers := *t.peers.Load()
	if p := peers[id]; p != nil {
		p.setAddr(addr)
		return nil
	}
	p := t.newPeer(id, addr)
	next := maps.Clone(peers)
	next[id] = p
	t.peers.Store(&next)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		p.run()
	}()
	if t.cfg.OnRoundTrip != nil {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			p.probe()
		}()
	}
	return nil
}

// RemovePeer stops sending to peer id and drops what is queued for it; its writer
// and probe goroutines end. From then on a stream from id is refused, telling it that
// it was removed (Config.OnRemoved on its side), and its live inbound stream is
// closed, until UpdatePeer adds it back.
func (t *Transport) RemovePeer(id uint64) { t.dropPeer(id, true) }

// ForgetPeer stops sending to peer id and drops what is queued for it, as RemovePeer
// does, but without refusing it as removed: for a peer dialled ahead of an addition
// that never took effect (its log entry was cut), which was never a member and so
// was not removed either. Its streams are refused as those of any node that is not
// a peer, without the reason that tells a node it was removed.
func (t *Transport) ForgetPeer(id uint64) { t.dropPeer(id, false) }

func (t *Transport) dropPeer(id uint64, refuse bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if refuse && id != t.cfg.ID && id != 0 {
		t.mu.removed[id] = true
	}
	// Either way it is no peer now, and its streams are refused (checkHandshake).
	if conn := t.mu.inbound[id]; conn != nil {
		closeNow(conn)
		delete(t.mu.inbound, id)
	}
	peers := *t.peers.Load()
	p := peers[id]
	if p == nil {
		return
	}
	next := maps.Clone(peers)
	delete(next, id)
	t.peers.Store(&next)
	p.cancel()
}

// Stats counts what the Transport has done since New.
type Stats struct {
	// Peers holds the outbound side, by peer id.
	Peers map[uint64]PeerStats
	// Unroutable counts messages Send dropped because they had no peer to go to (an
	// unknown id, this node, a local type, or a closed Transport).
	Unroutable uint64
	// Received counts messages handed to Handler.Step, snapshots included.
	Received uint64
	// StreamsAccepted and StreamsRefused count inbound handshakes.
	StreamsAccepted uint64
	StreamsRefused  uint64
	// StreamsBroken counts inbound streams closed for a bad frame.
	StreamsBroken uint64
	// SnapshotsReceived and SnapshotsRefused count inbound snapshots.
	SnapshotsReceived uint64
	SnapshotsRefused  uint64
}

// PeerStats counts what was sent to one peer.
type PeerStats struct {
	// Addr is the address dialled.
	Addr string
	// IsConnected says whether a stream to the peer is up, and ConnectedSince since
	// when (etcd's ActiveSince); it is the zero time while none is.
	IsConnected    bool
	ConnectedSince time.Time
	// Sent counts messages encoded onto a stream. SentBytes counts their frames'
	// bytes and those of the snapshots' frames as they are written (as etcd's
	// peer_sent_bytes_total counts snapshots). The last of them may be lost if the
	// stream breaks; Raft resends.
	Sent      uint64
	SentBytes uint64
	// ReceivedBytes counts the bytes of the message and snapshot frames received
	// from the peer.
	ReceivedBytes uint64
	// Dropped counts messages not sent: the queue was full, the message was over
	// MaxFrameBytes, or the peer was down.
	Dropped uint64
	// Flushes counts the batches written: many messages per flush means batching works.
	Flushes uint64
	// Connects counts streams established; above 1, the stream was re-established.
	Connects uint64
	// DialFailures counts dials or handshakes that failed.
	DialFailures uint64
	// SnapshotsSent and SnapshotsFailed count outbound snapshots by outcome.
	SnapshotsSent   uint64
	SnapshotsFailed uint64
}

// Stats returns the counters as they are now.
func (t *Transport) Stats() Stats {
	peers := *t.peers.Load()
	s := Stats{
		Peers:             make(map[uint64]PeerStats, len(peers)),
		Unroutable:        t.unroutable.Load(),
		Received:          t.received.Load(),
		StreamsAccepted:   t.streamsAccepted.Load(),
		StreamsRefused:    t.streamsRefused.Load(),
		StreamsBroken:     t.streamsBroken.Load(),
		SnapshotsReceived: t.snapshotsReceived.Load(),
		SnapshotsRefused:  t.snapshotsRefused.Load(),
	}
	for id, p := range peers {
		s.Peers[id] = p.stats()
	}
	return s
}

// hexID formats a node id for logs as the server and raft packages do.
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }
