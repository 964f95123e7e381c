package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"raftkv/raft"
)

// wal is the writing half of the log: an append-only sequence of segments with group
// commit. Appending only encodes records into a memory buffer and returns a ticket;
// waitDurable(ticket) makes them durable. Whoever waits first while no flush runs
// becomes the flusher: it takes everything buffered so far, writes it, calls
// fdatasync once, and wakes every waiter whose ticket that covered. Callers that
// arrive during the fdatasync queue their records behind it and share the next one.
// No goroutine is started: the I/O runs on the callers' goroutines, so a lone writer
// pays no hand-off, and concurrent writers pay one sync per batch.
//
// Records are placed at append time: a record that does not fit in the current
// segment opens a new chunk that starts the next segment, so segment boundaries fall
// between records and every segment's start record restates the state at that point
// of the log.
type wal struct {
	// syncs counts fdatasyncs of WAL segments, for benchmarks.
	syncs        atomic.Uint64
	fs           FS
	dir          string
	clusterID    uint64
	memberID     uint64 // stamped in new segments' headers; 0 if not known
	seed         uint32
	segmentSize  int64
	maxEntrySize int // the largest encoded entry a batch record in an empty segment holds
	logger       *slog.Logger
	// oldFormatBelow: segments numbered below it are of format 1 (segment.go), the
	// rest of a later one. Set by Open, never changed after.
	oldFormatBelow uint64
	// onFlush is Options.OnWALFlush, or nil.
	onFlush func(written int, write, fsync time.Duration)

	// Owned by the flusher: only the goroutine that set mu.flushing touches these
	// (or Open and close, when no flush can run).
	file       File
	fileSeq    uint64
	fileOffset int64
	// fileAllocated is how much of file is preallocated (or written): writes past
	// it first reserve more (reserve).
	fileAllocated int64

	// failure holds the first fatal error, readable without the lock.
	failure atomic.Pointer[error]

	mu struct {
		sync.Mutex
		flushDone sync.Cond // broadcast when a flush ends

		chunks       []walChunk // appended, not yet taken by a flusher
		pendingBytes int64      // bytes in chunks
		spare        [][]byte   // data buffers for reuse

		seq    uint64       // segment the next record goes to
		offset int64        // offset in that segment where the next record goes
		state  segmentStart // what a segment opened now restates (prevEnd aside)

		// segments lists the live segments, oldest first; the last is seq.
		segments       []segmentInfo
		lastInstallSeq uint64 // segment of the last install marker; all before it are dead

		sizes      []int // scratch for appendBatch
		reservedAt int64 // offset of the record reserveLocked made room for last

		appended uint64 // ticket of the last append
		durable  uint64 // every ticket up to this is synced
		flushing bool
		closed   bool
	}
}

type walChunk struct {
	newSeq uint64 // if not zero, create segment newSeq with init first
	init   []byte
	data   []byte
}

type segmentInfo struct {
	seq           uint64
	maxEntryIndex uint64 // highest index of an entry record in it, 0 if none
}

// batchRecordOverhead bounds what a batch record holds besides its one entry: flags,
// count, the HardState with its length, and the entry's length.
const batchRecordOverhead = recordHeaderSize + 1 + binary.MaxVarintLen64 + 1 + 3*binary.MaxVarintLen64 + binary.MaxVarintLen32

// maxSpareBuffer is the largest buffer kept for reuse; a rare huge batch does not
// pin its memory forever.
const maxSpareBuffer = 4 << 20

func (w *wal) init() { w.mu.flushDone.L = &w.mu.Mutex }

