package server

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"raftkv/kv"
)

// The backup format: what Maintenance.Snapshot streams, `etcdctl snapshot save` and
// `raftkv snapshot save` write to a file, and `raftkv snapshot restore` builds a new
// cluster from. It is the store's state as data (kv.KeyHistory), read from one
// frozen view at one revision, so it does not depend on how the store keeps its
// state, nor on the Raft log, nor on the member that wrote it:
//
//	backup  = magic:"RAFTKV-BACKUP\n" record* padding sha256:32
//	record  = kind:1 len:uvarint payload:len bytes
//	'H'     = version:uvarint revision:varint compactRevision:varint nKeys:uvarint
//	          nLeases:uvarint (id:varint ttl:varint remainingTTL:varint)*nLeases
//	'A'     = the store's auth state (kv.SnapshotView.AuthState), opaque here
//	'K'     = key bytes: a key's history starts (keys in ascending order)
//	'G'     = createRevision:varint firstVersion:varint tombstoneRevision:varint
//	          tombstoneSub:uvarint: a generation of the key starts
//	'R'     = modRevision:varint lease:varint sub:uvarint value: a put of the
//	          generation
//	'D'     = sub:uvarint key: a delete at the compaction revision, after the
//	          keys (kv.CompactionDelete), in the order the revision made them
//	'E'     = nKeys:uvarint: the end, with the key count again
//
// The subs (kv.KeyRevision.Sub) are each change's place in its revision, so that a
// restored store replays a txn's changes in the order it made them; format 1, which
// restore still reads, had none, and its changes of one revision come back in key
// order. The 'D' records came with format 3: a restore of format 1 or 2 has no
// deletes at the compaction revision, which a watch from exactly there reports.
//
// Records are small (one value at most), so neither side holds more than one key's
// history. padding is zero bytes up to a multiple of 512 bytes, and sha256 is the
// SHA-256 of every byte before it: etcd's clients take a snapshot whose size is a
// multiple of 512 plus 32 as one that carries its checksum (etcdctl refuses any
// other), and restore verifies it, as etcdutl does. Sessions and the proposal table
// are not in a backup: a restored store starts a new cluster, with new proposers.
const (
	backupMagic   = "RAFTKV-BACKUP\n"
	backupVersion = 3
	// backupVersionNoSubs is the format before the subs, and backupVersionNoDeletes
	// the one before the 'D' records, which restore reads too.
	backupVersionNoSubs    = 1
	backupVersionNoDeletes = 2
	// backupAlign is the multiple of which a backup's body is (etcd's sector size).
	backupAlign = 512
	// maxBackupRecord bounds one record: a key and a value, with room to spare, or
	// the auth state.
	maxBackupRecord = 64 << 20
)

// errBadBackup marks a backup that cannot be read: not one, damaged, or of an
// unknown version.
var errBadBackup = errors.New("not a valid raftkv backup")

// backupWriter writes the records, counting and hashing every byte.
type backupWriter struct {
	w       *bufio.Writer
	sha     hash.Hash
	written int64
	buf     []byte
	err     error
}

func newBackupWriter(w io.Writer) *backupWriter {
	bw := &backupWriter{w: bufio.NewWriterSize(w, 256<<10), sha: sha256.New()}
	bw.raw([]byte(backupMagic))
	return bw
}

func (bw *backupWriter) raw(p []byte) {
	if bw.err != nil {
		return
	}
	_, bw.err = bw.w.Write(p)
	bw.sha.Write(p)
	bw.written += int64(len(p))
}

func (bw *backupWriter) record(kind byte, payload []byte, tail []byte) {
	b := append(bw.buf[:0], kind)
	b = binary.AppendUvarint(b, uint64(len(payload)+len(tail)))
	b = append(b, payload...)
	bw.raw(b)
	bw.raw(tail)
	bw.buf = b
}

