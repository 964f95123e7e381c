package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"raftkv/raft"
)

// fakeHandler records what a Transport hands it.
type fakeHandler struct {
	mu sync.Mutex
	// gate, if not nil, holds every Step until it is closed.
	gate        chan struct{}
	msgs        []raft.Message
	unreachable map[uint64]int
	snapReports []snapReport
}

type snapReport struct {
	id       uint64
	isFailed bool
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{unreachable: map[uint64]int{}}
}

// hold makes Step wait until the returned gate is closed.
func (h *fakeHandler) hold() chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gate = make(chan struct{})
	return h.gate
}

func (h *fakeHandler) Step(ctx context.Context, m raft.Message) error {
	h.mu.Lock()
	gate := h.gate
	h.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, m)
	return nil
}

func (h *fakeHandler) ReportUnreachable(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unreachable[id]++
}

func (h *fakeHandler) ReportSnapshot(id uint64, failed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snapReports = append(h.snapReports, snapReport{id: id, isFailed: failed})
}

func (h *fakeHandler) messages() []raft.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]raft.Message(nil), h.msgs...)
}

func (h *fakeHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.msgs)
}

func (h *fakeHandler) unreachableCount(id uint64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unreachable[id]
}

func (h *fakeHandler) snapshotReports() []snapReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]snapReport(nil), h.snapReports...)
}

// logCapture is a slog.Handler that keeps every record, to assert what was logged.
type logCapture struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newLogCapture() *logCapture {
	return &logCapture{mu: new(sync.Mutex), lines: new([]string)}
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, a := range c.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s", a)
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.lines = append(*c.lines, b.String())
	return nil
}

func (c *logCapture) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logCapture{mu: c.mu, lines: c.lines, attrs: append(append([]slog.Attr(nil), c.attrs...), attrs...)}
}

func (c *logCapture) WithGroup(string) slog.Handler { return c }

// find returns the first line holding every one of parts, or "".
func (c *logCapture) find(parts ...string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
next:
	for _, line := range *c.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return line
	}
	return ""
}

func (c *logCapture) dump(t testing.TB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := *c.lines
	if len(lines) > 100 {
		t.Logf("(%d earlier lines not shown)", len(lines)-100)
		lines = lines[len(lines)-100:]
	}
	for _, line := range lines {
		t.Log(line)
	}
}

// testNode is one Transport serving on a loopback listener.
type testNode struct {
	id        uint64
	addr      string
	tr        *Transport
	h         *fakeHandler
	logs      *logCapture
	serveDone chan error
	closeOnce sync.Once
	serveErr  error
}

const testClusterID = 0xc1

// listen opens a loopback listener on a free port.
func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	l := listen(t)
	addr := l.Addr().String()
	l.Close()
	return addr
}

// testConfig is a Config with short timeouts, for node id of peers.
func testConfig(id uint64, peers map[uint64]string, logs *logCapture) Config {
	return Config{
		ID:          id,
		ClusterID:   testClusterID,
		Peers:       peers,
		DialTimeout: 5 * time.Second,
		IOTimeout:   5 * time.Second,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
		Logger:      slog.New(logs),
	}
}

// knownPeers returns peers for a Config of a node that tests reach with raw streams
// from ids: a node takes streams only from its peers. Their addresses are dead.
func knownPeers(t testing.TB, ids ...uint64) map[uint64]string {
	peers := map[uint64]string{}
	for _, id := range ids {
		peers[id] = deadAddr(t)
	}
	return peers
}

// dialRaw dials node as node from with a handshake of the given kind and returns
// the connection and the node's answer: nil if it accepted the stream.
func dialRaw(t *testing.T, node *testNode, from uint64, kind streamKind) (net.Conn, error) {
	t.Helper()
	conn, err := net.Dial("tcp", node.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	hs := handshake{kind: kind, clusterID: testClusterID, from: from, to: node.id}.marshal()
	if _, err := conn.Write(hs[:]); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	err = readStatus(&frameReader{r: conn, maxPayload: maxStatusBytes})
	conn.SetReadDeadline(time.Time{})
	var refused *errRefused
	if err != nil && !errors.As(err, &refused) {
		t.Fatalf("handshake: %v, want an answer", err)
	}
	return conn, err
}

// startNode starts a Transport for cfg serving on l; the test closes it at the end.
func startNode(t testing.TB, cfg Config, l net.Listener) *testNode {
	t.Helper()
	n := &testNode{id: cfg.ID, addr: l.Addr().String(), h: newFakeHandler(), serveDone: make(chan error, 1)}
	n.logs, _ = cfg.Logger.Handler().(*logCapture)
	if n.logs == nil {
		n.logs = newLogCapture()
		cfg.Logger = slog.New(n.logs)
	}
	tr, err := New(cfg, n.h)
	if err != nil {
		t.Fatal(err)
	}
	n.tr = tr
	go func() { n.serveDone <- tr.Serve(l) }()
	t.Cleanup(func() {
		n.close(t)
		if t.Failed() {
			t.Logf("logs of node %d:", n.id)
			n.logs.dump(t)
		}
	})
	return n
}

// close closes the node's Transport and waits for Serve to return; it returns what
// Serve returned.
func (n *testNode) close(t testing.TB) error {
	n.closeOnce.Do(func() {
		n.tr.Close()
		select {
		case n.serveErr = <-n.serveDone:
		case <-time.After(5 * time.Second):
			t.Errorf("node %d: Serve did not return after Close", n.id)
		}
	})
	return n.serveErr
}

// startCluster starts one Transport per id, all knowing each other; tweak, if not
// nil, adjusts each Config.
func startCluster(t testing.TB, ids []uint64, tweak func(*Config)) map[uint64]*testNode {
	t.Helper()
	listeners := map[uint64]net.Listener{}
	peers := map[uint64]string{}
	for _, id := range ids {
		listeners[id] = listen(t)
		peers[id] = listeners[id].Addr().String()
	}
	nodes := map[uint64]*testNode{}
	for _, id := range ids {
		cfg := testConfig(id, peers, newLogCapture())
		if tweak != nil {
			tweak(&cfg)
		}
		nodes[id] = startNode(t, cfg, listeners[id])
	}
	return nodes
}

// waitConnected waits until every node has a stream up to every other.
func waitConnected(t testing.TB, nodes map[uint64]*testNode) {
	t.Helper()
	waitFor(t, 10*time.Second, "every stream to come up", func() bool {
		for _, n := range nodes {
			for _, st := range n.tr.Stats().Peers {
				if !st.IsConnected {
					return false
				}
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// appMsg returns a MsgApp from -> to with index and one entry of data.
func appMsg(from, to, index uint64, data []byte) raft.Message {
	return raft.Message{
		Type: raft.MsgApp, From: from, To: to, Term: 1, Index: index, LogTerm: 1, Commit: index,
		Entries: []raft.Entry{{Term: 1, Index: index + 1, Data: data}},
	}
}

// snapMsg returns a MsgSnap from -> to carrying data.
func snapMsg(from, to uint64, data []byte) raft.Message {
	return raft.Message{
		Type: raft.MsgSnap, From: from, To: to, Term: 3,
		Snapshot: &raft.Snapshot{Index: 100, Term: 2, Data: data},
	}
}

// TestMain fails the run if any test left a goroutine behind: every Transport the
// tests start is closed, and Close must stop everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// count returns how many lines hold every one of parts.
func (c *logCapture) count(parts ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
next:
	for _, line := range *c.lines {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		n++
	}
	return n
}
