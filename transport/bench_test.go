package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"raftkv/internal/testpki"
	"raftkv/raft"
)

// countingHandler counts messages and keeps none. Each message pokes progress, so a
// sender can wait for deliveries without spinning.
type countingHandler struct {
	received atomic.Int64
	progress chan struct{}
}

func (h *countingHandler) Step(context.Context, raft.Message) error {
	h.received.Add(1)
	select {
	case h.progress <- struct{}{}:
	default:
	}
	return nil
}
func (h *countingHandler) ReportUnreachable(uint64)    {}
func (h *countingHandler) ReportSnapshot(uint64, bool) {}

// BenchmarkSend measures a leader streaming MsgApp to two followers over loopback.
// Each op is one Ready's worth of messages: a MsgApp of entriesPerMsg 256-byte entries
// to each follower. The leader keeps at most a window of messages unacknowledged per
// follower, as Raft's inflight limit does, so nothing is dropped. MB/s counts entry
// bytes; msgs/s counts messages delivered to the followers' handlers.
func BenchmarkSend(b *testing.B) {
	for _, entriesPerMsg := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("entries=%d", entriesPerMsg), func(b *testing.B) {
			benchmarkSend(b, entriesPerMsg, false)
		})
	}
}

// BenchmarkSendTLS is BenchmarkSend with mutual TLS on every stream: beside it, what
// TLS costs the peer traffic.
func BenchmarkSendTLS(b *testing.B) {
	for _, entriesPerMsg := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("entries=%d", entriesPerMsg), func(b *testing.B) {
			benchmarkSend(b, entriesPerMsg, true)
		})
	}
}

func benchmarkSend(b *testing.B, entriesPerMsg int, useTLS bool) {
	const (
		entryBytes = 256
		// window is Raft's default MaxInflightMsgs.
		window = raft.DefaultMaxInflightMsgs
	)
	ids := []uint64{1, 2, 3}
	listeners := map[uint64]net.Listener{}
	peers := map[uint64]string{}
	var serverTLS, clientTLS *tls.Config
	if useTLS {
		ca := testpki.NewCA(b, "bench CA")
		serverTLS, clientTLS = mutualTLS(b, ca, ca.Issue(b, "node", "127.0.0.1"))
	}
	for _, id := range ids {
		listeners[id] = listen(b)
		peers[id] = listeners[id].Addr().String()
		if useTLS {
			peers[id] = "https://" + peers[id]
			listeners[id] = tls.NewListener(listeners[id], serverTLS)
		}
	}
	transports := map[uint64]*Transport{}
	handlers := map[uint64]*countingHandler{}
	for _, id := range ids {
		handlers[id] = &countingHandler{progress: make(chan struct{}, 1)}
		tr, err := New(Config{ID: id, ClusterID: testClusterID, Peers: peers, TLS: clientTLS, Logger: slog.New(slog.DiscardHandler)}, handlers[id])
		if err != nil {
			b.Fatal(err)
		}
		transports[id] = tr
		go tr.Serve(listeners[id])
		defer tr.Close()
	}

	entries := make([]raft.Entry, entriesPerMsg)
	data := make([]byte, entryBytes)
	for i := range entries {
		entries[i] = raft.Entry{Term: 1, Index: uint64(i + 1), Data: data}
	}
	batch := []raft.Message{
		{Type: raft.MsgApp, From: 1, To: 2, Term: 1, Index: 1, LogTerm: 1, Commit: 1, Entries: entries},
		{Type: raft.MsgApp, From: 1, To: 3, Term: 1, Index: 1, LogTerm: 1, Commit: 1, Entries: entries},
	}
	delivered := func() int64 { return min(handlers[2].received.Load(), handlers[3].received.Load()) }
	waitProgress := func() {
		select {
		case <-handlers[2].progress:
		case <-handlers[3].progress:
		}
	}

	b.SetBytes(int64(len(batch) * entriesPerMsg * entryBytes))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range int64(b.N) {
		for i-delivered() >= window {
			waitProgress()
		}
		transports[1].Send(batch)
	}
	for delivered() < int64(b.N) {
		waitProgress()
	}
	elapsed := time.Since(start)
	b.StopTimer()

	b.ReportMetric(float64(len(batch)*b.N)/elapsed.Seconds(), "msgs/s")
	st := transports[1].Stats().Peers[2]
	if st.Dropped > 0 {
		b.Fatalf("peer 2 stats %+v: messages dropped", st)
	}
	b.ReportMetric(float64(st.Sent)/float64(max(st.Flushes, 1)), "msgs/flush")
}
