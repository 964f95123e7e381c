package raft

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

func sampleMessages() []Message {
	return []Message{
		{},
		{Type: MsgHup},
		{Type: MsgApp, To: 2, From: 1, Term: 7, LogTerm: 6, Index: 100, Commit: 99,
			Entries: []Entry{
				{Term: 7, Index: 101, Type: EntryNoOp},
				{Term: 7, Index: 102, Type: EntryCommand, Data: []byte("put x=1")},
				{Term: math.MaxUint64, Index: math.MaxUint64, Type: EntryType(200), Data: bytes.Repeat([]byte{0xff}, 300)},
			}},
		{Type: MsgAppResp, To: 1, From: 3, Term: 7, Index: 40, LogTerm: 5, Reject: true, RejectHint: 31},
		{Type: MsgSnap, To: 3, From: 1, Term: 9, Snapshot: &Snapshot{Index: 1 << 40, Term: 8, Data: []byte("state")}},
		{Type: MsgSnap, To: 3, From: 1, Term: 9, Snapshot: &Snapshot{}},
		{Type: MsgSnap, To: 4, From: 1, Term: 9, Snapshot: &Snapshot{Index: 77, Term: 9,
			Membership: Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{4, math.MaxUint64}}, Data: []byte("s")}},
		{Type: MsgVote, To: 2, From: 3, Term: 10, Index: 50, LogTerm: 9, LeaderTransfer: true},
		{Type: MsgTimeoutNow, To: 2, From: 1, Term: 9},
		{Type: MsgReadIndex, To: 1, From: 2, Term: 3, Context: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{Type: MsgSnapStatus, To: math.MaxUint64, From: math.MaxUint64, Term: math.MaxUint64, LogTerm: math.MaxUint64,
			Index: math.MaxUint64, Commit: math.MaxUint64, Reject: true, RejectHint: math.MaxUint64},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for i, m := range sampleMessages() {
		b := m.MarshalTo(nil)
		if len(b) != m.Size() {
			t.Errorf("message %d: Size() = %d, MarshalTo wrote %d bytes", i, m.Size(), len(b))
		}
		var got Message
		if err := got.Unmarshal(b); err != nil {
			t.Fatalf("message %d (%v): Unmarshal: %v", i, m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("message %d: round trip\n got %#v\nwant %#v", i, got, m)
		}
		// Appending after existing bytes leaves them alone.
		prefix := []byte("prefix")
		b2 := m.MarshalTo(append([]byte(nil), prefix...))
		if !bytes.HasPrefix(b2, prefix) || !bytes.Equal(b2[len(prefix):], b) {
			t.Errorf("message %d: MarshalTo after a prefix wrote different bytes", i)
		}
	}
}

func TestEmptySlicesDecodeAsNil(t *testing.T) {
	m := Message{Type: MsgApp, Entries: []Entry{}, Context: []byte{}}
	var got Message
	if err := got.Unmarshal(m.MarshalTo(nil)); err != nil {
		t.Fatal(err)
	}
	if got.Entries != nil || got.Context != nil {
		t.Errorf("empty slices decoded as %#v, %#v; want nil", got.Entries, got.Context)
	}
	e := Entry{Data: []byte{}}
	var ge Entry
	if err := ge.Unmarshal(e.MarshalTo(nil)); err != nil || ge.Data != nil {
		t.Errorf("empty entry data decoded as %#v (err %v); want nil", ge.Data, err)
	}
}

func TestEntryHardStateSnapshotRoundTrip(t *testing.T) {
	entries := []Entry{{}, {Term: 1, Index: 1, Data: []byte("a")}, {Term: 1 << 63, Index: 1<<63 + 5, Type: EntryNoOp}}
	for _, e := range entries {
		b := e.MarshalTo(nil)
		if len(b) != e.Size() {
			t.Errorf("entry %v: Size %d, wrote %d", e, e.Size(), len(b))
		}
		var got Entry
		if err := got.Unmarshal(b); err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("entry %v: got %v, err %v", e, got, err)
		}
	}
	for _, hs := range []HardState{{}, {Term: 5, Vote: 2, Commit: 17}, {Term: math.MaxUint64, Vote: math.MaxUint64, Commit: math.MaxUint64}} {
		b := hs.MarshalTo(nil)
		if len(b) != hs.Size() {
			t.Errorf("hard state %v: Size %d, wrote %d", hs, hs.Size(), len(b))
		}
		var got HardState
		if err := got.Unmarshal(b); err != nil || got != hs {
			t.Errorf("hard state %v: got %v, err %v", hs, got, err)
		}
	}
	for _, s := range []Snapshot{{}, {Index: 10, Term: 3, Data: []byte("snap")}} {
		b := s.MarshalTo(nil)
		if len(b) != s.Size() {
			t.Errorf("snapshot %v: Size %d, wrote %d", s, s.Size(), len(b))
		}
		var got Snapshot
		if err := got.Unmarshal(b); err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("snapshot %v: got %v, err %v", s, got, err)
		}
	}
}

