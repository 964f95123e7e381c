package kv

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// sampleCommands covers every request kind, flag, enum and compare operand, in
// the canonical form Decode produces (nil for empty byte strings, only the
// operand Target selects).
func sampleCommands() []*Command {
	return []*Command{
		{Put: &PutRequest{Key: []byte("k"), Value: []byte("v")}},
		{ClientID: 1<<64 - 1, Seq: 300, Put: &PutRequest{Key: []byte("k"), Lease: -5, PrevKv: true, IgnoreValue: true, IgnoreLease: true}},
		{ClientID: 9, Seq: 1, DeleteRange: &DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true}},
		{Compact: &CompactionRequest{Revision: 1 << 40, Physical: true}},
		{Compact: &CompactionRequest{Revision: -1}},
		{Txn: &TxnRequest{}},
		{ClientID: 2, Seq: 2, Txn: &TxnRequest{
			Compare: []Compare{
				{Result: CompareNotEqual, Target: CompareValue, Key: []byte("a"), RangeEnd: []byte("b"), Value: []byte("x")},
				{Result: CompareGreater, Target: CompareVersion, Key: []byte("a"), Version: 3},
				{Result: CompareLess, Target: CompareCreate, Key: []byte("a"), CreateRevision: -7},
				{Result: CompareEqual, Target: CompareMod, Key: []byte("a"), ModRevision: 1 << 62},
				{Target: CompareLease, Key: []byte("a"), Lease: 12},
				{Result: 99, Target: 42, Key: []byte("odd enums")},
			},
			Success: []RequestOp{
				{Range: &RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 10, Revision: 4,
					SortOrder: SortDescend, SortTarget: SortByValue, Serializable: true, KeysOnly: true, CountOnly: true,
					MinModRevision: 1, MaxModRevision: 2, MinCreateRevision: 3, MaxCreateRevision: 4}},
				{Put: &PutRequest{Key: []byte("p"), Value: []byte("q")}},
				{DeleteRange: &DeleteRangeRequest{Key: []byte("d")}},
				{},
				{Txn: &TxnRequest{Failure: []RequestOp{{Txn: &TxnRequest{Compare: []Compare{{Key: []byte("deep")}}}}}}},
			},
			Failure: []RequestOp{{Range: &RangeRequest{Key: []byte("f"), SortOrder: -3}}},
		}},
		{LeaseGrant: &LeaseGrantRequest{ID: 7, TTL: 60}},
		{ClientID: 4, Seq: 9, LeaseGrant: &LeaseGrantRequest{ID: -3, TTL: MaxLeaseTTL}},
		{LeaseRevoke: &LeaseRevokeRequest{ID: 1 << 62}},
		{LeaseCheckpoint: &LeaseCheckpointRequest{Checkpoints: []LeaseCheckpoint{{ID: 1, RemainingTTL: 30}, {ID: -2}}}},
		{LeaseCheckpoint: &LeaseCheckpointRequest{}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for i, cmd := range sampleCommands() {
		data, err := cmd.Encode()
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		got, err := DecodeCommand(data)
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Fatalf("command %d: decoded %+v, want %+v", i, got, cmd)
		}
		again, _ := got.Encode()
		if !bytes.Equal(again, data) {
			t.Fatalf("command %d: re-encoding differs", i)
		}
		// Every proper prefix is truncated, so it must fail, not panic.
		for n := range len(data) {
			if _, err := DecodeCommand(data[:n]); !errors.Is(err, ErrCorruptCommand) {
				t.Fatalf("command %d cut to %d of %d bytes: %v", i, n, len(data), err)
			}
		}
	}
}

