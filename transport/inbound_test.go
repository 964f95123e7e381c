package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"raftkv/raft"
)

func TestWrongClusterRefused(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) {
		if c.ID == 2 {
			c.ClusterID = testClusterID + 1
		}
	})
	waitFor(t, 5*time.Second, "the refusal", func() bool {
		nodes[1].tr.Send([]raft.Message{appMsg(1, 2, 1, nil)})
		return nodes[2].tr.Stats().StreamsRefused > 0 && nodes[1].tr.Stats().Peers[2].DialFailures > 0
	})
	if nodes[2].h.count() != 0 {
		t.Fatalf("node 2 of another cluster received %d messages", nodes[2].h.count())
	}
	if nodes[2].logs.find("refusing inbound stream", "this is cluster c2") == "" {
		t.Fatalf("node 2 did not log why it refused")
	}
	// The dialler learns the reason from the refusal.
	waitFor(t, 5*time.Second, "node 1's log", func() bool {
		return nodes[1].logs.find("WARN", "peer unreachable", "handshake refused", "cluster c2") != ""
	})
	if nodes[1].h.unreachableCount(2) == 0 {
		t.Fatalf("peer 2 was not reported unreachable")
	}
}

func TestWrongNodeRefused(t *testing.T) {
	l3 := listen(t)
	n3 := startNode(t, testConfig(3, nil, newLogCapture()), l3)
	// Node 1 believes node 2 listens where node 3 does.
	n1 := startNode(t, testConfig(1, map[uint64]string{2: n3.addr}, newLogCapture()), listen(t))
	waitFor(t, 5*time.Second, "the refusal", func() bool {
		n1.tr.Send([]raft.Message{appMsg(1, 2, 1, nil)})
		return n3.logs.find("refusing inbound stream", "node 1 dialled node 2, but this is node 3") != ""
	})
	if n3.h.count() != 0 {
		t.Fatalf("node 3 accepted messages meant for node 2")
	}
}

// rawFrame returns a frame with a correct header for payload.
func rawFrame(typ frameType, payload []byte) []byte {
	b := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	putFrameHeader(b, typ, payload)
	return append(b, payload...)
}

func encodeMsg(m raft.Message) []byte { return m.MarshalTo(nil) }

// rawStream dials node as peer from with a handshake of the given kind and returns the
// connection once the node accepted it.
func rawStream(t *testing.T, node *testNode, from uint64, kind streamKind) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", node.addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := handshake{kind: kind, clusterID: testClusterID, from: from, to: node.id}.marshal()
	if _, err := conn.Write(hs[:]); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := readStatus(&frameReader{r: conn, maxPayload: maxStatusBytes}); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return conn
}

