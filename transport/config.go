package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"raftkv/raft"
)

// Config holds everything a Transport needs. Zero values of the limits and timeouts
// take the defaults below; Validate rejects values that cannot work, naming the field,
// the value and what to do.
type Config struct {
	// ID is this node's Raft id; it must be non-zero.
	ID uint64
	// ClusterID names the cluster; it must be non-zero and the same on every member.
	// A stream from another cluster is refused at the handshake.
	ClusterID uint64
	// Peers maps each member's id to the "host:port" of its peer listener, or to
	// "https://host:port" for a peer dialled with TLS (see TLS). An entry for ID itself
	// is allowed and ignored.
	Peers map[uint64]string
	// TLS is the client side of TLS, for the peers whose address is https://: the
	// certificate this node presents (if the peers ask for one), the CAs it trusts
	// with their certificates, versions and cipher suites. Its ServerName, if empty,
	// is the host dialled. Serve takes TLS streams from a listener made by
	// tls.NewListener, whose tls.Config decides which peers may connect.
	TLS *tls.Config

	// MaxFrameBytes limits the payload of one frame, in both directions. A message
	// whose encoding is larger is dropped with a log line; set it above the Raft
	// MaxSizePerMsg plus some room. Snapshots are chunked and not bound by it.
	// Default 16 MiB.
	MaxFrameBytes int
	// SendQueueLen is the number of messages queued for one peer; Send drops what does
	// not fit. Default 4096.
	SendQueueLen int
	// SnapshotChunkBytes is the size of the pieces a snapshot's body is sent in, and
	// so about what a sender holds of it in memory; it must not exceed MaxFrameBytes
	// (on the receiving nodes too). Default 1 MiB.
	SnapshotChunkBytes int
	// MaxSnapshotBytes is the largest snapshot body this node accepts, counted as it
	// streams in. Default 4 GiB.
	MaxSnapshotBytes int64

	// SnapshotStream, if set, supplies the body of an outgoing snapshot to node to:
	// the transport sends m.Snapshot (with its small Data) as the header, then the
	// stream's bytes, and closes the stream once the receiver has answered the end
	// (delivered the snapshot to its node, or refused it) or the sending failed. It is called once
	// the receiver has accepted the header, on the goroutine sending the snapshot,
	// and the stream is read a chunk at a time, so the body is never whole in
	// memory. An error, or a read error, fails the snapshot (ReportSnapshot(failed))
	// and tells the receiver why. Each chunk must come within the receiver's
	// IOTimeout, which bounds each of its reads. Nil: the body is the MsgSnap's
	// Snapshot.Data.
	// Set it on every member together with SnapshotReceiver, or on none: a receiver
	// refuses a body of the other kind (ErrSnapshotHooks).
	SnapshotStream func(to uint64, snap raft.Snapshot) (io.ReadCloser, error)
	// SnapshotReceiver, if set, consumes the body of an inbound snapshot as it
	// arrives (with the header's snap, whose Data is the sender's small Data) and
	// returns the Data the message delivered to raft carries (e.g. the name of the
	// file it wrote). An error refuses the snapshot (the sender's
	// ReportSnapshot(failed)), with the error's text as the reason the sender logs.
	// If the body is cut, corrupt, abandoned by the sender (ErrSnapshotAborted) or
	// over MaxSnapshotBytes (ErrSnapshotTooLarge), the receiver sees a read error
	// from body and must clean up. body hands out each chunk only after checking
	// its CRC, and returns io.EOF only after the end frame has matched the size and
	// CRC of the whole; a receiver that returns nil must have read the body to its
	// own end (the transport then checks the end frame itself), else the snapshot is
	// refused. It must read on within the sender's IOTimeout, which bounds each of
	// the sender's writes once the connection's buffers are full. If the handler's
	// Step then fails, the message is not delivered and what the receiver wrote is
	// the application's to clear. It runs on the connection's goroutine; Close
	// waits for it (its body reads fail once Close begins). Nil: the body is
	// collected in memory and delivered as Snapshot.Data.
	SnapshotReceiver func(from uint64, snap raft.Snapshot, body io.Reader) (data []byte, err error)

	// DialTimeout bounds a dial and its handshake. Default 5s.
	DialTimeout time.Duration
	// IOTimeout bounds each write to a peer that makes no progress, each read of a
	// snapshot in transfer, each read of the rest of a message frame that has begun
	// to arrive (a stream idle between frames has no deadline), and the wait for a
	// snapshot's acknowledgement. Default 10s.
	IOTimeout time.Duration
	// AckTimeout bounds how long bytes written to a peer's stream may stay
	// unacknowledged by the peer's TCP stack before the stream is closed and
	// redialled (TCP_USER_TIMEOUT on Linux). Without it a peer whose packets silently
	// stop arriving (its address moved, a dropped route) is noticed only once the
	// socket's send buffer has filled and a write then stalls for IOTimeout: with
	// small heartbeats that took 30-80 s in the chaos suite, during which the peer
	// heard no leader. Default 3s, a few election timeouts at etcd's defaults.
	// Snapshot streams use IOTimeout instead if it is longer: a receiver reading a
	// large snapshot may pause for seconds (see ackTimeout).
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before redialling a peer: it starts at
	// MinBackoff, doubles on each failure up to MaxBackoff, and is jittered by up to
	// half. Defaults 50ms and 2s.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// OnRoundTrip, if set, is called with the round-trip time to a peer: from the
	// handshake of each connection dialled to it to the peer's answer. A probe
	// connection is dialled every ProbeInterval for it, so the figure stays fresh
	// while the message stream lives for days. It must not block.
	OnRoundTrip func(peer uint64, rtt time.Duration)
	// ProbeInterval is how often a peer is probed for OnRoundTrip. Default 5s.
	ProbeInterval time.Duration

	// ClusterInfo, if set, answers a node that asks what this cluster is before it
	// joins (FetchCluster): the bytes it returns go back with the cluster id. It must
	// not block, and its answer must fit in MaxFrameBytes less 8.
	ClusterInfo func() []byte
	// OnRequest, if set, answers a Request from peer from (request.go): what it
	// returns goes back to the asker, an error as a refusal with its text. ctx ends
	// when the asker's deadline (sent with the request) passes or the Transport
	// closes. Requests from a peer are answered only if this is set.
	OnRequest func(ctx context.Context, from uint64, request []byte) ([]byte, error)
	// OnRemoved, if set, is called once when a peer refuses this node's stream
	// because this node was removed from the cluster (RemovePeer on the peer). It
	// must not block.
	OnRemoved func(by uint64)

	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Defaults for zero-valued Config fields.
const (
	DefaultMaxFrameBytes      = 16 << 20
	DefaultSendQueueLen       = 4096
	DefaultSnapshotChunkBytes = 1 << 20
	DefaultMaxSnapshotBytes   = 4 << 30
	DefaultDialTimeout        = 5 * time.Second
	DefaultIOTimeout          = 10 * time.Second
	DefaultAckTimeout         = 3 * time.Second
	DefaultMinBackoff         = 50 * time.Millisecond
	DefaultMaxBackoff         = 2 * time.Second
	DefaultProbeInterval      = 5 * time.Second
)

// Bounds that Validate enforces.
const (
	// minFrameBytes leaves room for any message without entries and a status frame.
	minFrameBytes = 1 << 10
	// maxFrameBytesLimit keeps a frame length within the uint32 of the header with room
	// to spare; no Raft message should come close.
	maxFrameBytesLimit = 1 << 30
)

// withDefaults returns a copy of c with zero limits replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.SendQueueLen == 0 {
		c.SendQueueLen = DefaultSendQueueLen
	}
	if c.SnapshotChunkBytes == 0 {
		c.SnapshotChunkBytes = min(DefaultSnapshotChunkBytes, c.MaxFrameBytes)
	}
	if c.MaxSnapshotBytes == 0 {
		c.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IOTimeout == 0 {
		c.IOTimeout = DefaultIOTimeout
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first setting that cannot work. Zero limits are fine: they take
// the defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.ID == 0 {
		return fmt.Errorf("transport config: ID is 0; give every node a distinct non-zero id")
	}
	if c.ClusterID == 0 {
		return fmt.Errorf("transport config: ClusterID is 0; choose one when the cluster is created and give every member the same")
	}
	for id, addr := range c.Peers {
		if id == 0 {
			return fmt.Errorf("transport config: Peers holds id 0 (address %q); ids must be non-zero", addr)
		}
		if id == c.ID {
			continue // ignored
		}
		if err := c.checkPeerAddr(addr); err != nil {
			return fmt.Errorf("transport config: Peers[%d] = %q: %v", id, addr, err)
		}
	}
	if c.MaxFrameBytes < minFrameBytes || c.MaxFrameBytes > maxFrameBytesLimit {
		return fmt.Errorf("transport config: MaxFrameBytes %d is outside [%d, %d]; set it a little above the Raft MaxSizePerMsg",
			c.MaxFrameBytes, minFrameBytes, maxFrameBytesLimit)
	}
	if c.SendQueueLen < 0 {
		return fmt.Errorf("transport config: SendQueueLen %d is negative; leave it 0 for the default %d", c.SendQueueLen, DefaultSendQueueLen)
	}
	if c.SnapshotChunkBytes < 0 || c.SnapshotChunkBytes > c.MaxFrameBytes {
		return fmt.Errorf("transport config: SnapshotChunkBytes %d must be positive and at most MaxFrameBytes %d", c.SnapshotChunkBytes, c.MaxFrameBytes)
	}
	if c.MaxSnapshotBytes < 0 {
		return fmt.Errorf("transport config: MaxSnapshotBytes %d is negative; leave it 0 for the default %d", c.MaxSnapshotBytes, int64(DefaultMaxSnapshotBytes))
	}
	if c.DialTimeout < 0 || c.IOTimeout < 0 || c.AckTimeout < 0 {
		return fmt.Errorf("transport config: DialTimeout %v, IOTimeout %v and AckTimeout %v must not be negative",
			c.DialTimeout, c.IOTimeout, c.AckTimeout)
	}
	if c.ProbeInterval < 0 {
		return fmt.Errorf("transport config: ProbeInterval %v is negative; leave it 0 for the default %v", c.ProbeInterval, DefaultProbeInterval)
	}
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("transport config: MinBackoff %v and MaxBackoff %v must satisfy 0 <= MinBackoff <= MaxBackoff", c.MinBackoff, c.MaxBackoff)
	}
	return nil
}

// checkPeerAddr reports whether addr is a peer address the Transport can dial.
func (c Config) checkPeerAddr(addr string) error {
	hostPort, isTLS := splitAddr(addr)
	if err := checkAddr(hostPort); err != nil {
		return fmt.Errorf("%v; give the host:port of its peer listener (https://host:port to dial it with TLS)", err)
	}
	if isTLS && c.TLS == nil {
		return fmt.Errorf("an https:// peer, but Config.TLS is nil; give the TLS settings to dial it with")
	}
	return nil
}

// checkAddr reports whether addr looks like a dialable host:port.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("host is empty")
	}
	if port == "" || port == "0" {
		return fmt.Errorf("port %q is not a fixed port", port)
	}
	return nil
}
