package kv

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// An engine snapshot is the engine's records as of one applied index, read from a
// pebble snapshot while applying goes on, and written as a stream of chunks that
// the receiver checks and writes one at a time: neither end holds more than a
// chunk, whatever the data (issue 13, point 3).
//
//	stream = magic:"RKVE" format:uvarint chunk* end
//	chunk  = n:uvarint body:n bytes crc32c(body):4 little-endian
//	body   = (keyLen:uvarint key valueLen:uvarint value)*
//	end    = a chunk with n = 0 (and the CRC of the empty body)
//
// The records are every record of the engine, in key order, meta records included,
// so the receiver ends with the sender's applied index, revision and compaction
// revision. While a restore runs the receiver's engine carries a marker record;
// an engine that still has it was cut off mid-restore and is refused at open.

const (
	engineSnapshotMagic = "RKVE"
	// engineSnapshotChunkBytes is the size a chunk is cut at (a record larger
	// than it makes a chunk of its own).
	engineSnapshotChunkBytes = 1 << 20
	// maxEngineChunkBytes bounds a chunk the receiver accepts: a chunk of records
	// up to the largest value a command may carry.
	maxEngineChunkBytes = engineSnapshotChunkBytes + 2*maxCommandBytesCap
)

// metaRestoring marks an engine whose restore has not finished.
var metaRestoring = []byte{engineMetaPrefix, 'R'}

// engineSnapshot is the engine frozen at one applied index.
type engineSnapshot struct {
	snap         *pebble.Snapshot
	appliedIndex uint64
}

// snapshot freezes the engine as it is now. Close the view when done: it holds
// the files its records are in.
func (e *engine) snapshot() *engineSnapshot {
	return &engineSnapshot{snap: e.db.NewSnapshot(), appliedIndex: e.appliedIndex}
}

func (s *engineSnapshot) close() error { return s.snap.Close() }

// writeTo writes the snapshot's stream to w and returns its size.
func (s *engineSnapshot) writeTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	head := binary.AppendUvarint([]byte(engineSnapshotMagic), engineFormat)
	if _, err := cw.Write(head); err != nil {
		return cw.n, err
	}
	it, err := s.snap.NewIter(nil)
	if err != nil {
		return cw.n, err
	}
	defer it.Close()
	body := make([]byte, 0, engineSnapshotChunkBytes)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return cw.n, err
		}
		body = binary.AppendUvarint(body, uint64(len(it.Key())))
		body = append(body, it.Key()...)
		body = binary.AppendUvarint(body, uint64(len(v)))
		body = append(body, v...)
		if len(body) >= engineSnapshotChunkBytes {
			if err := writeEngineChunk(cw, body); err != nil {
				return cw.n, err
			}
			body = body[:0]
		}
	}
	if err := it.Error(); err != nil {
		return cw.n, err
	}
	if len(body) > 0 {
		if err := writeEngineChunk(cw, body); err != nil {
			return cw.n, err
		}
	}
	return cw.n, writeEngineChunk(cw, nil)
}

