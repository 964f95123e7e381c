package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"raftkv/raft"
)

// raft.NewNode hands its transport a raft.Handler (a *raft.Node), which New takes.
var (
	_ Handler      = (*raft.Node)(nil)
	_ Handler      = raft.Handler(nil)
	_ raft.Handler = Handler(nil)
)

// checkInOrder checks that msgs from one sender carry indexes first, first+1, ...
func checkInOrder(t *testing.T, msgs []raft.Message, from uint64, first uint64, n int) {
	t.Helper()
	next := first
	for _, m := range msgs {
		if m.From != from {
			continue
		}
		if m.Index != next {
			t.Fatalf("from %d: got index %d, want %d (messages out of order or lost)", from, m.Index, next)
		}
		want := fmt.Sprintf("entry %d", next)
		if len(m.Entries) != 1 || string(m.Entries[0].Data) != want {
			t.Fatalf("from %d: index %d carries %+v, want one entry %q", from, m.Index, m.Entries, want)
		}
		next++
	}
	if got := int(next - first); got != n {
		t.Fatalf("from %d: got %d messages, want %d", from, got, n)
	}
}

func TestTwoNodesDeliverInOrder(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, nil)
	waitConnected(t, nodes)
	const n = 2000
	for start := 0; start < n; start += 50 {
		var batch []raft.Message
		for i := start; i < start+50; i++ {
			batch = append(batch, appMsg(1, 2, uint64(i), fmt.Appendf(nil, "entry %d", i)))
			batch = append(batch, raft.Message{Type: raft.MsgHeartbeat, From: 1, To: 2, Term: 1})
		}
		nodes[1].tr.Send(batch)
		// Answers travel on the other node's stream.
		nodes[2].tr.Send([]raft.Message{appMsg(2, 1, uint64(start), fmt.Appendf(nil, "entry %d", start))})
		waitFor(t, 10*time.Second, "the batch to arrive", func() bool { return nodes[2].h.count() == 2*(start+50) })
	}
	var apps []raft.Message
	for _, m := range nodes[2].h.messages() {
		if m.Type == raft.MsgApp {
			apps = append(apps, m)
		}
	}
	checkInOrder(t, apps, 1, 0, n)
	waitFor(t, 10*time.Second, "the answers", func() bool { return nodes[1].h.count() == n/50 })
	st := nodes[1].tr.Stats().Peers[2]
	if st.Sent != 2*n || st.Dropped != 0 || st.Connects != 1 || !st.IsConnected {
		t.Fatalf("node 1 stats for peer 2: %+v, want %d sent, none dropped, one connect", st, 2*n)
	}
	if got := nodes[2].tr.Stats().Received; got != 2*n {
		t.Fatalf("node 2 received %d, want %d", got, 2*n)
	}
}

func TestThreeNodesAllPairs(t *testing.T) {
	ids := []uint64{1, 2, 3}
	nodes := startCluster(t, ids, nil)
	waitConnected(t, nodes)
	const n = 300
	for i := range n {
		for _, from := range ids {
			var batch []raft.Message
			for _, to := range ids {
				if to != from {
					batch = append(batch, appMsg(from, to, uint64(i), fmt.Appendf(nil, "entry %d", i)))
				}
			}
			// A message to self or to a stranger goes nowhere, and costs nothing.
			batch = append(batch, appMsg(from, from, 0, nil), appMsg(from, 99, 0, nil))
			nodes[from].tr.Send(batch)
		}
		if i%100 == 99 {
			waitFor(t, 10*time.Second, "a round", func() bool {
				for _, id := range ids {
					if nodes[id].h.count() != 2*(i+1) {
						return false
					}
				}
				return true
			})
		}
	}
	for _, to := range ids {
		msgs := nodes[to].h.messages()
		for _, from := range ids {
			if from != to {
				checkInOrder(t, msgs, from, 0, n)
			}
		}
		if got := nodes[to].tr.Stats().Unroutable; got != 2*n {
			t.Errorf("node %d: Unroutable %d, want %d", to, got, 2*n)
		}
	}
}

// recordConn is a net.Conn that records writes.
type recordConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (c *recordConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(b)
}

func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

