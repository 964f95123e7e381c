package raft

import (
	"encoding/binary"
	"fmt"
)

// The codec of Membership and ConfEntry, in the format codec.go describes. Both exist
// from format version 2 on. Decoding checks that a membership is a configuration
// (ascending, distinct, disjoint, no id 0): a decoded Membership can be used as is.

// membershipVersion is the first format version with memberships.
const membershipVersion = 2

func idsSize(ids []uint64) int {
	n := uvarintSize(uint64(len(ids)))
	for _, id := range ids {
		n += uvarintSize(id)
	}
	return n
}

func appendIDs(b []byte, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

func (m *Membership) bodySize() int { return idsSize(m.Voters) + idsSize(m.Learners) }

func (m *Membership) marshalBody(b []byte) []byte {
	return appendIDs(appendIDs(b, m.Voters), m.Learners)
}

// Size returns the length of m's encoding.
func (m *Membership) Size() int { return 1 + m.bodySize() }

// MarshalTo appends m's encoding to b and returns the extended slice.
func (m *Membership) MarshalTo(b []byte) []byte {
	return m.marshalBody(append(b, EncodingVersion))
}

// Unmarshal decodes data, which must hold exactly one encoded Membership, into m.
func (m *Membership) Unmarshal(data []byte) error {
	d := decoder{buf: data, what: "membership"}
	d.versionFrom(membershipVersion)
	d.membership(m, "")
	return d.finish()
}

// UnmarshalPrefix decodes the Membership encoded at the start of data, which may go
// on with other bytes, into m, and returns the length of its encoding.
func (m *Membership) UnmarshalPrefix(data []byte) (n int, err error) {
	d := decoder{buf: data, what: "membership"}
	d.versionFrom(membershipVersion)
	d.membership(m, "")
	return d.prefixLen()
}

func (d *decoder) ids(field string) []uint64 {
	n := d.count(field, 1)
	if d.err != nil || n == 0 {
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = d.uvarint(field)
	}
	return ids
}

// membership reads a membership's body; field prefixes the field names in errors.
func (d *decoder) membership(m *Membership, field string) {
	start := d.off
	m.Voters = d.ids(field + "Voters")
	m.Learners = d.ids(field + "Learners")
	if d.err == nil {
		if err := m.Validate(); err != nil {
			d.off = start
			d.fail(field+"Voters", err.Error())
		}
	}
}

// Size returns the length of ce's encoding.
func (ce *ConfEntry) Size() int {
	return 2 + uvarintSize(ce.Change.NodeID) + bytesSize(ce.Change.Context) + ce.Membership.bodySize()
}

// MarshalTo appends ce's encoding to b and returns the extended slice.
func (ce *ConfEntry) MarshalTo(b []byte) []byte {
	b = append(b, EncodingVersion, byte(ce.Change.Type))
	b = binary.AppendUvarint(b, ce.Change.NodeID)
	b = binary.AppendUvarint(b, uint64(len(ce.Change.Context)))
	b = append(b, ce.Change.Context...)
	return ce.Membership.marshalBody(b)
}

// Unmarshal decodes data, the Data of an EntryConfChange entry, into ce. Its
// Change.Context aliases data. A change type this version does not know is an error.
func (ce *ConfEntry) Unmarshal(data []byte) error {
	d := decoder{buf: data, what: "configuration entry"}
	d.confEntry(ce)
	return d.finish()
}

// UnmarshalPrefix decodes the ConfEntry encoded at the start of data, which may go on
// with other bytes, into ce, and returns the length of its encoding.
func (ce *ConfEntry) UnmarshalPrefix(data []byte) (n int, err error) {
	d := decoder{buf: data, what: "configuration entry"}
	d.confEntry(ce)
	return d.prefixLen()
}

func (d *decoder) confEntry(ce *ConfEntry) {
	d.versionFrom(membershipVersion)
	t := d.byte("Type")
	if d.err == nil && (t < byte(ConfChangeAddVoter) || t > byte(ConfChangeRemove)) {
		d.off--
		d.fail("Type", fmt.Sprintf("unknown configuration change type %d", t))
	}
	ce.Change.Type = ConfChangeType(t)
	ce.Change.NodeID = d.uvarint("NodeID")
	ce.Change.Context = d.bytes("Context")
	d.membership(&ce.Membership, "")
}