func writeEngineChunk(w io.Writer, body []byte) error {
	frame := binary.AppendUvarint(nil, uint64(len(body)))
	if _, err := w.Write(frame); err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	_, err := w.Write(binary.LittleEndian.AppendUint32(nil, crc32.Checksum(body, castagnoli)))
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// restore replaces the engine's records with those of the stream r, a chunk at a
// time, and makes them durable. A stream that is corrupt or cut short fails with
// ErrCorruptSnapshot and leaves the engine marked as restoring: it must be
// restored again before use, and openEngine refuses it if any of the restore
// reached the disk (the marker is committed before the first chunk, so a memtable
// flush that carries a chunk carries the marker too); if none did, the engine
// opens at its state before the restore, which the log then takes forward.
//
// If wholeStream, r must end with the stream. Otherwise it is read no further
// than the stream's end if it is an io.ByteReader (a bufio.Reader, say), and may
// be read past it if not.
func (e *engine) restore(r io.Reader, wholeStream bool) error {
	br, ok := r.(byteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	head := make([]byte, len(engineSnapshotMagic))
	if _, err := io.ReadFull(br, head); err != nil || string(head) != engineSnapshotMagic {
		return fmt.Errorf("%w: no %q header (%v); this is not a raftkv engine snapshot", ErrCorruptSnapshot, engineSnapshotMagic, err)
	}
	if format, err := binary.ReadUvarint(br); err != nil || format != engineFormat {
		return fmt.Errorf("%w: engine snapshot of layout format %d (%v); this build reads format %d", ErrCorruptSnapshot, format, err, engineFormat)
	}
	// Everything goes, then the marker is set, in one batch: from here until the
	// last chunk is in, the engine is neither the old state nor the new.
	b := e.db.NewBatch()
	_ = b.DeleteRange([]byte{0}, []byte{0xff}, nil)
	_ = b.Set(metaRestoring, []byte{1}, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		b.Close()
		return fmt.Errorf("kv: clearing the storage engine in %q for a snapshot: %w", e.dir, err)
	}
	b.Close()
	e.newestCache.reset()
	var body []byte
	for chunk := 0; ; chunk++ {
		n, err := binary.ReadUvarint(br)
		if err == nil && n > maxEngineChunkBytes {
			err = fmt.Errorf("chunk of %d bytes, more than the %d allowed", n, maxEngineChunkBytes)
		}
		if err == nil {
			if uint64(cap(body)) < n {
				body = make([]byte, n)
			}
			body = body[:n]
			_, err = io.ReadFull(br, body)
		}
		var sum [4]byte
		if err == nil {
			_, err = io.ReadFull(br, sum[:])
		}
		if err == nil && binary.LittleEndian.Uint32(sum[:]) != crc32.Checksum(body, castagnoli) {
			err = errors.New("CRC-32C mismatch")
		}
		if err != nil {
			return fmt.Errorf("%w: engine snapshot chunk %d: %v", ErrCorruptSnapshot, chunk, err)
		}
		if n == 0 {
			if _, err := br.ReadByte(); wholeStream && err != io.EOF {
				return fmt.Errorf("%w: engine snapshot: bytes after the last chunk (%v)", ErrCorruptSnapshot, err)
			}
			break
		}
		if err := e.restoreChunk(body); err != nil {
			return fmt.Errorf("%w: engine snapshot chunk %d: %v", ErrCorruptSnapshot, chunk, err)
		}
	}
	b = e.db.NewBatch()
	defer b.Close()
	_ = b.Delete(metaRestoring, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("kv: finishing a snapshot restore in %q: %w", e.dir, err)
	}
	if format, err := e.getMeta(metaFormat); err != nil || format == nil {
		return fmt.Errorf("%w: engine snapshot holds no layout format record (%v)", ErrCorruptSnapshot, err)
	}
	if err := e.loadMeta(); err != nil {
		return err
	}
	e.newestCache.reset() // the versions it held are gone
	if _, err := e.flush(); err != nil {
		return err
	}
	return nil
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

// restoreChunk writes the records of one chunk's body in one batch.
func (e *engine) restoreChunk(body []byte) error {
	b := e.db.NewBatch()
	defer b.Close()
	for len(body) > 0 {
		var kv [2][]byte
		for i := range kv {
			n, k := binary.Uvarint(body)
			if k <= 0 || n > uint64(len(body)-k) {
				return errors.New("record runs past the chunk")
			}
			kv[i], body = body[k:k+int(n)], body[k+int(n):]
		}
		if len(kv[0]) == 0 || bytesEqual(kv[0], metaRestoring) {
			return fmt.Errorf("record with key %x", kv[0])
		}
		_ = b.Set(kv[0], kv[1], nil)
	}
	return b.Commit(pebble.NoSync)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
