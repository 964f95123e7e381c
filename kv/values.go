package kv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// A store keeps the bytes of its values apart from its index, in a valueLog: an
// append-only log of byte strings that the index points into with valueRefs. The
// index then holds no pointer per revision, so the garbage collector has nothing to
// scan in it, and the values can live outside the Go heap altogether (fileValues),
// which is what keeps a store holding every revision of a busy key space from
// growing the process by twice its size (the heap plus the collector's headroom).
//
// The log is not state: it is rebuilt from a snapshot and the raft log like the
// rest of the store, so it needs no durability and is never read back after a
// restart. Which log a replica uses changes nothing that Apply or a read returns.

// valueRef locates a value in the store's valueLog. The zero valueRef is the empty
// value, which takes no room in the log.
type valueRef struct {
	off int64
	n   uint32
}

// valueLog holds the bytes of a store's values. It is used under the Store's lock:
// append and close with it held for writing, read with it held at least for reading,
// so reads may run concurrently with each other but never with append.
type valueLog interface {
	valueReader
	// append stores b and returns where it went: its offset is the number of
	// bytes appended before it. It keeps no reference to b.
	append(b []byte) valueRef
	// read returns the value at ref. The slice may alias the log's memory, so it is
	// read-only; values are never modified once appended.
	read(ref valueRef) []byte
	// readInto is read for a caller that is done with the value before its next
	// read: it may return buf, grown as needed, instead of allocating.
	readInto(ref valueRef, buf []byte) []byte
	// size returns the bytes appended so far, garbage included.
	size() int64
	// frozen returns a reader of the values appended so far that may be used
	// without the Store's lock, concurrently with later appends, until the log is
	// closed or rewritten (which the Store holds off while a SnapshotView is out).
	frozen() valueReader
	// close releases the log; nothing may use it afterwards.
	close() error
}

// valueReader reads values; readInto is valueLog's.
type valueReader interface {
	readInto(ref valueRef, buf []byte) []byte
	// writeRange writes the first n bytes appended (n at most size), in order:
	// every value at its position, which is its valueRef's offset.
	writeRange(w io.Writer, n int64) error
}

// ErrClosed is returned by reads of a Store after Close.
var ErrClosed = errors.New("kv: store is closed")

// memValues is the valueLog on the Go heap: values packed into chunks, so that a
// revision costs no allocation of its own and the chunks hold no pointers. Like the
// file, it numbers values by their position in the sequence of bytes appended, so
// both logs give the same valueRefs (and snapshots the same bytes).
type memValues struct {
	// chunks hold the bytes appended, in order; starts[i] is the position of
	// chunks[i][0]. Only the last chunk is appended to.
	chunks [][]byte
	starts []int64
	// total is the bytes appended, which size reports.
	total int64
}

// memChunkBytes is the size of a chunk of memValues. A value larger than a quarter
// of it gets a chunk of its own, so a chunk wastes at most a quarter at its end.
const memChunkBytes = 1 << 20

func newMemValues() *memValues { return &memValues{} }

func (m *memValues) append(b []byte) valueRef {
	if len(b) == 0 {
		return valueRef{}
	}
	ref := valueRef{off: m.total, n: uint32(len(b))}
	last := len(m.chunks) - 1
	switch {
	case len(b) > memChunkBytes/4:
		// Full from the start, so the next value opens a chunk after it.
		m.chunks = append(m.chunks, append([]byte(nil), b...))
		m.starts = append(m.starts, m.total)
	case last < 0 || len(m.chunks[last])+len(b) > cap(m.chunks[last]):
		m.chunks = append(m.chunks, append(make([]byte, 0, memChunkBytes), b...))
		m.starts = append(m.starts, m.total)
	default:
		m.chunks[last] = append(m.chunks[last], b...)
	}
	m.total += int64(len(b))
	return ref
}

func (m *memValues) read(ref valueRef) []byte {
	if ref.n == 0 {
		return nil
	}
	i := sort.Search(len(m.starts), func(i int) bool { return m.starts[i] > ref.off }) - 1
	pos := int(ref.off - m.starts[i])
	end := pos + int(ref.n)
	return m.chunks[i][pos:end:end]
}

func (m *memValues) readInto(ref valueRef, _ []byte) []byte { return m.read(ref) }
func (m *memValues) size() int64                            { return m.total }

// frozen copies the chunk list: appends after it write past the ends of the
// chunks' copies, or into new chunks, never into what the copy reads.
func (m *memValues) frozen() valueReader {
	return &memValues{chunks: append([][]byte(nil), m.chunks...), starts: append([]int64(nil), m.starts...), total: m.total}
}

func (m *memValues) writeRange(w io.Writer, n int64) error {
	for _, c := range m.chunks {
		if n <= 0 {
			break
		}
		c = c[:min(int64(len(c)), n)]
		if _, err := w.Write(c); err != nil {
			return err
		}
		n -= int64(len(c))
	}
	return nil
}

func (m *memValues) close() error { m.chunks, m.starts = nil, nil; return nil }

// fileValues is the valueLog in a file, so values take page cache, which the kernel
// reclaims as it needs to, rather than resident memory. The file is unlinked as
// soon as it is created: it has no name to leave behind, whether the process stops
// or crashes, and its space returns to the file system when the descriptor closes.
//
// Appends gather in buf and reach the file a buffer at a time. The last few buffers
// written stay in memory (recent), since reads favour what was written lately: a
// value still in buf or recent is read without a system call or a copy, which was 4%
// of a leader's CPU under 100 clients of gets. A failed write or read panics: the store
// cannot carry on without its values, and a restart rebuilds them from the raft
// log (the file system's errors are as fatal here as a failed fsync is to storage).
type fileValues struct {
	f    *os.File
	path string // for messages; the name no longer exists
	// flushed is the bytes written to the file; buf holds those after it.
	flushed int64
	buf     []byte
	// recent holds the last buffers written to the file, oldest first. A buffer is
	// never written to again once it leaves buf, so reads may return slices of it.
	recent []recentValues
}

