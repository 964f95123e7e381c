// Package storage is the durable raft.Storage: a segmented, checksummed write-ahead
// log with group commit, plus snapshot files, behind a small FS seam that tests swap
// for a file system that crashes (MemFS) or fails chosen calls (FaultFS).
//
// A data dir holds a LOCK file (flock: one node at a time), wal/ with the segments
// (segment.go, record.go) and snap/ with the snapshot files (snapshot.go). The WAL may
// live in a directory of its own instead (Options.WALDir, e.g. on a faster disk); it
// then has a LOCK file too, and the data dir records where it is (walDirMarker). With
// Options.MemberID the WAL dir records the member whose log and votes it holds, and a
// WAL of another member is refused (walmember.go).
//
// Memory does not grow with the log's bytes. Of the entries after the latest snapshot
// only the newest stay in memory (the log cache, Options.LogCacheBytes); Entries reads
// older ones back from their segment. Per entry the Storage keeps 4 bytes: the offset
// of its batch record in the offset index (logindex.go), beside one term run per
// change of term and one span per segment. Recovery streams each segment through a
// window of 2 MiB (larger only while it holds one record larger than 1 MiB; the last
// segment is scanned beside the others, so two windows at most, and 1 MiB to check
// that the last one ends in zeros) and keeps 24 bytes per entry while it replays
// (entryRef), dropped once Open returns; it then reads the cache's entries back from
// the WAL. A 100 MiB log of 100 KiB entries opens with the heap at +6 MiB at its peak
// (it was +131 to +176 MiB when segments were read whole).
//
// Save is durable when it returns: its records, then one fdatasync. Writes that arrive
// together share that fdatasync (group commit): concurrent Saves, or SaveAsync calls
// followed by one WaitDurable. Recovery (recovery.go) cuts off a torn last write and
// refuses anything else that fails its checks.
//
// Failure policy: a failed write or sync is fatal. The Storage logs it once and
// refuses every later call with that first error (wrapping ErrFailed); the node must
// stop and restart, and recovers what the disk holds: after a failed fsync Linux may
// keep the pages it could not write cached and marked clean (so a later fsync
// succeeds without writing them), and recovery therefore syncs each WAL segment and
// drops its cached pages (File.DropCache) before it reads it, so that what did not
// reach the disk is cut off as a torn tail is after a power loss. A full disk (ENOSPC) is a
// *NoSpaceError (ErrDiskFull), which says what is full, how much was needed and is
// free, and what to do: the Storage does not log it, the member stops with it as its
// one line. WAL segments are preallocated by what the free space allows (wal.reserve),
// so a small volume holds a member. Corruption found at open (anything but a torn tail) refuses the start with
// a *CorruptError naming the file and offset.
package storage

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"raftkv/raft"
)

// Limits and defaults of Options.
const (
	// DefaultSegmentSize is the WAL segment size when Options.SegmentSize is 0.
	DefaultSegmentSize = 64 << 20
	// MinSegmentSize is the smallest Options.SegmentSize (tests use it to make many
	// segments out of little data).
	MinSegmentSize = 4 << 10
	// MaxSegmentSize is the largest Options.SegmentSize.
	MaxSegmentSize = 1 << 30
	// DefaultSnapshotsToKeep is the number of snapshot files kept when
	// Options.SnapshotsToKeep is 0.
	DefaultSnapshotsToKeep = 2
	// DefaultLogCacheBytes is Options.LogCacheBytes when it is 0. At 15,000
	// 256-byte puts a second it holds the last quarter second or so, which is
	// what replication and applying read. On bench/'s put workloads 2 MiB rather
	// than 8 MiB took 11 MiB off the leader's peak RSS, and 1 MiB rather than 2
	// took 1.6-3.6 MiB more at put-1c and 3-4 MiB at put-100c and put-1000c
	// (twice the entries' bytes: the collector lets the heap grow to twice what
	// is live), with no more CPU per put beyond the runs' spread.
	DefaultLogCacheBytes = 1 << 20
)