// err returns the first fatal error, or nil.
func (w *wal) err() error {
	if p := w.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records err as the WAL's fatal error unless one is already recorded, and logs
// it once, unless the disk is full: that error goes back to every caller and is the
// line the member stops with, so it is not said twice. Every later call returns the
// first error.
func (w *wal) fail(err error) error {
	if w.failure.CompareAndSwap(nil, &err) {
		if !errors.Is(err, ErrDiskFull) {
			w.logger.Error("storage stopped: a write or sync failed; the node must stop", "dir", w.dir, "err", err)
		}
		return err
	}
	return w.err()
}

func (w *wal) checkLocked() error {
	if err := w.err(); err != nil {
		return err
	}
	if w.mu.closed {
		return ErrClosed
	}
	return nil
}

// reserveLocked makes room for a record of n bytes, opening the next segment if it
// does not fit in this one, and returns the buffer to append it to.
func (w *wal) reserveLocked(n int) *[]byte {
	if w.mu.offset+int64(n) > w.segmentSize {
		w.rollLocked()
	}
	w.mu.reservedAt = w.mu.offset
	if len(w.mu.chunks) == 0 {
		w.mu.chunks = append(w.mu.chunks, walChunk{data: w.bufferLocked()})
	}
	w.mu.offset += int64(n)
	w.mu.pendingBytes += int64(n)
	return &w.mu.chunks[len(w.mu.chunks)-1].data
}

// rollLocked queues the start of the next segment.
func (w *wal) rollLocked() {
	next := w.mu.seq + 1
	start := w.mu.state
	start.prevEnd = uint64(w.mu.offset)
	init := segmentInit(w.clusterID, w.memberID, w.seed, next, start)
	w.mu.chunks = append(w.mu.chunks, walChunk{newSeq: next, init: init, data: w.bufferLocked()})
	w.mu.seq = next
	w.mu.offset = int64(len(init))
	w.mu.segments = append(w.mu.segments, segmentInfo{seq: next})
}

func (w *wal) bufferLocked() []byte {
	if n := len(w.mu.spare); n > 0 {
		b := w.mu.spare[n-1]
		w.mu.spare = w.mu.spare[:n-1]
		return b[:0]
	}
	return make([]byte, 0, 64<<10)
}

// appendBatch queues ents and then hs, if not nil, as one batch record, or as several
// if they do not fit in the room left in the segment: the HardState goes in the last,
// so that a crash in the middle never keeps a commit index whose entries are lost.
// An entry too big for a segment is refused with ErrRecordTooLarge before anything
// is queued. It appends to places where each run of entries went.
func (w *wal) appendBatch(ents []raft.Entry, hs *raft.HardState, places []placement) (ticket uint64, _ []placement, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.checkLocked(); err != nil {
		return 0, places, err
	}
	sizes := w.mu.sizes[:0]
	for i := range ents {
		size := ents[i].Size()
		if size > w.maxEntrySize {
			return 0, places, fmt.Errorf("%w: entry %d is %d bytes encoded, a WAL segment of %d bytes holds at most %d; raise Options.SegmentSize",
				ErrRecordTooLarge, ents[i].Index, size, w.segmentSize, w.maxEntrySize)
		}
		sizes = append(sizes, size)
	}
	w.mu.sizes = sizes[:0]
	hsRoom := 0
	if hs != nil {
		hsRoom = 1 + hs.Size()
	}
	for {
		// As many entries as fit in this segment, with room for the HardState in case
		// they are the last.
		room := w.segmentSize - w.mu.offset - recordHeaderSize - 1 - binary.MaxVarintLen64 - int64(hsRoom)
		n := 0
		for ; n < len(sizes); n++ {
			room -= int64(uvarintLen(uint64(sizes[n])) + sizes[n])
			if room < 0 {
				break
			}
		}
		if room < 0 && n == 0 {
			if w.mu.offset <= maxSegmentInit {
				panic(fmt.Sprintf("storage: entry %d of %d bytes does not fit in an empty segment of %d bytes (the limit is %d)",
					ents[0].Index, sizes[0], w.segmentSize, w.maxEntrySize))
			}
			w.rollLocked()
			continue
		}
		last := n == len(sizes)
		var recHS *raft.HardState
		if last {
			recHS = hs
		}
		buf := w.reserveLocked(recordHeaderSize + batchPayloadSize(sizes[:n], recHS))
		*buf = appendBatchRecord(*buf, w.seed, ents[:n], sizes[:n], recHS)
		if n > 0 {
			places = append(places, placement{seq: w.mu.seq, offset: w.mu.reservedAt, n: n})
			seg := &w.mu.segments[len(w.mu.segments)-1]
			seg.maxEntryIndex = max(seg.maxEntryIndex, ents[n-1].Index)
		}
		if last {
			break
		}
		ents, sizes = ents[n:], sizes[n:]
		w.rollLocked()
	}
	if hs != nil {
		w.mu.state.hs = *hs
	}
	w.mu.appended++
	return w.mu.appended, places, nil
}

// appendMarker queues a snapshot marker and returns its ticket and segment.
func (w *wal) appendMarker(m snapMarker) (ticket, seq uint64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.checkLocked(); err != nil {
		return 0, 0, err
	}
	buf := w.reserveLocked(recordHeaderSize + 1 + uvarintLen(m.index) + uvarintLen(m.term))
	*buf = appendSnapshotRecord(*buf, w.seed, m)
	w.mu.state.markIndex, w.mu.state.markTerm = m.index, m.term
	if m.kind == snapInstall {
		w.mu.state.base, w.mu.state.baseTerm = m.index, m.term
		w.mu.lastInstallSeq = w.mu.seq
	}
	w.mu.appended++
	return w.mu.appended, w.mu.seq, nil
}

// startSegment queues the start of a new segment with no records and returns its
// ticket: Open uses it to begin a fresh WAL, or to leave a torn last segment alone.
func (w *wal) startSegment() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rollLocked()
	w.mu.appended++
	return w.mu.appended
}

