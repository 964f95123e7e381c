package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The snapshot format, version 3, in the codec's conventions:
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
// values is the store's value log as appended (compaction's garbage included, which
// the log's rewrite keeps below the live values), and each revision names its value
// by position in it: writing a snapshot copies the log in large sequential reads
// rather than reading each value on its own (version 1 inlined the values, and a
// snapshot of a file-backed store cost a read per revision). Keys are in key order,
// sessions and proposers from least to most recently used, and a proposer's results
// in increasing seq, so the same state always gives the same bytes, and the eviction
// order survives. Version 2 had no proposers (an empty table).
//
// Leases are in id order, before the keys, so that each live key is attached to its
// lease as it is read: which keys a lease holds is not written, as it follows from
// the keys' live revisions (etcd rebuilds it the same way). Version 4 added the
// leases; a snapshot of an earlier version restores with none, and a key in it that
// names a lease (which the server then stored as given) stays attached to nothing.
//
// Auth: version 5 added the auth section (users, roles, permissions, the enabled
// flag and the auth revision); an older snapshot restores with auth disabled, no
// users and no roles, at auth revision 1, which is where a cluster of that version
// was.
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

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot returns the whole state: every key's retained history, the
// revision, the compaction revision, the applied index and the session table.
// Apply waits while it runs.
func (s *Store) Snapshot() ([]byte, error) {
	return s.AppendSnapshot(nil)
}

// AppendSnapshot appends the Snapshot to dst and returns the extended slice, so a
// caller that frames the snapshot (or knows its size from the last one) copies it
// only once. The bytes appended are exactly those Snapshot returns.
func (s *Store) AppendSnapshot(dst []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	sw := &sliceWriter{b: dst}
	_, err := writeSnapshot(sw, s.mu.st.snapshotSource())
	return sw.b, err
}

// WriteSnapshot writes the Snapshot to w a piece at a time, so that a snapshot
// bound for a file never sits in memory whole, and returns the bytes written. The
// bytes are exactly those Snapshot returns. Apply waits while it runs.
func (s *Store) WriteSnapshot(w io.Writer) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return 0, ErrClosed
	}
	return writeSnapshot(w, s.mu.st.snapshotSource())
}

// Restore replaces the store's state with the one in data, a Snapshot from a
// store with the same Config. On error the store is unchanged. Restore keeps
// no reference to data.
func (s *Store) Restore(data []byte) error {
	st, err := decodeState(data, s.cfg, s.newValues)
	if err != nil {
		return err
	}
	st.rebuildHistory()
	st.snapMu = &s.snapMu
	s.mu.Lock()
	old := s.mu.st
	s.mu.st = st
	s.mu.Unlock()
	// Nothing refers to the old state's values any more, once a SnapshotView of it
	// is released; a failed close of a log no longer used loses nothing.
	s.snapMu.Lock()
	_ = old.vals.close()
	s.snapMu.Unlock()
	return nil
}

// snapshotChunkBytes is how much WriteSnapshot gathers before writing.
const snapshotChunkBytes = 256 << 10

// snapshotSource is what a snapshot is written from: the live state, under the
// store's lock, or a SnapshotView.
type snapshotSource struct {
	appliedIndex    uint64
	rev, compactRev int64
	vals            valueReader
	valuesLen       int64
	nKeys           int
	// leases are the ids the revisions' lease indexes name.
	leases []int64
	// grants are the leases granted, in id order.
	grants []LeaseInfo
	// eachKey calls fn for every key in key order until fn returns false.
	eachKey func(fn func(key []byte, gens []generation) bool)
	// sessions encodes the session table and the proposal table.
	sessions func(e *encoder)
	// auth encodes the auth section.
	auth func(e *encoder)
}

func (st *state) snapshotSource() *snapshotSource {
	return &snapshotSource{
		appliedIndex: st.appliedIndex, rev: st.rev, compactRev: st.compactRev,
		vals: st.vals, valuesLen: st.vals.size(), nKeys: st.index.length, leases: st.leases.ids,
		grants: st.grants.sorted(),
		eachKey: func(fn func([]byte, []generation) bool) {
			st.index.ascend(nil, func(ki *keyIndex) bool { return fn(ki.key, ki.gens) })
		},
		sessions: st.encodeSessions,
		auth:     st.auth.encode,
	}
}

