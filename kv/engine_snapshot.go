package kv

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
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

// restore replaces the engine's records with those of the stream r and makes
// them durable. The records come in key order, so they are written straight
// into sstables of restoreTableBytes (in restoreDir, beside the engine's
// directory) as the chunks are checked, and the tables are then ingested
// (replaceWithTables): the records go to the bottom of the LSM once, without
// passing through memtables, flushes and compactions (issue 13: replaying them in
// batches made a catch-up by snapshot slower than etcd's). A table is all the
// restore holds in memory beyond a chunk (its index and filter, a few MiB).
//
// A stream that is corrupt or cut short fails with ErrCorruptSnapshot and leaves
// the engine marked as restoring: it must be restored again before use, and
// openEngine refuses it if any of the restore reached the disk (the marker is
// committed, with the deletion of every record, before the first chunk is read,
// and flushed before the tables are ingested); if none did, the engine opens at
// its state before the restore, which the log then takes forward.
//
// If wholeStream, r must end with the stream. Otherwise it is read no further
// than the stream's end if it is an io.ByteReader (a bufio.Reader, say), and may
// be read past it if not.
func (e *engine) restore(r io.Reader, wholeStream bool, rec *RestoreRecord) error {
	br, ok := r.(byteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	if err := readEngineSnapshotHeader(br); err != nil {
		return err
	}
	if err := e.markRestoring(); err != nil {
		return err
	}
	dir := e.restoreDir()
	defer func() { _ = e.opts.FS.RemoveAll(dir) }()
	paths, err := e.writeTables(br, wholeStream, dir)
	if err != nil {
		return err
	}
	return e.replaceWithTables(paths, rec)
}

// writeTables writes the records of the stream br (past its header) into new
// sstables in dir, which it creates (removing what an earlier attempt left
// there), syncs them and dir, and returns their paths. A corrupt or cut stream
// fails with ErrCorruptSnapshot.
func (e *engine) writeTables(br byteReader, wholeStream bool, dir string) ([]string, error) {
	fs := e.opts.FS
	if err := freshDir(fs, dir); err != nil {
		return nil, err
	}
	// The bottom level's options (compression, filters); but the tables may land
	// above it, over the marker, so not as a table of the lowest level.
	wopts := e.opts.MakeWriterOptions(len(e.opts.Levels)-1, e.db.TableFormat())
	wopts.WritingToLowestLevel = false
	tables := &restoreTables{fs: fs, dir: dir, opts: wopts}
	defer tables.abandon()
	if err := readEngineSnapshot(br, wholeStream, tables.add); err != nil {
		return nil, err
	}
	paths, err := tables.finish()
	if err == nil {
		err = SyncDir(fs, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("kv: writing a snapshot's tables in %q: %w", dir, err)
	}
	return paths, nil
}

// freshDir makes dir empty and new, removing what an earlier restore left there.
func freshDir(fs vfs.FS, dir string) error {
	if err := fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("kv: removing %q, left by an earlier restore: %w", dir, err)
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("kv: making %q for a snapshot's tables: %w", dir, err)
	}
	return nil
}

// SyncDir makes the entries of dir, on fs, durable.
func SyncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// markRestoring deletes every record and sets the marker, in one batch: from here
// until the tables are in, the engine is neither the old state nor the new.
func (e *engine) markRestoring() error {
	b := e.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange([]byte{0}, []byte{0xff}, nil)
	_ = b.Set(metaRestoring, []byte{1}, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("kv: clearing the storage engine in %q for a snapshot: %w", e.dir, err)
	}
	e.restoring = true
	e.newestCache.reset()
	return nil
}

// replaceWithTables ingests the tables of a snapshot into an engine that
// markRestoring cleared, removes the marker, sets rec if it is not nil (in the
// same batch, so that one flush makes both durable) and makes the result durable.
func (e *engine) replaceWithTables(paths []string, rec *RestoreRecord) error {
	// The deletion goes to disk with the marker, and the old records' files are
	// dropped (whole, mostly: the range deletion covers them), so that the tables
	// land in the bottom level rather than over the deletion.
	if err := e.db.Flush(); err != nil {
		return fmt.Errorf("kv: flushing the storage engine in %q for a snapshot: %w", e.dir, err)
	}
	if err := e.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		return fmt.Errorf("kv: dropping the storage engine's records in %q for a snapshot: %w", e.dir, err)
	}
	if err := e.db.Ingest(context.Background(), paths); err != nil {
		return fmt.Errorf("kv: ingesting the snapshot's tables into the storage engine in %q: %w", e.dir, err)
	}
	// Checked while the marker is still there: an engine reopened after the marker
	// went would take a missing format record for an empty engine.
	if format, err := e.getMeta(metaFormat); err != nil || format == nil {
		return fmt.Errorf("%w: engine snapshot holds no layout format record (%v)", ErrCorruptSnapshot, err)
	}
	b := e.db.NewBatch()
	defer b.Close()
	_ = b.Delete(metaRestoring, nil)
	if rec != nil {
		pos, err := e.getMeta(metaPosition)
		applied, n := binary.Varint(pos)
		if err != nil || n <= 0 || applied < 0 {
			return fmt.Errorf("%w: engine snapshot holds no applied index (position record %x, %v)", ErrCorruptSnapshot, pos, err)
		}
		value := binary.BigEndian.AppendUint64(append([]byte(nil), rec.Value...), uint64(applied))
		_ = b.Set(serverMetaKey(rec.Name), value, nil)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("kv: finishing a snapshot restore in %q: %w", e.dir, err)
	}
	if err := e.loadMeta(); err != nil {
		return err
	}
	e.newestCache.reset() // the versions it held are gone
	if _, err := e.flush(); err != nil {
		return err
	}
	e.restoring = false
	return nil
}

