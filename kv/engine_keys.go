package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The engine's key space (engine.go). One pebble database holds four kinds of
// record, told apart by their first byte:
//
//	'k' esc(userKey) 0x00 0x01 ^rev:8 ^sub:4  -> version record
//	'h' rev:8 sub:4                           -> change record (the history)
//	'v' rev:8 sub:4                           -> a large value (separated values)
//	'm' name                                  -> meta record (applied index, ...)
//
// esc makes user keys, which may hold any byte, sort as the user keys do when
// followed by more bytes: 0x00 becomes 0x00 0xff, and 0x00 0x01 ends the key. The
// revision and the sub-revision (the change's position within its revision) are
// stored inverted, so that a key's versions sort newest first: one SeekGE to
// 'k' esc(key) 0x00 0x01 ^rev 0x00000000 lands on the newest version at or below
// rev, the read etcd's treeIndex answers in memory. The history is keyed by
// revision, so Events reads it in order, and compaction drops the records below
// its revision (deletedRun in engine.go: record by record, or one range delete).
//
// Separated values (layout format 2): a put whose value is at least the engine's
// separation size (engineConfig.SeparateValueBytes) keeps only the value's length
// in its version record, and the value in a record of its own, keyed by the
// change's revision. The version records stay small, so a walk of a range's keys
// (the count of a paged read, a compaction) reads tens of bytes a version, not
// the values; and the value records are written in revision order, so that
// pebble's compactions mostly move their tables down the levels without merging
// them, instead of rewriting every value each time the version records around
// it are compacted. A read of a separated value costs one more point read.

// engineComparer orders keys bytewise, as pebble's default does, and tells pebble
// where a version key's user key ends (Split), so that bloom filters are built on
// user keys and a point read (SeekPrefixGE) skips every file that lacks the key.
// Bytewise order agrees with prefix-then-suffix order because no escaped user key
// with its terminator is a prefix of another's.
//
// Split treats a key as a version key only if its user key's terminator stands
// right before the revision suffix, so that bounds and seek keys (a user key's
// start, prefixEnd) are whole prefixes, and comparing any two keys bytewise
// agrees with comparing their prefixes, then their suffixes, as pebble requires
// (its invariant builds, under -race, check it). For the same reason the
// Separator and Successor that shorten the keys of index blocks return their key
// unchanged: a shortened version key would no longer split where it should.
//
// ImmediateSuccessor of a version prefix is prefixEnd: the default (the prefix
// and a 0x00) sorts before every version of the key, whose suffixes start with
// the inverted revision's 0xff bytes, and pebble truncates range deletions to
// [prefix, ImmediateSuccessor(prefix)) in a SeekPrefixGE. With the default, no
// range deletion reached a point read: a key's records that a restore, an
// import or an MVCC compaction had deleted came back to Get and point Ranges
// until pebble's compactions dropped them (TestRestoreThenCompactReadsAgree).
var engineComparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = func(k []byte) int {
		n := len(k) - engineRevSuffixLen
		if n >= 3 && k[0] == engineVersionPrefix && k[n-2] == 0x00 && k[n-1] == 0x01 {
			return n
		}
		return len(k)
	}
	c.Separator = func(dst, a, _ []byte) []byte { return append(dst, a...) }
	c.Successor = func(dst, a []byte) []byte { return append(dst, a...) }
	c.ImmediateSuccessor = func(dst, a []byte) []byte {
		if n := len(a); n >= 3 && a[0] == engineVersionPrefix && a[n-2] == 0x00 && a[n-1] == 0x01 {
			dst = append(dst, a...)
			dst[len(dst)-1]++ // prefixEnd: no escaped user key sorts between
			return dst
		}
		return append(append(dst, a...), 0x00)
	}
	c.Name = "raftkv.engine.v1"
	return &c
}()