// Options configures Open. Zero values take the defaults.
type Options struct {
	// ClusterID is stamped in every WAL segment and snapshot, and seeds every record
	// checksum: a data dir of another cluster is refused. Required (non-zero).
	ClusterID uint64
	// MemberID, if set, is recorded in the WAL dir the first time, and Open refuses
	// a WAL dir that records another member: its votes are not this node's.
	MemberID uint64
	// SegmentSize is the size of a WAL segment, in bytes, which it is preallocated
	// to if the file system has four times that free (else by a quarter of the free
	// space at a time); it also bounds the size of one entry. Default
	// DefaultSegmentSize (64 MiB).
	SegmentSize int64
	// SnapshotsToKeep is how many snapshot files are kept. WAL segments are kept back
	// to the oldest of them, so that if the newest fails its checksum at start-up the
	// node falls back to an older one and still finds every entry after it. Default
	// DefaultSnapshotsToKeep (2); 1 drops the log below each new snapshot at once.
	SnapshotsToKeep int
	// LogCacheBytes bounds the raft log entries kept in memory, in bytes of their
	// encoding: the newest entries (those being replicated and applied) stay there,
	// older ones are read back from the WAL when asked for. Entries not yet durable
	// are always kept, so the bound can be exceeded while writes wait for a flush.
	// Default DefaultLogCacheBytes (1 MiB).
	LogCacheBytes int64
	// WALDir, if set, is where the WAL segments live instead of <dir>/wal. The data
	// dir records it when it is first used, and Open refuses a WALDir (or none) that
	// differs from the one recorded: the WAL would look empty, and the node would
	// start without its log.
	WALDir string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// OnWALFlush, if set, is called after each flush of the WAL: the bytes written,
	// how long the writes took and how long the fdatasync that made them durable
	// took. It runs on the flushing goroutine while writers wait for it, so it must
	// be quick and never block (a metrics histogram's Observe).
	OnWALFlush func(written int, write, fsync time.Duration)
}

func (o Options) withDefaults() Options {
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SnapshotsToKeep == 0 {
		o.SnapshotsToKeep = DefaultSnapshotsToKeep
	}
	if o.LogCacheBytes == 0 {
		o.LogCacheBytes = DefaultLogCacheBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports the first option that cannot work. Zero values are fine except
// ClusterID: they take the defaults.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.ClusterID == 0 {
		return errors.New("storage options: ClusterID is 0; give the cluster a non-zero id, the same on every node")
	}
	if o.SegmentSize < MinSegmentSize || o.SegmentSize > MaxSegmentSize {
		return fmt.Errorf("storage options: SegmentSize %d is outside [%d, %d]", o.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	if o.LogCacheBytes < 0 {
		return fmt.Errorf("storage options: LogCacheBytes %d is negative", o.LogCacheBytes)
	}
	if o.SnapshotsToKeep < 1 {
		return fmt.Errorf("storage options: SnapshotsToKeep %d must be at least 1", o.SnapshotsToKeep)
	}
	return nil
}

// Storage is the durable raft.Storage. Its methods are safe for concurrent use; Save
// calls from several goroutines share fdatasyncs (group commit).
type Storage struct {
	fs            FS
	dir           string
	snapDir       string
	clusterID     uint64
	keepSnapshots int
	cacheBytes    int64 // Options.LogCacheBytes
	logger        *slog.Logger
	lock          io.Closer
	// walDir holds the WAL segments; walLock is its own lock if it is not in dir.
	walDir  string
	walLock io.Closer
	wal     *wal
	// olderBuildsWAL: see OlderBuildsWAL.
	olderBuildsWAL bool

	// snapMu serializes installing a snapshot (ApplySnapshot, which writes its file
	// between checking the log and updating it) with committing one of this node's
	// own. createMu serializes this node's own snapshots, whose files are written
	// under it alone (see createSnapshot), each under a name of its kind.
	snapMu, createMu sync.Mutex

	// loader keeps the snapshot data loaded for the leader (LoadSnapshot).
	loader snapLoader

	mu struct {
		sync.RWMutex
		hs   raft.HardState
		snap raft.Snapshot
		// log knows the term and WAL record of every entry after the snapshot:
		// log.first == snap.Index+1.
		log logIndex
		// cache is the log's tail: cache[i].Index == log.last-len(cache)+1+i. Every
		// entry before it is durable in the WAL, where Entries reads it back.
		// Invariant: an element readers may hold is never written again; a truncation
		// or an eviction copies to a new array, and Entries returns slices capped at
		// their length.
		cache      []raft.Entry
		cachedSize int64 // sum of the cached entries' Size
		// confIndexes are the indexes of the configuration entries
		// (raft.EntryConfChange) in the log, ascending: the core reads just those
		// at start (raft.ConfEntryIndexer).
		confIndexes []uint64
		// unflushed lists the writes of entries not known to be durable, oldest
		// first: their entries may not leave the cache.
		unflushed []unflushedWrite
		places    []placement // scratch for queueSave
		closed    bool
	}
}

var (
	_ raft.Storage          = (*Storage)(nil)
	_ raft.ConfEntryIndexer = (*Storage)(nil)
	_ raft.SnapshotLoader   = (*Storage)(nil)
)

// Open opens the data dir dir on fsys, creating it if needed, and recovers its state:
// it takes the dir's lock (ErrLocked if another node holds it), replays the WAL,
// cuts off a torn last write, and loads the newest snapshot that passes its checks.
// Corruption anywhere else is an error (ErrCorrupt, ErrClusterMismatch).
func Open(fsys FS, dir string, opts Options) (*Storage, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	began := time.Now()
	dir = filepath.Clean(dir)
	logger := opts.Logger.With("data_dir", dir)
	if err := makeDir(fsys, dir); err != nil {
		return nil, err
	}
	lockPath := filepath.Join(dir, lockFileName)
	lock, err := fsys.Lock(lockPath)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: data dir %q is in use by another running node (it holds the lock on %s); "+
				"stop that node first, or point --data-dir elsewhere", ErrLocked, dir, lockPath)
		}
		return nil, fmt.Errorf("storage: locking data dir: %w", err)
	}
	s := &Storage{
		fs: fsys, dir: dir, snapDir: filepath.Join(dir, "snap"), clusterID: opts.ClusterID,
		keepSnapshots: opts.SnapshotsToKeep, cacheBytes: opts.LogCacheBytes, logger: logger, lock: lock,
		walDir: filepath.Join(dir, "wal"),
	}
	if err := s.useWALDir(opts.WALDir); err != nil {
		s.closeLocks()
		return nil, err
	}
	if err := s.recover(opts, began); err != nil {
		s.closeLocks()
		return nil, err
	}
	return s, nil
}

// closeLocks releases the data dir's lock and the WAL dir's.
func (s *Storage) closeLocks() error {
	err := s.lock.Close()
	if s.walLock != nil {
		if werr := s.walLock.Close(); err == nil {
			err = werr
		}
	}
	return err
}

// makeDir creates dir and any missing parents, and makes their entries durable: each
// new directory's in its parent and, at every Open, dir's own in its parent whether or
// not this call created it. A process killed between MkdirAll and the parent's fsync,
// or whose fsync failed there, left an entry a power loss can still drop, and the
// next Open finds the directory in place: without the sync it would put its WAL,
// synced, in a directory that may vanish. (A missing ancestor above dir is synced
// into its parent only by the call that creates it.)
func makeDir(fsys FS, dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := fsys.List(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	if len(missing) > 0 {
		if err := fsys.MkdirAll(dir); err != nil {
			return fmt.Errorf("storage: creating %s: %w", dir, err)
		}
	} else {
		missing = []string{dir} // exists: sync its entry all the same
	}
	for _, d := range slices.Backward(missing) {
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("storage: fsync of %s: %w", filepath.Dir(d), err)
		}
	}
	return nil
}

func (s *Storage) recover(opts Options, began time.Time) error {
	walDir := s.walDir
	for _, d := range []string{walDir, s.snapDir} {
		if err := makeDir(s.fs, d); err != nil {
			return err
		}
		n, err := removeTemps(s.fs, d)
		if err != nil {
			return fmt.Errorf("storage: removing leftover temporary files: %w", err)
		}
		if n > 0 {
			if err := s.fs.SyncDir(d); err != nil {
				return fmt.Errorf("storage: fsync of %s: %w", d, err)
			}
		}
	}
	rec, err := recoverWAL(s.fs, s.dir, walDir, s.clusterID, s.logger)
	if err != nil {
		return err
	}
	// After the cluster check: a WAL of another cluster is refused as such first.
	if err := s.checkWALMember(opts.MemberID, rec); err != nil {
		return err
	}
	if rec.fresh {
		files, err := listSnapshots(s.fs, s.snapDir)
		if err != nil {
			return fmt.Errorf("storage: listing snapshot directory: %w", err)
		}
		if len(files) > 0 {
			return corruptf(walDir, 0, "the WAL directory holds no segment but %s holds %d snapshots: the WAL was lost", s.snapDir, len(files))
		}
	}
	snap, adopt, err := chooseSnapshot(s.fs, s.snapDir, s.clusterID, &rec.replay, s.logger)
	if err != nil {
		return err
	}
	if last := max(snap.Index, rec.lastIndex()); rec.hs.Commit > last {
		return corruptf(walDir, 0, "the hard state commits index %d, but the log ends at %d", rec.hs.Commit, last)
	}
	s.mu.hs, s.mu.snap = rec.hs, snap
	s.mu.snap.Data = nil // read back from its file when asked for
	if len(rec.refs) > 0 && rec.first != snap.Index+1 {
		panic(fmt.Sprintf("storage: recovered log from %d of %d entries does not follow snapshot %d",
			rec.first, len(rec.refs), snap.Index))
	}
	s.mu.log = rec.index(snap.Index)
	s.mu.confIndexes = rec.confIndexes()
	s.olderBuildsWAL = !rec.fresh && rec.olderFormat && !rec.currentFormatRecords

	w := &wal{
		fs: s.fs, dir: walDir, clusterID: s.clusterID, memberID: cmp.Or(opts.MemberID, rec.memberID), seed: clusterSeed(s.clusterID),
		segmentSize: opts.SegmentSize, maxEntrySize: int(opts.SegmentSize) - maxSegmentInit - batchRecordOverhead,
		logger: s.logger, oldFormatBelow: rec.oldFormatBelow, onFlush: opts.OnWALFlush,
	}
	w.init()
	w.mu.segments, w.mu.lastInstallSeq = rec.segments, rec.lastInstallSeq
	w.mu.state = segmentStart{hs: rec.hs, markIndex: rec.markIndex, markTerm: rec.markTerm, base: rec.base, baseTerm: rec.baseTerm}
	w.mu.seq, w.mu.offset = rec.lastSeq, rec.lastEnd
	s.wal = w
	if err := s.loadCache(rec.tailLen(s.cacheBytes)); err != nil {
		return err
	}
	// Recovery synced each segment and dropped its cached pages before reading it
	// (openSegment): what it replayed is what the disk holds. The same for the
	// directories' entries: a segment or snapshot renamed into place by a process
	// killed before it synced the directory.
	for _, d := range []string{walDir, s.snapDir} {
		if err := s.fs.SyncDir(d); err != nil {
			return fatalError(s.fs, "fsync of", d, 0, err)
		}
	}
	var tickets []uint64
	switch {
	case rec.lastClean:
		f, err := s.fs.OpenReadWrite(w.segmentPath(rec.lastSeq))
		if err != nil {
			return fmt.Errorf("storage: opening the last WAL segment for appending: %w", err)
		}
		size, err := f.Size()
		if err != nil {
			f.Close()
			return fmt.Errorf("storage: reading the size of the last WAL segment %s: %w", w.segmentPath(rec.lastSeq), err)
		}
		w.file, w.fileSeq, w.fileOffset, w.fileAllocated = f, rec.lastSeq, rec.lastEnd, size
	default:
		// A fresh WAL, or one whose last segment ends in a torn write: start a new
		// segment, which names where the sound records of the old one end.
		tickets = append(tickets, w.startSegment())
	}
	if adopt != nil {
		t, _, err := w.appendMarker(*adopt)
		if err != nil {
			return err
		}
		tickets = append(tickets, t)
	}
	for _, t := range tickets {
		if err := w.waitDurable(t); err != nil {
			w.close()
			return err
		}
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	s.logger.Info("storage opened", "first_index", first, "last_index", last, "snapshot_index", snap.Index,
		"term", rec.hs.Term, "commit", rec.hs.Commit, "segments", len(w.mu.segments), "took", time.Since(began))
	return nil
}

// loadCache reads the last n entries of the recovered log back from the WAL into the
// cache: recovery keeps only where each entry lies (see replaySegment).
func (s *Storage) loadCache(n int) error {
	if n == 0 {
		return nil
	}
	last := s.mu.log.last
	lo := last + 1 - uint64(n)
	ents, size, err := s.readEntries(lo, s.mu.log.locate(lo, last+1), math.MaxUint64)
	if err != nil {
		return err
	}
	if len(ents) != n {
		return fmt.Errorf("storage: read %d entries back from the WAL into the log cache, want %d", len(ents), n)
	}
	s.mu.cache, s.mu.cachedSize = ents, int64(size)
	return nil
}

// Close syncs anything buffered, closes the files and releases the data dir's lock.
// Every call after it fails with ErrClosed.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.mu.closed = true
	s.mu.Unlock()
	s.loader.wg.Wait() // a snapshot load under way ends with ErrClosed or its data
	s.dropLoadedSnapshot()
	err := s.wal.close()
	if lerr := s.closeLocks(); err == nil && lerr != nil {
		err = fmt.Errorf("storage: releasing the data dir lock: %w", lerr)
	}
	return err
}

