package transport

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"raftkv/raft"
)

// streamHooks are Config.SnapshotStream and SnapshotReceiver for tests: the sender
// streams size pseudo-random bytes (failing after failAfter, if set), the receiver
// hashes what it reads and returns a file name as the Data, or fails after
// refuseAfter bytes, or returns early after returnAfter.
type streamHooks struct {
	size      int64
	seed      uint64
	failAfter int64 // >0: the stream's read fails after this many bytes
	// readGate, if not nil, is closed by the receiver once it has read gateAt bytes.
	gateAt   int64
	readGate chan struct{}
	// refuseAfter >0: the receiver returns an error after reading this many bytes;
	// returnAfter >0: it returns success after this many.
	refuseAfter int64
	returnAfter int64

	opened, closed atomic.Int32
	sentHash       hash.Hash

	mu          sync.Mutex
	headerData  []byte
	receivedN   int64
	receivedSum []byte
	receiverErr error
}

func newStreamHooks(t testing.TB, size int64) *streamHooks {
	seed := rand.Uint64()
	t.Logf("snapshot body seed %d (%d bytes)", seed, size)
	return &streamHooks{size: size, seed: seed, sentHash: sha256.New()}
}

// install sets both hooks on c.
func (h *streamHooks) install(c *Config) {
	c.SnapshotStream = h.stream
	c.SnapshotReceiver = h.receive
}

// closingReader is the stream SnapshotStream returns: it fails after failAfter bytes
// if that is set, and counts its Close.
type closingReader struct {
	io.Reader
	h *streamHooks
	n int64
}

func (r *closingReader) Read(p []byte) (int, error) {
	if r.h.failAfter > 0 && r.n >= r.h.failAfter {
		return 0, errors.New("pebble: sstable 000042.sst: checksum mismatch")
	}
	if r.h.failAfter > 0 {
		p = p[:min(int64(len(p)), r.h.failAfter-r.n)]
	}
	n, err := r.Reader.Read(p)
	r.n += int64(n)
	return n, err
}

func (r *closingReader) Close() error {
	r.h.closed.Add(1)
	return nil
}

func (h *streamHooks) stream(to uint64, snap raft.Snapshot) (io.ReadCloser, error) {
	h.opened.Add(1)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], h.seed)
	body := io.TeeReader(io.LimitReader(rand.NewChaCha8(key), h.size), h.sentHash)
	return &closingReader{Reader: body, h: h}, nil
}

func (h *streamHooks) receive(from uint64, snap raft.Snapshot, body io.Reader) ([]byte, error) {
	sum := sha256.New()
	var r io.Reader = body
	limit := int64(-1)
	switch {
	case h.refuseAfter > 0:
		limit = h.refuseAfter
	case h.returnAfter > 0:
		limit = h.returnAfter
	}
	if limit >= 0 {
		r = io.LimitReader(body, limit)
	}
	if h.readGate != nil {
		// Read up to gateAt, say so, then go on.
		n, err := io.Copy(sum, io.LimitReader(r, h.gateAt))
		close(h.readGate)
		if err == nil {
			var rest int64
			rest, err = io.Copy(sum, r)
			n += rest
		}
		return h.received(snap, n, sum, err)
	}
	n, err := io.Copy(sum, r)
	if err == nil && h.refuseAfter > 0 {
		err = errors.New("disk full: 0 bytes free on /data; free some space")
	}
	return h.received(snap, n, sum, err)
}

func (h *streamHooks) received(snap raft.Snapshot, n int64, sum hash.Hash, err error) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.headerData = snap.Data
	h.receivedN = n
	h.receiverErr = err
	if err != nil {
		return nil, err
	}
	h.receivedSum = sum.Sum(nil)
	return []byte("snap-0000000000000064.pebble"), nil
}

func (h *streamHooks) result() (n int64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.receivedN, h.receiverErr
}

// isIntact reports whether the receiver's hash of the body is the sender's. Call it
// once the sender has reported the snapshot.
func (h *streamHooks) isIntact() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.receivedSum != nil && bytes.Equal(h.receivedSum, h.sentHash.Sum(nil))
}

// waitReport waits for node's one ReportSnapshot and returns whether it failed.
func waitReport(t testing.TB, n *testNode) bool {
	t.Helper()
	waitFor(t, 30*time.Second, "the snapshot report", func() bool { return len(n.h.snapshotReports()) > 0 })
	reports := n.h.snapshotReports()
	if len(reports) != 1 {
		t.Fatalf("%d snapshot reports, want 1: %+v", len(reports), reports)
	}
	return reports[0].isFailed
}