// writeBackup writes the backup of view to w and returns its size, checksum
// included.
func writeBackup(w io.Writer, view *kv.SnapshotView) (int64, error) {
	bw := newBackupWriter(w)
	var p []byte
	p = binary.AppendUvarint(p, backupVersion)
	p = binary.AppendVarint(p, view.Revision())
	p = binary.AppendVarint(p, view.CompactRevision())
	p = binary.AppendUvarint(p, uint64(view.KeyCount()))
	leases, err := view.Leases()
	if err != nil {
		return 0, err
	}
	p = binary.AppendUvarint(p, uint64(len(leases)))
	for _, l := range leases {
		p = binary.AppendVarint(p, l.ID)
		p = binary.AppendVarint(p, l.TTL)
		p = binary.AppendVarint(p, l.RemainingTTL)
	}
	bw.record('H', p, nil)
	bw.record('A', view.AuthState(), nil)
	var keys uint64
	err = view.EachKey(func(h *kv.KeyHistory) error {
		keys++
		bw.record('K', h.Key, nil)
		for _, g := range h.Generations {
			p = binary.AppendVarint(p[:0], g.CreateRevision)
			p = binary.AppendVarint(p, g.FirstVersion)
			p = binary.AppendVarint(p, g.TombstoneRevision)
			p = binary.AppendUvarint(p, uint64(g.TombstoneSub))
			bw.record('G', p, nil)
			for _, r := range g.Revisions {
				p = binary.AppendVarint(p[:0], r.ModRevision)
				p = binary.AppendVarint(p, r.Lease)
				p = binary.AppendUvarint(p, uint64(r.Sub))
				bw.record('R', p, r.Value)
			}
		}
		return bw.err
	})
	if err != nil {
		return bw.written, err
	}
	err = view.EachCompactionDelete(func(d kv.CompactionDelete) error {
		bw.record('D', binary.AppendUvarint(p[:0], uint64(d.Sub)), d.Key)
		return bw.err
	})
	if err != nil {
		return bw.written, err
	}
	bw.record('E', binary.AppendUvarint(p[:0], keys), nil)
	if pad := bw.written % backupAlign; pad != 0 {
		bw.raw(make([]byte, backupAlign-pad))
	}
	sum := bw.sha.Sum(nil)
	if bw.err == nil {
		_, bw.err = bw.w.Write(sum)
		bw.written += int64(len(sum))
	}
	if bw.err == nil {
		bw.err = bw.w.Flush()
	}
	return bw.written, bw.err
}

// BackupInfo is what a backup says of itself (raftkv snapshot status).
type BackupInfo struct {
	// Hash is the backup's SHA-256 trailer; Size its bytes, trailer included.
	Hash    []byte
	Size    int64
	Version uint64
	// Format is "raftkv" for raftkv's backups, "etcd" for etcd's database.
	Format                    string
	Revision, CompactRevision int64
	TotalKeys                 uint64
	Leases                    []kv.LeaseInfo
	AuthState                 []byte
}

// backupReader reads a backup file's records.
type backupReader struct {
	r    *bufio.Reader
	info BackupInfo
	// pending is a record read ahead.
	pendingKind byte
	pending     []byte
	keysRead    uint64
	keysDone    bool // nextKey has returned nil
	done        bool // the end record is read
	// etcd is an etcd backup's database (backup_etcd.go), whose keys nextKey hands
	// out; r is nil then.
	etcd *etcdBackup
}

// openBackup opens the backup at path, checks its checksum (unless skipHashCheck),
// and reads its header. Close it when done. verb is what the caller does with it
// ("restore", "read", "convert"), for the advice to pass --skip-hash-check.
func openBackup(path string, skipHashCheck bool, verb string) (io.Closer, *backupReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	br, err := readBackupHeader(f, path, skipHashCheck, verb)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return backupFile{f, br}, br, nil
}

// backupFile closes a backup's file, and an etcd backup's database.
type backupFile struct {
	f  *os.File
	br *backupReader
}

func (b backupFile) Close() error {
	if b.br.etcd != nil {
		b.br.etcd.close()
	}
	return b.f.Close()
}