// readRefusal reads what the node sends before it closes conn: a refusal, whose
// reason it returns, then the end of the stream.
func readRefusal(t *testing.T, conn net.Conn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	err := readStatus(&frameReader{r: br, maxPayload: maxStatusBytes})
	var refused *errRefused
	if !errors.As(err, &refused) {
		t.Fatalf("want a refusal, got %v", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatalf("the stream stayed open after the refusal")
	}
	return refused.reason
}

func TestBadInboundFramesCloseStream(t *testing.T) {
	n1 := startNode(t, testConfig(1, knownPeers(t, 2), newLogCapture()), listen(t))
	good := rawFrame(frameMessage, encodeMsg(appMsg(2, 1, 1, []byte("ok"))))
	badCRC := rawFrame(frameMessage, encodeMsg(appMsg(2, 1, 2, []byte("ok"))))
	badCRC[len(badCRC)-1] ^= 0x40
	oversized := make([]byte, frameHeaderLen)
	putFrameHeader(oversized, frameMessage, nil)
	oversized[0] = 0x7f // a length of about 2 GiB, with no payload behind it
	tests := []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"oversized", oversized, "frame larger than the limit"},
		{"bad checksum", badCRC, "has checksum"},
		{"unknown type", rawFrame(200, []byte("x"))[:frameHeaderLen], "unknown frame type 200"},
		{"undecodable", rawFrame(frameMessage, []byte{byte(raft.MsgApp), 1}), "corrupt encoding"},
		{"trailing bytes", rawFrame(frameMessage, append(encodeMsg(appMsg(2, 1, 2, nil)), 0)), "trailing bytes"},
		{"wrong type on stream", rawFrame(frameSnapChunk, []byte("x")), "snapshot chunk frame on a message stream"},
		{"to another node", rawFrame(frameMessage, encodeMsg(appMsg(2, 3, 2, nil))), "addressed to node 3"},
		{"forged sender", rawFrame(frameMessage, encodeMsg(appMsg(3, 1, 2, nil))), "claims to come from node 3"},
		{"local type", rawFrame(frameMessage, encodeMsg(raft.Message{Type: raft.MsgHup, From: 2, To: 1})), "MsgHup is local"},
		{"truncated", good[:len(good)-1], ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n1.h.count()
			conn := rawStream(t, n1, 2, streamMessages)
			defer conn.Close()
			// A good frame first: the stream works until the bad one.
			if _, err := conn.Write(append(append([]byte(nil), good...), tt.bytes...)); err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				// A stream cut short is the peer's business, not a bad frame.
				waitFor(t, 5*time.Second, "the good frame", func() bool { return n1.h.count() == before+1 })
				conn.Close()
				waitFor(t, 5*time.Second, "the stream to close", func() bool {
					return n1.logs.find("inbound stream", "stream ends inside a message frame") != ""
				})
				return
			}
			if reason := readRefusal(t, conn); !strings.Contains(reason, tt.want) {
				t.Fatalf("refusal %q, want it to contain %q", reason, tt.want)
			}
			if got := n1.h.count(); got != before+1 {
				t.Fatalf("handler got %d messages, want only the good one", got-before)
			}
			if got := n1.tr.Stats().StreamsBroken; got != uint64(i+1) {
				t.Fatalf("StreamsBroken %d, want %d", got, i+1)
			}
			if n1.logs.find("WARN", "closing inbound stream on a bad frame", tt.want) == "" {
				t.Fatalf("the reason was not logged")
			}
		})
	}
}

func TestBadHandshakesRefused(t *testing.T) {
	n1 := startNode(t, testConfig(1, knownPeers(t, 2), newLogCapture()), listen(t))
	valid := handshake{kind: streamMessages, clusterID: testClusterID, from: 2, to: 1}.marshal()
	with := func(i int, b byte) []byte {
		hs := valid
		hs[i] = b
		return hs[:]
	}
	fromZero := handshake{kind: streamMessages, clusterID: testClusterID, from: 0, to: 1}.marshal()
	fromSelf := handshake{kind: streamMessages, clusterID: testClusterID, from: 1, to: 1}.marshal()
	tests := []struct {
		name string
		hs   []byte
		want string
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n..."), "is this a raftkv peer port"},
		{"version", with(4, 9), "protocol version 9"},
		// Version 2 framed a snapshot's body differently (its size up front).
		{"previous version", with(4, protocolVersion-1), fmt.Sprintf("peer speaks protocol version %d, this node %d; run the same raftkv version on every node", protocolVersion-1, protocolVersion)},
		{"kind", with(5, 7), "unknown stream kind 7"},
		{"from zero", fromZero[:], "node id 0"},
		{"from self", fromSelf[:], "two nodes share an id"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", n1.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(tt.hs)
			if reason := readRefusal(t, conn); !strings.Contains(reason, tt.want) {
				t.Fatalf("refusal %q, want it to contain %q", reason, tt.want)
			}
			if got := n1.tr.Stats().StreamsRefused; got != uint64(i+1) {
				t.Fatalf("StreamsRefused %d, want %d", got, i+1)
			}
		})
	}
}

func TestNewerStreamReplacesOlder(t *testing.T) {
	n1 := startNode(t, testConfig(1, knownPeers(t, 2), newLogCapture()), listen(t))
	old := rawStream(t, n1, 2, streamMessages)
	defer old.Close()
	fresh := rawStream(t, n1, 2, streamMessages)
	defer fresh.Close()
	old.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := old.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("reading the older stream from the same peer: %v, want io.EOF: it should be closed", err)
	}
	fresh.Write(rawFrame(frameMessage, encodeMsg(appMsg(2, 1, 1, nil))))
	waitFor(t, 5*time.Second, "delivery on the newer stream", func() bool { return n1.h.count() == 1 })
}
