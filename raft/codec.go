package raft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// This file is the binary codec for Entry, HardState, Snapshot and Message (and, in
// codec_conf.go, Membership and ConfEntry): the bytes that storage writes to its log
// and that transport sends between nodes, and that an embedder may store beside data
// of its own.
//
// Every encoding starts with one byte, the format version (EncodingVersion, 2 in this
// release), followed by the fields of that version in a fixed order: integers as
// canonical (shortest) uvarints, byte strings as a uvarint length followed by the
// bytes, id lists as a uvarint count followed by the ids, enums and booleans as one
// byte:
//
//	Entry:      version Term Index Type(1) len(Data) Data
//	HardState:  version Term Vote Commit
//	Snapshot:   version Index Term len(Data) Data Membership*
//	Message:    version Type(1) To From Term LogTerm Index Commit Reject(1) RejectHint
//	            count(Entries) Entry... hasSnapshot(1) [Snapshot] len(Context) Context
//	            LeaderTransfer(1)*
//	Membership: version Voters Learners (each: count id...)
//	ConfEntry:  version Type(1) NodeID len(Context) Context Voters Learners
//
// The fields marked * are version 2's: version 1 ends before them, and reads as if
// they were zero (a Snapshot of version 1 has the bootstrap configuration, which is
// all there was before configuration changes). Membership and ConfEntry exist from
// version 2 on. The entries and the snapshot inside a Message, and the membership
// inside a Snapshot, are encoded as above but without a version byte of their own:
// the enclosing value's governs them.
//
// Every encoding is self-delimiting: its fields say where it ends, so a value can be
// read from the front of a longer buffer (UnmarshalPrefix) and values can be stored
// back to back with nothing between them. Size gives the exact length beforehand; a
// HardState takes at most MaxHardStateSize bytes.
//
// The version is how a field is added: the next version appends it to its type's
// fields, MarshalTo writes the new version, and Unmarshal goes on reading every
// earlier one. A version newer than this build reads fails with an error wrapping
// ErrUnknownVersion, never a misreading. (Version 1 is the first. What raftkv wrote
// before it had no version byte and was otherwise the same; package storage reads
// that itself, in WAL segments of its own format 1.)
//
// Encoding is canonical and decoding is strict (no overlong varints, booleans only 0 or
// 1, no bytes after the value for Unmarshal), so every input that decodes re-encodes
// to the same bytes, of the current version. Nil and empty byte slices, entry lists
// and id lists encode alike and decode as nil.
//
// Decoding aliases its input: Entry.Data, Snapshot.Data, Message.Context and
// ConfChange.Context of a decoded value point into the buffer given to Unmarshal, they
// are not copied. That keeps a decoded batch of entries to one allocation (the Entries
// slice), but the caller must not modify or reuse the buffer while the decoded value
// is in use; use bytes.Clone on the fields that must outlive it.
//
// Decoding never panics and bounds every length and count by the input that remains
// before allocating, so a forged length cannot make it allocate more than the input's
// size. Every decoding error wraps ErrCorruptMessage.

// EncodingVersion is the format version this package writes at the start of every
// encoding, and the newest it reads. It reads every version from 1 on.
const EncodingVersion = 2

// minEncodingVersion is the oldest format version this package reads.
const minEncodingVersion = 1

// MaxHardStateSize is the most bytes a HardState's encoding takes: the version byte
// and three uvarints of at most 10 bytes each.
const MaxHardStateSize = 1 + 3*binary.MaxVarintLen64

// ErrCorruptMessage is wrapped by every decoding error: the bytes are not a valid
// encoding (truncated, overlong, trailing bytes, an unknown message type, a version
// this build does not read). The error text says which field was wrong and where.
var ErrCorruptMessage = errors.New("raft: corrupt encoding")

// ErrUnknownVersion is wrapped, besides ErrCorruptMessage, by the decoding error for
// an encoding whose format version this build does not read: one written by a later
// release, or bytes that are not an encoding of this package at all.
var ErrUnknownVersion = errors.New("raft: unknown encoding version")

// Smallest encodings, used to bound counts read from the input before allocating.
const (
	minEntryBodyBytes = 4 // Term, Index, Type, len(Data) of an empty entry
)