// TestSnapshotStreamBoundedMemory streams a body of hundreds of MiB through both
// hooks and checks that it arrives whole (its hash), that the message delivered
// carries what the receiver returned, and that the two ends together allocated no
// more than four chunks: neither held the body.
func TestSnapshotStreamBoundedMemory(t *testing.T) {
	const size = 320 << 20
	hooks := newStreamHooks(t, size)
	nodes := startCluster(t, []uint64{1, 2}, hooks.install)
	waitConnected(t, nodes)
	m := snapMsg(1, 2, []byte("engine snapshot at applied index 100"))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	nodes[1].tr.Send([]raft.Message{m})
	isFailed := waitReport(t, nodes[1])
	runtime.ReadMemStats(&after)
	if isFailed {
		t.Fatalf("the snapshot failed")
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	chunk := uint64(DefaultSnapshotChunkBytes)
	t.Logf("streaming %d MiB allocated %d KiB on both ends together (chunk %d KiB)", size>>20, allocated>>10, chunk>>10)
	if allocated > 4*chunk {
		t.Fatalf("streaming %d MiB allocated %d KiB, want at most 4 chunks (%d KiB)", size>>20, allocated>>10, 4*chunk>>10)
	}

	n, err := hooks.result()
	if err != nil || n != size {
		t.Fatalf("receiver read %d bytes, err %v; want %d bytes", n, err, size)
	}
	if !hooks.isIntact() {
		t.Fatalf("the body's SHA-256 differs")
	}
	if hooks.mu.Lock(); string(hooks.headerData) != string(m.Snapshot.Data) {
		t.Fatalf("the receiver saw header Data %q, want the sender's %q", hooks.headerData, m.Snapshot.Data)
	}
	hooks.mu.Unlock()
	waitFor(t, 5*time.Second, "the delivery", func() bool { return nodes[2].h.count() == 1 })
	got := nodes[2].h.messages()[0]
	if got.Type != raft.MsgSnap || got.From != 1 || got.Snapshot.Index != 100 || got.Snapshot.Term != 2 ||
		string(got.Snapshot.Data) != "snap-0000000000000064.pebble" {
		t.Fatalf("delivered %v with snapshot %+v, want the MsgSnap at index 100 carrying the receiver's Data", got, got.Snapshot)
	}
	if hooks.opened.Load() != 1 || hooks.closed.Load() != 1 {
		t.Fatalf("stream opened %d times, closed %d, want once each", hooks.opened.Load(), hooks.closed.Load())
	}
	sent, received := nodes[1].tr.Stats().Peers[2], nodes[2].tr.Stats().Peers[1]
	if sent.SentBytes < size || received.ReceivedBytes != sent.SentBytes {
		t.Fatalf("sender counts %d bytes sent, receiver %d received; want equal and at least the body's %d", sent.SentBytes, received.ReceivedBytes, size)
	}
	if sent.SnapshotsSent != 1 || nodes[2].tr.Stats().SnapshotsReceived != 1 {
		t.Fatalf("sender stats %+v, receiver %+v", sent, nodes[2].tr.Stats())
	}
	if nodes[1].logs.find("INFO", "snapshot sent", "bytes=335544320") == "" || nodes[2].logs.find("INFO", "snapshot received", "bytes=335544320") == "" {
		t.Fatalf("the snapshot's size was not logged on both ends")
	}
}

// A receiver that fails part way refuses the snapshot: the sender stops sending,
// reports failure, and logs the receiver's reason; nothing is delivered.
func TestSnapshotReceiverErrorFailsSnapshot(t *testing.T) {
	const size = 64 << 20
	hooks := newStreamHooks(t, size)
	hooks.refuseAfter = 3 << 20
	nodes := startCluster(t, []uint64{1, 2}, hooks.install)
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if !waitReport(t, nodes[1]) {
		t.Fatalf("a snapshot the receiver refused was reported sent")
	}
	if line := nodes[1].logs.find("WARN", "sending snapshot failed", "disk full: 0 bytes free on /data"); line == "" {
		t.Fatalf("the sender did not log the receiver's reason")
	}
	if st := nodes[1].tr.Stats().Peers[2]; st.SentBytes >= size/2 {
		t.Fatalf("the sender sent %d bytes of a %d-byte body the receiver refused after %d: it should stop", st.SentBytes, size, hooks.refuseAfter)
	}
	if nodes[2].h.count() != 0 || nodes[2].tr.Stats().SnapshotsRefused != 1 {
		t.Fatalf("receiver delivered %d messages, refused %d snapshots; want 0 and 1", nodes[2].h.count(), nodes[2].tr.Stats().SnapshotsRefused)
	}
	waitFor(t, 5*time.Second, "the stream to be closed", func() bool { return hooks.closed.Load() == 1 })
}

// A stream that fails part way aborts the snapshot: the receiver's body read fails
// with the sender's reason, nothing is delivered, and the sender reports failure.
func TestSnapshotStreamErrorAbortsBody(t *testing.T) {
	hooks := newStreamHooks(t, 64<<20)
	hooks.failAfter = 5<<20 + 17
	nodes := startCluster(t, []uint64{1, 2}, hooks.install)
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if !waitReport(t, nodes[1]) {
		t.Fatalf("a snapshot whose stream failed was reported sent")
	}
	if nodes[1].logs.find("WARN", "sending snapshot failed", "checksum mismatch") == "" {
		t.Fatalf("the sender did not log its stream's error")
	}
	waitFor(t, 5*time.Second, "the receiver's refusal", func() bool { return nodes[2].tr.Stats().SnapshotsRefused == 1 })
	n, err := hooks.result()
	if !errors.Is(err, ErrSnapshotAborted) || !strings.Contains(err.Error(), "checksum mismatch") || n != hooks.failAfter {
		t.Fatalf("receiver read %d bytes, then %v; want %d bytes, then ErrSnapshotAborted with the sender's reason", n, err, hooks.failAfter)
	}
	if nodes[2].h.count() != 0 {
		t.Fatalf("an aborted snapshot was delivered")
	}
	if hooks.closed.Load() != 1 {
		t.Fatalf("the failed stream was closed %d times, want once", hooks.closed.Load())
	}
}

// A streamed body, of no size known up front, is counted against the receiver's
// MaxSnapshotBytes as it comes and refused once over it.
func TestStreamedSnapshotOverLimitRefused(t *testing.T) {
	const limit = 2 << 20
	hooks := newStreamHooks(t, 16<<20)
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) {
		hooks.install(c)
		c.MaxSnapshotBytes = limit
	})
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if !waitReport(t, nodes[1]) {
		t.Fatalf("a snapshot over the receiver's limit was reported sent")
	}
	if nodes[1].logs.find("sending snapshot failed", "node 2 accepts at most 2097152; raise its MaxSnapshotBytes") == "" {
		t.Fatalf("the sender did not log the receiver's reason")
	}
	n, err := hooks.result()
	if !errors.Is(err, ErrSnapshotTooLarge) || n > limit {
		t.Fatalf("receiver read %d bytes, then %v; want at most %d, then ErrSnapshotTooLarge", n, err, limit)
	}
	if nodes[2].h.count() != 0 {
		t.Fatalf("a snapshot over the limit was delivered")
	}
}

