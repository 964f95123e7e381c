package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// Snapshots are the engine's stream of chunks (engine_snapshot.go), taken from a
// pebble snapshot while Apply goes on. Restore also reads the snapshot format
// of the previous release (the whole state in one piece, formats 1 to 5, below),
// which it imports into the engine, so that a member upgraded across the change
// takes the snapshot it left on disk, or one an older leader sends.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot returns the store's engine snapshot stream (WriteSnapshot) in one
// piece: for tests and small stores.
func (s *Store) Snapshot() ([]byte, error) {
	return s.AppendSnapshot(nil)
}

// AppendSnapshot appends the Snapshot to dst and returns the extended slice.
func (s *Store) AppendSnapshot(dst []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	_, err := s.WriteSnapshot(buf)
	return buf.Bytes(), err
}

// WriteSnapshot writes the store as of its current applied index to w, as the
// engine's stream of chunks (engine_snapshot.go): every record, the applied index
// and term, the history, sessions, proposals, leases, auth and server records
// included. Apply goes on meanwhile, and neither end holds more than a chunk.
func (s *Store) WriteSnapshot(w io.Writer) (int64, error) {
	v, err := s.SnapshotView()
	if err != nil {
		return 0, err
	}
	defer v.Release()
	return v.WriteTo(w)
}

// Restore replaces the store's state with the one in data: an engine snapshot
// stream (RestoreFrom), or a snapshot in the format of the previous release,
// which is checked whole before the store changes. Restore keeps no reference to
// data.
func (s *Store) Restore(data []byte) error {
	if bytes.HasPrefix(data, []byte(engineSnapshotMagic)) {
		return s.restoreFrom(bytes.NewReader(data), true, nil)
	}
	old, err := decodeOldSnapshot(data, s.cfg)
	if err != nil {
		return err
	}
	i := 0
	return s.importState(old.state, func() (*KeyHistory, error) {
		if i == len(old.keys) {
			return nil, nil
		}
		i++
		return old.keys[i-1], nil
	}, nil)
}

// RestoreFrom replaces the store's state with the engine snapshot stream r, a
// chunk at a time. Afterwards AppliedIndex and AppliedTerm are the stream's. A
// stream that is corrupt or cut short fails with ErrCorruptSnapshot (before any
// change if its header is wrong); past the header, it leaves the store refusing
// Apply, and its engine refused by OpenStore, until a restore succeeds. r is read
// no further than the stream's end if it is an io.ByteReader (wrap a network
// stream in a bufio.Reader); otherwise it may be read past it. A non-nil rec is
// written in the batch that ends the restore (see RestoreRecord).
func (s *Store) RestoreFrom(r io.Reader, rec *RestoreRecord) error {
	return s.restoreFrom(r, false, rec)
}

// RestoreRecord is a server record (SetMeta) that a restore writes in the batch
// that ends it: Value followed by the restored state's applied index (8 bytes,
// big-endian). The engine keeps no log of its own, so the flush that ends the
// restore makes the record durable together with the restored state: a crash
// leaves both or neither. (A record set after the restore returns could be lost
// to a crash that the restored state, flushed first, survives.)
type RestoreRecord struct {
	Name  string
	Value []byte
}

func (s *Store) restoreFrom(r io.Reader, wholeStream bool, rec *RestoreRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	st := s.mu.st
	if err := st.commitOpen(); err != nil {
		return err
	}
	term := st.e.term
	if err := st.e.restore(r, wholeStream, rec); err != nil {
		st.cutOff(err)
		return err
	}
	return s.reload(st, term)
}

// cutOff stops the store after a restore or an import failed with err, if it
// had begun to replace the state: the store then holds no consistent state.
func (st *state) cutOff(err error) {
	// The marker goes in the batch that ends the restore, before the checks and
	// the flush that follow it: restoring covers a failure there too.
	if restoring, rerr := st.e.getMeta(metaRestoring); st.e.restoring || rerr != nil || restoring != nil {
		st.failed = fmt.Errorf("kv: a restore into the engine in %q was cut off; the store holds no consistent state until a restore succeeds: %w", st.e.dir, err)
	}
}

// reload rebuilds the tables kept in memory after a restore or an import.
func (s *Store) reload(st *state, term uint64) error {
	next, err := loadState(s.cfg, st.e)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
		st.failed = err
		return err
	}
	if st.e.term < term {
		st.e.term = term
	}
	s.mu.st = next
	return nil
}