func readBackupHeader(f *os.File, path string, skipHashCheck bool, verb string) (*backupReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	hasHash := size%backupAlign == sha256.Size
	if !hasHash && !skipHashCheck {
		return nil, fmt.Errorf("%w: the file carries no SHA-256 trailer (%d bytes is not a multiple of %d plus %d); "+
			"pass --skip-hash-check to %s it unchecked", errBadBackup, size, backupAlign, sha256.Size, verb)
	}
	body := size
	var trailer []byte
	if hasHash {
		body = size - sha256.Size
		trailer = make([]byte, sha256.Size)
		if _, err := f.ReadAt(trailer, body); err != nil {
			return nil, err
		}
	}
	if hasHash && !skipHashCheck {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, body)); err != nil {
			return nil, err
		}
		if got := h.Sum(nil); !bytes.Equal(got, trailer) {
			return nil, fmt.Errorf("%w: SHA-256 of its contents is %x, its trailer says %x; the file is damaged "+
				"(--skip-hash-check %ss it anyway)", errBadBackup, got, trailer, verb)
		}
	}
	br := &backupReader{r: bufio.NewReaderSize(io.NewSectionReader(f, 0, body), 256<<10)}
	br.info.Hash, br.info.Size, br.info.Format = trailer, size, "raftkv"
	if head, err := br.r.Peek(20); err == nil && isBboltFile(head) {
		br.r = nil
		if err := readEtcdBackup(path, br); err != nil {
			return nil, err
		}
		return br, nil
	}
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(br.r, magic); err != nil || string(magic) != backupMagic {
		return nil, fmt.Errorf("%w: neither a %q header nor an etcd database", errBadBackup, backupMagic[:13])
	}
	kind, p, err := br.next()
	if err != nil {
		return nil, err
	}
	if kind != 'H' {
		return nil, fmt.Errorf("%w: first record is %q, not the header", errBadBackup, kind)
	}
	d := byteDecoder{b: p}
	info := &br.info
	info.Version = d.uvarint()
	if d.err == nil && (info.Version < backupVersionNoSubs || info.Version > backupVersion) {
		return nil, fmt.Errorf("%w: format version %d; this raftkv reads versions %d to %d", errBadBackup, info.Version, backupVersionNoSubs, backupVersion)
	}
	info.Revision, info.CompactRevision, info.TotalKeys = d.varint(), d.varint(), d.uvarint()
	n := d.uvarint()
	for i := uint64(0); i < n && d.err == nil; i++ {
		info.Leases = append(info.Leases, kv.LeaseInfo{ID: d.varint(), TTL: d.varint(), RemainingTTL: d.varint()})
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: header record is malformed", errBadBackup)
	}
	kind, p, err = br.next()
	if err != nil {
		return nil, err
	}
	if kind != 'A' {
		return nil, fmt.Errorf("%w: second record is %q, not the auth state", errBadBackup, kind)
	}
	info.AuthState = bytes.Clone(p)
	return br, nil
}

// next reads one record; the payload is valid until the next call.
func (br *backupReader) next() (byte, []byte, error) {
	if br.pending != nil || br.pendingKind != 0 {
		k, p := br.pendingKind, br.pending
		br.pendingKind, br.pending = 0, nil
		return k, p, nil
	}
	kind, err := br.r.ReadByte()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: it ends before its end record", errBadBackup)
	}
	n, err := binary.ReadUvarint(br.r)
	if err != nil || n > maxBackupRecord {
		return 0, nil, fmt.Errorf("%w: record %q has a bad length", errBadBackup, kind)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br.r, p); err != nil {
		return 0, nil, fmt.Errorf("%w: record %q is cut short", errBadBackup, kind)
	}
	return kind, p, nil
}

// nextKey returns the next key's history, nil after the last; nextDelete then reads
// on.
func (br *backupReader) nextKey() (*kv.KeyHistory, error) {
	if br.keysDone {
		return nil, nil
	}
	if br.etcd != nil {
		h, err := br.etcd.next()
		if h == nil || err != nil {
			br.keysDone = true
			return h, err
		}
		br.keysRead++
		return h, nil
	}
	kind, p, err := br.next()
	if err != nil {
		return nil, err
	}
	switch kind {
	case 'D', 'E':
		br.pendingKind, br.pending = kind, p
		br.keysDone = true
		return nil, nil
	case 'K':
	default:
		return nil, fmt.Errorf("%w: record %q where a key was expected", errBadBackup, kind)
	}
	h := &kv.KeyHistory{Key: p}
	br.keysRead++
	for {
		kind, p, err := br.next()
		if err != nil {
			return nil, err
		}
		d := byteDecoder{b: p}
		switch kind {
		case 'G':
			g := kv.KeyGeneration{CreateRevision: d.varint(), FirstVersion: d.varint(), TombstoneRevision: d.varint()}
			if br.info.Version != backupVersionNoSubs {
				g.TombstoneSub = d.sub()
			}
			h.Generations = append(h.Generations, g)
		case 'R':
			if len(h.Generations) == 0 {
				return nil, fmt.Errorf("%w: key %q: a revision before its generation", errBadBackup, h.Key)
			}
			g := &h.Generations[len(h.Generations)-1]
			r := kv.KeyRevision{ModRevision: d.varint(), Lease: d.varint()}
			if br.info.Version != backupVersionNoSubs {
				r.Sub = d.sub()
			}
			r.Value, d.b = d.b, nil
			g.Revisions = append(g.Revisions, r)
		default:
			br.pendingKind, br.pending = kind, p
			return h, nil
		}
		if d.err != nil || len(d.b) != 0 {
			return nil, fmt.Errorf("%w: key %q: record %q is malformed", errBadBackup, h.Key, kind)
		}
	}
}