// sliceWriter appends what is written to b.
type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

// writeSnapshot writes the snapshot of src to w in pieces of about
// snapshotChunkBytes and returns the bytes written.
func writeSnapshot(w io.Writer, src *snapshotSource) (int64, error) {
	cw := &crcWriter{w: w}
	e := encoder{buf: make([]byte, 0, 2*snapshotChunkBytes)}
	var werr error
	flush := func() {
		if werr == nil {
			_, werr = cw.Write(e.buf)
		}
		e.buf = e.buf[:0]
	}
	e.buf = append(e.buf, snapshotMagic...)
	e.uvarint(snapshotVersion)
	e.uvarint(src.appliedIndex)
	e.varint(src.rev)
	e.varint(src.compactRev)
	e.uvarint(uint64(src.valuesLen))
	flush()
	if werr == nil {
		werr = src.vals.writeRange(cw, src.valuesLen)
	}
	e.uvarint(uint64(len(src.grants)))
	for _, g := range src.grants {
		e.varint(g.ID)
		e.varint(g.TTL)
		e.varint(g.RemainingTTL)
	}
	e.uvarint(uint64(src.nKeys))
	src.eachKey(func(key []byte, gens []generation) bool {
		e.keyHistory(key, gens, src.leases)
		if len(e.buf) >= snapshotChunkBytes {
			flush()
		}
		return werr == nil
	})
	src.sessions(&e)
	src.auth(&e)
	if e.err != nil {
		return cw.n, e.err
	}
	flush()
	e.buf = binary.LittleEndian.AppendUint32(e.buf, cw.crc)
	flush()
	if werr != nil {
		return cw.n, fmt.Errorf("kv: writing snapshot: %w", werr)
	}
	return cw.n, nil
}

// crcWriter counts and checksums what it passes on to w.
type crcWriter struct {
	w   io.Writer
	n   int64
	crc uint32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

// keyHistory encodes one key and its generations; each revision names its value by
// position in the snapshot's values.
func (e *encoder) keyHistory(key []byte, gens []generation, leases []int64) {
	e.bytes(key)
	e.uvarint(uint64(len(gens)))
	for gi := range gens {
		g := &gens[gi]
		e.varint(g.createRev)
		e.varint(g.firstVersion)
		e.varint(g.tombstoneRev)
		e.uvarint(uint64(len(g.revs)))
		for _, r := range g.revs {
			e.varint(r.modRev)
			e.varint(leaseID(leases, r.lease))
			e.uvarint(uint64(r.valueOff))
			e.uvarint(uint64(r.valueLen))
		}
	}
}

// encodeSessions encodes the session table, then the proposal table, least
// recently used first.
func (st *state) encodeSessions(e *encoder) {
	e.uvarint(uint64(st.sessions.len()))
	st.sessions.oldestFirst(func(s *session) {
		e.uvarint(s.clientID)
		e.uvarint(s.seq)
		e.result(&s.result)
	})
	e.uvarint(uint64(st.proposals.len()))
	st.proposals.oldestFirst(func(p *proposer) {
		e.uvarint(p.id)
		e.uvarint(p.lowest)
		e.uvarint(uint64(len(p.results)))
		for i := range p.results {
			e.uvarint(p.results[i].seq)
			e.result(&p.results[i].result)
		}
	})
}

// A SnapshotView is the store frozen at the index it had applied when the view was
// taken, to be written out (WriteTo) while Apply goes on: a snapshot of a large
// store takes long to write, and Apply would otherwise wait for all of it. Taking the
// view costs a copy of each key's list of generations; the revisions and values are
// shared, which is safe because Apply only ever appends to them. Until Release, the
// store holds off what would change them in place: compaction's rewrite of the value
// log (Apply of a compaction waits), Restore's and Close's release of the values.
type SnapshotView struct {
	release func()
	src     snapshotSource
}

// errSnapshotInProgress: a SnapshotView is out already.
var errSnapshotInProgress = errors.New("kv: a snapshot view is already out; Release it first")

// SnapshotView freezes the store for WriteTo; Release it when done. Only one view
// may be out at a time. The bytes WriteTo writes are exactly those Snapshot would
// have returned when the view was taken.
func (s *Store) SnapshotView() (*SnapshotView, error) {
	// s.mu before snapMu, the order Apply (compaction) and Close take them in.
	// frozen() flushes the value log's buffer, which reads use: hence the write lock.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	if !s.snapMu.TryLock() {
		return nil, errSnapshotInProgress
	}
	st := s.mu.st
	// The keys' generations are copied into one array, keys[i]'s being
	// gens[ends[i-1]:ends[i]].
	keys := make([][]byte, 0, st.index.length)
	ends := make([]int, 0, st.index.length)
	gens := make([]generation, 0, st.index.length)
	st.index.ascend(nil, func(ki *keyIndex) bool {
		keys = append(keys, ki.key)
		gens = append(gens, ki.gens...)
		ends = append(ends, len(gens))
		return true
	})
	var e encoder
	st.encodeSessions(&e)
	if e.err != nil {
		s.snapMu.Unlock()
		return nil, e.err
	}
	sessions := e.buf
	// The auth state is small and changes in place: it is encoded now.
	var ae encoder
	st.auth.encode(&ae)
	authSection := ae.buf
	vals := st.vals.frozen()
	return &SnapshotView{release: s.snapMu.Unlock, src: snapshotSource{
		appliedIndex: st.appliedIndex, rev: st.rev, compactRev: st.compactRev,
		vals: vals, valuesLen: st.vals.size(), nKeys: len(keys), leases: st.leases.ids,
		grants: st.grants.sorted(),
		eachKey: func(fn func([]byte, []generation) bool) {
			start := 0
			for i, key := range keys {
				if !fn(key, gens[start:ends[i]]) {
					return
				}
				start = ends[i]
			}
		},
		sessions: func(e *encoder) { e.buf = append(e.buf, sessions...) },
		auth:     func(e *encoder) { e.buf = append(e.buf, authSection...) },
	}}, nil
}