func TestCodecRejects(t *testing.T) {
	put, _ := (&Command{Put: &PutRequest{Key: []byte("k")}}).Encode() // 1 2 0 0 1 'k' 0 0 0
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"wrong version", append([]byte{2}, put[1:]...)},
		{"unknown kind", []byte{1, 9, 0, 0}},
		{"empty-op kind at top level", []byte{1, 0, 0, 0}},
		{"trailing byte", append(bytes.Clone(put), 0)},
		{"non-minimal varint", []byte{1, 2, 0x80, 0x00, 0, 1, 'k', 0, 0, 0}},
		{"unknown flag bit", []byte{1, 2, 0, 0, 1, 'k', 0, 0, 8}},
		{"length beyond input", []byte{1, 2, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"varint overflow", []byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"op list longer than input", []byte{1, 4, 0, 0, 0, 0x7f}},
		{"op list over the cap", []byte{1, 4, 0, 0, 0, 0x80, 0x08}},
		{"lease grant inside a txn", []byte{1, 4, 0, 0, 0, 1, byte(opLeaseGrant), 2, 2, 0}},
		{"checkpoints over the cap", []byte{1, byte(opLeaseCheckpoint), 0, 0, 0x91, 0x4e}},
		{"checkpoint list longer than input", []byte{1, byte(opLeaseCheckpoint), 0, 0, 3, 2, 2}},
	} {
		if _, err := DecodeCommand(tc.data); !errors.Is(err, ErrCorruptCommand) {
			t.Errorf("%s: %v, want ErrCorruptCommand", tc.name, err)
		}
	}
}

func TestCodecDepthLimit(t *testing.T) {
	nest := func(depth int) *Command {
		txn := &TxnRequest{}
		for range depth - 1 {
			txn = &TxnRequest{Success: []RequestOp{{Txn: txn}}}
		}
		return &Command{Txn: txn}
	}
	data, err := nest(maxTxnDepth).Encode()
	if err != nil {
		t.Fatalf("encode at the depth limit: %v", err)
	}
	if _, err := DecodeCommand(data); err != nil {
		t.Fatalf("decode at the depth limit: %v", err)
	}
	if _, err := nest(maxTxnDepth + 1).Encode(); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("encode past the depth limit: %v", err)
	}
	// Hand-build one level deeper: each level is "1 op, of kind txn, with no
	// compares", then the innermost txn's three empty lists.
	deep := []byte{1, byte(opTxn), 0, 0}
	for range maxTxnDepth {
		deep = append(deep, 0, 1, byte(opTxn))
	}
	deep = append(deep, 0, 0, 0)
	if _, err := DecodeCommand(deep); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("decode past the depth limit: %v", err)
	}
}

func TestEncodeRejectsMalformed(t *testing.T) {
	for _, cmd := range []*Command{
		{},
		{Put: &PutRequest{}, Compact: &CompactionRequest{}},
		{Txn: &TxnRequest{Success: []RequestOp{{Put: &PutRequest{}, DeleteRange: &DeleteRangeRequest{}}}}},
		{LeaseGrant: &LeaseGrantRequest{}, LeaseRevoke: &LeaseRevokeRequest{}},
	} {
		if _, err := cmd.Encode(); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Encode(%+v): %v, want ErrInvalidCommand", cmd, err)
		}
	}
}

// FuzzDecodeCommand checks that DecodeCommand never panics, and that whatever
// decodes re-encodes to the same bytes and decodes to the same command.
func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range sampleCommands() {
		data, err := cmd.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 4, 0, 0, 0, 1, 4, 0, 1, 0, 0})
	f.Add([]byte{1, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptCommand) {
				t.Fatalf("error %v does not wrap ErrCorruptCommand", err)
			}
			return
		}
		again, err := cmd.Encode()
		if err != nil {
			t.Fatalf("decoded command does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", data, again)
		}
		cmd2, err := DecodeCommand(again)
		if err != nil || !reflect.DeepEqual(cmd, cmd2) {
			t.Fatalf("second decode: %v, equal %v", err, reflect.DeepEqual(cmd, cmd2))
		}
		// Whatever decodes must also apply without panicking.
		s, err := NewStore(Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Apply(1, data)
	})
}
