package storage

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"

	"raftkv/raft"
)

// A snapshot file is named "<index>-<term>.snap" (16 hex digits each) and holds, in
// little-endian:
//
//	0   [8]  magic "raftkvSN"
//	8   u32  format version (2)
//	12  u8   kind: 1 made here (CreateSnapshot), 2 received from the leader (ApplySnapshot)
//	13  [3]  zero
//	16  u64  cluster id
//	24  u64  index
//	32  u64  term
//	40  u64  data length
//	48  u32  membership length M
//	52  [M]  the configuration as of index (raft.Membership's encoding)
//	    ...  data
//	    u32  CRC-32C of every byte before it
//
// Format 1, written before configuration changes, has no membership: its data begins
// at 48, and it reads as the bootstrap configuration (the empty raft.Membership).
//
// It is written under a temporary name, synced, renamed and its directory synced, so
// a snapshot file that exists under its final name was complete when it got there;
// the checksum catches what happened to it since.
const (
	snapHeaderSize  = 48
	snapTrailerSize = 4
	snapVersion     = 2
	// snapMembershipLenSize is format 2's membership length field, after the header.
	snapMembershipLenSize = 4
	snapExt               = ".snap"
)

var snapMagic = [8]byte{'r', 'a', 'f', 't', 'k', 'v', 'S', 'N'}

// snapFile is a snapshot file known by its name.
type snapFile struct {
	name  string
	index uint64
	term  uint64
}

func snapshotName(index, term uint64) string {
	return fmt.Sprintf("%016x-%016x%s", index, term, snapExt)
}

func parseSnapshotName(name string) (snapFile, bool) {
	if len(name) != 33+len(snapExt) || name[16] != '-' || filepath.Ext(name) != snapExt {
		return snapFile{}, false
	}
	index, err1 := strconv.ParseUint(name[:16], 16, 64)
	term, err2 := strconv.ParseUint(name[17:33], 16, 64)
	if err1 != nil || err2 != nil || snapshotName(index, term) != name {
		return snapFile{}, false
	}
	return snapFile{name: name, index: index, term: term}, true
}

// listSnapshots returns the snapshot files in dir, newest (highest index) first.
func listSnapshots(fsys FS, dir string) ([]snapFile, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return nil, err
	}
	var files []snapFile
	for _, name := range names {
		if f, ok := parseSnapshotName(name); ok {
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(a, b snapFile) int {
		return cmp.Or(cmp.Compare(b.index, a.index), cmp.Compare(b.term, a.term))
	})
	return files, nil
}

// writeSnapshot makes snap durable in dir. Its errors are fatal errors (fatalError).
func writeSnapshot(fsys FS, dir string, clusterID uint64, snap raft.Snapshot, kind snapKind) error {
	_, err := writeSnapshotFrom(fsys, dir, clusterID, snap.Index, snap.Term, snap.Membership, kind, int64(len(snap.Data)),
		func(w io.Writer) error {
			_, err := w.Write(snap.Data)
			return err
		})
	return err
}

// snapWriteBufferBytes is the buffer between a streamed snapshot and its file.
const snapWriteBufferBytes = 1 << 20