// uvarintSize returns the length of the canonical uvarint encoding of v.
func uvarintSize(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

// bytesSize returns the encoded size of a length-prefixed byte string.
func bytesSize(b []byte) int {
	return uvarintSize(uint64(len(b))) + len(b)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Size returns the length of e's encoding.
func (e *Entry) Size() int { return 1 + e.bodySize() }

func (e *Entry) bodySize() int {
	return uvarintSize(e.Term) + uvarintSize(e.Index) + 1 + bytesSize(e.Data)
}

// MarshalTo appends e's encoding to b and returns the extended slice. It allocates only
// if b lacks the capacity; pass b[:0] of a buffer of cap >= e.Size() to avoid that.
func (e *Entry) MarshalTo(b []byte) []byte {
	return e.marshalBody(append(b, EncodingVersion))
}

func (e *Entry) marshalBody(b []byte) []byte {
	b = binary.AppendUvarint(b, e.Term)
	b = binary.AppendUvarint(b, e.Index)
	b = append(b, byte(e.Type))
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	return append(b, e.Data...)
}

// Unmarshal decodes data, which must hold exactly one encoded Entry, into e.
// e.Data aliases data (see the file comment). The type byte is carried unchanged, known
// or not: judging it is the reader's business. On error e is left unspecified.
func (e *Entry) Unmarshal(data []byte) error {
	if len(data) > 0 && data[0] >= minEncodingVersion && data[0] <= EncodingVersion {
		// An entry's fields are the same in every version.
		if n := entryBodyPrefix(data[1:], e); n > 0 && 1+n == len(data) {
			return nil // the fast path
		}
	}
	d := decoder{buf: data, what: "entry"}
	d.version()
	d.entry(e)
	return d.finish()
}

// UnmarshalPrefix decodes the Entry encoded at the start of data, which may go on with
// other bytes, into e, and returns the length of its encoding. e.Data aliases data.
func (e *Entry) UnmarshalPrefix(data []byte) (n int, err error) {
	d := decoder{buf: data, what: "entry"}
	d.version()
	d.entry(e)
	return d.prefixLen()
}

// Size returns the length of hs's encoding, at most MaxHardStateSize.
func (hs *HardState) Size() int {
	return 1 + uvarintSize(hs.Term) + uvarintSize(hs.Vote) + uvarintSize(hs.Commit)
}

// MarshalTo appends hs's encoding to b and returns the extended slice.
func (hs *HardState) MarshalTo(b []byte) []byte {
	b = append(b, EncodingVersion)
	b = binary.AppendUvarint(b, hs.Term)
	b = binary.AppendUvarint(b, hs.Vote)
	return binary.AppendUvarint(b, hs.Commit)
}

// Unmarshal decodes data, which must hold exactly one encoded HardState, into hs.
func (hs *HardState) Unmarshal(data []byte) error {
	d := decoder{buf: data, what: "hard state"}
	d.hardState(hs)
	return d.finish()
}

// UnmarshalPrefix decodes the HardState encoded at the start of data, which may go on
// with other bytes, into hs, and returns the length of its encoding.
func (hs *HardState) UnmarshalPrefix(data []byte) (n int, err error) {
	d := decoder{buf: data, what: "hard state"}
	d.hardState(hs)
	return d.prefixLen()
}

func (d *decoder) hardState(hs *HardState) {
	d.version()
	hs.Term = d.uvarint("Term")
	hs.Vote = d.uvarint("Vote")
	hs.Commit = d.uvarint("Commit")
}

// Size returns the length of s's encoding.
func (s *Snapshot) Size() int { return 1 + s.bodySize() }

func (s *Snapshot) bodySize() int {
	return uvarintSize(s.Index) + uvarintSize(s.Term) + bytesSize(s.Data) + s.Membership.bodySize()
}

// MarshalTo appends s's encoding to b and returns the extended slice.
func (s *Snapshot) MarshalTo(b []byte) []byte {
	return s.marshalBody(append(b, EncodingVersion))
}

func (s *Snapshot) marshalBody(b []byte) []byte {
	b = binary.AppendUvarint(b, s.Index)
	b = binary.AppendUvarint(b, s.Term)
	b = binary.AppendUvarint(b, uint64(len(s.Data)))
	b = append(b, s.Data...)
	return s.Membership.marshalBody(b)
}

// Unmarshal decodes data, which must hold exactly one encoded Snapshot, into s.
// s.Data aliases data (see the file comment).
func (s *Snapshot) Unmarshal(data []byte) error {
	d := decoder{buf: data, what: "snapshot"}
	d.snapshot(s, d.version())
	return d.finish()
}

// UnmarshalPrefix decodes the Snapshot encoded at the start of data, which may go on
// with other bytes, into s, and returns the length of its encoding. s.Data aliases
// data.
func (s *Snapshot) UnmarshalPrefix(data []byte) (n int, err error) {
	d := decoder{buf: data, what: "snapshot"}
	d.snapshot(s, d.version())
	return d.prefixLen()
}

// Size returns the length of m's encoding.
func (m *Message) Size() int {
	n := 2 + uvarintSize(m.To) + uvarintSize(m.From) + uvarintSize(m.Term) +
		uvarintSize(m.LogTerm) + uvarintSize(m.Index) + uvarintSize(m.Commit) + 1 +
		uvarintSize(m.RejectHint) + uvarintSize(uint64(len(m.Entries)))
	for i := range m.Entries {
		n += m.Entries[i].bodySize()
	}
	n++ // hasSnapshot
	if m.Snapshot != nil {
		n += m.Snapshot.bodySize()
	}
	return n + bytesSize(m.Context) + 1 // LeaderTransfer
}

// MarshalTo appends m's encoding to b and returns the extended slice.
func (m *Message) MarshalTo(b []byte) []byte {
	b = append(b, EncodingVersion, byte(m.Type))
	b = binary.AppendUvarint(b, m.To)
	b = binary.AppendUvarint(b, m.From)
	b = binary.AppendUvarint(b, m.Term)
	b = binary.AppendUvarint(b, m.LogTerm)
	b = binary.AppendUvarint(b, m.Index)
	b = binary.AppendUvarint(b, m.Commit)
	b = append(b, boolByte(m.Reject))
	b = binary.AppendUvarint(b, m.RejectHint)
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for i := range m.Entries {
		b = m.Entries[i].marshalBody(b)
	}
	b = append(b, boolByte(m.Snapshot != nil))
	if m.Snapshot != nil {
		b = m.Snapshot.marshalBody(b)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Context)))
	b = append(b, m.Context...)
	return append(b, boolByte(m.LeaderTransfer))
}