// engineSpanPolicy ends each table pebble writes, in a flush or a compaction,
// at the bounds of the change records and of the separated values, so that no
// table holds those with records of another kind. Without it every flushed
// table spanned the whole key space, from the change records to the values,
// and overlapped every table below it: each compaction out of L0 (one per 8
// flushes, engineL0CompactionThreshold) rewrote the whole base level, values
// included, at a cost that grew with the data. Both kinds are keyed by
// revision, so a flushed table of either overlaps no older table of its kind
// and adds no L0 sublevel. The compactions that sublevels trigger merge the
// version records and the small kinds (meta, leases, sessions, proposals),
// which every flush overlaps, with a few change tables at their edges; the
// value tables stay in L0 until it holds pebble's L0CompactionFileThreshold
// (500) tables, and are then compacted down once, mostly in compactions of
// values only. An etcd compaction's deletes of old values and history overlap
// the older tables again, which then are merged, as they must be to reclaim
// the space. Measured: 600 flushes of 20 puts wrote 8.4 MB in compactions for
// 5.5 MB flushed, against 118 MB for 4.7 MB without the bounds
// (TestEngineCompactionsPastTheL0FileLimit); in bench put-1000c after put-1c
// and put-100c (3 members, 2 CPUs) an L0 compaction wrote 2.5 MB in 0.1 s
// instead of 6.6 MB in 0.4 s, on each member, and those windows had held
// half of the slowest 1% of puts. Only these four bounds, not one per
// kind: a range deletion over the whole key space (markRestoring) is flushed
// as a table per range between bounds, which would be 255 tables with a bound
// at every byte. The policy itself is pebble's default everywhere.
func engineSpanPolicy(start []byte) (pebble.SpanPolicy, []byte, error) {
	for _, bound := range engineTableBounds {
		if len(start) == 0 || start[0] < bound {
			return pebble.SpanPolicy{}, []byte{bound}, nil
		}
	}
	return pebble.SpanPolicy{}, nil, nil
}

// engineTableBounds are the keys engineSpanPolicy ends tables at, in order.
var engineTableBounds = [...]byte{engineChangePrefix, engineChangePrefix + 1, engineValuePrefix, engineValuePrefix + 1}

const (
	engineVersionPrefix = 'k'
	engineChangePrefix  = 'h'
	engineValuePrefix   = 'v'
	engineMetaPrefix    = 'm'
	// engineRevSuffixLen is the inverted revision and sub-revision after a user key.
	engineRevSuffixLen = 12
)

// appendEscaped appends key, escaped and terminated, to dst.
func appendEscaped(dst, key []byte) []byte {
	for _, c := range key {
		if c == 0 {
			dst = append(dst, 0x00, 0xff)
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, 0x00, 0x01)
}

// versionPrefix returns the prefix every version of key shares.
func versionPrefix(dst, key []byte) []byte {
	dst = append(dst[:0], engineVersionPrefix)
	return appendEscaped(dst, key)
}

// versionKey returns the key of key's change at (rev, sub).
func versionKey(dst, key []byte, rev int64, sub uint32) []byte {
	dst = versionPrefix(dst, key)
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(rev))
	return binary.BigEndian.AppendUint32(dst, ^sub)
}

// versionSeekKey returns where the newest version of key at or below rev sorts.
func versionSeekKey(dst, key []byte, rev int64) []byte {
	return versionKey(dst, key, rev, 1<<32-1)
}

// prefixSeekKey appends to dst the seek key of the newest version at or below
// rev of the key whose version prefix is prefix (versionSeekKey from a prefix).
func prefixSeekKey(dst, prefix []byte, rev int64) []byte {
	dst = append(append(dst, prefix...), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint64(dst[len(dst)-engineRevSuffixLen:], ^uint64(rev))
	return dst
}

// prefixEnd returns the least key above every key with the prefix p: p's
// terminator 0x00 0x01 becomes 0x00 0x02, which no escaped key continues.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	end[len(end)-1]++
	return end
}

