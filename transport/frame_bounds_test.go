package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// What a peer that is not well-behaved can make a node hold: memory for the bytes it
// sent, not for what its frame headers claim, and a stream only while its frames,
// once begun, keep coming.

// stalledHeader returns a message frame header claiming length bytes, followed by
// sent bytes of the payload.
func stalledHeader(length, sent int) []byte {
	b := make([]byte, frameHeaderLen+sent)
	binary.BigEndian.PutUint32(b, uint32(length))
	b[4] = byte(frameMessage)
	return b
}

// A header claiming the frame limit costs the reader one step of the payload, not
// the whole claim, until the bytes come.
func TestStalledHeaderAllocatesLittle(t *testing.T) {
	const claimed = DefaultMaxFrameBytes
	in := stalledHeader(claimed, 100)
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("buffered=%v", buffered), func(t *testing.T) {
			var r io.Reader = bytes.NewReader(in)
			if buffered {
				r = bufio.NewReaderSize(r, readBufferBytes)
			}
			fr := frameReader{r: r, maxPayload: DefaultMaxFrameBytes}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _, err := fr.next()
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrCorruptFrame) || !strings.Contains(err.Error(), "stream ends inside") {
				t.Fatalf("next: %v, want the stream to end inside the frame", err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > uint64(fr.payloadStep())+64<<10 {
				t.Fatalf("reading a header that claims %d bytes and 100 bytes of payload allocated %d bytes", claimed, got)
			}
		})
	}
}

// Frames around and far above the step arrive whole, however the reads split them.
func TestLargeFramesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const limit = 1 << 20
	step := (&frameReader{maxPayload: limit}).payloadStep()
	sizes := []int{0, 1, step - 1, step, step + 1, limit - 3, limit}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	var payloads [][]byte
	for _, n := range sizes {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		payloads = append(payloads, p)
		if err := writeFrame(bw, frameMessage, p); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	for _, wrap := range []struct {
		name string
		r    func(io.Reader) io.Reader
	}{
		{"plain", func(r io.Reader) io.Reader { return r }},
		{"half reads", func(r io.Reader) io.Reader { return iotest.HalfReader(r) }},
		{"buffered", func(r io.Reader) io.Reader { return bufio.NewReaderSize(iotest.HalfReader(r), readBufferBytes) }},
	} {
		t.Run(wrap.name, func(t *testing.T) {
			fr := frameReader{r: wrap.r(bytes.NewReader(buf.Bytes())), maxPayload: limit}
			for i, want := range payloads {
				_, got, err := fr.next()
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("frame %d of %d bytes: got %d bytes, err %v", i, len(want), len(got), err)
				}
			}
			if _, _, err := fr.next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

// The auditor's repro, scaled down: streams from members that each send a header
// claiming the frame limit and stall. The node's heap grows by what they sent, not
// by what they claimed.
func TestStalledHeadersBoundedHeap(t *testing.T) {
	const streams = 8
	ids := make([]uint64, streams)
	for i := range ids {
		ids[i] = uint64(2 + i)
	}
	cfg := testConfig(1, knownPeers(t, ids...), newLogCapture())
	cfg.MaxFrameBytes = 4 << 20 // the server's, at the default --max-request-bytes
	n1 := startNode(t, cfg, listen(t))
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for _, id := range ids {
		conn := rawStream(t, n1, id, streamMessages)
		defer conn.Close()
		if _, err := conn.Write(stalledHeader(cfg.MaxFrameBytes, 1<<10)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the streams accepted", func() bool { return n1.tr.Stats().StreamsAccepted == streams })
	var grown uint64
	for range 10 {
		time.Sleep(30 * time.Millisecond)
		grown = max(grown, heap()-min(heap(), before))
	}
	// 8 read buffers of 64 KiB and 8 payload steps of 2 MiB are 16.5 MiB; the
	// claims are 32 MiB.
	if grown > 24<<20 {
		t.Fatalf("%d streams stalled after a header claiming %d bytes grew the heap by %d MiB", streams, cfg.MaxFrameBytes, grown>>20)
	}
}

// A stream that stops in the middle of a frame, in its header or its payload, is
// closed within IOTimeout; one that is idle between frames stays up however long it
// says nothing.
func TestStalledFrameClosesStream(t *testing.T) {
	const ioTimeout = 300 * time.Millisecond
	cfg := testConfig(1, knownPeers(t, 2, 3, 4), newLogCapture())
	cfg.IOTimeout = ioTimeout
	n1 := startNode(t, cfg, listen(t))
	frame := func(from, index uint64) []byte {
		return rawFrame(frameMessage, encodeMsg(appMsg(from, 1, index, []byte("x"))))
	}

	inPayload := rawStream(t, n1, 2, streamMessages)
	defer inPayload.Close()
	inHeader := rawStream(t, n1, 3, streamMessages)
	defer inHeader.Close()
	idle := rawStream(t, n1, 4, streamMessages)
	defer idle.Close()

	// Each stalls after a good frame: only the stall counts.
	started := time.Now()
	inPayload.Write(append(frame(2, 1), stalledHeader(1<<20, 10)...))
	inHeader.Write(append(frame(3, 1), frame(3, 2)[:5]...))
	idle.Write(frame(4, 1))
	for _, conn := range []net.Conn{inPayload, inHeader} {
		conn.SetReadDeadline(time.Now().Add(10 * ioTimeout))
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("reading a stream stalled in a frame: %v, want io.EOF: the node should close it", err)
		}
	}
	if took := time.Since(started); took < ioTimeout {
		t.Fatalf("stalled streams closed after %v, before IOTimeout %v", took, ioTimeout)
	}
	if n1.logs.find("WARN", "stopped in the middle of a frame", "peer=2") == "" ||
		n1.logs.find("WARN", "stopped in the middle of a frame", "peer=3") == "" {
		t.Fatal("the node did not log why it closed the stalled streams")
	}

	// The idle stream has been quiet for more than IOTimeout by now, and longer.
	time.Sleep(2 * ioTimeout)
	if _, err := idle.Write(frame(4, 2)); err != nil {
		t.Fatalf("the idle stream was closed: %v", err)
	}
	waitFor(t, 5*time.Second, "both messages on the idle stream", func() bool {
		var n int
		for _, m := range n1.h.messages() {
			if m.From == 4 {
				n++
			}
		}
		return n == 2
	})
	if got := n1.tr.Stats().StreamsBroken; got != 2 {
		t.Fatalf("StreamsBroken %d, want the 2 stalled streams", got)
	}
}
