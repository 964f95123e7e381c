package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"testing"
)

// FuzzRestore feeds Restore arbitrary snapshot bodies with a correct checksum, so
// that the decoder itself is what meets the damage: it must refuse what breaks the
// format or the store's invariants with ErrCorruptSnapshot, never panic, and a
// snapshot it accepts must read back and write out again.
func FuzzRestore(f *testing.F) {
	s := newTestStoreOn(f, Config{}, "mem")
	f.Add(mustSnapshot(f, s)[:0])
	for i := range 40 {
		mustPut(f, s, fmt.Sprintf("k%d", i%7), fmt.Sprintf("value-%d", i))
	}
	mustDelete(f, s, "k3", "")
	mustGrant(f, s, 5, 60)
	mustGrant(f, s, 6, 60)
	apply(f, s, &Command{LeaseCheckpoint: &LeaseCheckpointRequest{Checkpoints: []LeaseCheckpoint{{ID: 6, RemainingTTL: 9}}}})
	putWithLease(f, s, "k1", 5)
	putWithLease(f, s, "k2", 6)
	snap := mustSnapshot(f, s)
	f.Add(snap[:len(snap)-crcBytes])
	for _, fixture := range []string{"testdata/snapshot-v1.bin", "testdata/snapshot-v2.bin", "testdata/snapshot-v3.bin", "testdata/snapshot-v4.bin"} {
		if old, err := os.ReadFile(fixture); err == nil {
			f.Add(old[:len(old)-crcBytes])
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		data := binary.LittleEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
		r := newTestStoreOn(t, Config{}, "mem")
		if err := r.Restore(data); err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore refused with %v, not ErrCorruptSnapshot", err)
			}
			return
		}
		// Every value the index names must be readable.
		if _, err := r.Range(&RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); err != nil {
			t.Fatalf("range over the restored store: %v", err)
		}
		if _, err := r.Snapshot(); err != nil {
			t.Fatalf("snapshot of the restored store: %v", err)
		}
	})
}

func mustSnapshot(t testing.TB, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}
