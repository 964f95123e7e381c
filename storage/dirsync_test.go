package storage

import (
	"testing"

	"raftkv/raft"
)

// A process killed between creating a directory and syncing its parent leaves an
// entry a power loss can drop. The next Open finds the directory in place; it must
// sync the parent all the same, or the entries it then syncs into the directory
// vanish with it at the next power loss.
func TestOpenSyncsTheParentOfADirectoryAKilledProcessCreated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		walDir string // Options.WALDir
		parent string // the kill comes at the first fsync of it
	}{
		{name: "data dir", parent: "."},
		{name: "WAL dir of its own", walDir: "/fast/wal", parent: "/fast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := NewMemFS()
			fsys := NewFaultFS(mem)
			opts, _ := testOptions(t, MinSegmentSize)
			opts.WALDir = tc.walDir
			fsys.CrashWhen(func(op Op, name string) bool { return op == OpSyncDir && name == tc.parent })
			if s, err := Open(fsys, "data", opts); err == nil {
				s.Close()
				t.Fatalf("Open succeeded through the kill at the fsync of %s", tc.parent)
			}

			s := mustOpen(t, mem, "data", opts) // the restart, with the directory in place
			ents := makeEntries(1, 10, 1, 100)
			if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: 10}, ents); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			mem.Crash() // a power loss: unsynced directory entries are lost

			s = mustOpen(t, mem, "data", opts)
			defer s.Close()
			if last, _ := s.LastIndex(); last != 10 {
				t.Fatalf("after a power loss the log ends at %d, want 10: the directory's entry in %s was never synced",
					last, tc.parent)
			}
		})
	}
}
