package transport

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStreamsSetAckTimeout: every stream a Transport dials carries TCP_USER_TIMEOUT
// = Config.AckTimeout, so a peer whose packets silently stop arriving is redialled
// within it (the chaos suite's readdress fault took 30-80 s without it).
func TestStreamsSetAckTimeout(t *testing.T) {
	const ackTimeout = 1234 * time.Millisecond
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) { c.AckTimeout = ackTimeout })
	waitConnected(t, nodes)
	p := (*nodes[1].tr.peers.Load())[2]
	p.mu.Lock()
	conn := p.mu.conn
	p.mu.Unlock()
	if conn == nil {
		t.Fatal("node 1 has no stream to node 2 although Stats says it is connected")
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		t.Fatalf("the stream is a %T, not a *net.TCPConn", conn)
	}
	if got := userTimeout(t, tcp); got != ackTimeout {
		t.Fatalf("TCP_USER_TIMEOUT on node 1's stream to node 2 is %v, want Config.AckTimeout %v", got, ackTimeout)
	}
}

// TestSnapshotStreamsAckTimeoutIsIOTimeout: a snapshot stream waits up to IOTimeout
// for its bytes to be acknowledged, not AckTimeout: a receiver that paused for 3 s
// while reading a 655 MB snapshot failed the send with "connection timed out".
func TestSnapshotStreamsAckTimeoutIsIOTimeout(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) { c.AckTimeout = 1234 * time.Millisecond })
	p := (*nodes[1].tr.peers.Load())[2]
	conn, err := p.dial(p.ctx, p.addr(), streamSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		t.Fatalf("the stream is a %T, not a *net.TCPConn", conn)
	}
	if got, want := userTimeout(t, tcp), nodes[1].tr.cfg.IOTimeout; got != want {
		t.Fatalf("TCP_USER_TIMEOUT on a snapshot stream is %v, want IOTimeout %v", got, want)
	}
}

func userTimeout(t *testing.T, conn *net.TCPConn) time.Duration {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ms int
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		ms, sockErr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		t.Fatal(err)
	}
	if sockErr != nil {
		t.Fatalf("getsockopt TCP_USER_TIMEOUT: %v", sockErr)
	}
	return time.Duration(ms) * time.Millisecond
}
