package transport

import (
	"bufio"
	"bytes"
	"hash/crc32"
	"io"
	"runtime"
	"testing"
)

// TestSnapshotReceiveGrowsItsBufferOnce: a receiver that grew its buffer by append
// as chunks came in copied a 655 MB snapshot about four times over, each copy a
// pause of its reading goroutine, on a loaded host seconds long: the sender's
// writes then stayed unacknowledged past the 3 s TCP_USER_TIMEOUT (AckTimeout) and
// it failed with "write: connection timed out", and the 655 MB went again. Once the
// first initialSnapshotBuffer bytes have come (the announced size is only a claim
// until then), the receiver makes room for the whole announced size at once: it
// allocates about the snapshot's size plus that first buffer, not four times it.
func TestSnapshotReceiveGrowsItsBufferOnce(t *testing.T) {
	const size = 2*initialSnapshotBuffer + 3<<20 // three growths by append
	chunk := bytes.Repeat([]byte{0x5a}, 1<<20)
	tr, err := New(Config{ID: 1, ClusterID: 1, MaxSnapshotBytes: 1 << 30}, nopHandler{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		m := snapMsg(2, 1, nil)
		writeFrame(bw, frameSnapHeader, encodeSnapHeader(m, snapBodyData, size))
		var crc uint32
		for left := size; left > 0; {
			c := chunk[:min(left, len(chunk))]
			writeFrame(bw, frameSnapChunk, c)
			crc = crc32.Update(crc, castagnoli, c)
			left -= len(c)
		}
		writeFrame(bw, frameSnapEnd, encodeSnapEnd(size, crc))
		pw.CloseWithError(bw.Flush())
	}()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, _, err := tr.readSnapshot(bufio.NewReader(pr), 2, func() error { return nil })
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Snapshot.Data) != size {
		t.Fatalf("received %d bytes, want %d", len(m.Snapshot.Data), size)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	if limit := uint64(size + initialSnapshotBuffer + 16<<20); allocated > limit {
		t.Fatalf("receiving %d MiB allocated %d MiB, want at most %d MiB (the data, the first buffer, some slack)",
			size>>20, allocated>>20, limit>>20)
	}
	t.Logf("receiving %d MiB allocated %d MiB", size>>20, allocated>>20)
}
