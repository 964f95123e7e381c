package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
)

// snapshotFixture builds a store with history, tombstones, a compaction and
// sessions, so a snapshot exercises every part of the format.
func snapshotFixture(t *testing.T) *Store {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "1")
	mustPut(t, s, "a", "2")
	mustPut(t, s, "b", "1")
	mustDelete(t, s, "b", "")
	mustPut(t, s, "b", "again")
	apply(t, s, &Command{Compact: &CompactionRequest{Revision: 3}})
	mustGrant(t, s, 42, 60)
	mustGrant(t, s, 43, 120)
	apply(t, s, &Command{LeaseCheckpoint: &LeaseCheckpointRequest{Checkpoints: []LeaseCheckpoint{{ID: 43, RemainingTTL: 77}}}})
	apply(t, s, &Command{Put: &PutRequest{Key: []byte("c"), Value: []byte("x"), Lease: 42}})
	apply(t, s, &Command{ClientID: 11, Seq: 1, Put: &PutRequest{Key: []byte("d"), PrevKv: true}})
	apply(t, s, &Command{ClientID: 12, Seq: 4, Txn: &TxnRequest{Success: []RequestOp{rangeOp("a", "\x00"), putOp("e", "1")}}})
	apply(t, s, &Command{ClientID: 13, Seq: 2, Put: &PutRequest{Key: []byte("zz"), IgnoreValue: true}})
	mustDelete(t, s, "d", "")
	return s
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := snapshotFixture(t)
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := newTestStore(t, Config{})
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if r.Revision() != s.Revision() || r.CompactRevision() != s.CompactRevision() || r.AppliedIndex() != s.AppliedIndex() {
		t.Fatalf("restored revision %d/%d compacted %d/%d applied %d/%d",
			r.Revision(), s.Revision(), r.CompactRevision(), s.CompactRevision(), r.AppliedIndex(), s.AppliedIndex())
	}
	again, err := r.Snapshot()
	if err != nil || !bytes.Equal(again, snap) {
		t.Fatalf("snapshot of the restored store differs (%v)", err)
	}
	for rev := s.CompactRevision(); rev <= s.Revision(); rev++ {
		req := &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
		want, err1 := s.Range(req)
		got, err2 := r.Range(req)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("at revision %d: restored %+v (%v), original %+v (%v)", rev, got, err2, want, err1)
		}
	}
	// The restored store goes on exactly as the original.
	for _, st := range []*Store{s, r} {
		mustPut(t, st, "a", "3")
	}
	if a, b := get(t, s, "a", 0), get(t, r, "a", 0); !reflect.DeepEqual(a, b) {
		t.Fatalf("diverged after restore: %+v vs %+v", a, b)
	}
}

// A damaged engine stream is refused: any byte flipped, cut short, or with bytes
// after its end. Past its header, a refused restore leaves the store refusing
// Apply until a restore succeeds.
func TestSnapshotCorruptionDetected(t *testing.T) {
	s := snapshotFixture(t)
	snap, _ := s.Snapshot()
	target := newTestStoreOn(t, Config{}, "mem")
	mustPut(t, target, "keep", "me")
	before, _ := target.Snapshot()
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x20
		if err := target.Restore(bad); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("byte %d flipped: %v, want ErrCorruptSnapshot", i, err)
		}
	}
	for _, bad := range [][]byte{nil, snap[:3], snap[:len(snap)-1], append(bytes.Clone(snap), 0)} {
		if err := target.Restore(bad); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("%d of %d bytes: %v", len(bad), len(snap), err)
		}
	}
	if res := target.ApplyCommand(target.AppliedIndex()+1, &Command{Put: &PutRequest{Key: []byte("x")}}); res.Err == nil {
		t.Fatal("a store cut off in a restore applied a put")
	}
	if err := target.Restore(before); err != nil {
		t.Fatal(err)
	}
	if after, _ := target.Snapshot(); !bytes.Equal(after, before) {
		t.Fatal("a restore after failed ones does not give the store back")
	}
	mustPut(t, target, "keep", "again")
}

// TestSnapshotCorruptionPastCRC corrupts snapshots and then fixes up the CRC,
// as a buggy writer would, to check that Restore never panics and refuses what
// breaks the store's invariants.
func TestSnapshotCorruptionPastCRC(t *testing.T) {
	snap, err := os.ReadFile("testdata/snapshot-v4.bin")
	if err != nil {
		t.Fatal(err)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	accepted := 0
	r := newTestStoreOn(t, Config{}, "mem")
	for range 5000 {
		bad := bytes.Clone(snap[:len(snap)-crcBytes])
		for range 1 + rng.IntN(3) {
			bad[4+rng.IntN(len(bad)-4)] = byte(rng.Uint32())
		}
		bad = binary.LittleEndian.AppendUint32(bad, crc32.Checksum(bad, castagnoli))
		err := r.Restore(bad)
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("seed %d: error %v does not wrap ErrCorruptSnapshot", seed, err)
			}
			continue
		}
		accepted++
		if r.AppliedIndex() == math.MaxUint64 {
			continue // no index left to apply at
		}
		// What was accepted must work as a store: read it all and write to it.
		if _, err := r.Range(&RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); err != nil {
			t.Fatalf("seed %d: range on an accepted snapshot: %v", seed, err)
		}
		mustPut(t, r, "a", "after")
	}
	t.Logf("%d corrupted snapshots passed the invariant checks (values changed in place)", accepted)
}