// maxPendingBytes bounds what appends may queue without anyone waiting for it:
// past it, SaveAsync waits for its own write (backpressure).
const maxPendingBytes = 64 << 20

// overPending reports whether more than maxPendingBytes wait for a flush.
func (w *wal) overPending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.pendingBytes > maxPendingBytes
}

// isDurable reports whether every record up to ticket is synced.
func (w *wal) isDurable(ticket uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.durable >= ticket
}

// waitDurable returns once every record up to ticket is synced, flushing them itself
// if no flush is running. After a fatal error it returns that error.
func (w *wal) waitDurable(ticket uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if err := w.err(); err != nil {
			return err
		}
		if w.mu.durable >= ticket {
			return nil
		}
		if w.mu.flushing {
			w.mu.flushDone.Wait()
			continue
		}
		chunks, target := w.mu.chunks, w.mu.appended
		w.mu.chunks, w.mu.pendingBytes = nil, 0
		w.mu.flushing = true
		w.mu.Unlock()
		err := w.writeChunks(chunks)
		w.mu.Lock()
		w.mu.flushing = false
		if err != nil {
			w.fail(err)
		} else {
			w.mu.durable = target
		}
		for _, c := range chunks {
			if cap(c.data) <= maxSpareBuffer {
				w.mu.spare = append(w.mu.spare, c.data)
			}
		}
		w.mu.flushDone.Broadcast()
	}
}

// writeChunks writes chunks in order, opening segments where they say, then syncs.
// It runs without the lock: only the flusher calls it.
func (w *wal) writeChunks(chunks []walChunk) error {
	var started time.Time
	if w.onFlush != nil {
		started = time.Now()
	}
	written := 0
	for i := range chunks {
		c := &chunks[i]
		if c.newSeq != 0 {
			if err := w.openNext(c.newSeq, c.init); err != nil {
				return err
			}
		}
		if len(c.data) == 0 {
			continue
		}
		end := w.fileOffset + int64(len(c.data))
		if end > w.fileAllocated {
			allocated, err := w.reserve(w.file, w.segmentPath(w.fileSeq), w.fileAllocated, end)
			if err != nil {
				return err
			}
			w.fileAllocated = allocated
		}
		if _, err := w.file.WriteAt(c.data, w.fileOffset); err != nil {
			return fatalError(w.fs, fmt.Sprintf("write at offset %d of WAL segment", w.fileOffset),
				w.segmentPath(w.fileSeq), int64(len(c.data)), err)
		}
		w.fileOffset += int64(len(c.data))
		written += len(c.data)
	}
	if w.file == nil {
		panic(fmt.Sprintf("storage: WAL flush of %d chunks with no open segment", len(chunks)))
	}
	var syncStarted time.Time
	if w.onFlush != nil {
		syncStarted = time.Now()
	}
	if err := w.file.Sync(); err != nil {
		return fatalError(w.fs, "fdatasync of WAL segment", w.segmentPath(w.fileSeq), 0, err)
	}
	w.syncs.Add(1)
	if w.onFlush != nil {
		synced := time.Now()
		w.onFlush(written, syncStarted.Sub(started), synced.Sub(syncStarted))
	}
	return nil
}

// openNext switches writing to a new segment. The one being left is synced first:
// recovery reads every segment but the last strictly, up to the end its successor
// names, so no segment may have a successor before its records are durable.
func (w *wal) openNext(seq uint64, init []byte) error {
	if w.file != nil {
		if err := w.file.Sync(); err != nil {
			return fatalError(w.fs, "fdatasync of WAL segment", w.segmentPath(w.fileSeq), 0, err)
		}
		if err := w.file.Close(); err != nil {
			w.logger.Warn("closing a full WAL segment failed after it was synced", "file", w.segmentPath(w.fileSeq), "err", err)
		}
		w.file = nil
	}
	f, allocated, err := w.createSegment(seq, init)
	if err != nil {
		return err
	}
	w.file, w.fileSeq, w.fileOffset, w.fileAllocated = f, seq, int64(len(init)), allocated
	return nil
}

