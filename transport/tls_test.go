package transport

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"raftkv/internal/testpki"
	"raftkv/raft"
)

// mutualTLS returns the server and client sides of mutual TLS for a node holding kp,
// trusting ca alone.
func mutualTLS(t testing.TB, ca *testpki.CA, kp testpki.KeyPair) (server, client *tls.Config) {
	cert := kp.TLS(t)
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	return server, client
}

// startTLSCluster starts one Transport per id, each with a certificate from the CA in
// cas (by id) and trusting that CA, dialling the others at https:// addresses;
// tweak, if not nil, adjusts each Config.
func startTLSCluster(t *testing.T, ids []uint64, cas map[uint64]*testpki.CA, tweak func(*Config)) map[uint64]*testNode {
	t.Helper()
	listeners := map[uint64]net.Listener{}
	peers := map[uint64]string{}
	for _, id := range ids {
		listeners[id] = listen(t)
		peers[id] = "https://" + listeners[id].Addr().String()
	}
	nodes := map[uint64]*testNode{}
	for _, id := range ids {
		server, client := mutualTLS(t, cas[id], cas[id].Issue(t, "node", "127.0.0.1"))
		cfg := testConfig(id, peers, newLogCapture())
		cfg.TLS = client
		if tweak != nil {
			tweak(&cfg)
		}
		nodes[id] = startNode(t, cfg, tls.NewListener(listeners[id], server))
	}
	return nodes
}

// TestTLSStreamsCarryMessagesAndSnapshots: with mutual TLS on every stream, messages
// arrive in order and a snapshot arrives whole, through the same frames as over TCP.
func TestTLSStreamsCarryMessagesAndSnapshots(t *testing.T) {
	ca := testpki.NewCA(t, "peer CA")
	nodes := startTLSCluster(t, []uint64{1, 2, 3}, map[uint64]*testpki.CA{1: ca, 2: ca, 3: ca}, nil)
	waitConnected(t, nodes)
	const n = 500
	for i := range n {
		nodes[1].tr.Send([]raft.Message{appMsg(1, 2, uint64(i), fmt.Appendf(nil, "entry %d", i)), appMsg(1, 3, uint64(i), nil)})
	}
	waitFor(t, 10*time.Second, "every message over TLS", func() bool {
		return nodes[2].h.count() == n && nodes[3].h.count() == n
	})
	checkInOrder(t, nodes[2].h.messages(), 1, 0, n)

	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	nodes[2].tr.Send([]raft.Message{snapMsg(2, 3, data)})
	waitFor(t, 10*time.Second, "the snapshot over TLS", func() bool { return len(nodes[2].h.snapshotReports()) == 1 })
	if r := nodes[2].h.snapshotReports()[0]; r.isFailed {
		t.Fatalf("snapshot over TLS failed: %+v", r)
	}
	if st := nodes[3].tr.Stats(); st.SnapshotsReceived != 1 || st.StreamsRefused != 0 {
		t.Fatalf("node 3 stats %+v: want 1 snapshot received and no stream refused", st)
	}
}

// TestTLSStreamedSnapshot: a body streamed through the snapshot hooks arrives whole
// over mutual TLS, and a receiver's refusal in the middle of it reaches the sender.
func TestTLSStreamedSnapshot(t *testing.T) {
	ca := testpki.NewCA(t, "peer CA")
	hooks := newStreamHooks(t, 24<<20+3)
	nodes := startTLSCluster(t, []uint64{1, 2}, map[uint64]*testpki.CA{1: ca, 2: ca}, hooks.install)
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if waitReport(t, nodes[1]) {
		t.Fatalf("a streamed snapshot over TLS failed")
	}
	if !hooks.isIntact() {
		t.Fatalf("the body's SHA-256 differs after TLS")
	}
	waitFor(t, 5*time.Second, "the delivery", func() bool { return nodes[2].h.count() == 1 })

	hooks.refuseAfter = 2 << 20
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	waitFor(t, 10*time.Second, "the second report", func() bool { return len(nodes[1].h.snapshotReports()) == 2 })
	if r := nodes[1].h.snapshotReports()[1]; !r.isFailed {
		t.Fatalf("a snapshot refused mid-body over TLS was reported sent")
	}
	if nodes[1].logs.find("WARN", "sending snapshot failed", "disk full") == "" {
		t.Fatalf("the receiver's reason did not reach the sender over TLS")
	}
}

