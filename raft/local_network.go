package raft

import (
	"context"
	"sync"
)

// LocalNetwork connects Nodes in one process, for examples, tests and embedded
// clusters. Delivery never blocks: a message to a node whose inbox is full, to a node
// not attached, or across a cut link is dropped, as a real network might.
type LocalNetwork struct {
	mu struct {
		sync.Mutex
		nodes map[uint64]Handler
		cut   map[[2]uint64]bool
	}
}

// NewLocalNetwork returns a network with no nodes attached.
func NewLocalNetwork() *LocalNetwork {
	ln := &LocalNetwork{}
	ln.mu.nodes = map[uint64]Handler{}
	ln.mu.cut = map[[2]uint64]bool{}
	return ln
}

// Transport returns the NewTransport for node id: pass it to NewNode, which attaches
// the node as id (replacing a node attached as id before, such as a stopped one).
func (ln *LocalNetwork) Transport(id uint64) NewTransport {
	return func(h Handler) (Transport, error) {
		ln.mu.Lock()
		defer ln.mu.Unlock()
		ln.mu.nodes[id] = h
		return localEndpoint{net: ln, id: id}, nil
	}
}

// Detach makes id unreachable, as for a node that stopped.
func (ln *LocalNetwork) Detach(id uint64) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	delete(ln.mu.nodes, id)
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

// offerOnly is an ended context: Handler.Step takes a message given with it only if
// the node's inbox has room, so Send never waits.
var offerOnly = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (e localEndpoint) Send(msgs []Message) {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	for _, m := range msgs {
		if e.net.mu.cut[[2]uint64{e.id, m.To}] {
			continue
		}
		if dst := e.net.mu.nodes[m.To]; dst != nil {
			_ = dst.Step(offerOnly, m)
		}
	}
}
