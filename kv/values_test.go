package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"
)

// TestValueLogsReadBackWhatWasAppended appends values of every size class (empty,
// small, across a chunk or buffer boundary, larger than a chunk or the buffer) and
// reads each back, before and after later appends.
func TestValueLogsReadBackWhatWasAppended(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			var log valueLog = newMemValues()
			if backend == "file" {
				fv, err := newFileValues(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				log = fv
			}
			defer log.close()
			rng := rand.New(rand.NewPCG(1, 2))
			sizes := []int{0, 1, 256, memChunkBytes / 4, memChunkBytes/4 + 1, memChunkBytes, fileValuesBufBytes / 2,
				fileValuesBufBytes/2 + 1, fileValuesBufBytes, 3 * fileValuesBufBytes}
			for range 300 {
				sizes = append(sizes, rng.IntN(40000))
			}
			var want [][]byte
			var refs []valueRef
			var total int64
			check := func(when string) {
				t.Helper()
				var buf []byte
				for i, ref := range refs {
					if got := log.read(ref); !bytes.Equal(got, want[i]) {
						t.Fatalf("%s: value %d (%d bytes) read back as %d bytes that differ", when, i, len(want[i]), len(got))
					}
					buf = log.readInto(ref, buf)
					if !bytes.Equal(buf, want[i]) {
						t.Fatalf("%s: readInto of value %d differs", when, i)
					}
				}
			}
			for i, n := range sizes {
				v := make([]byte, n)
				for j := range v {
					v[j] = byte(i + j)
				}
				refs = append(refs, log.append(v))
				total += int64(n)
				for j := range v {
					v[j] = 0xff
				}
				w := make([]byte, n)
				for j := range w {
					w[j] = byte(i + j)
				}
				if n == 0 {
					w = nil
				}
				want = append(want, w)
				if i%50 == 0 {
					check(fmt.Sprintf("after %d appends", i+1))
				}
			}
			check("at the end")
			if log.size() != total {
				t.Fatalf("size %d, appended %d", log.size(), total)
			}
		})
	}
}