// TestWriterBatchesQueuedMessages checks that messages queued while the writer was busy
// leave in one flush, in as few writes as the buffer size allows.
func TestWriterBatchesQueuedMessages(t *testing.T) {
	tr, err := New(Config{ID: 1, ClusterID: testClusterID}, newFakeHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	p := tr.newPeer(2, "127.0.0.1:1")
	const n = 1000
	for i := range n {
		p.queue <- appMsg(1, 2, uint64(i), fmt.Appendf(nil, "entry %d", i))
	}
	conn := &recordConn{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.writeLoop(ctx, conn) }()
	waitFor(t, 5*time.Second, "the flush", func() bool { return p.flushes.Load() == 1 })
	cancel()
	<-done

	conn.mu.Lock()
	defer conn.mu.Unlock()
	if maxWrites := conn.buf.Len()/writeBufferBytes + 1; conn.writes > maxWrites {
		t.Errorf("%d messages (%d bytes) took %d writes, want at most %d", n, conn.buf.Len(), conn.writes, maxWrites)
	}
	if got := p.sentBytes.Load(); got != uint64(conn.buf.Len()) {
		t.Errorf("SentBytes %d, but %d bytes were written", got, conn.buf.Len())
	}
	tr2, _ := New(Config{ID: 2, ClusterID: testClusterID}, newFakeHandler())
	defer tr2.Close()
	if err := tr2.readMessages(context.Background(), &conn.buf, nil, 1); !errors.Is(err, io.EOF) {
		t.Fatalf("reading back the stream: %v", err)
	}
	checkInOrder(t, tr2.h.(*fakeHandler).messages(), 1, 0, n)
}

func TestBatchingUnderLoad(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, nil)
	waitConnected(t, nodes)
	total := 0
	for round := range 20 {
		for range 10 {
			var batch []raft.Message
			for range 100 {
				batch = append(batch, appMsg(1, 2, uint64(total), fmt.Appendf(nil, "entry %d", total)))
				total++
			}
			nodes[1].tr.Send(batch)
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("round %d", round), func() bool { return nodes[2].h.count() == total })
	}
	st := nodes[1].tr.Stats().Peers[2]
	t.Logf("%d messages in %d flushes (%.1f per flush)", st.Sent, st.Flushes, float64(st.Sent)/float64(st.Flushes))
	if st.Dropped != 0 || st.Sent != uint64(total) {
		t.Fatalf("stats %+v, want %d sent and none dropped", st, total)
	}
	if st.Flushes*4 > st.Sent {
		t.Fatalf("%d flushes for %d messages: the writer is not batching", st.Flushes, st.Sent)
	}
}

func TestSendDropsWhenQueueFull(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) { c.SendQueueLen = 32 })
	waitConnected(t, nodes)
	gate := nodes[2].h.hold()
	// Prove the stream is up before the receiver stalls.
	nodes[1].tr.Send([]raft.Message{{Type: raft.MsgHeartbeat, From: 1, To: 2}})
	waitFor(t, 5*time.Second, "the stream", func() bool { return nodes[1].tr.Stats().Peers[2].Sent == 1 })

	// The receiver's handler is stuck: TCP buffers fill, the writer blocks, the
	// queue fills, and Send must drop rather than wait.
	data := bytes.Repeat([]byte("x"), 32<<10)
	const n = 3000
	start := time.Now()
	for i := range n {
		nodes[1].tr.Send([]raft.Message{appMsg(1, 2, uint64(i+1), data)})
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Send of %d messages to a stalled peer took %v; it must not block", n, elapsed)
	}
	waitFor(t, 5*time.Second, "drops", func() bool { return nodes[1].tr.Stats().Peers[2].Dropped > 0 })
	reports := nodes[1].h.unreachableCount(2)
	if reports == 0 {
		t.Fatalf("queue overflowed but peer 2 was not reported unreachable")
	}
	// Reports are rate-limited: one per interval, not one per dropped message.
	if limit := int(time.Since(start)/unreachableReportInterval) + 2; reports > limit {
		t.Fatalf("peer 2 reported unreachable %d times in %v, want at most %d", reports, time.Since(start), limit)
	}

	close(gate)
	// Every message given is either sent or dropped, once the queue has drained.
	var st PeerStats
	waitFor(t, 10*time.Second, "the queue to drain", func() bool {
		st = nodes[1].tr.Stats().Peers[2]
		return st.Sent+st.Dropped == n+1
	})
	waitFor(t, 10*time.Second, "what was sent to arrive", func() bool { return uint64(nodes[2].h.count()) == st.Sent })
	// What arrives is a subsequence of what was sent, in order.
	last := uint64(0)
	for _, m := range nodes[2].h.messages()[1:] {
		if m.Index <= last {
			t.Fatalf("index %d after %d: out of order", m.Index, last)
		}
		last = m.Index
	}
	t.Logf("sent %d, dropped %d, reported unreachable %d times", st.Sent, st.Dropped, nodes[1].h.unreachableCount(2))
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, nil)
	waitConnected(t, nodes)
	send := func(i int) { nodes[1].tr.Send([]raft.Message{appMsg(1, 2, uint64(i), nil)}) }
	send(0)
	waitFor(t, 5*time.Second, "first delivery", func() bool { return nodes[2].h.count() == 1 })

	// Peer 2 goes away.
	nodes[2].close(t)
	waitFor(t, 5*time.Second, "node 1 to notice", func() bool {
		send(1)
		return !nodes[1].tr.Stats().Peers[2].IsConnected && nodes[1].h.unreachableCount(2) > 0
	})

	// And comes back on the same address, as a new process would.
	l, err := net.Listen("tcp", nodes[2].addr)
	if err != nil {
		t.Fatalf("relisten on %s: %v", nodes[2].addr, err)
	}
	restarted := startNode(t, testConfig(2, map[uint64]string{1: nodes[1].addr}, newLogCapture()), l)
	waitFor(t, 10*time.Second, "delivery after restart", func() bool {
		send(2)
		return restarted.h.count() > 0
	})
	st := nodes[1].tr.Stats().Peers[2]
	if st.Connects < 2 {
		t.Fatalf("peer stats %+v: want at least 2 connects", st)
	}
	if nodes[1].logs.find("WARN", "peer unreachable") == "" || nodes[1].logs.find("INFO", "stream to peer up") == "" {
		t.Fatalf("want the outage and the recovery logged")
	}
}

