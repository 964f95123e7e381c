package transport

import (
	"sync"
	"testing"
	"time"

	"raftkv/raft"
)

// rttLog records what OnRoundTrip hears, per peer.
type rttLog struct {
	mu      sync.Mutex
	samples map[uint64][]time.Duration
}

func (l *rttLog) observe(peer uint64, rtt time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples[peer] = append(l.samples[peer], rtt)
}

func (l *rttLog) count(peer uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.samples[peer])
}

// OnRoundTrip hears a round trip to each peer when its stream is dialled and then one
// per probe, each a positive duration under the dial timeout; probes do not count as
// streams accepted, and the message stream stays up through them.
func TestRoundTripProbes(t *testing.T) {
	logs := map[uint64]*rttLog{1: {samples: map[uint64][]time.Duration{}}, 2: {samples: map[uint64][]time.Duration{}}}
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) {
		c.OnRoundTrip = logs[c.ID].observe
		c.ProbeInterval = 20 * time.Millisecond
	})
	waitConnected(t, nodes)
	waitFor(t, 10*time.Second, "three round trips each way", func() bool { return logs[1].count(2) >= 3 && logs[2].count(1) >= 3 })
	for id, l := range logs {
		l.mu.Lock()
		for peer, samples := range l.samples {
			if peer == id {
				t.Errorf("node %d timed a round trip to itself", id)
			}
			for _, rtt := range samples {
				if rtt <= 0 || rtt > 5*time.Second {
					t.Errorf("node %d: round trip to %d of %v, want positive and under the dial timeout", id, peer, rtt)
				}
			}
		}
		l.mu.Unlock()
	}
	for id, n := range nodes {
		st := n.tr.Stats()
		if st.StreamsAccepted != 1 {
			t.Errorf("node %d accepted %d streams; probes must not count, want the one message stream", id, st.StreamsAccepted)
		}
		for peer, ps := range st.Peers {
			if ps.Connects != 1 {
				t.Errorf("node %d's stream to %d connected %d times; probes must not disturb it", id, peer, ps.Connects)
			}
		}
	}
}

// A peer's ReceivedBytes counts the frames that arrived from it, as the sender's
// SentBytes counts them.
func TestReceivedBytesMatchSentBytes(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, nil)
	waitConnected(t, nodes)
	const n = 100
	for i := range n {
		nodes[1].tr.Send([]raft.Message{appMsg(1, 2, uint64(i), make([]byte, 1000))})
	}
	waitFor(t, 10*time.Second, "the messages to arrive", func() bool { return nodes[2].h.count() == n })
	sent := nodes[1].tr.Stats().Peers[2].SentBytes
	if sent < n*1000 {
		t.Fatalf("node 1 counts %d bytes sent for %d messages of 1000 bytes", sent, n)
	}
	waitFor(t, 10*time.Second, "the received bytes to be counted", func() bool {
		return nodes[2].tr.Stats().Peers[1].ReceivedBytes == sent
	})
	if got := nodes[1].tr.Stats().Peers[2].ReceivedBytes; got != 0 {
		t.Errorf("node 1 received nothing from 2, but counts %d bytes", got)
	}
}