// rangeBounds returns the engine bounds of etcd's [key, rangeEnd) (parseRangeEnd):
// lower inclusive, upper exclusive.
func rangeBounds(key, rangeEnd []byte) (lower, upper []byte) {
	lower = versionPrefix(nil, key)
	lower = lower[:len(lower)-2] // a bound is a user key's start, not one key's versions
	end, single := parseRangeEnd(rangeEnd)
	switch {
	case single:
		return versionPrefix(nil, key), prefixEnd(versionPrefix(nil, key))
	case end == nil:
		return lower, []byte{engineVersionPrefix + 1}
	default:
		upper = versionPrefix(nil, end)
		return lower, upper[:len(upper)-2]
	}
}

// splitVersionKey returns the escaped user key (with its terminator, the key's
// versionPrefix) and the revision and sub-revision of a version record's key.
func splitVersionKey(k []byte) (prefix []byte, rev int64, sub uint32) {
	if len(k) < 1+2+engineRevSuffixLen || k[0] != engineVersionPrefix {
		panic(fmt.Sprintf("kv: engine key %x is not a version key", k))
	}
	n := len(k) - engineRevSuffixLen
	return k[:n], int64(^binary.BigEndian.Uint64(k[n:])), ^binary.BigEndian.Uint32(k[n+8:])
}

// unescapeKey returns the user key of a version prefix.
func unescapeKey(prefix []byte) []byte {
	body := prefix[1 : len(prefix)-2]
	key := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		key = append(key, body[i])
		if body[i] == 0 {
			i++ // skip the 0xff that escaped it
		}
	}
	return key
}

// changeKey returns the history key of the change at (rev, sub).
func changeKey(rev int64, sub uint32) []byte {
	return appendChangeKey(make([]byte, 0, 13), rev, sub)
}

// appendChangeKey appends the history key of the change at (rev, sub) to dst.
func appendChangeKey(dst []byte, rev int64, sub uint32) []byte {
	return appendRevisionKey(dst, engineChangePrefix, rev, sub)
}

// appendRevisionKey appends prefix, rev and sub, big-endian, so that the keys
// of one prefix sort by revision: the history's and the values' layout.
func appendRevisionKey(dst []byte, prefix byte, rev int64, sub uint32) []byte {
	dst = append(dst, prefix)
	dst = binary.BigEndian.AppendUint64(dst, uint64(rev))
	return binary.BigEndian.AppendUint32(dst, sub)
}

// valueKey returns the key of the separated value of the change at (rev, sub).
func valueKey(dst []byte, rev int64, sub uint32) []byte {
	return appendRevisionKey(dst, engineValuePrefix, rev, sub)
}

// versionRecord is the value of a version record: a put's key-value, or a
// tombstone. A put carries its generation's create revision and its version, so
// a read needs this one record, and a second only for a separated value.
type versionRecord struct {
	tombstone      bool
	createRevision int64
	version        int64
	lease          int64
	// value is the value, nil if separated.
	value []byte
	// separated says the value is in its own record (valueKey of the change),
	// separatedLen bytes long.
	separated    bool
	separatedLen int
}

const (
	recordPut       = 1
	recordTombstone = 2
	// recordPutSeparated is a put whose value is in a value record: the same
	// fields, then the value's length instead of the value.
	recordPutSeparated = 3
)

// valueLen returns the length of the record's value, wherever it is.
func (r *versionRecord) valueLen() int {
	if r.separated {
		return r.separatedLen
	}
	return len(r.value)
}

func (r *versionRecord) appendTo(dst []byte) []byte {
	if r.tombstone {
		return append(dst, recordTombstone)
	}
	kind := byte(recordPut)
	if r.separated {
		kind = recordPutSeparated
	}
	dst = append(dst, kind)
	dst = binary.AppendVarint(dst, r.createRevision)
	dst = binary.AppendVarint(dst, r.version)
	dst = binary.AppendVarint(dst, r.lease)
	if r.separated {
		return binary.AppendUvarint(dst, uint64(r.separatedLen))
	}
	return append(dst, r.value...)
}