// Unmarshal decodes data, which must hold exactly one encoded Message, into m. The
// byte fields of m, of its entries and of its snapshot alias data (see the file
// comment); m.Entries and m.Snapshot are freshly allocated. A message type this
// version does not know is an error.
func (m *Message) Unmarshal(data []byte) error {
	d := decoder{buf: data, what: "message"}
	d.message(m)
	return d.finish()
}

// UnmarshalPrefix decodes the Message encoded at the start of data, which may go on
// with other bytes, into m, and returns the length of its encoding. It aliases data as
// Unmarshal does.
func (m *Message) UnmarshalPrefix(data []byte) (n int, err error) {
	d := decoder{buf: data, what: "message"}
	d.message(m)
	return d.prefixLen()
}

func (d *decoder) message(m *Message) {
	version := d.version()
	t := d.byte("Type")
	if d.err == nil && t >= byte(numMessageTypes) {
		d.off--
		d.fail("Type", fmt.Sprintf("unknown message type %d", t))
	}
	m.Type = MessageType(t)
	m.To = d.uvarint("To")
	m.From = d.uvarint("From")
	m.Term = d.uvarint("Term")
	m.LogTerm = d.uvarint("LogTerm")
	m.Index = d.uvarint("Index")
	m.Commit = d.uvarint("Commit")
	m.Reject = d.bool("Reject")
	m.RejectHint = d.uvarint("RejectHint")
	m.Entries = nil
	count := d.count("Entries", minEntryBodyBytes)
	if count > 0 {
		m.Entries = make([]Entry, count)
		for i := range m.Entries {
			d.entry(&m.Entries[i])
			if d.err != nil {
				break
			}
		}
	}
	m.Snapshot = nil
	if d.bool("hasSnapshot") {
		m.Snapshot = new(Snapshot)
		d.snapshot(m.Snapshot, version)
	}
	m.Context = d.bytes("Context")
	m.LeaderTransfer = false
	if version >= 2 {
		m.LeaderTransfer = d.bool("LeaderTransfer")
	}
}

// decoder reads fields from buf in order. After the first error every read returns
// zero values and the error sticks, so decoding code reads straight through and checks
// once at the end.
type decoder struct {
	buf  []byte
	off  int
	what string
	err  error
}

func (d *decoder) fail(field, problem string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s field %s at byte %d of %d: %s",
			ErrCorruptMessage, d.what, field, d.off, len(d.buf), problem)
	}
}

// prefixLen is what UnmarshalPrefix returns: the bytes decoded, or the error.
func (d *decoder) prefixLen() (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	return d.off, nil
}

// version reads the format version byte, checks that this build reads it, and
// returns it: the fields that follow are that version's.
func (d *decoder) version() byte {
	return d.versionFrom(minEncodingVersion)
}