// preallocFreeDivisor: a segment's file is preallocated ahead of its writes by at
// most 1/preallocFreeDivisor of the file system's free space (see reserve).
const preallocFreeDivisor = 4

// reserve preallocates the segment file f (at path), of which allocated bytes are
// reserved already, for a write that ends at end, and returns how much is reserved
// now.
//
// The rule: reserve up to the segment's full size, but at most a quarter of the free
// space, and at least what the write needs. Preallocation is for speed: an fdatasync
// of a write inside reserved space need not update the file's size or its block map,
// so on a roomy disk a segment is reserved whole at once, as before. But the WAL
// shares the disk with the kv engine and the snapshot files (a snapshot is as large as
// the state), and a 64 MiB segment reserved whole on a 64 MiB volume filled it before
// the first write. A quarter of what is free leaves the others three quarters, and
// each later reservation takes a quarter of what is left then, so the WAL only ever
// fails for lack of space when its own write does not fit. If the generous step finds
// the disk fuller than statfs said (another writer got there first), reserve retries
// with just what the write needs; only if that fails too is the disk full.
func (w *wal) reserve(f File, path string, allocated, end int64) (int64, error) {
	var target int64
	if u, err := w.fs.Usage(w.dir); err != nil {
		w.logger.Debug("reading the WAL file system's free space failed; preallocating the whole segment", "err", err)
		target = max(end, w.segmentSize)
	} else {
		target = max(end, min(w.segmentSize, allocated+u.Free/preallocFreeDivisor))
	}
	err := f.Preallocate(target)
	if err != nil && target > end && errors.Is(err, syscall.ENOSPC) {
		target = end
		err = f.Preallocate(target)
	}
	if err != nil {
		return 0, fatalError(w.fs, fmt.Sprintf("preallocation at offset %d of WAL segment", allocated),
			path, target-allocated, err)
	}
	return target, nil
}

func (w *wal) segmentPath(seq uint64) string { return filepath.Join(w.dir, segmentName(seq)) }

// dropSegments removes, oldest first, the segments before seq beforeSeq that recovery
// no longer needs: those before the last install marker, and those whose entries are
// all at or below retainIndex. It stops at the first segment it must keep, so the WAL
// stays a gapless run, and syncs the directory after each removal so that a crash
// cannot leave a hole either.
func (w *wal) dropSegments(beforeSeq, retainIndex uint64) error {
	w.mu.Lock()
	if err := w.checkLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	var victims []uint64
	i := 0
	for ; i < len(w.mu.segments)-1; i++ {
		s := w.mu.segments[i]
		if s.seq >= beforeSeq || (s.seq >= w.mu.lastInstallSeq && s.maxEntryIndex > retainIndex) {
			break
		}
		victims = append(victims, s.seq)
	}
	w.mu.segments = append([]segmentInfo(nil), w.mu.segments[i:]...)
	w.mu.Unlock()

	for _, seq := range victims {
		path := w.segmentPath(seq)
		if err := w.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return w.fail(fatalError(w.fs, "removal of WAL segment", path, 0, err))
		}
		if err := w.fs.SyncDir(w.dir); err != nil {
			return w.fail(fatalError(w.fs, "fsync of WAL directory", w.dir, 0, err))
		}
	}
	if len(victims) > 0 {
		w.logger.Debug("dropped WAL segments below the oldest kept snapshot",
			"first", segmentName(victims[0]), "last", segmentName(victims[len(victims)-1]), "retain_index", retainIndex)
	}
	return nil
}

// close syncs what is buffered and closes the segment. Appends after it fail with
// ErrClosed (or the fatal error, if there was one).
func (w *wal) close() error {
	w.mu.Lock()
	w.mu.closed = true
	ticket := w.mu.appended
	w.mu.Unlock()
	err := w.waitDurable(ticket)
	w.mu.Lock()
	for w.mu.flushing {
		w.mu.flushDone.Wait()
	}
	file := w.file
	w.file = nil
	w.mu.Unlock()
	if file != nil {
		if cerr := file.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("storage: closing WAL segment: %w", cerr)
		}
	}
	return err
}