// importState replaces the store's state, as Import and Restore of an old
// snapshot do.
func (s *Store) importState(imported importedState, next func() (*KeyHistory, error), deletes func() (*CompactionDelete, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	st := s.mu.st
	if err := st.commitOpen(); err != nil {
		return err
	}
	term := st.e.term
	if err := checkImportHeader(&imported.hdr); err != nil {
		return err
	}
	if err := st.e.importState(imported, next, deletes); err != nil {
		st.cutOff(err)
		return err
	}
	return s.reload(st, term)
}

// The snapshot format of the previous release, version 5 (the last), in the
// codec's conventions; only its reader remains:
//
//	snapshot = magic:"RKVS" version:uvarint appliedIndex:uvarint
//	           revision:varint compactRevision:varint
//	           valuesLen:uvarint values:valuesLen bytes
//	           nLeases:uvarint lease*nLeases
//	           nKeys:uvarint key*nKeys nSessions:uvarint session*nSessions
//	           nProposers:uvarint proposer*nProposers
//	           authState (auth_codec.go)
//	           crc32c:4 (little-endian, over every byte before it)
//	lease    = id:varint ttl:varint remainingTTL:varint
//	key      = key:bytes nGens:uvarint generation*nGens
//	generation = create:varint firstVersion:varint tombstone:varint
//	           nRevs:uvarint (mod:varint lease:varint valueOff:uvarint valueLen:uvarint)*nRevs
//	session  = clientID:uvarint seq:uvarint result
//	proposer = id:uvarint lowest:uvarint nResults:uvarint (seq:uvarint result)*nResults
//
// Each revision names its value by position in values. Version 1 inlined the
// values (mod:varint lease:varint value:bytes); version 2 had no proposers;
// version 4 added the leases (an older snapshot's keys that name a lease stay
// attached to nothing); version 5 the auth section (an older one restores with
// auth disabled, no users and no roles, at auth revision 1).
const (
	snapshotMagic   = "RKVS"
	snapshotVersion = 5
	// snapshotVersionAuth is the first version with the auth section.
	snapshotVersionAuth = 5
	crcBytes            = 4
	// Smallest encodings, for bounding list lengths.
	minKeyBytes        = 3 // one-byte key, its length, nGens
	minGenerationBytes = 4 // three varints, nRevs
	minKeyRevBytes     = 4 // four varints
	minKeyRevBytesV1   = 3 // two varints, an empty value
	minSessionBytes    = 4 // two varints, error code, result kind
	minProposerBytes   = 3 // three varints
	minProposalBytes   = 3 // a varint, error code, result kind
	minLeaseBytes      = 3 // three varints
)

// oldSnapshot is a decoded snapshot of the previous format.
type oldSnapshot struct {
	state     importedState
	keys      []*KeyHistory
	sessions  sessionTable
	proposals proposalTable
	auth      authState
}

// decodeOldSnapshot decodes and checks a snapshot of the previous format.
// Everything read is checked against the invariants the store relies on, so a
// snapshot that passed its CRC but was written by a buggy or different build is
// refused rather than trusted.
func decodeOldSnapshot(data []byte, cfg Config) (*oldSnapshot, error) {
	if len(data) < len(snapshotMagic)+crcBytes || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: no %q or %q header; this is not a raftkv kv snapshot", ErrCorruptSnapshot, engineSnapshotMagic, snapshotMagic)
	}
	body := data[:len(data)-crcBytes]
	want := binary.LittleEndian.Uint32(data[len(body):])
	if got := crc32.Checksum(body, castagnoli); got != want {
		return nil, fmt.Errorf("%w: CRC-32C is %08x, the snapshot says %08x", ErrCorruptSnapshot, got, want)
	}
	d := decoder{buf: body, off: len(snapshotMagic), copyBytes: true}
	version := d.uvarint()
	if d.err == nil && (version < 1 || version > snapshotVersion) {
		return nil, fmt.Errorf("%w: format version %d, this build reads 1 to %d", ErrCorruptSnapshot, version, snapshotVersion)
	}
	old := &oldSnapshot{
		sessions:  newSessionTable(cfg.MaxSessions),
		proposals: newProposalTable(cfg.MaxProposers, cfg.MaxProposalResults),
		auth:      newAuthState(),
	}
	hdr := &old.state.hdr
	hdr.AppliedIndex = d.uvarint()
	hdr.Revision = d.varint()
	hdr.CompactRevision = d.varint()
	if d.err == nil && (hdr.Revision < 1 || hdr.CompactRevision < -1 || hdr.CompactRevision > hdr.Revision) {
		d.fail("revision %d and compaction revision %d are inconsistent", hdr.Revision, hdr.CompactRevision)
	}
	var valuesLen uint64
	if version >= 2 {
		valuesLen = d.uvarint()
	}
	if d.err == nil && valuesLen > uint64(d.remaining()) {
		d.fail("values section of %d bytes runs past the end", valuesLen)
	}
	var values []byte
	if d.err == nil {
		values = d.buf[d.off : d.off+int(valuesLen)]
		d.off += int(valuesLen)
	}
	if version >= 4 {
		hdr.Leases = d.grants()
	}
	nKeys := d.count(minKeyBytes, int(^uint(0)>>1))
	var prevKey []byte
	for i := 0; i < nKeys && d.err == nil; i++ {
		h := d.oldKeyHistory(hdr.Revision, values, version)
		if d.err == nil && i > 0 && bytes.Compare(prevKey, h.Key) >= 0 {
			d.fail("key %q follows %q out of order", h.Key, prevKey)
		}
		if d.err == nil {
			old.keys = append(old.keys, h)
			prevKey = h.Key
		}
	}
	nSessions := d.count(minSessionBytes, int(^uint(0)>>1))
	if d.err == nil && nSessions > cfg.MaxSessions {
		// Restoring would evict sessions the other replicas keep.
		d.fail("%d sessions but MaxSessions is %d; every replica must run with the same Config", nSessions, cfg.MaxSessions)
	}
	for i := 0; i < nSessions && d.err == nil; i++ {
		clientID, seq := d.uvarint(), d.uvarint()
		result := d.result()
		if d.err == nil && (clientID == 0 || old.sessions.get(clientID) != nil) {
			d.fail("session client id %d is zero or repeated", clientID)
		}
		if d.err == nil {
			old.sessions.record(clientID, seq, result)
		}
	}
	if version >= 3 {
		d.proposals(&old.proposals)
	}
	if version >= snapshotVersionAuth {
		d.authState(&old.auth)
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, d.err)
	}
	old.state.sessions, old.state.proposals, old.state.auth = &old.sessions, &old.proposals, &old.auth
	return old, nil
}

