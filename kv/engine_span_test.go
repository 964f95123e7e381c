package kv

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// putRounds puts keys values of valueBytes random bytes in each of rounds
// rounds, over the same keys, and flushes the store after each round, as a
// local snapshot does every --snapshot-count entries.
func putRounds(t *testing.T, s *Store, rounds, keys, valueBytes int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, valueBytes)
	for r := range rounds {
		for k := range keys {
			for i := range value {
				value[i] = byte(rng.Uint32())
			}
			mustPut(t, s, fmt.Sprintf("key-%04d", k), string(value))
		}
		if _, err := s.Flush(); err != nil {
			t.Fatalf("flush after round %d: %v", r, err)
		}
	}
}

// crossesBound reports whether table tb holds change records or separated
// values with records of another kind (engineTableBounds). A table that a range
// deletion ends at a bound (an exclusive sentinel) holds nothing from it.
func crossesBound(tb pebble.SSTableInfo) bool {
	lo, hi := tb.Smallest.UserKey, tb.Largest.UserKey
	for _, b := range engineTableBounds {
		if lo[0] < b && (hi[0] > b || hi[0] == b && !(len(hi) == 1 && tb.Largest.IsExclusiveSentinel())) {
			return true
		}
	}
	return false
}

// TestEngineTablesKeepValuesApart: no table pebble writes, by a flush or a
// compaction, holds change records or separated values with records of another
// kind (engineSpanPolicy), so that a flushed table of values overlaps no older
// table of values; and a range deletion over every key, as a restore writes
// one, is flushed into a table per range between the bounds, not more.
func TestEngineTablesKeepValuesApart(t *testing.T) {
	s := newTestStore(t, Config{})
	putRounds(t, s, 6, 50, 300)
	e := s.mu.st.e
	check := func(when string) {
		levels, err := e.db.SSTables()
		if err != nil {
			t.Fatalf("SSTables: %v", err)
		}
		tables := 0
		for level, ts := range levels {
			for _, tb := range ts {
				tables++
				if crossesBound(tb) {
					lo, hi := tb.Smallest.UserKey, tb.Largest.UserKey
					t.Errorf("%s: table %s in L%d holds keys from %q to %q: values or changes with other records", when, tb.FileNum, level, lo, hi)
				}
			}
		}
		if tables < 6*3 {
			t.Errorf("%s: %d tables after 6 flushes of puts, want at least 18 (change, version and value records apart)", when, tables)
		}
	}
	check("after the flushes")
	if err := e.db.Compact(t.Context(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatalf("compact: %v", err)
	}
	levels, err := e.db.SSTables()
	if err != nil {
		t.Fatalf("SSTables: %v", err)
	}
	for level, ts := range levels {
		for _, tb := range ts {
			if crossesBound(tb) {
				t.Errorf("after a compaction: table %s in L%d holds keys from %q to %q: values or changes with other records", tb.FileNum, level, tb.Smallest.UserKey, tb.Largest.UserKey)
			}
		}
	}

	if err := e.markRestoring(); err != nil {
		t.Fatal(err)
	}
	before := e.db.Metrics().Flush.Count
	if err := e.db.Flush(); err != nil {
		t.Fatal(err)
	}
	levels, err = e.db.SSTables()
	if err != nil {
		t.Fatal(err)
	}
	if n, max := len(levels[0]), len(engineTableBounds)+1; e.db.Metrics().Flush.Count != before+1 || n > max {
		t.Errorf("the flush of a range deletion over every key left %d tables in L0, want at most %d", n, max)
	}
}

// TestEngineCompactionsDoNotRewriteValues: under puts that overwrite the same
// keys, with a flush every round as local snapshots make them, pebble's own
// compactions out of L0 merge the version records but leave the value tables,
// which overlap no older ones, for later (engineSpanPolicy). Before the policy
// each compaction rewrote every table it reached, values included: here the
// compactions wrote 1.8 times the bytes flushed; with it, a third. (The values
// are written once more when L0 reaches pebble's file limit, past this test's
// 24 flushes; the policy's comment has a measurement past it.)
func TestEngineCompactionsDoNotRewriteValues(t *testing.T) {
	s := newTestStore(t, Config{})
	putRounds(t, s, 24, 200, 300)
	e := s.mu.st.e
	deadline := time.Now().Add(20 * time.Second)
	for e.db.Metrics().Compact.Count == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no compaction out of L0 after 24 flushes in 20 s:\n%s", e.db.Metrics())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Let the compactions pebble has scheduled finish.
	for e.db.Metrics().Compact.NumInProgress > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	m := e.db.Metrics()
	var flushed, compacted, moved uint64
	for _, l := range m.Levels {
		flushed += l.TableBytesFlushed
		compacted += l.TableBytesCompacted
		moved += l.TableBytesMoved
	}
	t.Logf("flushed %d bytes; compactions wrote %d and moved %d (%d compactions, %d moves)",
		flushed, compacted, moved, m.Compact.Count, m.Compact.MoveCount)
	if compacted*2 > flushed {
		t.Errorf("compactions wrote %d bytes of %d flushed, want under half: values were rewritten\n%s", compacted, flushed, m)
	}
}

// TestEngineCompactionsPastTheL0FileLimit: past the flushes after which pebble
// compacts L0's value tables down (its L0CompactionFileThreshold), the
// compactions have still written little more than was flushed. Without
// engineSpanPolicy, 600 flushes of 20 puts wrote 29 times the flushed bytes in
// compactions, each rewriting the whole bottom level; with it, 1.4 times.
func TestEngineCompactionsPastTheL0FileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("600 flushes")
	}
	s := newTestStore(t, Config{})
	putRounds(t, s, 600, 20, 300)
	e := s.mu.st.e
	// Pebble schedules compactions in the background, one after another: wait until
	// L0 is below the limit and none runs, not only until none runs (a check
	// between two compactions once found the value tables still in L0).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := e.db.Metrics(); m.Compact.NumInProgress == 0 && m.Levels[0].TablesCount < 500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := e.db.Metrics()
	var flushed, compacted uint64
	for _, l := range m.Levels {
		flushed += l.TableBytesFlushed
		compacted += l.TableBytesCompacted
	}
	t.Logf("flushed %d bytes; compactions wrote %d (%d compactions, %d moves); L0 holds %d tables",
		flushed, compacted, m.Compact.Count, m.Compact.MoveCount, m.Levels[0].TablesCount)
	if m.Levels[0].TablesCount >= 500 {
		t.Errorf("L0 holds %d tables 30 s after 600 flushes: pebble never compacted the value tables", m.Levels[0].TablesCount)
	}
	if compacted > 3*flushed {
		t.Errorf("compactions wrote %d bytes for %d flushed, want at most 3 times: values were rewritten\n%s", compacted, flushed, m)
	}
}