// recentValues is a buffer of fileValues already in the file, at offset off.
type recentValues struct {
	off int64
	b   []byte
}

const (
	// fileValuesBufBytes is the size of fileValues' write buffer.
	fileValuesBufBytes = 256 << 10
	// fileValuesRecentBufs is how many written buffers stay in memory: 512 KiB.
	fileValuesRecentBufs = 2
)

// newFileValues creates an unlinked value file in dir.
func newFileValues(dir string) (*fileValues, error) {
	f, err := os.CreateTemp(dir, ".kv-values-*")
	if err != nil {
		return nil, fmt.Errorf("kv: creating the value file in %q: %w; the directory must exist and be writable", dir, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("kv: unlinking the value file %q: %w", f.Name(), err)
	}
	return &fileValues{f: f, path: f.Name(), buf: make([]byte, 0, fileValuesBufBytes)}, nil
}

func (v *fileValues) append(b []byte) valueRef {
	if len(b) == 0 {
		return valueRef{}
	}
	if len(v.buf)+len(b) > cap(v.buf) {
		v.flush()
	}
	ref := valueRef{off: v.flushed + int64(len(v.buf)), n: uint32(len(b))}
	if len(b) > cap(v.buf)/2 {
		v.writeAt(b, v.flushed) // buf is empty: flush ran
		v.flushed += int64(len(b))
		return ref
	}
	v.buf = append(v.buf, b...)
	return ref
}

func (v *fileValues) flush() {
	if len(v.buf) == 0 {
		return
	}
	v.writeAt(v.buf, v.flushed)
	if len(v.recent) == fileValuesRecentBufs {
		v.recent = append(v.recent[:0], v.recent[1:]...)
	}
	v.recent = append(v.recent, recentValues{off: v.flushed, b: v.buf})
	v.flushed += int64(len(v.buf))
	// A new buffer, not the old one emptied: reads may hold slices of the old one.
	v.buf = make([]byte, 0, fileValuesBufBytes)
}

func (v *fileValues) writeAt(b []byte, off int64) {
	if _, err := v.f.WriteAt(b, off); err != nil {
		panic(fmt.Sprintf("kv: writing %d bytes at offset %d of the value file %s: %v", len(b), off, v.path, err))
	}
}

func (v *fileValues) read(ref valueRef) []byte {
	if ref.n == 0 {
		return nil
	}
	if b := v.inMemory(ref); b != nil {
		return b
	}
	return v.readFile(ref, make([]byte, ref.n))
}

// inMemory returns the value at ref if buf or recent holds it, else nil. The slice
// is read-only: bytes before len(buf) are never overwritten, since a flush replaces
// the buffer rather than reusing it.
func (v *fileValues) inMemory(ref valueRef) []byte {
	end := ref.off + int64(ref.n)
	if ref.off >= v.flushed {
		return v.buf[ref.off-v.flushed : end-v.flushed : end-v.flushed]
	}
	for i := len(v.recent) - 1; i >= 0; i-- {
		r := v.recent[i]
		if ref.off >= r.off {
			if end <= r.off+int64(len(r.b)) {
				return r.b[ref.off-r.off : end-r.off : end-r.off]
			}
			return nil
		}
	}
	return nil
}

func (v *fileValues) readInto(ref valueRef, buf []byte) []byte {
	if ref.n == 0 {
		return nil
	}
	if cap(buf) < int(ref.n) {
		buf = make([]byte, ref.n)
	}
	buf = buf[:ref.n]
	if b := v.inMemory(ref); b != nil {
		copy(buf, b)
		return buf
	}
	return v.readFile(ref, buf)
}

// readFile reads the value at ref from the file into buf, ref.n bytes long.
func (v *fileValues) readFile(ref valueRef, buf []byte) []byte {
	if _, err := v.f.ReadAt(buf, ref.off); err != nil {
		panic(fmt.Sprintf("kv: reading %d bytes at offset %d of the value file %s: %v", ref.n, ref.off, v.path, err))
	}
	return buf
}

func (v *fileValues) size() int64 { return v.flushed + int64(len(v.buf)) }

// valueRangeChunk is how much fileValues.writeRange reads at a time.
const valueRangeChunk = 1 << 20

func (v *fileValues) writeRange(w io.Writer, n int64) error {
	buf := make([]byte, min(n, valueRangeChunk))
	for off := int64(0); off < n; {
		k := min(n-off, valueRangeChunk)
		if off < v.flushed {
			k = min(k, v.flushed-off)
			if _, err := v.f.ReadAt(buf[:k], off); err != nil {
				panic(fmt.Sprintf("kv: reading %d bytes at offset %d of the value file %s: %v", k, off, v.path, err))
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
		} else if _, err := w.Write(v.buf[off-v.flushed : off-v.flushed+k]); err != nil {
			return err
		}
		off += k
	}
	return nil
}

// frozen writes out the buffer, so that every value appended so far is in the file,
// where positioned reads may run concurrently with later appends past them.
func (v *fileValues) frozen() valueReader {
	v.flush()
	return &fileValues{f: v.f, path: v.path, flushed: v.flushed}
}

func (v *fileValues) close() error {
	v.buf, v.recent = nil, nil
	if err := v.f.Close(); err != nil {
		return fmt.Errorf("kv: closing the value file %s: %w", v.path, err)
	}
	return nil
}
