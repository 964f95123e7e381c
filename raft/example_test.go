package raft_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"raftkv/raft"
)

// A three-node cluster in one process, each node with a TCP transport of its own
// written below as an embedder would write one: Start a command on whichever node is
// the leader, then read it back from Apply once it commits.
//
// NewNode makes the transport itself, through the function it is given, once the node
// can take messages and before it sends any: the transport gets the node (as a
// raft.Handler) when it is made, and nothing has to be filled in afterwards.
func Example() {
	// Listen first, so every node knows every address before any starts.
	peers := []uint64{1, 2, 3}
	listeners := map[uint64]net.Listener{}
	addrs := map[uint64]string{}
	for _, id := range peers {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		listeners[id], addrs[id] = l, l.Addr().String()
	}

	var nodes []*raft.Node
	var transports []*tcpTransport
	for _, id := range peers {
		node, err := raft.NewNode(raft.Config{
			ID:           id,
			Peers:        peers,
			Storage:      raft.NewMemoryStorage(),
			TickInterval: 10 * time.Millisecond,
		}, func(h raft.Handler) (raft.Transport, error) {
			t := newTCPTransport(id, h, listeners[id], addrs)
			transports = append(transports, t)
			return t, nil
		})
		if err != nil {
			panic(err)
		}
		nodes = append(nodes, node)
	}
	defer func() {
		// Stop the nodes first: a stopped node sends nothing more.
		for _, node := range nodes {
			node.Stop()
		}
		for _, t := range transports {
			t.Close()
		}
	}()

	// Until an election has run, every node answers isLeader=false.
	var leader *raft.Node
	var index, term uint64
	for leader == nil {
		time.Sleep(10 * time.Millisecond)
		for _, node := range nodes {
			if i, tm, isLeader := node.Start([]byte("hello")); isLeader {
				leader, index, term = node, i, tm
				break
			}
		}
	}

	// The command is committed when the entry at its index has the term Start
	// returned; another entry there means leadership was lost first (then retry).
	for msg := range leader.Apply() {
		if msg.Index == index {
			fmt.Printf("committed %q: %v\n", msg.Command, msg.Term == term && msg.Type == raft.ApplyCommand)
			break
		}
	}
	// Output: committed "hello": true
}

// tcpTransport carries a node's messages to its peers over TCP: one connection per
// peer, each message framed as a uvarint length and the message's encoding
// (raft.Message.MarshalTo). Send never blocks: each peer has a bounded queue drained
// by a goroutine that dials and writes, and a message that finds the queue full is
// dropped, which Raft's retries recover from. Received messages go to the node's
// Handler.
type tcpTransport struct {
	id      uint64
	handler raft.Handler
	ln      net.Listener
	peers   map[uint64]chan raft.Message
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool // open connections, closed by Close
}

// maxFrameBytes bounds what a receiver allocates for one message.
const maxFrameBytes = 4 << 20

func newTCPTransport(id uint64, h raft.Handler, ln net.Listener, addrs map[uint64]string) *tcpTransport {
	t := &tcpTransport{id: id, handler: h, ln: ln, peers: map[uint64]chan raft.Message{}, conns: map[net.Conn]bool{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for peer, addr := range addrs {
		if peer != id {
			queue := make(chan raft.Message, 256)
			t.peers[peer] = queue
			t.wg.Go(func() { t.sendLoop(peer, addr, queue) })
		}
	}
	t.wg.Go(t.acceptLoop)
	return t
}

// Send queues msgs for their peers. It keeps nothing of msgs but copies.
func (t *tcpTransport) Send(msgs []raft.Message) {
	for _, m := range msgs {
		queue := t.peers[m.To]
		if queue == nil {
			continue
		}
		select {
		case queue <- m:
		default:
			t.handler.ReportUnreachable(m.To)
		}
	}
}

func (t *tcpTransport) sendLoop(peer uint64, addr string, queue chan raft.Message) {
	var conn net.Conn
	var w *bufio.Writer
	defer func() {
		if conn != nil {
			t.forget(conn)
		}
	}()
	var buf []byte
	for {
		var m raft.Message
		select {
		case m = <-queue:
		case <-t.ctx.Done():
			return
		}
		if conn == nil {
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(t.ctx, "tcp", addr)
			if err != nil || !t.remember(c) {
				t.failed(peer, m)
				continue
			}
			conn, w = c, bufio.NewWriter(c)
		}
		buf = m.MarshalTo(binary.AppendUvarint(buf[:0], uint64(m.Size())))
		_, err := w.Write(buf)
		if err == nil && len(queue) == 0 {
			err = w.Flush() // flush once the queue is drained, so a burst shares writes
		}
		if err != nil {
			t.forget(conn)
			conn = nil
			t.failed(peer, m)
			continue
		}
		if m.Type == raft.MsgSnap {
			t.handler.ReportSnapshot(peer, false)
		}
	}
}

// failed tells the node that m did not reach peer.
func (t *tcpTransport) failed(peer uint64, m raft.Message) {
	t.handler.ReportUnreachable(peer)
	if m.Type == raft.MsgSnap {
		t.handler.ReportSnapshot(peer, true)
	}
}

func (t *tcpTransport) acceptLoop() {
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			return // closed by Close
		}
		if !t.remember(conn) {
			return
		}
		t.wg.Go(func() {
			defer t.forget(conn)
			t.receive(conn)
		})
	}
}

// receive hands every message read from conn to the node, until conn breaks.
func (t *tcpTransport) receive(conn net.Conn) {
	r := bufio.NewReader(conn)
	for {
		size, err := binary.ReadUvarint(r)
		if err != nil || size > maxFrameBytes {
			return
		}
		payload := make([]byte, size) // the decoded message aliases it
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		var m raft.Message
		if err := m.Unmarshal(payload); err != nil {
			return // not a peer speaking our format: drop the connection
		}
		if err := t.handler.Step(t.ctx, m); err != nil {
			return
		}
	}
}

func (t *tcpTransport) remember(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		c.Close()
		return false
	}
	t.conns[c] = true
	return true
}

func (t *tcpTransport) forget(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	c.Close()
}

// Close stops every goroutine and closes every connection and the listener.
func (t *tcpTransport) Close() {
	t.mu.Lock()
	t.cancel()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.ln.Close()
	t.wg.Wait()
}