// WriteTo writes the snapshot to w a piece at a time and returns the bytes written.
func (v *SnapshotView) WriteTo(w io.Writer) (int64, error) {
	return writeSnapshot(w, &v.src)
}

// Release ends the view; the store may change its values in place again.
func (v *SnapshotView) Release() {
	if v.release != nil {
		v.release()
		v.release = nil
	}
}

// decodeState decodes and checks a snapshot. Everything read is checked against
// the invariants the store relies on, so a snapshot that passed its CRC but was
// written by a buggy or different build is refused rather than trusted.
func decodeState(data []byte, cfg Config, newValues func() (valueLog, error)) (st *state, err error) {
	if len(data) < len(snapshotMagic)+crcBytes || string(data[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: no %q header; this is not a raftkv kv snapshot", ErrCorruptSnapshot, snapshotMagic)
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
	st, err = newState(cfg, newValues)
	if err != nil {
		return nil, err
	}
	vals := st.vals
	defer func() {
		if err != nil {
			_ = vals.close()
		}
	}()
	st.appliedIndex = d.uvarint()
	st.rev = d.varint()
	st.compactRev = d.varint()
	if d.err == nil && (st.rev < 1 || st.compactRev < -1 || st.compactRev > st.rev) {
		d.fail("revision %d and compaction revision %d are inconsistent", st.rev, st.compactRev)
	}
	var valuesLen uint64
	if version >= 2 {
		valuesLen = d.uvarint()
	}
	if d.err == nil && valuesLen > uint64(d.remaining()) {
		d.fail("values section of %d bytes runs past the end", valuesLen)
	}
	if d.err == nil {
		// Appended in pieces, each at the position after the last, so that every
		// value lands at the offset the revisions name.
		values := d.buf[d.off : d.off+int(valuesLen)]
		d.off += int(valuesLen)
		for len(values) > 0 {
			k := min(len(values), valueRangeChunk)
			st.vals.append(values[:k])
			values = values[k:]
		}
	}
	if version >= 4 {
		d.grants(&st.grants)
	}
	nKeys := d.count(minKeyBytes, int(^uint(0)>>1))
	var prevKey []byte
	for i := 0; i < nKeys && d.err == nil; i++ {
		ki := d.keyIndex(st.rev, int64(valuesLen), version, st.vals, &st.leases)
		if d.err == nil && i > 0 && bytes.Compare(prevKey, ki.key) >= 0 {
			d.fail("key %q follows %q out of order", ki.key, prevKey)
		}
		if d.err == nil {
			// Keys arrive in order, so each insert lands at the right edge.
			st.index.insert(ki)
			st.grants.attach(ki.liveLease(&st.leases), ki)
			prevKey = ki.key
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
		if d.err == nil && (clientID == 0 || st.sessions.get(clientID) != nil) {
			d.fail("session client id %d is zero or repeated", clientID)
		}
		if d.err == nil {
			st.sessions.record(clientID, seq, result)
		}
	}
	if version >= 3 {
		d.proposals(&st.proposals)
	}
	if version >= snapshotVersionAuth {
		d.authState(&st.auth)
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptSnapshot, d.err)
	}
	st.recountSizes()
	return st, nil
}

// valueRef reads a version 2 revision's place in the values section and checks it
// lies inside.
func (d *decoder) valueRef(key []byte, modRev, valuesLen int64) valueRef {
	off, n := d.uvarint(), d.uvarint()
	switch {
	case d.err != nil:
	case n > maxCommandBytesCap || off > uint64(valuesLen) || off+n > uint64(valuesLen) || (n == 0 && off != 0):
		d.fail("key %q revision %d names value bytes [%d, +%d) outside the %d of the snapshot", key, modRev, off, n, valuesLen)
	default:
		return valueRef{off: int64(off), n: uint32(n)}
	}
	return valueRef{}
}

// keyIndex reads one key's history and checks the keyIndex invariants.
// Version 1 snapshots carry each value inline, appended to vals as it is read;
// version 2 ones name a place in the values section, valuesLen bytes long.
func (d *decoder) keyIndex(rev, valuesLen int64, version uint64, vals valueLog, leases *leaseTable) *keyIndex {
	ki := &keyIndex{key: d.bytes()}
	if d.err == nil && len(ki.key) == 0 {
		d.fail("empty key")
	}
	nGens := d.count(minGenerationBytes, int(^uint(0)>>1))
	if d.err == nil && nGens == 0 {
		d.fail("key %q has no history", ki.key)
	}
	if d.err != nil {
		return ki
	}
	ki.gens = make([]generation, nGens)
	var lastRev int64 // the newest revision seen so far in this key's history
	for gi := range ki.gens {
		g := &ki.gens[gi]
		g.createRev, g.firstVersion, g.tombstoneRev = d.varint(), d.varint(), d.varint()
		minRevBytes := minKeyRevBytes
		if version == 1 {
			minRevBytes = minKeyRevBytesV1
		}
		nRevs := d.count(minRevBytes, int(^uint(0)>>1))
		if d.err != nil {
			return ki
		}
		if nRevs == 0 || g.createRev < max(lastRev, 1) || g.firstVersion < 1 {
			d.fail("key %q generation %d is inconsistent", ki.key, gi)
			return ki
		}
		g.revs = make([]keyRev, nRevs)
		lastRev = g.createRev
		for ri := range g.revs {
			r := &g.revs[ri]
			r.modRev = d.varint()
			r.lease = leases.intern(d.varint())
			if version == 1 {
				if v := d.bytesNoCopy(); d.err == nil {
					r.setValue(vals.append(v))
				}
			} else {
				r.setValue(d.valueRef(ki.key, r.modRev, valuesLen))
			}
			if d.err == nil && (r.modRev < lastRev || r.modRev > rev) {
				d.fail("key %q revision %d out of order (after %d, store at %d)", ki.key, r.modRev, lastRev, rev)
			}
			lastRev = r.modRev
		}
		isLast := gi == len(ki.gens)-1
		switch {
		case d.err != nil:
			return ki
		case g.tombstoneRev == 0 && !isLast:
			d.fail("key %q generation %d is live but not the last", ki.key, gi)
		case g.tombstoneRev != 0 && (g.tombstoneRev < lastRev || g.tombstoneRev > rev):
			d.fail("key %q tombstone %d out of order", ki.key, g.tombstoneRev)
		case g.tombstoneRev != 0:
			lastRev = g.tombstoneRev
		}
	}
	return ki
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

// grants reads the leases section into t, checking that the leases are in id order
// and well formed.
func (d *decoder) grants(t *grantTable) {
	n := d.count(minLeaseBytes, int(^uint(0)>>1))
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
			t.add(info)
			prev = info.ID
		}
	}
}