// A receiver that returns success without reading the whole body is refused: the
// rest of the body may be what it needed.
func TestSnapshotReceiverMustReadTheWholeBody(t *testing.T) {
	hooks := newStreamHooks(t, 8<<20)
	hooks.returnAfter = 1 << 20
	nodes := startCluster(t, []uint64{1, 2}, hooks.install)
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if !waitReport(t, nodes[1]) {
		t.Fatalf("a snapshot whose receiver stopped early was reported sent")
	}
	if nodes[1].logs.find("sending snapshot failed", "SnapshotReceiver returned after reading 1048576 bytes") == "" {
		t.Fatalf("the sender did not log why")
	}
	if nodes[2].h.count() != 0 {
		t.Fatalf("a snapshot read in part was delivered")
	}
}

// A receiver that reads the body to the last byte but not to io.EOF (it stops at
// its own end marker) is fine: the transport reads and checks the end frame.
func TestSnapshotReceiverNeedNotReadEOF(t *testing.T) {
	hooks := newStreamHooks(t, 3<<20+5)
	hooks.returnAfter = hooks.size
	nodes := startCluster(t, []uint64{1, 2}, hooks.install)
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if waitReport(t, nodes[1]) {
		t.Fatalf("a snapshot read to its last byte failed")
	}
	if !hooks.isIntact() {
		t.Fatalf("the body's SHA-256 differs")
	}
}

// cutProxy forwards connections to target until cut, which closes every one of them
// and refuses new ones.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	isCut  bool
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{l: listen(t), target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.cut()
		p.l.Close()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.isCut {
			in.Close()
			out.Close()
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); io.Copy(out, in); out.Close() }()
		go func() { defer p.wg.Done(); io.Copy(in, out); in.Close() }()
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	for _, c := range p.conns {
		c.Close()
	}
}