// TestTLSRefusesPeerOfAnotherCA: a node whose certificate another CA signed can
// neither connect to the cluster's nodes nor be dialled by them, and both sides log
// why; the nodes with proper certificates go on talking.
func TestTLSRefusesPeerOfAnotherCA(t *testing.T) {
	ca, rogue := testpki.NewCA(t, "peer CA"), testpki.NewCA(t, "another CA")
	nodes := startTLSCluster(t, []uint64{1, 2, 3}, map[uint64]*testpki.CA{1: ca, 2: ca, 3: rogue}, nil)
	waitFor(t, 10*time.Second, "1 and 2 to connect", func() bool {
		return nodes[1].tr.Stats().Peers[2].IsConnected && nodes[2].tr.Stats().Peers[1].IsConnected
	})
	waitFor(t, 10*time.Second, "node 3 to be refused both ways", func() bool {
		return nodes[1].tr.Stats().StreamsRefused > 0 && nodes[1].tr.Stats().Peers[3].DialFailures > 0
	})
	for i := range 10 {
		nodes[3].tr.Send([]raft.Message{appMsg(3, 1, uint64(i), nil)})
		nodes[1].tr.Send([]raft.Message{appMsg(1, 2, uint64(i), nil), appMsg(1, 3, uint64(i), nil)})
	}
	waitFor(t, 10*time.Second, "delivery between the proper nodes", func() bool { return nodes[2].h.count() == 10 })
	if got := nodes[1].h.count() + nodes[3].h.count(); got != 0 {
		t.Fatalf("%d messages crossed between node 3 (another CA) and node 1", got)
	}
	if st := nodes[3].tr.Stats().Peers[1]; st.IsConnected {
		t.Fatalf("node 3 has a stream to node 1: %+v", st)
	}
	if nodes[1].logs.find("WARN", "TLS handshake failed", "remote=") == "" {
		t.Errorf("node 1 did not log the refused handshake")
	}
	if nodes[1].logs.find("peer unreachable", "certificate signed by unknown authority") == "" {
		t.Errorf("node 1 did not log why it cannot dial node 3")
	}
}

// TestTLSListenerRefusesPlaintextPeer: a node dialling a TLS listener without TLS is
// refused, and the log says what to fix.
func TestTLSListenerRefusesPlaintextPeer(t *testing.T) {
	ca := testpki.NewCA(t, "peer CA")
	server, _ := mutualTLS(t, ca, ca.Issue(t, "node", "127.0.0.1"))
	l := listen(t)
	n1 := startNode(t, testConfig(1, nil, newLogCapture()), tls.NewListener(l, server))
	n2 := startNode(t, testConfig(2, map[uint64]string{1: l.Addr().String()}, newLogCapture()), listen(t))
	waitFor(t, 10*time.Second, "the plaintext stream to be refused", func() bool {
		return n1.tr.Stats().StreamsRefused > 0 && n2.tr.Stats().Peers[1].DialFailures > 0
	})
	if n1.logs.find("WARN", "does not speak TLS") == "" {
		t.Fatalf("node 1 did not say the connection was not TLS")
	}
}

// TestHTTPSPeerNeedsTLSConfig: an https:// peer without Config.TLS is a configuration
// error, at New and at UpdatePeer.
func TestHTTPSPeerNeedsTLSConfig(t *testing.T) {
	if _, err := New(testConfig(1, map[uint64]string{2: "https://127.0.0.1:2380"}, newLogCapture()), newFakeHandler()); err == nil {
		t.Fatal("New accepted an https:// peer without Config.TLS")
	}
	n1 := startNode(t, testConfig(1, nil, newLogCapture()), listen(t))
	if err := n1.tr.UpdatePeer(2, "https://127.0.0.1:2380"); err == nil {
		t.Fatal("UpdatePeer accepted an https:// peer without Config.TLS")
	}
}