// readEngineSnapshotHeader reads and checks a stream's magic and format.
func readEngineSnapshotHeader(br byteReader) error {
	head := make([]byte, len(engineSnapshotMagic))
	if _, err := io.ReadFull(br, head); err != nil || string(head) != engineSnapshotMagic {
		return fmt.Errorf("%w: no %q header (%v); this is not a raftkv engine snapshot", ErrCorruptSnapshot, engineSnapshotMagic, err)
	}
	if format, err := binary.ReadUvarint(br); err != nil || !readableFormat(format) {
		return fmt.Errorf("%w: engine snapshot of layout format %d (%v); this build reads formats 1 to %d", ErrCorruptSnapshot, format, err, engineFormat)
	}
	return nil
}

// restoreDir is where restore writes the tables it ingests: beside the engine's
// directory, not in it, which is pebble's.
func (e *engine) restoreDir() string { return e.dir + restoreDirSuffix }

const restoreDirSuffix = ".restore"

// readEngineSnapshot reads the chunks of a stream after its header, checking each
// one, and hands add every record in order.
func readEngineSnapshot(br byteReader, wholeStream bool, add func(key, value []byte) error) error {
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
			return nil
		}
		if err := eachChunkRecord(body, add); err != nil {
			return fmt.Errorf("%w: engine snapshot chunk %d: %v", ErrCorruptSnapshot, chunk, err)
		}
	}
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

// eachChunkRecord hands add the records of one chunk's body.
func eachChunkRecord(body []byte, add func(key, value []byte) error) error {
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
		if err := add(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// restoreTableBytes is the size at which restore starts a new table. Each
// table is synced when it is closed: a member receiving a snapshot into tables
// (Store.WriteSnapshotTables) answers the sender's end frame within its
// IOTimeout only if the last sync is short.
const restoreTableBytes = 64 << 20

// restoreTables writes a stream's records, in key order, into sstables.
type restoreTables struct {
	fs      vfs.FS
	dir     string
	opts    sstable.WriterOptions
	w       *sstable.Writer
	paths   []string
	prevKey []byte
}

func (t *restoreTables) add(key, value []byte) error {
	if t.prevKey != nil && engineComparer.Compare(t.prevKey, key) >= 0 {
		return fmt.Errorf("record with key %x after %x, out of order", key, t.prevKey)
	}
	t.prevKey = append(t.prevKey[:0], key...)
	if t.w != nil && t.w.Raw().EstimatedSize() >= restoreTableBytes {
		if err := t.closeTable(); err != nil {
			return err
		}
	}
	if t.w == nil {
		path := t.fs.PathJoin(t.dir, fmt.Sprintf("%06d.sst", len(t.paths)))
		f, err := t.fs.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		t.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), t.opts)
		t.paths = append(t.paths, path)
	}
	return t.w.Set(key, value)
}

func (t *restoreTables) closeTable() error {
	w := t.w
	t.w = nil
	return w.Close() // syncs the file
}

// finish closes the last table and returns the tables' paths.
func (t *restoreTables) finish() ([]string, error) {
	if t.w != nil {
		if err := t.closeTable(); err != nil {
			return nil, err
		}
	}
	return t.paths, nil
}

// abandon closes a table left open by a failed restore.
func (t *restoreTables) abandon() {
	if t.w != nil {
		_ = t.closeTable()
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }
