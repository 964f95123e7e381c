package raft

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// Round-trip fuzz targets, one per encoded type. Each takes two inputs: raw bytes,
// which must either fail to decode with ErrCorruptMessage or decode to a value that
// re-encodes to exactly those bytes if they are of the current version (so the format
// is canonical and self-delimiting: the prefix decoder finds the same value and length
// with other bytes after it), and to the same value if they are of an earlier one; and
// field values, whose encoding must decode back to the same value. Run one with, for
// example:
//
//	go test ./raft -run '^$' -fuzz '^FuzzEntry$' -fuzztime 30s

// codec is what the encoded types share.
type codec interface {
	Size() int
	MarshalTo([]byte) []byte
	Unmarshal([]byte) error
	UnmarshalPrefix([]byte) (int, error)
}

// checkRaw checks raw bytes against decoding into fresh values from newValue.
func checkRaw(t *testing.T, raw []byte, newValue func() codec) {
	t.Helper()
	current := len(raw) > 0 && raw[0] == EncodingVersion
	v := newValue()
	if err := v.Unmarshal(raw); err != nil {
		if !errors.Is(err, ErrCorruptMessage) {
			t.Fatalf("error %v does not wrap ErrCorruptMessage", err)
		}
	} else if !current {
		// An earlier version: what it decodes to survives the current one.
		again := newValue()
		if err := again.Unmarshal(v.MarshalTo(nil)); err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("value of an earlier version %#v re-encoded decodes to %#v, %v", v, again, err)
		}
	} else {
		if v.Size() != len(raw) {
			t.Fatalf("decoded value has Size %d, input was %d bytes", v.Size(), len(raw))
		}
		if re := v.MarshalTo(nil); !bytes.Equal(re, raw) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", raw, re)
		}
	}
	// With bytes after it, a value decodes as a prefix to the same length.
	p := newValue()
	n, err := p.UnmarshalPrefix(append(raw[:len(raw):len(raw)], 0xff, 0x01))
	switch {
	case err != nil && !errors.Is(err, ErrCorruptMessage):
		t.Fatalf("prefix error %v does not wrap ErrCorruptMessage", err)
	case err != nil && n != 0:
		t.Fatalf("prefix decoding failed but reports %d bytes", n)
	case err == nil && !current:
		if n > len(raw)+2 {
			t.Fatalf("prefix decoding took %d bytes of %d", n, len(raw)+2)
		}
	case err == nil:
		if n > len(raw)+2 || n != p.Size() {
			t.Fatalf("prefix decoding took %d bytes of %d, Size %d", n, len(raw)+2, p.Size())
		}
		if v.Unmarshal(raw) == nil && n != len(raw) {
			t.Fatalf("prefix decoding of a whole value plus 2 bytes took %d bytes, not %d", n, len(raw))
		}
	}
}

// checkRoundTrip encodes v, decodes it into fresh, and compares.
func checkRoundTrip(t *testing.T, v, fresh codec) {
	t.Helper()
	enc := v.MarshalTo([]byte("before"))[len("before"):]
	if len(enc) != v.Size() {
		t.Fatalf("Size %d, MarshalTo wrote %d bytes", v.Size(), len(enc))
	}
	if err := fresh.Unmarshal(enc); err != nil {
		t.Fatalf("decoding %x: %v", enc, err)
	}
	if !reflect.DeepEqual(fresh, v) {
		t.Fatalf("round trip\n got %#v\nwant %#v", fresh, v)
	}
}

// nilIfEmpty is what decoding gives for an empty byte string.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func FuzzEntry(f *testing.F) {
	for _, m := range sampleMessages() {
		for _, e := range m.Entries {
			f.Add(e.MarshalTo(nil), e.Term, e.Index, byte(e.Type), e.Data)
		}
	}
	f.Add([]byte{}, uint64(0), uint64(0), byte(0), []byte{})
	f.Add([]byte{EncodingVersion, 1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x08}, uint64(1), uint64(1), byte(1), []byte("x"))
	f.Fuzz(func(t *testing.T, raw []byte, term, index uint64, typ byte, data []byte) {
		checkRaw(t, raw, func() codec { return new(Entry) })
		checkRoundTrip(t, &Entry{Term: term, Index: index, Type: EntryType(typ), Data: nilIfEmpty(data)}, new(Entry))
	})
}

func FuzzHardState(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint64(0), uint64(0))
	f.Add((&HardState{Term: 5, Vote: 2, Commit: 300}).MarshalTo(nil), uint64(5), uint64(2), uint64(300))
	f.Add([]byte{EncodingVersion, 1, 2}, uint64(1<<63), uint64(1), uint64(1<<40))
	f.Fuzz(func(t *testing.T, raw []byte, term, vote, commit uint64) {
		checkRaw(t, raw, func() codec { return new(HardState) })
		hs := &HardState{Term: term, Vote: vote, Commit: commit}
		if hs.Size() > MaxHardStateSize {
			t.Fatalf("hard state of %d bytes, MaxHardStateSize %d", hs.Size(), MaxHardStateSize)
		}
		checkRoundTrip(t, hs, new(HardState))
	})
}

func FuzzSnapshot(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint64(0), []byte{}, []byte{})
	f.Add((&Snapshot{Index: 1 << 40, Term: 8, Data: []byte("state")}).MarshalTo(nil), uint64(10), uint64(3), []byte("snap"), []byte{1, 2})
	f.Add([]byte{1, 10, 3, 1, 's'}, uint64(10), uint64(3), []byte("s"), []byte{3})
	f.Fuzz(func(t *testing.T, raw []byte, index, term uint64, data, members []byte) {
		checkRaw(t, raw, func() codec { return new(Snapshot) })
		checkRoundTrip(t, &Snapshot{Index: index, Term: term, Membership: membershipOf(members), Data: nilIfEmpty(data)}, new(Snapshot))
	})
}

// membershipOf builds a valid membership from fuzz bytes: each byte a member id, odd
// ones voters and even ones learners.
func membershipOf(b []byte) Membership {
	var m Membership
	for _, id := range b {
		if id == 0 || m.IsMember(uint64(id)) {
			continue
		}
		if id%2 == 1 {
			m.Voters = insertSorted(m.Voters, uint64(id))
		} else {
			m.Learners = insertSorted(m.Learners, uint64(id))
		}
	}
	return m
}

func FuzzMembership(f *testing.F) {
	f.Add([]byte{}, []byte{})
	f.Add((&Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{1 << 40}}).MarshalTo(nil), []byte{1, 3, 4})
	f.Fuzz(func(t *testing.T, raw, members []byte) {
		checkRaw(t, raw, func() codec { return new(Membership) })
		m := membershipOf(members)
		checkRoundTrip(t, &m, new(Membership))
	})
}

func FuzzConfEntry(f *testing.F) {
	f.Add([]byte{}, byte(0), uint64(0), []byte{}, []byte{})
	ce := ConfEntry{Change: ConfChange{Type: ConfChangeAddLearner, NodeID: 4, Context: []byte("n4")},
		Membership: Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}}
	f.Add(ce.MarshalTo(nil), byte(ConfChangeRemove), uint64(7), []byte("ctx"), []byte{1, 3, 7})
	f.Fuzz(func(t *testing.T, raw []byte, typ byte, node uint64, context, members []byte) {
		checkRaw(t, raw, func() codec { return new(ConfEntry) })
		ce := &ConfEntry{Change: ConfChange{Type: ConfChangeType(typ%4 + 1), NodeID: node, Context: nilIfEmpty(context)},
			Membership: membershipOf(members)}
		checkRoundTrip(t, ce, new(ConfEntry))
	})
}

func FuzzMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.MarshalTo(nil), byte(m.Type), m.To, m.From, m.Term, m.Index, m.Reject, uint8(len(m.Entries)), []byte("data"), m.Snapshot != nil, m.Context)
	}
	f.Add([]byte{}, byte(0), uint64(0), uint64(0), uint64(0), uint64(0), false, uint8(0), []byte{}, false, []byte{})
	f.Add([]byte{EncodingVersion, byte(MsgApp), 0x80, 0x00}, byte(MsgApp), uint64(2), uint64(1), uint64(7), uint64(1<<40), true, uint8(3), []byte("abcdef"), true, []byte{1})
	f.Fuzz(func(t *testing.T, raw []byte, typ byte, to, from, term, index uint64, reject bool,
		entries uint8, data []byte, hasSnapshot bool, context []byte) {
		checkRaw(t, raw, func() codec { return new(Message) })
		// The fields not given their own argument take values derived from the others.
		m := &Message{Type: MessageType(typ % byte(numMessageTypes)), To: to, From: from, Term: term,
			LogTerm: term / 2, Index: index, Commit: index / 3, Reject: reject, RejectHint: to ^ from,
			Context: nilIfEmpty(context), LeaderTransfer: reject != hasSnapshot}
		for i := range int(entries % 8) {
			// Entry i holds the i-th slice of data (cut into equal parts).
			part := data[len(data)*i/8 : len(data)*(i+1)/8]
			m.Entries = append(m.Entries, Entry{Term: term, Index: index + uint64(i), Type: EntryType(i), Data: nilIfEmpty(part)})
		}
		if hasSnapshot {
			m.Snapshot = &Snapshot{Index: index, Term: term, Membership: membershipOf(data), Data: nilIfEmpty(data)}
		}
		checkRoundTrip(t, m, new(Message))
	})
}
