package kv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
)

// TestRestoreThenCompactReadsAgree: after a Restore of another store's snapshot,
// or an Import of its export, followed by MVCC compactions, two point reads of one
// key in a row, with nothing applied between them, agree. It reproduced an engine
// bug: the key absent, then present with a version the replacement had deleted,
// at a point that varied with pebble's background work. The comparer's default
// ImmediateSuccessor cut every range deletion out of a SeekPrefixGE, so deleted
// records came back to point reads until pebble's compactions dropped them
// (engineComparer). Restore has since ingested sstables after compacting the old
// records away, which hid it there; Import writes batches over a range deletion
// and still failed within 4 runs. RAFTKV_REPLACE=restore or import picks one.
func TestRestoreThenCompactReadsAgree(t *testing.T) {
	for seed := range uint64(40) {
		s := newTestStore(t, Config{})
		rng := rand.New(rand.NewPCG(seed, 1))
		keys := []string{"a", "b", "c", "e"}
		var log []string
		for i := 0; i < 200; i++ {
			k := keys[rng.IntN(len(keys))]
			switch op := rng.IntN(10); {
			case op < 6:
				log = append(log, "put "+k)
				mustPut(t, s, k, fmt.Sprint(i))
			case op < 7:
				log = append(log, "del "+k)
				mustDelete(t, s, k, "")
			case op < 9:
				log = append(log, fmt.Sprint("compact ", s.Revision()))
				apply(t, s, &Command{Compact: &CompactionRequest{Revision: s.Revision()}})
			default:
				other := newTestStore(t, Config{})
				for range s.AppliedIndex() + 1 {
					mustPut(t, other, keys[rng.IntN(len(keys))], "o")
				}
				if mode := os.Getenv("RAFTKV_REPLACE"); (mode == "" && rng.IntN(2) == 0) || mode == "restore" {
					log = append(log, "restore")
					var snap bytes.Buffer
					other.WriteSnapshot(&snap)
					if err := s.Restore(snap.Bytes()); err != nil {
						t.Fatal(err)
					}
				} else {
					log = append(log, "import")
					hdr, histories, dels := exportStore(t, other)
					importInto(t, s, hdr, histories, dels)
				}
				other.Close()
			}
			for _, k := range keys {
				var prev string
				for j := range 5 {
					r, _ := s.RangeLimited(&RangeRequest{Key: []byte(k)}, 0)
					got := fmt.Sprint(r.Count, r.Kvs)
					if j > 0 && got != prev {
						t.Fatalf("seed %d op %d key %s: read %d %s, before %s; ops %v", seed, i, k, j, got, prev, log[max(0, len(log)-25):])
					}
					prev = got
				}
			}
		}
		s.Close()
	}
}