// writeSnapshotFrom makes a snapshot durable in dir, with membership, whose data write
// streams into it, and returns the data's length. size is the data's length if known,
// for preallocation, or -1. An error of write is returned as it is and the file
// removed; the other errors are fatal errors (fatalError).
//
// The checksum covers the header, whose data length is known only at the end. CRC-32C
// is affine over equal-length messages, so the checksum of the header with the length
// and what follows it is that of the header without it, streamed with the rest, xor
// that of the length alone in place (every other byte zero), xor that of all zeros.
func writeSnapshotFrom(fsys FS, dir string, clusterID, index, term uint64, membership raft.Membership, kind snapKind,
	size int64, write func(io.Writer) error) (int64, error) {
	final := filepath.Join(dir, snapshotName(index, term))
	// The kind in the name keeps an installed snapshot and one of this node's own,
	// written at once, apart even at the same index and term (see createSnapshot).
	tmp := fmt.Sprintf("%s.%d%s", final, kind, tmpSuffix)
	var header [snapHeaderSize]byte
	copy(header[0:8], snapMagic[:])
	binary.LittleEndian.PutUint32(header[8:12], snapVersion)
	header[12] = byte(kind)
	binary.LittleEndian.PutUint64(header[16:24], clusterID)
	binary.LittleEndian.PutUint64(header[24:32], index)
	binary.LittleEndian.PutUint64(header[32:40], term)

	f, err := fsys.Create(tmp)
	if err != nil {
		return 0, fatalError(fsys, "create of snapshot file", tmp, 0, err)
	}
	fail := func(what string, needed int64, err error) (int64, error) {
		f.Close()
		fsys.Remove(tmp) // best effort; the next open removes it anyway
		return 0, fatalError(fsys, what+" of snapshot file", tmp, needed, err)
	}
	conf := binary.LittleEndian.AppendUint32(nil, uint32(membership.Size()))
	conf = membership.MarshalTo(conf)
	if size >= 0 {
		total := snapHeaderSize + int64(len(conf)) + size + snapTrailerSize
		if err := f.Preallocate(total); err != nil {
			return fail("preallocation", total, err)
		}
	}
	sw := &snapDataWriter{f: f, off: snapHeaderSize, crc: crc32.Update(0, castagnoli, header[:])}
	bw := bufio.NewWriterSize(sw, snapWriteBufferBytes)
	if _, err := bw.Write(conf); err != nil {
		return fail(sw.what(), sw.failedBytes, err)
	}
	if err := write(bw); err != nil {
		if sw.err != nil {
			return fail(sw.what(), sw.failedBytes, sw.err)
		}
		f.Close()
		fsys.Remove(tmp)
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return fail(sw.what(), sw.failedBytes, err)
	}
	rest := sw.off - snapHeaderSize // the membership and the data
	n := rest - int64(len(conf))
	if size >= 0 && n != size {
		panic(fmt.Sprintf("storage: snapshot data of %d bytes was announced as %d", n, size))
	}
	binary.LittleEndian.PutUint64(header[40:48], uint64(n))
	var lengthOnly [snapHeaderSize]byte
	copy(lengthOnly[40:48], header[40:48])
	crc := sw.crc ^ crcWithZeros(lengthOnly[:], rest) ^ crcWithZeros(make([]byte, snapHeaderSize), rest)
	var trailer [snapTrailerSize]byte
	binary.LittleEndian.PutUint32(trailer[:], crc)
	if _, err := f.WriteAt(header[:], 0); err != nil {
		return fail("write of the header", int64(len(header)), err)
	}
	if _, err := f.WriteAt(trailer[:], snapHeaderSize+rest); err != nil {
		return fail(fmt.Sprintf("write at offset %d", snapHeaderSize+rest), int64(len(trailer)), err)
	}
	if err := f.Sync(); err != nil {
		return fail("fdatasync", 0, err)
	}
	if err := f.Close(); err != nil {
		return fail("close", 0, err)
	}
	if err := fsys.Rename(tmp, final); err != nil {
		return 0, fatalError(fsys, "rename of snapshot file to", final, 0, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return 0, fatalError(fsys, "fsync of snapshot directory", dir, 0, err)
	}
	return n, nil
}

// crcWithZeros returns the CRC-32C of prefix followed by n zero bytes.
func crcWithZeros(prefix []byte, n int64) uint32 {
	var zeros [64 << 10]byte
	crc := crc32.Update(0, castagnoli, prefix)
	for n > 0 {
		k := min(n, int64(len(zeros)))
		crc = crc32.Update(crc, castagnoli, zeros[:k])
		n -= k
	}
	return crc
}

// snapDataWriter writes a snapshot's data at increasing offsets of its file,
// checksumming it as it goes.
type snapDataWriter struct {
	f   File
	off int64
	crc uint32
	err error
	// failedAt and failedBytes are the offset and length of the write that failed.
	failedAt, failedBytes int64
}

func (w *snapDataWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.WriteAt(p, w.off)
	w.crc = crc32.Update(w.crc, castagnoli, p[:n])
	if err != nil {
		w.err, w.failedAt, w.failedBytes = err, w.off+int64(n), int64(len(p)-n)
	}
	w.off += int64(n)
	return n, err
}

// what names the failed write, for its error.
func (w *snapDataWriter) what() string {
	return fmt.Sprintf("write at offset %d", w.failedAt)
}

// errBadSnapshot is wrapped by the errors of readSnapshot for files that fail a check.
var errBadSnapshot = errors.New("snapshot file fails its checks")

// readSnapshot reads and checks a snapshot file. The returned Data is freshly read.
func readSnapshot(fsys FS, dir string, sf snapFile, clusterID uint64) (raft.Snapshot, snapKind, error) {
	path := filepath.Join(dir, sf.name)
	bad := func(format string, args ...any) (raft.Snapshot, snapKind, error) {
		return raft.Snapshot{}, 0, fmt.Errorf("%w: %s: %s", errBadSnapshot, path, fmt.Sprintf(format, args...))
	}
	f, err := fsys.Open(path)
	if err != nil {
		return raft.Snapshot{}, 0, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return raft.Snapshot{}, 0, err
	}
	if size < snapHeaderSize+snapTrailerSize {
		return bad("file is %d bytes, shorter than an empty snapshot", size)
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return raft.Snapshot{}, 0, fmt.Errorf("reading snapshot %s: %w", path, err)
	}
	body := buf[:size-snapTrailerSize]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(buf[size-snapTrailerSize:]) {
		return bad("checksum mismatch")
	}
	h := buf[:snapHeaderSize]
	if [8]byte(h[0:8]) != snapMagic {
		return bad("no snapshot magic")
	}
	version := binary.LittleEndian.Uint32(h[8:12])
	if version < 1 || version > snapVersion {
		return bad("format version %d, this build reads versions 1 to %d", version, snapVersion)
	}
	kind := snapKind(h[12])
	if kind != snapCompact && kind != snapInstall {
		return bad("unknown kind %d", kind)
	}
	if id := binary.LittleEndian.Uint64(h[16:24]); id != clusterID {
		return bad("snapshot of cluster %x, not %x", id, clusterID)
	}
	snap := raft.Snapshot{
		Index: binary.LittleEndian.Uint64(h[24:32]),
		Term:  binary.LittleEndian.Uint64(h[32:40]),
	}
	if snap.Index != sf.index || snap.Term != sf.term {
		return bad("holds index %d term %d, its name says index %d term %d", snap.Index, snap.Term, sf.index, sf.term)
	}
	rest := body[snapHeaderSize:]
	if version >= 2 {
		if len(rest) < snapMembershipLenSize {
			return bad("file ends before the membership's length")
		}
		m := binary.LittleEndian.Uint32(rest)
		rest = rest[snapMembershipLenSize:]
		if uint64(m) > uint64(len(rest)) {
			return bad("says %d bytes of membership, the file holds %d after it", m, len(rest))
		}
		if err := snap.Membership.Unmarshal(rest[:m]); err != nil {
			return bad("membership: %v", err)
		}
		rest = rest[m:]
	}
	if n := binary.LittleEndian.Uint64(h[40:48]); n != uint64(len(rest)) {
		return bad("says %d bytes of data, the file holds %d", n, len(rest))
	}
	if len(rest) > 0 {
		snap.Data = rest
	}
	return snap, kind, nil
}

// pruneSnapshots removes all but the newest keep snapshot files in dir, and returns
// the index of the oldest one kept. Failing to remove an old snapshot loses nothing,
// so it is only logged; failing to sync the directory is fatal, like every failed
// sync.
func pruneSnapshots(fsys FS, dir string, keep int, logger *slog.Logger) (uint64, error) {
	files, err := listSnapshots(fsys, dir)
	if err != nil {
		logger.Warn("listing snapshots to prune failed", "dir", dir, "err", err)
		return 0, nil
	}
	if len(files) == 0 {
		return 0, nil
	}
	kept := files[:min(keep, len(files))]
	for _, f := range files[len(kept):] {
		path := filepath.Join(dir, f.name)
		if err := fsys.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Warn("removing an old snapshot failed", "file", path, "err", err)
		}
	}
	if len(files) > len(kept) {
		if err := fsys.SyncDir(dir); err != nil {
			return 0, fatalError(fsys, "fsync of snapshot directory", dir, 0, err)
		}
	}
	return kept[len(kept)-1].index, nil
}