func TestUnmarshalAliasesInput(t *testing.T) {
	e := Entry{Term: 1, Index: 2, Data: []byte("payload")}
	b := e.MarshalTo(nil)
	var got Entry
	if err := got.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 'X'
	if string(got.Data) != "payloaX" {
		t.Errorf("decoded Data = %q; the codec documents that it aliases the input", got.Data)
	}
	// Appending to the decoded slice must not write over the input that follows it.
	if cap(got.Data) != len(got.Data) {
		t.Errorf("decoded Data has cap %d > len %d; appends would scribble on the input", cap(got.Data), len(got.Data))
	}
}

func TestUnmarshalRejectsBadInput(t *testing.T) {
	valid := sampleMessages()[2]
	enc := valid.MarshalTo(nil)
	v := func(b ...byte) []byte { return append([]byte{EncodingVersion}, b...) }
	cases := map[string][]byte{
		"empty":             {},
		"version only":      v(),
		"no version byte":   enc[1:],
		"version 0":         append([]byte{0}, enc[1:]...),
		"later version":     append([]byte{EncodingVersion + 1}, enc[1:]...),
		"unknown type":      v(byte(numMessageTypes)),
		"overlong varint":   v(byte(MsgApp), 0x80, 0x00),
		"varint overflow":   v(byte(MsgApp), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02),
		"unterminated":      v(byte(MsgApp), 0xff, 0xff),
		"bad bool":          v(byte(MsgApp), 0, 0, 0, 0, 0, 0, 2),
		"huge entry count":  v(byte(MsgApp), 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"huge context":      v(byte(MsgApp), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"bad hasSnapshot":   v(byte(MsgApp), 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0),
		"trailing bytes":    append(append([]byte(nil), enc...), 0),
		"truncated by one":  enc[:len(enc)-1],
		"truncated in half": enc[:len(enc)/2],
	}
	for name, in := range cases {
		var m Message
		err := m.Unmarshal(in)
		if !errors.Is(err, ErrCorruptMessage) {
			t.Errorf("%s: Unmarshal(%x) = %v; want an error wrapping ErrCorruptMessage", name, in, err)
		}
	}
	var e Entry
	if err := e.Unmarshal([]byte{EncodingVersion, 1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x08}); !errors.Is(err, ErrCorruptMessage) {
		t.Errorf("entry with a forged 2 GiB length: err = %v; want ErrCorruptMessage", err)
	}
	var hs HardState
	if err := hs.Unmarshal([]byte{1, 2}); !errors.Is(err, ErrCorruptMessage) {
		t.Errorf("short hard state: err = %v; want ErrCorruptMessage", err)
	}
}

// TestEveryTruncationFails checks that no proper prefix of a valid encoding decodes:
// the format carries its own lengths, so a cut anywhere must be noticed.
func TestEveryTruncationFails(t *testing.T) {
	for i, m := range sampleMessages() {
		enc := m.MarshalTo(nil)
		for n := 0; n < len(enc); n++ {
			var got Message
			if err := got.Unmarshal(enc[:n]); err == nil {
				t.Fatalf("message %d: prefix of %d/%d bytes decoded without error", i, n, len(enc))
			}
		}
	}
}

func TestMarshalDoesNotAllocateWithRoom(t *testing.T) {
	m := sampleMessages()[2]
	buf := make([]byte, 0, m.Size())
	allocs := testing.AllocsPerRun(100, func() { buf = m.MarshalTo(buf[:0]) })
	if allocs != 0 {
		t.Errorf("MarshalTo into a buffer with room allocated %v times per run; want 0", allocs)
	}
	var got Message
	enc := m.MarshalTo(nil)
	allocs = testing.AllocsPerRun(100, func() {
		if err := got.Unmarshal(enc); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("Unmarshal of a message with entries allocated %v times per run; want 1 (the Entries slice)", allocs)
	}
}

func benchMessage() Message {
	m := Message{Type: MsgApp, To: 2, From: 1, Term: 12, LogTerm: 12, Index: 1 << 20, Commit: 1<<20 - 3}
	payload := bytes.Repeat([]byte{0xab}, 256)
	for i := range 64 {
		m.Entries = append(m.Entries, Entry{Term: 12, Index: 1<<20 + uint64(i) + 1, Data: payload})
	}
	return m
}

// BenchmarkMessageMarshal encodes an append of 64 entries of 256 bytes into a reused
// buffer.
func BenchmarkMessageMarshal(b *testing.B) {
	m := benchMessage()
	buf := make([]byte, 0, m.Size())
	b.SetBytes(int64(m.Size()))
	b.ReportAllocs()
	for b.Loop() {
		buf = m.MarshalTo(buf[:0])
	}
}

// BenchmarkMessageUnmarshal decodes an append of 64 entries of 256 bytes.
func BenchmarkMessageUnmarshal(b *testing.B) {
	m := benchMessage()
	enc := m.MarshalTo(nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	var got Message
	for b.Loop() {
		if err := got.Unmarshal(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodingFormats pins the bytes of format 2, the one written, and checks that
// the bytes of format 1 still decode to the same values: a change to either breaks
// every WAL and peer that holds them, so it must come with a new version.
func TestEncodingFormats(t *testing.T) {
	hex := func(b []byte) string { return fmt.Sprintf("% x", b) }
	unhex := func(s string) []byte {
		var b []byte
		for _, f := range strings.Fields(s) {
			var v byte
			fmt.Sscanf(f, "%02x", &v)
			b = append(b, v)
		}
		return b
	}
	e := Entry{Term: 5, Index: 7, Type: EntryCommand, Data: []byte("ab")}
	hs := HardState{Term: 5, Vote: 2, Commit: 300}
	snap := Snapshot{Index: 10, Term: 3, Data: []byte("s")}
	snapConf := Snapshot{Index: 10, Term: 3, Membership: Membership{Voters: []uint64{1, 2}, Learners: []uint64{300}}, Data: []byte("s")}
	m := Message{Type: MsgApp, To: 2, From: 1, Term: 5, LogTerm: 4, Index: 6, Commit: 6,
		Entries: []Entry{{Term: 5, Index: 7, Data: []byte("x")}}, Context: []byte{9}}
	vote := Message{Type: MsgVote, To: 2, From: 1, Term: 5, LogTerm: 4, Index: 6, LeaderTransfer: true}
	ce := ConfEntry{Change: ConfChange{Type: ConfChangeAddLearner, NodeID: 4, Context: []byte("n4")},
		Membership: Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}}
	for _, c := range []struct {
		what string
		got  []byte
		want string
	}{
		{"entry", e.MarshalTo(nil), "02 05 07 00 02 61 62"},
		{"hard state", hs.MarshalTo(nil), "02 05 02 ac 02"},
		{"snapshot", snap.MarshalTo(nil), "02 0a 03 01 73 00 00"},
		{"snapshot with a membership", snapConf.MarshalTo(nil), "02 0a 03 01 73 02 01 02 01 ac 02"},
		{"message", m.MarshalTo(nil), "02 03 02 01 05 04 06 06 00 00 01 05 07 00 01 78 00 01 09 00"},
		{"transfer vote", vote.MarshalTo(nil), "02 05 02 01 05 04 06 00 00 00 00 00 00 01"},
		{"configuration entry", ce.MarshalTo(nil), "02 02 04 02 6e 34 03 01 02 03 01 04"},
		{"membership", ce.Membership.MarshalTo(nil), "02 03 01 02 03 01 04"},
	} {
		if hex(c.got) != c.want {
			t.Errorf("%s encodes as %s, format 2 is %s", c.what, hex(c.got), c.want)
		}
	}
	// Format 1: the same fields without those version 2 appended; a snapshot of
	// format 1 has the bootstrap configuration.
	var gotE Entry
	if err := gotE.Unmarshal(unhex("01 05 07 00 02 61 62")); err != nil || !reflect.DeepEqual(gotE, e) {
		t.Errorf("entry of format 1: %+v, %v; want %+v", gotE, err, e)
	}
	var gotHS HardState
	if err := gotHS.Unmarshal(unhex("01 05 02 ac 02")); err != nil || gotHS != hs {
		t.Errorf("hard state of format 1: %+v, %v; want %+v", gotHS, err, hs)
	}
	var gotSnap Snapshot
	if err := gotSnap.Unmarshal(unhex("01 0a 03 01 73")); err != nil || !reflect.DeepEqual(gotSnap, snap) {
		t.Errorf("snapshot of format 1: %+v, %v; want %+v", gotSnap, err, snap)
	}
	var gotM Message
	if err := gotM.Unmarshal(unhex("01 03 02 01 05 04 06 06 00 00 01 05 07 00 01 78 00 01 09")); err != nil || !reflect.DeepEqual(gotM, m) {
		t.Errorf("message of format 1: %+v, %v; want %+v", gotM, err, m)
	}
	// Memberships and configuration entries came with format 2.
	if err := new(ConfEntry).Unmarshal(unhex("01 02 04 02 6e 34 03 01 02 03 01 04")); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("configuration entry of format 1: err %v, want ErrUnknownVersion", err)
	}
	worst := HardState{Term: math.MaxUint64, Vote: math.MaxUint64, Commit: math.MaxUint64}
	if n := len(worst.MarshalTo(nil)); n != MaxHardStateSize || worst.Size() != n {
		t.Errorf("largest hard state takes %d bytes (Size %d), MaxHardStateSize is %d", n, worst.Size(), MaxHardStateSize)
	}
}

// TestMembershipDecodingIsStrict: a decoded membership is a configuration: ids in
// ascending order, none twice, none both voter and learner, none 0.
func TestMembershipDecodingIsStrict(t *testing.T) {
	for _, bad := range []Membership{
		{Voters: []uint64{2, 1}},
		{Voters: []uint64{1, 1}},
		{Voters: []uint64{1, 2}, Learners: []uint64{2}},
		{Voters: []uint64{0, 1}},
	} {
		enc := bad.MarshalTo(nil)
		if err := new(Membership).Unmarshal(enc); !errors.Is(err, ErrCorruptMessage) {
			t.Errorf("membership %v decoded: err %v, want ErrCorruptMessage", bad, err)
		}
		s := Snapshot{Index: 1, Term: 1, Membership: bad}
		if err := new(Snapshot).Unmarshal(s.MarshalTo(nil)); !errors.Is(err, ErrCorruptMessage) {
			t.Errorf("snapshot with membership %v decoded: err %v, want ErrCorruptMessage", bad, err)
		}
	}
	for _, typ := range []ConfChangeType{0, ConfChangeRemove + 1} {
		ce := ConfEntry{Change: ConfChange{Type: typ, NodeID: 1}, Membership: Membership{Voters: []uint64{1}}}
		if err := new(ConfEntry).Unmarshal(ce.MarshalTo(nil)); !errors.Is(err, ErrCorruptMessage) {
			t.Errorf("configuration entry of change type %d decoded: err %v, want ErrCorruptMessage", typ, err)
		}
	}
}

// TestUnknownVersion: a later version is refused with ErrUnknownVersion, by every
// decoder, whole or prefix.
func TestUnknownVersion(t *testing.T) {
	e, hs, snap, m := Entry{Term: 1, Index: 1}, HardState{Term: 1}, Snapshot{Index: 1, Term: 1}, Message{Type: MsgHeartbeat, Term: 1}
	later := func(enc []byte) []byte { enc[0] = EncodingVersion + 1; return enc }
	errs := map[string]error{
		"entry":             new(Entry).Unmarshal(later(e.MarshalTo(nil))),
		"hard state":        new(HardState).Unmarshal(later(hs.MarshalTo(nil))),
		"snapshot":          new(Snapshot).Unmarshal(later(snap.MarshalTo(nil))),
		"message":           new(Message).Unmarshal(later(m.MarshalTo(nil))),
		"entry prefix":      second(new(Entry).UnmarshalPrefix(later(e.MarshalTo(nil)))),
		"hard state prefix": second(new(HardState).UnmarshalPrefix(later(hs.MarshalTo(nil)))),
		"snapshot prefix":   second(new(Snapshot).UnmarshalPrefix(later(snap.MarshalTo(nil)))),
		"message prefix":    second(new(Message).UnmarshalPrefix(later(m.MarshalTo(nil)))),
	}
	for what, err := range errs {
		if !errors.Is(err, ErrUnknownVersion) || !errors.Is(err, ErrCorruptMessage) {
			t.Errorf("%s of version %d: err = %v; want ErrUnknownVersion and ErrCorruptMessage", what, EncodingVersion+1, err)
		}
	}
}

func second(_ int, err error) error { return err }

// TestUnmarshalPrefix reads values stored back to back, with nothing between them.
func TestUnmarshalPrefix(t *testing.T) {
	hs := HardState{Term: 3, Vote: 1, Commit: 1 << 40}
	e := Entry{Term: 3, Index: 1 << 40, Data: []byte("payload")}
	snap := Snapshot{Index: 9, Term: 2, Data: []byte("state")}
	var buf []byte
	buf = hs.MarshalTo(buf)
	buf = e.MarshalTo(buf)
	buf = snap.MarshalTo(buf)
	for _, m := range sampleMessages() {
		buf = m.MarshalTo(buf)
	}
	buf = append(buf, "tail"...)

	var gotHS HardState
	n, err := gotHS.UnmarshalPrefix(buf)
	if err != nil || n != hs.Size() || gotHS != hs {
		t.Fatalf("hard state: %v, %d bytes, err %v; want %v, %d bytes", gotHS, n, err, hs, hs.Size())
	}
	rest := buf[n:]
	var gotE Entry
	if n, err = gotE.UnmarshalPrefix(rest); err != nil || n != e.Size() || !reflect.DeepEqual(gotE, e) {
		t.Fatalf("entry: %v, %d bytes, err %v; want %v, %d bytes", gotE, n, err, e, e.Size())
	}
	rest = rest[n:]
	var gotSnap Snapshot
	if n, err = gotSnap.UnmarshalPrefix(rest); err != nil || n != snap.Size() || !reflect.DeepEqual(gotSnap, snap) {
		t.Fatalf("snapshot: %v, %d bytes, err %v; want %v, %d bytes", gotSnap, n, err, snap, snap.Size())
	}
	rest = rest[n:]
	for i, m := range sampleMessages() {
		var got Message
		if n, err = got.UnmarshalPrefix(rest); err != nil || n != m.Size() || !reflect.DeepEqual(got, m) {
			t.Fatalf("message %d: %v, %d bytes, err %v; want %v, %d bytes", i, got, n, err, m, m.Size())
		}
		rest = rest[n:]
	}
	if string(rest) != "tail" {
		t.Fatalf("%q left after the values, want \"tail\"", rest)
	}
	if n, err := new(HardState).UnmarshalPrefix(buf[:2]); err == nil || n != 0 {
		t.Fatalf("a cut hard state: %d bytes, err %v; want 0 and an error", n, err)
	}
}