// checkLocked returns the fatal error, if any, or ErrClosed after Close.
func (s *Storage) checkLocked() error {
	if err := s.wal.err(); err != nil {
		return err
	}
	if s.mu.closed {
		return ErrClosed
	}
	return nil
}

func (s *Storage) lastIndexLocked() uint64 { return s.mu.log.last }

// cacheFirstLocked is the index of the first cached entry.
func (s *Storage) cacheFirstLocked() uint64 { return s.mu.log.last + 1 - uint64(len(s.mu.cache)) }

func (s *Storage) termLocked(i uint64) (uint64, error) {
	switch {
	case i < s.mu.snap.Index:
		return 0, raft.ErrCompacted
	case i == s.mu.snap.Index:
		return s.mu.snap.Term, nil
	case i > s.lastIndexLocked():
		return 0, raft.ErrUnavailable
	}
	return s.mu.log.term(i), nil
}

// InitialState implements raft.LogReader.
func (s *Storage) InitialState() (raft.HardState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(); err != nil {
		return raft.HardState{}, err
	}
	return s.mu.hs, nil
}

// Entries implements raft.LogReader. The entries and their Data are shared with the
// Storage: the caller must not modify them. Entries older than the cache are read
// back from the WAL, without the lock.
func (s *Storage) Entries(lo, hi, maxBytes uint64) ([]raft.Entry, error) {
	s.mu.RLock()
	if err := s.checkLocked(); err != nil {
		s.mu.RUnlock()
		return nil, err
	}
	if lo > hi {
		s.mu.RUnlock()
		panic(fmt.Sprintf("storage: Entries(%d, %d): lo > hi", lo, hi))
	}
	if lo <= s.mu.snap.Index {
		s.mu.RUnlock()
		return nil, raft.ErrCompacted
	}
	if hi > s.lastIndexLocked()+1 {
		s.mu.RUnlock()
		return nil, raft.ErrUnavailable
	}
	cacheFirst := s.cacheFirstLocked()
	if lo >= cacheFirst {
		ents := limitSize(s.mu.cache[lo-cacheFirst:hi-cacheFirst], maxBytes)
		s.mu.RUnlock()
		return ents[:len(ents):len(ents)], nil
	}
	// Locate no more entries than maxBytes can let through: raft may ask for a long
	// range with a small maxBytes, and each location costs memory.
	end := min(hi, cacheFirst)
	if n := maxBytes/minEntrySize + 1; n < end-lo {
		end = lo + n
	}
	locs := s.mu.log.locate(lo, end)
	var cached []raft.Entry
	if hi > cacheFirst && end == cacheFirst {
		cached = s.mu.cache[: hi-cacheFirst : hi-cacheFirst]
	}
	s.mu.RUnlock()

	ents, size, err := s.readEntries(lo, locs, maxBytes)
	if err != nil {
		s.mu.RLock()
		compacted := lo <= s.mu.snap.Index
		s.mu.RUnlock()
		if compacted {
			// A snapshot replaced them while they were read (and its retention
			// removed their segment): say so, as if it had come first.
			return nil, raft.ErrCompacted
		}
		return nil, err
	}
	if len(ents) < len(locs) {
		return ents, nil
	}
	for i := range cached {
		size += uint64(cached[i].Size())
		if size > maxBytes {
			break
		}
		ents = append(ents, cached[i])
	}
	return ents, nil
}

