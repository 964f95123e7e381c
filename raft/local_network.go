package raft

import "sync"

// LocalNetwork connects Nodes in one process, for examples, tests and embedded
// clusters. Delivery never blocks: a message to a node whose inbox is full, to a node
// not attached, or across a cut link is dropped, as a real network might.
type LocalNetwork struct {
	mu struct {
		sync.Mutex
		nodes map[uint64]*Node
		cut   map[[2]uint64]bool
	}
}

// NewLocalNetwork returns a network with no nodes attached.
func NewLocalNetwork() *LocalNetwork {
	ln := &LocalNetwork{}
	ln.mu.nodes = map[uint64]*Node{}
	ln.mu.cut = map[[2]uint64]bool{}
	return ln
}

// Transport returns the transport for node id; pass it to NewNode, then Attach the
// node.
func (ln *LocalNetwork) Transport(id uint64) Transport { return localEndpoint{net: ln, id: id} }

// Attach makes node reachable as id; attaching nil detaches it.
func (ln *LocalNetwork) Attach(id uint64, node *Node) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if node == nil {
		delete(ln.mu.nodes, id)
		return
	}
	ln.mu.nodes[id] = node
}

// Isolate cuts every link to and from id.
func (ln *LocalNetwork) Isolate(id uint64) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	for other := range ln.mu.nodes {
		if other != id {
			ln.mu.cut[[2]uint64{id, other}] = true
			ln.mu.cut[[2]uint64{other, id}] = true
		}
	}
}

// Heal restores every link.
func (ln *LocalNetwork) Heal() {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	clear(ln.mu.cut)
}

type localEndpoint struct {
	net *LocalNetwork
	id  uint64
}

func (e localEndpoint) Send(msgs []Message) {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	for _, m := range msgs {
		if e.net.mu.cut[[2]uint64{e.id, m.To}] {
			continue
		}
		if dst := e.net.mu.nodes[m.To]; dst != nil {
			dst.tryStep(m)
		}
	}
}
