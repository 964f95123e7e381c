package transport

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"raftkv/raft"
)

// A removed peer: node 1 stops sending to it, its goroutines end, its live stream
// into node 1 is closed and every later one refused, and it hears why (OnRemoved)
// and reaches node 1's handler no more. UpdatePeer lets it back in.
func TestRemovedPeerIsRefusedAndTold(t *testing.T) {
	var removedBy atomic.Uint64
	nodes := startCluster(t, []uint64{1, 2, 3}, func(c *Config) {
		if c.ID == 3 {
			c.OnRemoved = func(by uint64) { removedBy.Store(by) }
		}
	})
	waitConnected(t, nodes)
	goroutinesBefore := runtime.NumGoroutine()
	nodes[1].tr.RemovePeer(3)
	if _, ok := nodes[1].tr.Stats().Peers[3]; ok {
		t.Fatal("peer 3 still in node 1's stats after RemovePeer")
	}
	waitFor(t, 5*time.Second, "node 3 told it was removed", func() bool { return removedBy.Load() == 1 })
	waitFor(t, 5*time.Second, "node 1's writer to 3 gone", func() bool { return runtime.NumGoroutine() < goroutinesBefore })
	if nodes[1].logs.find("refusing inbound stream", "was removed from the cluster") == "" {
		t.Fatal("node 1 did not log the refusal")
	}
	before := nodes[1].h.count()
	nodes[3].tr.Send([]raft.Message{appMsg(3, 1, 1, nil)})
	nodes[2].tr.Send([]raft.Message{appMsg(2, 1, 1, nil)})
	waitFor(t, 5*time.Second, "node 2's message", func() bool { return nodes[1].h.count() > before })
	time.Sleep(100 * time.Millisecond)
	for _, m := range nodes[1].h.messages() {
		if m.From == 3 && m.Index == 1 {
			t.Fatalf("node 1 took %v from the removed node 3", m)
		}
	}
	if err := nodes[1].tr.UpdatePeer(3, nodes[3].addr); err != nil {
		t.Fatal(err)
	}
	sendUntilDelivered(t, nodes[3], nodes[1], 3, 7, "node 3 reaching node 1 again")
}

// A forgotten peer: node 1 stops sending to it and its goroutines end, as for a
// removed one, and its streams are refused as those of any node that is not a peer;
// but it was never a member, so it was not removed, and it is not told it was.
// UpdatePeer lets it back in.
func TestForgottenPeerIsNotRefusedAsRemoved(t *testing.T) {
	var removedBy atomic.Uint64
	nodes := startCluster(t, []uint64{1, 2, 3}, func(c *Config) {
		if c.ID == 3 {
			c.OnRemoved = func(by uint64) { removedBy.Store(by) }
		}
	})
	waitConnected(t, nodes)
	goroutinesBefore := runtime.NumGoroutine()
	nodes[1].tr.ForgetPeer(3)
	if _, ok := nodes[1].tr.Stats().Peers[3]; ok {
		t.Fatal("peer 3 still in node 1's stats after ForgetPeer")
	}
	waitFor(t, 5*time.Second, "node 1's writer to 3 gone", func() bool { return runtime.NumGoroutine() < goroutinesBefore })
	waitFor(t, 5*time.Second, "node 3's stream refused", func() bool {
		return nodes[1].logs.find("refusing inbound stream", "node 3 is not a member of cluster c1") != ""
	})
	if err := nodes[1].tr.UpdatePeer(3, nodes[3].addr); err != nil {
		t.Fatal(err)
	}
	sendUntilDelivered(t, nodes[3], nodes[1], 3, 5, "node 3's message reaching node 1")
	if by := removedBy.Load(); by != 0 {
		t.Fatalf("node 3 was told by node %d that it was removed", by)
	}
}

// A node takes streams of every kind but the cluster query only from its peers: a
// made-up sender id, with the right cluster id, is refused at the handshake and
// named in the refusal and the log, and takes no place among the inbound streams.
func TestUnknownSenderRefused(t *testing.T) {
	n1 := startNode(t, testConfig(1, knownPeers(t, 2), newLogCapture()), listen(t))
	for _, kind := range []streamKind{streamMessages, streamSnapshot, streamRequest, streamProbe} {
		t.Run(kind.String(), func(t *testing.T) {
			_, err := dialRaw(t, n1, 0x77, kind)
			if err == nil || !strings.Contains(err.Error(), "node 77 is not a member of cluster c1") {
				t.Fatalf("a %s stream from an unknown node: %v, want it refused as not a member", kind, err)
			}
		})
	}
	if n1.logs.find("WARN", "refusing inbound stream", "node 77 is not a member") == "" {
		t.Fatal("the refusal was not logged with the sender's id")
	}
	if got := n1.tr.Stats().StreamsRefused; got != 4 {
		t.Fatalf("StreamsRefused %d, want 4", got)
	}
	n1.tr.mu.Lock()
	inbound := len(n1.tr.mu.inbound)
	n1.tr.mu.Unlock()
	if inbound != 0 {
		t.Fatalf("%d inbound streams registered for refused senders", inbound)
	}
}