// minEntrySize is the smallest encoded size of an entry (raft.Entry.Size): the format
// byte, the type, and a byte each for the term, index and data length.
const minEntrySize = 5

// limitSize returns the longest prefix of ents, at least one entry, whose encoded
// size is at most maxBytes.
func limitSize(ents []raft.Entry, maxBytes uint64) []raft.Entry {
	var size uint64
	for i := range ents {
		size += uint64(ents[i].Size())
		if i > 0 && size > maxBytes {
			return ents[:i]
		}
	}
	return ents
}

// Term implements raft.LogReader.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(); err != nil {
		return 0, err
	}
	return s.termLocked(i)
}

// FirstIndex implements raft.LogReader.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(); err != nil {
		return 0, err
	}
	return s.mu.snap.Index + 1, nil
}

// Err returns the failure that stopped the Storage (a write or sync that failed;
// every call after it fails with it), or nil. It implements raft.FailingStorage:
// a Node whose read of a failed Storage fails stops with this error.
func (s *Storage) Err() error { return s.wal.err() }

// LastIndex implements raft.LogReader.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(); err != nil {
		return 0, err
	}
	return s.lastIndexLocked(), nil
}

// ConfEntryIndexes implements raft.ConfEntryIndexer.
func (s *Storage) ConfEntryIndexes() ([]uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(); err != nil {
		return nil, err
	}
	return slices.Clone(s.mu.confIndexes), nil
}