// TestFileValuesKeepsRecentBuffers: the last fileValuesRecentBufs buffers written are
// read from memory (here, with the file closed), older values from the file, and a
// value read from memory stays as it was while later appends flush its buffer.
func TestFileValuesKeepsRecentBuffers(t *testing.T) {
	v, err := newFileValues(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	value := func(i int) []byte { return fmt.Appendf(nil, "%0250d", i) }
	var refs []valueRef
	held := map[int][]byte{}
	const n = (fileValuesRecentBufs + 3) * fileValuesBufBytes / 250
	for i := range n {
		refs = append(refs, v.append(value(i)))
		if i%1000 == 0 {
			held[i] = v.read(refs[i]) // from buf, then flushed under it
		}
	}
	for i, b := range held {
		if !bytes.Equal(b, value(i)) {
			t.Fatalf("value %d read before later appends changed to %q", i, b)
		}
	}
	if err := v.f.Close(); err != nil {
		t.Fatal(err)
	}
	inMemory := 0
	for i, ref := range refs {
		if v.inMemory(ref) == nil {
			if ref.off >= v.recent[0].off {
				t.Fatalf("value %d at offset %d is not in memory, though the oldest recent buffer starts at %d",
					i, ref.off, v.recent[0].off)
			}
			continue
		}
		inMemory++
		if got := v.read(ref); !bytes.Equal(got, value(i)) {
			t.Fatalf("value %d read from memory as %q", i, got)
		}
	}
	// A value never straddles two buffers: each full buffer holds 1,048 of them.
	if want := fileValuesRecentBufs * (fileValuesBufBytes / 250); inMemory < want {
		t.Fatalf("%d values in memory, want at least %d", inMemory, want)
	}
}

// TestFileBackedStoreLeavesNoFile: the value file has no name from the start, so
// neither a stop nor a crash leaves one; after Close reads fail cleanly.
func TestFileBackedStoreLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFileBackedStore(Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		mustPut(t, s, fmt.Sprintf("k%03d", i%100), fmt.Sprintf("%0200d", i))
	}
	if names, err := os.ReadDir(dir); err != nil || len(names) != 0 {
		t.Fatalf("data dir holds %v (%v), want nothing", names, err)
	}
	wantKV(t, "before Close", get(t, s, "k042", 0), "k042", fmt.Sprintf("%0200d", 1942), 44, 1944, 20)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Range(&RangeRequest{Key: []byte("k042")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Range after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
	if s.Revision() != 2001 {
		t.Fatalf("Revision after Close %d, want 2001", s.Revision())
	}
}

func TestFileBackedStoreNeedsItsDir(t *testing.T) {
	_, err := NewFileBackedStore(Config{}, t.TempDir()+"/missing")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("must exist")) {
		t.Fatalf("NewFileBackedStore in a missing dir: %v, want an error saying the dir must exist", err)
	}
}

// TestCompactionShrinksValueLog: once compaction drops more than it keeps, the log
// is rewritten with the live values only, shared ones (IgnoreValue) copied once,
// and every read still answers as before.
func TestCompactionShrinksValueLog(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			s := newTestStoreOn(t, Config{}, backend)
			value := bytes.Repeat([]byte("v"), 1000)
			for i := range 20000 {
				apply(t, s, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "k%02d", i%50), Value: value}})
			}
			// Ten revisions sharing the value of the one before them.
			mustGrant(t, s, 5, 60)
			for range 10 {
				apply(t, s, &Command{Put: &PutRequest{Key: []byte("k07"), IgnoreValue: true, Lease: 5}})
			}
			before := s.mu.st.vals.size()
			if before != 20000*1000 {
				t.Fatalf("value log holds %d bytes, want %d", before, 20000*1000)
			}
			wantBefore := mustRange(t, s, &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
			apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
			if after := s.mu.st.vals.size(); after != 50*1000 {
				t.Fatalf("after compaction the value log holds %d bytes, want the %d of the 50 live values", after, 50*1000)
			}
			got := mustRange(t, s, &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
			if len(got.Kvs) != 50 || fmt.Sprint(got.Kvs) != fmt.Sprint(wantBefore.Kvs) {
				t.Fatalf("reads changed across the rewrite:\n got  %v\n want %v", describe(got.Kvs), describe(wantBefore.Kvs))
			}
			// And the store keeps working on the new log.
			mustPut(t, s, "k07", "new")
			wantKV(t, "put after rewrite", get(t, s, "k07", 0), "k07", "new", 9, s.Revision(), 411)
		})
	}
}

// TestSnapshotAcrossBackends: a snapshot does not depend on where values are kept.
func TestSnapshotAcrossBackends(t *testing.T) {
	mem := newTestStoreOn(t, Config{}, "mem")
	file := newTestStoreOn(t, Config{}, "file")
	for i := range 3000 {
		cmd := &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "k%d", i%300), Value: fmt.Appendf(nil, "%0*d", i%700, i)}}
		apply(t, mem, cmd)
		apply(t, file, cmd)
	}
	a, err := mem.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := file.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("snapshots of the same state differ between backends (%d and %d bytes)", len(a), len(b))
	}
	restored := newTestStoreOn(t, Config{}, "file")
	if err := restored.Restore(a); err != nil {
		t.Fatal(err)
	}
	want := mustRange(t, mem, &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: 2000})
	got := mustRange(t, restored, &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: 2000})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored store reads differently at revision 2000")
	}
}

// TestKeyRevSize: a revision takes 24 bytes in the index, which holds one per write
// since the last compaction; the lease and the valueRef's fields share the space.
func TestKeyRevSize(t *testing.T) {
	if got := unsafe.Sizeof(keyRev{}); got != 24 {
		t.Fatalf("keyRev is %d bytes, want 24", got)
	}
	var leases leaseTable
	for _, id := range []int64{0, 7, -3, 7, 1 << 62} {
		if got := leaseID(leases.ids, leases.intern(id)); got != id {
			t.Fatalf("lease %d interned and read back as %d", id, got)
		}
	}
	if len(leases.ids) != 4 { // 0, 7, -3, 1<<62
		t.Fatalf("lease table holds %v, want each distinct id once after the no-lease 0", leases.ids)
	}
}