// nextDelete returns the next delete at the compaction revision, once nextKey has
// returned nil; nil after the last (the end record, whose count it checks, followed
// by nothing but padding).
func (br *backupReader) nextDelete() (*kv.CompactionDelete, error) {
	switch {
	case br.done:
		return nil, nil
	case !br.keysDone:
		return nil, errors.New("server: a backup's deletes read before its keys")
	case br.etcd != nil:
		d, err := br.etcd.nextDelete()
		if d == nil || err != nil {
			br.done = true
		}
		return d, err
	}
	kind, p, err := br.next()
	if err != nil {
		return nil, err
	}
	d := byteDecoder{b: p}
	switch {
	case kind == 'D' && br.info.Version > backupVersionNoDeletes:
		sub := d.sub()
		if d.err != nil || len(d.b) == 0 || br.info.CompactRevision < 1 {
			return nil, fmt.Errorf("%w: record %q is malformed (or the backup has no compaction for it)", errBadBackup, kind)
		}
		return &kv.CompactionDelete{Key: d.b, Sub: sub}, nil
	case kind == 'E':
		if n := d.uvarint(); d.err != nil || n != br.keysRead || n != br.info.TotalKeys {
			return nil, fmt.Errorf("%w: it ends after %d keys, its header says %d", errBadBackup, br.keysRead, br.info.TotalKeys)
		}
		rest, _ := io.ReadAll(br.r)
		if len(rest) >= backupAlign || bytes.ContainsFunc(rest, func(r rune) bool { return r != 0 }) {
			return nil, fmt.Errorf("%w: %d bytes other than padding follow its end", errBadBackup, len(rest))
		}
		br.done = true
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: record %q after the keys", errBadBackup, kind)
	}
}

// importInto imports the backup into store as the state at appliedIndex.
func (br *backupReader) importInto(store *kv.Store, appliedIndex uint64) error {
	info := &br.info
	return store.Import(kv.ImportHeader{AppliedIndex: appliedIndex, Revision: info.Revision,
		CompactRevision: info.CompactRevision, Leases: info.Leases, AuthState: info.AuthState,
		WithSubs: info.Version != backupVersionNoSubs}, br.nextKey, br.nextDelete)
}

// byteDecoder reads varints off b.
type byteDecoder struct {
	b   []byte
	err error
}

func (d *byteDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadBackup
		return 0
	}
	d.b = d.b[n:]
	return v
}

// sub reads a sub-revision: a uvarint below 2^32-1 (kv's seek sentinel).
func (d *byteDecoder) sub() uint32 {
	v := d.uvarint()
	if v >= 1<<32-1 {
		d.err = errBadBackup
		return 0
	}
	return uint32(v)
}

func (d *byteDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadBackup
		return 0
	}
	d.b = d.b[n:]
	return v
}

// ReadBackupInfo reads the backup at path whole, checking its checksum (unless
// skipHashCheck) and every record, and says what it holds.
func ReadBackupInfo(path string, skipHashCheck bool) (BackupInfo, error) {
	f, br, err := openBackup(path, skipHashCheck, "read")
	if err != nil {
		return BackupInfo{}, err
	}
	defer f.Close()
	for {
		h, err := br.nextKey()
		if err != nil {
			return BackupInfo{}, fmt.Errorf("%s: %w", path, err)
		}
		if h == nil {
			break
		}
	}
	for {
		d, err := br.nextDelete()
		if err != nil {
			return BackupInfo{}, fmt.Errorf("%s: %w", path, err)
		}
		if d == nil {
			return br.info, nil
		}
	}
}