// SnapshotMeta implements raft.LogReader: the latest snapshot's index, term and
// membership, which the Storage keeps in memory.
func (s *Storage) SnapshotMeta() (raft.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.checkLocked(); err != nil {
		return raft.Snapshot{}, err
	}
	return raft.Snapshot{Index: s.mu.snap.Index, Term: s.mu.snap.Term, Membership: s.mu.snap.Membership.Clone()}, nil
}

// Snapshot implements raft.LogReader. The Storage keeps only the snapshot's index,
// term and membership in memory (its data can be as large as the whole state, and is needed only to
// catch up a lagging follower or restart the application), so Snapshot reads the data
// back from its file, checking it again.
func (s *Storage) Snapshot() (raft.Snapshot, error) {
	// A newer snapshot may replace the one named under the lock and prune its file
	// before it is read; then read the newer one.
	for attempt := 0; ; attempt++ {
		s.mu.RLock()
		err := s.checkLocked()
		meta := s.mu.snap
		s.mu.RUnlock()
		if err != nil || meta.Index == 0 {
			return raft.Snapshot{}, err
		}
		sf := snapFile{name: snapshotName(meta.Index, meta.Term), index: meta.Index, term: meta.Term}
		snap, _, err := readSnapshot(s.fs, s.snapDir, sf, s.clusterID)
		if err == nil {
			return snap, nil
		}
		s.mu.RLock()
		replaced := s.mu.snap.Index != meta.Index
		s.mu.RUnlock()
		if !replaced || attempt >= 3 {
			return raft.Snapshot{}, fmt.Errorf("storage: reading snapshot %d back: %w", meta.Index, err)
		}
	}
}

// syncAndDropCache fsyncs the file at path, then drops its cached pages, so that
// what is read of it next comes from the disk. Recovery does this to each WAL
// segment before it reads it:
//   - a process killed before its fsync left dirty pages: the fsync writes them,
//     and dropping them loses nothing;
//   - a node stopped after a failed fsync (fsyncgate): Linux may keep the pages it
//     failed to write cached and marked clean, so this fsync succeeds without
//     writing them. Reading them from the cache would replay entries the disk does
//     not hold; read from the disk, the record CRCs cut them off as a torn tail.
func syncAndDropCache(fsys FS, path string) error {
	f, err := fsys.OpenReadWrite(path)
	if err != nil {
		return fmt.Errorf("storage: opening %s to sync it: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fatalError(fsys, "fsync of", path, 0, err)
	}
	if err := f.DropCache(); err != nil {
		return fmt.Errorf("storage: dropping the cached pages of %s before reading it back: %w", path, err)
	}
	return nil
}