// versionFrom is version for a type that exists from version oldest on.
func (d *decoder) versionFrom(oldest byte) byte {
	v := d.byte("version")
	if d.err == nil && (v < oldest || v > EncodingVersion) {
		d.off--
		d.err = fmt.Errorf("%w: %w: %s at byte %d: format version %d, this build reads versions %d to %d; was it written by a later release?",
			ErrCorruptMessage, ErrUnknownVersion, d.what, d.off, v, oldest, EncodingVersion)
	}
	return v
}

func (d *decoder) remaining() int { return len(d.buf) - d.off }

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 1 {
		d.fail(field, "input ends")
		return 0
	}
	v := d.buf[d.off]
	d.off++
	return v
}

func (d *decoder) bool(field string) bool {
	v := d.byte(field)
	if v > 1 {
		d.off--
		d.fail(field, fmt.Sprintf("boolean byte is %d, not 0 or 1", v))
		return false
	}
	return v == 1
}

// uvarint reads a canonical uvarint: at most 10 bytes, no overflow, and no redundant
// trailing zero groups (so that re-encoding gives the same bytes).
func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	if d.off < len(d.buf) && d.buf[d.off] < 0x80 {
		v := uint64(d.buf[d.off]) // the common one-byte case
		d.off++
		return v
	}
	return d.uvarintSlow(field)
}

func (d *decoder) uvarintSlow(field string) uint64 {
	v, n := binary.Uvarint(d.buf[d.off:])
	switch {
	case n == 0:
		d.fail(field, "input ends inside a varint")
		return 0
	case n < 0:
		d.fail(field, "varint overflows 64 bits")
		return 0
	case d.buf[d.off+n-1] == 0:
		d.fail(field, "overlong varint")
		return 0
	}
	d.off += n
	return v
}

// count reads a byte length or an element count and checks that the rest of the input
// can hold that many elements of at least minElemBytes each.
func (d *decoder) count(field string, minElemBytes int) int {
	start := d.off
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if n > uint64(d.remaining()/minElemBytes) {
		d.off = start
		d.fail(field, fmt.Sprintf("length %d cannot fit in the %d bytes left", n, d.remaining()))
		return 0
	}
	return int(n)
}

// bytes reads a length-prefixed byte string, aliasing buf. Empty strings decode as nil.
func (d *decoder) bytes(field string) []byte {
	n := d.count(field, 1)
	if d.err != nil || n == 0 {
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

// entry reads an entry's fields (its body: the version is read before).
func (d *decoder) entry(e *Entry) {
	if d.err == nil {
		if n := entryBodyPrefix(d.buf[d.off:], e); n > 0 {
			d.off += n
			return
		}
	}
	e.Term = d.uvarint("Entry.Term")
	e.Index = d.uvarint("Entry.Index")
	e.Type = EntryType(d.byte("Entry.Type"))
	e.Data = d.bytes("Entry.Data")
}

func (d *decoder) snapshot(s *Snapshot, version byte) {
	s.Index = d.uvarint("Snapshot.Index")
	s.Term = d.uvarint("Snapshot.Term")
	s.Data = d.bytes("Snapshot.Data")
	s.Membership = Membership{}
	if version >= 2 {
		d.membership(&s.Membership, "Snapshot.")
	}
}

// entryBodyPrefix decodes the entry body at the start of b by the same rules as
// decoder.entry, on a fast path with no error reporting: it returns the bytes used, or
// 0 if b does not start with a valid entry body (the decoder then says why). Entries
// are most of what is decoded, in messages and in the WAL at start-up, so this is the
// hot path.
func entryBodyPrefix(b []byte, e *Entry) int {
	term, n1 := canonicalUvarint(b)
	if n1 <= 0 {
		return 0
	}
	index, n2 := canonicalUvarint(b[n1:])
	if n2 <= 0 {
		return 0
	}
	p := n1 + n2
	if p >= len(b) {
		return 0
	}
	typ := b[p]
	p++
	size, n3 := canonicalUvarint(b[p:])
	if n3 <= 0 || size > uint64(len(b)-p-n3) {
		return 0
	}
	p += n3
	e.Term, e.Index, e.Type, e.Data = term, index, EntryType(typ), nil
	if size > 0 {
		end := p + int(size)
		e.Data = b[p:end:end]
	}
	return p + int(size)
}

// canonicalUvarint reads a uvarint under decoder.uvarint's rules, returning n <= 0 on
// any failure.
func canonicalUvarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	v, n := binary.Uvarint(b)
	if n <= 1 || b[n-1] == 0 {
		return 0, -1
	}
	return v, n
}

// finish reports the first error, or trailing bytes if the input was not consumed.
func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("(end)", fmt.Sprintf("%d trailing bytes", d.remaining()))
	}
	return d.err
}