func TestSenderDropsOversizedMessage(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) { c.MaxFrameBytes = 4 << 10 })
	waitConnected(t, nodes)
	nodes[1].tr.Send([]raft.Message{
		appMsg(1, 2, 1, make([]byte, 8<<10)),
		appMsg(1, 2, 2, []byte("small")),
	})
	waitFor(t, 5*time.Second, "the small message", func() bool { return nodes[2].h.count() == 1 })
	if got := nodes[2].h.messages()[0].Index; got != 2 {
		t.Fatalf("received index %d, want 2", got)
	}
	if st := nodes[1].tr.Stats().Peers[2]; st.Dropped != 1 || st.Sent != 1 {
		t.Fatalf("stats %+v, want 1 sent and 1 dropped", st)
	}
	if nodes[1].logs.find("over the frame size limit", "bytes=") == "" {
		t.Fatalf("the drop was not logged")
	}
}

func TestUpdateAndRemovePeer(t *testing.T) {
	n2 := startNode(t, testConfig(2, knownPeers(t, 1), newLogCapture()), listen(t))
	n1 := startNode(t, testConfig(1, map[uint64]string{2: deadAddr(t)}, newLogCapture()), listen(t))
	waitFor(t, 5*time.Second, "a failed dial", func() bool { return n1.tr.Stats().Peers[2].DialFailures > 0 })
	if err := n1.tr.UpdatePeer(2, n2.addr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "delivery at the new address", func() bool {
		n1.tr.Send([]raft.Message{appMsg(1, 2, 1, nil)})
		return n2.h.count() > 0
	})
	if err := n1.tr.UpdatePeer(1, n2.addr); err == nil {
		t.Fatalf("UpdatePeer accepted this node's own id")
	}
	if err := n1.tr.UpdatePeer(3, "nowhere"); err == nil {
		t.Fatalf("UpdatePeer accepted a bad address")
	}
	n1.tr.RemovePeer(2)
	if _, ok := n1.tr.Stats().Peers[2]; ok {
		t.Fatalf("peer 2 still in the stats after RemovePeer")
	}
	before := n1.tr.Stats().Unroutable
	n1.tr.Send([]raft.Message{appMsg(1, 2, 1, nil)})
	if got := n1.tr.Stats().Unroutable; got != before+1 {
		t.Fatalf("a message to a removed peer: Unroutable %d, want %d", got, before+1)
	}
}

func TestCloseAndServe(t *testing.T) {
	n1 := startNode(t, testConfig(1, map[uint64]string{2: deadAddr(t)}, newLogCapture()), listen(t))
	if err := n1.close(t); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve returned %v after Close, want ErrClosed", err)
	}
	n1.tr.Send([]raft.Message{appMsg(1, 2, 1, nil)})
	if got := n1.tr.Stats().Unroutable; got != 1 {
		t.Fatalf("Send after Close: Unroutable %d, want 1", got)
	}
	if err := n1.tr.Serve(listen(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close = %v, want ErrClosed", err)
	}
	if err := n1.tr.UpdatePeer(3, "127.0.0.1:9"); !errors.Is(err, ErrClosed) {
		t.Fatalf("UpdatePeer after Close = %v, want ErrClosed", err)
	}
	n1.tr.Close() // a second Close is fine
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		nodes := startCluster(t, []uint64{1, 2, 3}, nil)
		waitConnected(t, nodes)
		// A peer that never answers keeps node 1 in backoff.
		if err := nodes[1].tr.UpdatePeer(4, deadAddr(t)); err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			for from := uint64(1); from <= 3; from++ {
				nodes[from].tr.Send([]raft.Message{appMsg(from, from%3+1, uint64(i), []byte("x"))})
			}
		}
		// Handlers stuck in Step, a snapshot half-received, and a connection that
		// never finishes its handshake must all end with Close too.
		nodes[3].h.hold()
		nodes[2].tr.Send([]raft.Message{snapMsg(2, 3, bytes.Repeat([]byte("s"), 3<<20))})
		idle, err := net.Dial("tcp", nodes[1].addr)
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Close()
		waitFor(t, 5*time.Second, "traffic", func() bool { return nodes[1].h.count() == 100 && nodes[2].h.count() == 100 })
		for _, n := range nodes {
			n.close(t)
		}
		if reports := nodes[2].h.snapshotReports(); len(reports) != 1 || !reports[0].isFailed {
			t.Fatalf("snapshot cut off by Close reported %+v, want one failure", reports)
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
