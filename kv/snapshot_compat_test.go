package kv

import (
	"fmt"
	"os"
	"testing"
)

// A snapshot written in format 1 (values inline, before format 2 of 2026-11-26)
// still restores, to the same store as replaying the commands that made it: a member
// upgraded across the change reads the snapshot it left on disk. The fixture was
// written by the format 1 code from v1FixtureCommands.
func TestRestoresFormat1Snapshot(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			restored := newTestStoreOn(t, Config{}, backend)
			if err := restored.Restore(data); err != nil {
				t.Fatal(err)
			}
			replayed := newTestStoreOn(t, Config{}, backend)
			for _, c := range v1FixtureCommands() {
				apply(t, replayed, c)
			}
			// The same history: every key at every revision still readable. (The
			// bytes differ: the replay's value log holds compaction's garbage, the
			// restore's a copy per revision.)
			if restored.Revision() != replayed.Revision() || restored.CompactRevision() != replayed.CompactRevision() {
				t.Fatalf("restored at revision %d (compacted %d), replayed at %d (%d)", restored.Revision(),
					restored.CompactRevision(), replayed.Revision(), replayed.CompactRevision())
			}
			for rev := replayed.CompactRevision(); rev <= replayed.Revision(); rev++ {
				all := &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
				got, want := mustRange(t, restored, all), mustRange(t, replayed, all)
				if fmt.Sprint(got.Kvs) != fmt.Sprint(want.Kvs) {
					t.Fatalf("at revision %d restored has %v, replayed %v", rev, describe(got.Kvs), describe(want.Kvs))
				}
			}
			r := mustRange(t, restored, &RangeRequest{Key: []byte("key-07")})
			if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "value-47-\x00\x00" {
				t.Fatalf("key-07 after restore: %v", describe(r.Kvs))
			}
		})
	}
}

// v1FixtureCommands made testdata/snapshot-v1.bin.
func v1FixtureCommands() []*Command {
	var cmds []*Command
	for i := range 60 {
		cmds = append(cmds, &Command{Put: &PutRequest{Key: fmt.Appendf(nil, "key-%02d", i%20), Value: fmt.Appendf(nil, "value-%d-%s", i, string(make([]byte, i%5)))}})
	}
	cmds = append(cmds, &Command{DeleteRange: &DeleteRangeRequest{Key: []byte("key-03")}})
	cmds = append(cmds, &Command{Put: &PutRequest{Key: []byte("key-07"), IgnoreValue: true, Lease: 0}})
	cmds = append(cmds, &Command{Compact: &CompactionRequest{Revision: 20}})
	cmds = append(cmds, &Command{Put: &PutRequest{Key: []byte("empty")}})
	return cmds
}