// A connection cut in the middle of the body fails the snapshot on both ends: the
// sender reports failure, the receiver's body read fails and nothing is delivered.
func TestSnapshotStreamCutMidway(t *testing.T) {
	hooks := newStreamHooks(t, 1<<30)
	hooks.gateAt = 4 << 20
	hooks.readGate = make(chan struct{})
	l1, l2 := listen(t), listen(t)
	proxy := newCutProxy(t, l2.Addr().String())
	cfg1 := testConfig(1, map[uint64]string{2: proxy.addr()}, newLogCapture())
	cfg2 := testConfig(2, map[uint64]string{1: l1.Addr().String()}, newLogCapture())
	hooks.install(&cfg1)
	hooks.install(&cfg2)
	n1, n2 := startNode(t, cfg1, l1), startNode(t, cfg2, l2)

	n1.tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	select {
	case <-hooks.readGate:
	case <-time.After(30 * time.Second):
		t.Fatalf("the receiver did not get %d bytes", hooks.gateAt)
	}
	proxy.cut()
	if !waitReport(t, n1) {
		t.Fatalf("a snapshot cut midway was reported sent")
	}
	waitFor(t, 10*time.Second, "the receiver's refusal", func() bool { return n2.tr.Stats().SnapshotsRefused == 1 })
	n, err := hooks.result()
	if err == nil || n >= hooks.size {
		t.Fatalf("receiver read %d bytes, then %v; want a read error part way", n, err)
	}
	t.Logf("the receiver's body read failed after %d bytes: %v", n, err)
	if n2.h.count() != 0 {
		t.Fatalf("a snapshot cut midway was delivered")
	}
	if hooks.closed.Load() != 1 {
		t.Fatalf("the stream was closed %d times, want once", hooks.closed.Load())
	}
}

// A snapshot to a peer that is down fails without opening the stream.
func TestStreamedSnapshotToDownPeerFails(t *testing.T) {
	hooks := newStreamHooks(t, 1<<20)
	cfg := testConfig(1, map[uint64]string{2: deadAddr(t)}, newLogCapture())
	hooks.install(&cfg)
	n1 := startNode(t, cfg, listen(t))
	n1.tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if !waitReport(t, n1) {
		t.Fatalf("a snapshot to a down peer was reported sent")
	}
	if hooks.opened.Load() != 0 {
		t.Fatalf("the stream was opened for a peer that is down")
	}
}

// Hooks on one end only: the receiver refuses at the header, saying what to set,
// and the sender never opens its stream.
func TestSnapshotHooksOnOneEndRefused(t *testing.T) {
	hooks := newStreamHooks(t, 1<<20)
	nodes := startCluster(t, []uint64{1, 2}, func(c *Config) {
		if c.ID == 1 {
			hooks.install(c)
		}
	})
	nodes[1].tr.Send([]raft.Message{snapMsg(1, 2, []byte("marker"))})
	if !waitReport(t, nodes[1]) {
		t.Fatalf("a streamed snapshot to a node without a SnapshotReceiver was reported sent")
	}
	if nodes[1].logs.find("sending snapshot failed", "set both SnapshotStream and SnapshotReceiver on every member") == "" {
		t.Fatalf("the sender did not log what to set")
	}
	if hooks.opened.Load() != 0 || nodes[2].h.count() != 0 {
		t.Fatalf("stream opened %d times, %d messages delivered; want neither", hooks.opened.Load(), nodes[2].h.count())
	}
}

// BenchmarkSnapshot sends a 64 MiB snapshot over loopback, as Data (the hooks nil:
// the receiver collects it) and through the hooks (the receiver hashes it as it
// comes). MB/s is the body's; B/op shows what each way holds in memory.
func BenchmarkSnapshot(b *testing.B) {
	const size = 64 << 20
	for _, isStreamed := range []bool{false, true} {
		name := "data"
		if isStreamed {
			name = "stream"
		}
		b.Run(name, func(b *testing.B) {
			hooks := newStreamHooks(b, size)
			nodes := startCluster(b, []uint64{1, 2}, func(c *Config) {
				if isStreamed {
					hooks.install(c)
				}
			})
			m := snapMsg(1, 2, []byte("marker"))
			if !isStreamed {
				m = snapMsg(1, 2, make([]byte, size))
			}
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				nodes[1].tr.Send([]raft.Message{m})
				waitFor(b, time.Minute, "the snapshot report", func() bool { return len(nodes[1].h.snapshotReports()) == i+1 })
			}
			b.StopTimer()
			for _, r := range nodes[1].h.snapshotReports() {
				if r.isFailed {
					b.Fatalf("a snapshot failed")
				}
			}
		})
	}
}