// oldKeyHistory reads one key's history and checks its invariants. Version 1
// snapshots carry each value inline; later ones name a place in values.
func (d *decoder) oldKeyHistory(rev int64, values []byte, version uint64) *KeyHistory {
	h := &KeyHistory{Key: d.bytes()}
	nGens := d.count(minGenerationBytes, int(^uint(0)>>1))
	if d.err != nil {
		return h
	}
	h.Generations = make([]KeyGeneration, nGens)
	for gi := range h.Generations {
		g := &h.Generations[gi]
		g.CreateRevision, g.FirstVersion, g.TombstoneRevision = d.varint(), d.varint(), d.varint()
		minRevBytes := minKeyRevBytes
		if version == 1 {
			minRevBytes = minKeyRevBytesV1
		}
		nRevs := d.count(minRevBytes, int(^uint(0)>>1))
		if d.err != nil {
			return h
		}
		g.Revisions = make([]KeyRevision, nRevs)
		for ri := range g.Revisions {
			r := &g.Revisions[ri]
			r.ModRevision = d.varint()
			r.Lease = d.varint()
			if version == 1 {
				r.Value = d.bytesNoCopy()
				continue
			}
			off, n := d.uvarint(), d.uvarint()
			switch {
			case d.err != nil:
			case n > maxCommandBytesCap || off > uint64(len(values)) || off+n > uint64(len(values)) || (n == 0 && off != 0):
				d.fail("key %q revision %d names value bytes [%d, +%d) outside the %d of the snapshot", h.Key, r.ModRevision, off, n, len(values))
			case n > 0:
				r.Value = values[off : off+n]
			}
		}
	}
	if d.err == nil {
		if err := checkKeyHistory(h, rev); err != nil {
			d.fail("%v", err)
		}
	}
	return h
}

// proposals reads the proposal table and checks it.
func (d *decoder) proposals(t *proposalTable) {
	n := d.count(minProposerBytes, int(^uint(0)>>1))
	if d.err == nil && n > t.maxProposers {
		d.fail("%d proposers but MaxProposers is %d; every replica must run with the same Config", n, t.maxProposers)
	}
	for i := 0; i < n && d.err == nil; i++ {
		id, lowest := d.uvarint(), d.uvarint()
		if d.err == nil && (id == 0 || t.byProposer[id] != nil) {
			d.fail("proposer id %d is zero or repeated", id)
		}
		nResults := d.count(minProposalBytes, t.maxResults)
		if d.err != nil {
			return
		}
		p := t.lookup(ProposalID{Proposer: id, LowestPending: lowest})
		p.results = make([]proposalResult, nResults)
		for j := range p.results {
			seq := d.uvarint()
			p.results[j] = proposalResult{seq: seq, result: d.result()}
			if d.err == nil && (seq < lowest || (j > 0 && seq <= p.results[j-1].seq)) {
				d.fail("proposer %d: result of proposal %d is below its floor %d or out of order", id, seq, lowest)
			}
		}
	}
}

// grants reads the leases section, checking that the leases are in id order and
// well formed.
func (d *decoder) grants() []LeaseInfo {
	n := d.count(minLeaseBytes, int(^uint(0)>>1))
	var out []LeaseInfo
	var prev int64
	for i := 0; i < n && d.err == nil; i++ {
		info := LeaseInfo{ID: d.varint(), TTL: d.varint(), RemainingTTL: d.varint()}
		switch {
		case d.err != nil:
		case info.ID == 0 || (i > 0 && info.ID <= prev):
			d.fail("lease %d follows lease %d out of order", info.ID, prev)
		case info.TTL > MaxLeaseTTL || info.RemainingTTL < 0:
			d.fail("lease %d has TTL %d and remaining TTL %d", info.ID, info.TTL, info.RemainingTTL)
		default:
			out = append(out, info)
			prev = info.ID
		}
	}
	return out
}