// decodeVersionRecord decodes b; the value aliases b.
func decodeVersionRecord(b []byte) (versionRecord, error) {
	if len(b) == 0 {
		return versionRecord{}, fmt.Errorf("%w: empty version record", ErrCorruptEngine)
	}
	switch b[0] {
	case recordTombstone:
		if len(b) != 1 {
			return versionRecord{}, fmt.Errorf("%w: tombstone record of %d bytes", ErrCorruptEngine, len(b))
		}
		return versionRecord{tombstone: true}, nil
	case recordPut, recordPutSeparated:
	default:
		return versionRecord{}, fmt.Errorf("%w: version record of kind %d", ErrCorruptEngine, b[0])
	}
	r := versionRecord{separated: b[0] == recordPutSeparated}
	rest := b[1:]
	for _, field := range []*int64{&r.createRevision, &r.version, &r.lease} {
		v, n := binary.Varint(rest)
		if n <= 0 {
			return versionRecord{}, fmt.Errorf("%w: truncated version record", ErrCorruptEngine)
		}
		*field, rest = v, rest[n:]
	}
	if r.createRevision < 1 || r.version < 1 {
		return versionRecord{}, fmt.Errorf("%w: version record with create revision %d and version %d", ErrCorruptEngine, r.createRevision, r.version)
	}
	if r.separated {
		n, k := binary.Uvarint(rest)
		if k <= 0 || k != len(rest) || n == 0 || n > maxSeparatedValueLen {
			return versionRecord{}, fmt.Errorf("%w: separated value record with length %x", ErrCorruptEngine, rest)
		}
		r.separatedLen = int(n)
		return r, nil
	}
	r.value = rest
	return r, nil
}

// maxSeparatedValueLen bounds a separated value's length as decoded, far above
// any value a request can carry.
const maxSeparatedValueLen = 1 << 31

// readValue returns a copy of the separated value of the change at (rev, sub),
// which is n bytes long, read with it (positioned anywhere; without bounds, or
// bounded to the value records). A caller that reads values in revision order
// says ascending, so that each seek goes on from the last (pebble's SeekGE);
// otherwise the seek skips the tables whose bloom filter lacks the value.
func readValue(it *pebble.Iterator, ascending bool, rev int64, sub uint32, n int) ([]byte, error) {
	var k [13]byte
	vk := valueKey(k[:0], rev, sub)
	var found bool
	if ascending {
		found = it.SeekGE(vk)
	} else {
		found = it.SeekPrefixGE(vk)
	}
	if !found || !bytes.Equal(it.Key(), vk) {
		if err := it.Error(); err != nil {
			return nil, err
		}
		return checkedValue(nil, false, rev, sub, n)
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return nil, err
	}
	return checkedValue(v, true, rev, sub, n)
}

// readValueFrom is readValue by a point read of r.
func readValueFrom(r pebble.Reader, rev int64, sub uint32, n int) ([]byte, error) {
	var k [13]byte
	v, closer, err := r.Get(valueKey(k[:0], rev, sub))
	if errors.Is(err, pebble.ErrNotFound) {
		return checkedValue(nil, false, rev, sub, n)
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return checkedValue(v, true, rev, sub, n)
}

// checkedValue returns a copy of v, the value record of the change at (rev,
// sub) if found, after checking it is the n bytes its version record says.
func checkedValue(v []byte, found bool, rev int64, sub uint32, n int) ([]byte, error) {
	if !found {
		return nil, fmt.Errorf("%w: the value record of revision %d.%d is missing", ErrCorruptEngine, rev, sub)
	}
	if len(v) != n {
		return nil, fmt.Errorf("%w: the value record of revision %d.%d holds %d bytes, its version record says %d", ErrCorruptEngine, rev, sub, len(v), n)
	}
	return bytes.Clone(v), nil
}