// A member just added: a node that knows it (its addition applied there before it
// started) takes its first stream; one that learns of it later refuses it until then
// and takes it at the dialler's next try after, without telling it it was removed.
func TestNewMemberAccepted(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, nil)
	waitConnected(t, nodes)
	l3 := listen(t)
	addr3 := l3.Addr().String()
	// Node 2 applied the addition of node 3 before node 3 started; node 1 has not.
	if err := nodes[2].tr.UpdatePeer(3, addr3); err != nil {
		t.Fatal(err)
	}
	var removedBy atomic.Uint64
	cfg3 := testConfig(3, map[uint64]string{1: nodes[1].addr, 2: nodes[2].addr}, newLogCapture())
	cfg3.OnRemoved = func(by uint64) { removedBy.Store(by) }
	n3 := startNode(t, cfg3, l3)
	waitFor(t, 5*time.Second, "node 3's stream to node 2", func() bool { return n3.tr.Stats().Peers[2].IsConnected })
	if st := n3.tr.Stats().Peers[2]; st.DialFailures != 0 {
		t.Fatalf("node 3's dials to node 2, which knows it: %+v; want none refused", st)
	}
	waitFor(t, 5*time.Second, "node 1 refusing node 3", func() bool {
		return nodes[1].logs.find("refusing inbound stream", "node 3 is not a member") != ""
	})
	if err := nodes[1].tr.UpdatePeer(3, addr3); err != nil {
		t.Fatal(err)
	}
	sendUntilDelivered(t, n3, nodes[1], 3, 9, "node 3's message reaching node 1")
	if by := removedBy.Load(); by != 0 {
		t.Fatalf("node 3 was told by node %d that it was removed", by)
	}
}

// A joining node asks any member what the cluster is, whatever cluster id and node id
// it has: it gets the cluster id and the member's ClusterInfo.
func TestFetchCluster(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) {
		c.ClusterInfo = func() []byte { return []byte("members of cluster") }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id, info, err := FetchCluster(ctx, nodes[2].addr, nil, 99)
	if err != nil {
		t.Fatal(err)
	}
	if id != testClusterID || string(info) != "members of cluster" {
		t.Fatalf("FetchCluster = %x %q, want %x %q", id, info, uint64(testClusterID), "members of cluster")
	}
	if _, _, err := FetchCluster(ctx, deadAddr(t), nil, 99); err == nil {
		t.Fatal("FetchCluster of a dead address succeeded")
	}
	if _, _, err := FetchCluster(ctx, "nowhere", nil, 99); err == nil {
		t.Fatal("FetchCluster of a bad address succeeded")
	}
	// A message stream with cluster id 0 is still refused.
	cfg := testConfig(5, map[uint64]string{1: nodes[1].addr}, newLogCapture())
	cfg.ClusterID = 7
	stranger := startNode(t, cfg, listen(t))
	waitFor(t, 5*time.Second, "the stranger refused", func() bool { return stranger.tr.Stats().Peers[1].DialFailures > 0 })
	if nodes[1].h.count() != 0 {
		t.Fatal("a stream of another cluster reached node 1")
	}
}

// ConnectedSince is when the stream now up came up (etcd's ActiveSince, which its
// strict reconfiguration check reads), and the zero time once it is down.
func TestConnectedSince(t *testing.T) {
	began := time.Now()
	nodes := startCluster(t, []uint64{1, 2}, nil)
	waitConnected(t, nodes)
	since := nodes[1].tr.Stats().Peers[2].ConnectedSince
	if since.Before(began) || since.After(time.Now()) {
		t.Fatalf("ConnectedSince = %v; want between the start %v and now", since, began)
	}
	time.Sleep(20 * time.Millisecond)
	if again := nodes[1].tr.Stats().Peers[2].ConnectedSince; !again.Equal(since) {
		t.Fatalf("ConnectedSince moved from %v to %v with the stream up all along", since, again)
	}
	nodes[2].tr.Close()
	waitFor(t, 5*time.Second, "node 1's stream to 2 down", func() bool {
		st := nodes[1].tr.Stats().Peers[2]
		return !st.IsConnected && st.ConnectedSince.IsZero()
	})
}

// sendUntilDelivered sends an append from node from to node to again until to's
// handler has taken it (its streams may be refused at first), or fails the test.
func sendUntilDelivered(t *testing.T, from, to *testNode, fromID uint64, index uint64, what string) {
	t.Helper()
	waitFor(t, 5*time.Second, what, func() bool {
		from.tr.Send([]raft.Message{appMsg(fromID, 1, index, nil)})
		for _, m := range to.h.messages() {
			if m.From == fromID && m.Index == index {
				return true
			}
		}
		return false
	})
}

// A stranger that redials as fast as it likes is refused every time, and counted
// every time, but its refusal is logged once per refusalLogEvery, the next line
// saying how many were left out.
func TestRepeatedRefusalsLoggedOnce(t *testing.T) {
	defer func(d time.Duration) { refusalLogEvery = d }(refusalLogEvery)
	refusalLogEvery = time.Hour
	n1 := startNode(t, testConfig(1, knownPeers(t, 2), newLogCapture()), listen(t))
	for range 20 {
		if _, err := dialRaw(t, n1, 0x77, streamProbe); err == nil {
			t.Fatal("a stranger's probe was taken")
		}
	}
	if got := n1.tr.Stats().StreamsRefused; got != 20 {
		t.Fatalf("StreamsRefused %d, want 20", got)
	}
	if n := n1.logs.count("refusing inbound stream", "node 77 is not a member"); n != 1 {
		t.Fatalf("20 refusals of one stranger logged %d times, want once", n)
	}
	refusalLogEvery = 0
	if _, err := dialRaw(t, n1, 0x77, streamProbe); err == nil {
		t.Fatal("a stranger's probe was taken")
	}
	if n1.logs.find("node 77 is not a member", "same_refusals_not_logged=19") == "" {
		t.Fatal("the next refusal logged does not say 19 were left out")
	}
}
