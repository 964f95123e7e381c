package storage

import (
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"

	"raftkv/raft"
)

var (
	crashSeed  = flag.Uint64("crash.seed", 1, "seed of the crash test's workload (TestCrashAtEveryWrite)")
	crashSeeds = flag.Int("crash.seeds", 4, "how many consecutive seeds TestCrashAtEveryWrite runs")
)

// buildWorkload scripts a random but valid sequence of storage calls: appends with
// hard states, followers overwriting an uncommitted suffix, empty entries, snapshots
// created and installed. It tracks the log so that it never rewrites a committed entry.
func buildWorkload(r *rand.Rand, n int) []workOp {
	var ops []workOp
	var m model
	term, commit := uint64(1), uint64(0)
	for len(ops) < n {
		last := m.lastIndex()
		var op workOp
		switch p := r.IntN(100); {
		case p < 60: // append at the end, commit some
			ents := makeEntries(last+1, 1+r.IntN(8), term, r.IntN(400))
			ents[0].Type = raft.EntryType(r.IntN(2))
			commit = min(last+uint64(len(ents)), commit+uint64(r.IntN(6)))
			op = workOp{kind: "save", hs: raft.HardState{Term: term, Vote: 1 + term%3, Commit: commit}, ents: ents}
		case p < 72 && last > commit: // a new leader overwrites the uncommitted suffix
			term++
			from := commit + 1 + uint64(r.IntN(int(last-commit)))
			from = max(from, m.snap.Index+1)
			op = workOp{kind: "save", hs: raft.HardState{Term: term, Vote: 2, Commit: commit}, ents: makeEntries(from, 1+r.IntN(4), term, r.IntN(300))}
		case p < 80: // hard state only
			term++
			op = workOp{kind: "save", hs: raft.HardState{Term: term, Vote: 3, Commit: commit}}
		case p < 94 && commit > m.snap.Index: // the application snapshots what it applied
			index := m.snap.Index + 1 + uint64(r.IntN(int(commit-m.snap.Index)))
			op = workOp{kind: "create", index: index, members: membershipAt(index), data: []byte(fmt.Sprintf("app state at %d", index))}
			if index%2 == 0 {
				// Streamed, and large enough to take several writes. (Chosen without
				// drawing from r, so the workloads of fixed seeds stay as they were.)
				op.kind, op.data = "stream", fmt.Appendf(nil, "streamed app state at %d %0*d", index, int(index*37%3000), 0)
			}
		case p >= 97: // a leader sends a snapshot past our log
			term++
			index := last + 1 + uint64(r.IntN(50))
			op = workOp{kind: "apply", snap: raft.Snapshot{Index: index, Term: term, Membership: membershipAt(index),
				Data: []byte(fmt.Sprintf("leader state at %d", index))}}
			commit = index
		default:
			continue
		}
		op.apply(&m)
		if op.kind == "apply" {
			// The driver saves the hard state that goes with an installed snapshot.
			ops = append(ops, op)
			op = workOp{kind: "save", hs: raft.HardState{Term: term, Vote: 1, Commit: commit}}
			op.apply(&m)
		}
		ops = append(ops, op)
	}
	return ops
}

// clone copies a MemFS with no open handles and no locks.
func (m *MemFS) clone() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &MemFS{durable: m.durable.clone(), locks: map[string]bool{}, gen: m.gen, nextIno: m.nextIno}
	c.live = make(map[string]*memNode, len(m.live))
	for p, n := range m.live {
		c.live[p] = &memNode{ino: n.ino, isDir: n.isDir, data: slices.Clone(n.data), size: n.size}
	}
	c.ops = slices.Clone(m.ops)
	return c
}

// TestCrashAtEveryWrite runs a scripted workload and crashes it at every prefix of its
// file system calls: the first n mutating calls happen, call n+1 fails (a write torn
// part way, in half of the runs), and the process is dead. Then the disk loses what
// was not synced, in three ways: all of it, none of it, or a random in-order prefix
// with a torn write at its end. Recovery must yield exactly the operations that were
// acknowledged, plus possibly a prefix of the one in flight; never less, never
// anything else.
func TestCrashAtEveryWrite(t *testing.T) {
	for seed := *crashSeed; seed < *crashSeed+uint64(*crashSeeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { crashAtEveryWrite(t, seed) })
	}
}

func crashAtEveryWrite(t *testing.T, seed uint64) {
	replay := fmt.Sprintf("replay with: go test ./storage -run 'TestCrashAtEveryWrite' -crash.seed=%d -crash.seeds=1", seed)
	t.Logf("seed %d; %s", seed, replay)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	ops := buildWorkload(r, 40)
	opts := Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize}

	// A run without a crash counts the calls and checks the workload itself.
	counter := NewFaultFS(NewMemFS())
	final, _ := runWorkload(t, counter, opts, ops)
	total := counter.MutatingCalls()
	var full model
	for _, op := range ops {
		op.apply(&full)
	}
	if !equalState(final, full.state()) {
		t.Fatalf("without a crash: got %v, want %v", final, full.state())
	}
	t.Logf("%d operations, %d mutating file system calls", len(ops), total)

	checked := 0
	for n := 0; n <= total; n++ {
		for _, torn := range []int{0, 1 + r.IntN(600)} {
			mem := NewMemFS()
			ffs := NewFaultFS(mem)
			ffs.CrashAfter(n, torn)
			_, acked := runWorkload(t, ffs, opts, ops)
			var m model
			for _, op := range ops[:acked] {
				op.apply(&m)
			}
			want := []state{m.state()}
			inflight := "none"
			if acked < len(ops) {
				want = ops[acked].outcomes(&m)
				inflight = ops[acked].String()
			}
			for mode := range 3 {
				disk := mem.clone()
				desc := ""
				switch mode {
				case 0:
					desc = "lose every unsynced change"
					disk.Crash()
				case 1:
					desc = "keep every unsynced change"
					disk.CrashPartial(math.MaxInt, 0)
				case 2:
					keep, tear := r.IntN(disk.UnsyncedOps()+1), r.IntN(800)
					desc = fmt.Sprintf("keep %d of %d unsynced changes, tear the next at %d bytes", keep, disk.UnsyncedOps(), tear)
					disk.CrashPartial(keep, tear)
				}
				logs := newLogCapture(t)
				recoverOpts := opts
				recoverOpts.Logger = slog.New(logs)
				s, err := Open(disk, "/data", recoverOpts)
				if err != nil {
					t.Fatalf("crash after %d calls (torn %d), %s; %d ops acknowledged, in flight: %s:\nrecovery failed: %v\n%s",
						n, torn, desc, acked, inflight, err, replay)
				}
				// A crash never loses the snapshot file the WAL records: the file is
				// durable before its marker is written.
				if lines := logs.find("missing"); len(lines) > 0 {
					t.Fatalf("crash after %d calls (torn %d), %s: recovery says a snapshot is missing: %q\n%s",
						n, torn, desc, lines, replay)
				}
				got := readState(t, s)
				s.Close()
				if !matchesAny(got, want) {
					t.Fatalf("crash after %d calls (torn %d), %s; %d ops acknowledged, in flight: %s:\n got %v\nwant one of %v\n%s",
						n, torn, desc, acked, inflight, got, want, replay)
				}
				// Whatever recovery wrote (a new segment after a torn one, a marker
				// for a snapshot the WAL missed) must read back the same, even after
				// another crash.
				disk.Crash()
				s, err = Open(disk, "/data", opts)
				if err != nil {
					t.Fatalf("crash after %d calls (torn %d), %s: recovered once, then the second recovery failed: %v\n%s",
						n, torn, desc, err, replay)
				}
				if again := readState(t, s); !equalState(again, got) {
					t.Fatalf("crash after %d calls (torn %d), %s: the second recovery read %v, the first %v\n%s",
						n, torn, desc, again, got, replay)
				}
				s.Close()
				checked++
			}
		}
	}
	t.Logf("checked %d crashes", checked)
}

// runWorkload opens a storage on fsys and runs ops until one fails. It returns the
// final state (if all ran) and how many were acknowledged.
func runWorkload(t *testing.T, fsys FS, opts Options, ops []workOp) (state, int) {
	s, err := Open(fsys, "/data", opts)
	if err != nil {
		return state{}, 0
	}
	defer s.Close()
	for i, op := range ops {
		if err := op.run(s); err != nil {
			return state{}, i
		}
	}
	return readState(t, s), len(ops)
}

// A process killed between a WAL write and its fsync leaves the record in the page
// cache: the next Open reads it as sound, and Raft may hand its entries out as
// durable. Open syncs what it recovered, so a power loss after that start keeps them.
func TestOpenSyncsWhatAKilledProcessLeftUnsynced(t *testing.T) {
	mem := NewMemFS()
	fsys := NewFaultFS(mem)
	opts, _ := testOptions(t, MinSegmentSize)
	s := mustOpen(t, fsys, "data", opts)
	if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: 5}, makeEntries(1, 5, 1, 100)); err != nil {
		t.Fatal(err)
	}
	fsys.FailNth(OpSync, 1, syscall.EIO) // the kill: written, never synced
	if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: 8}, makeEntries(6, 3, 1, 100)); err == nil {
		t.Fatal("the save whose fsync failed succeeded")
	}
	s.Close()
	if mem.UnsyncedOps() == 0 {
		t.Fatal("the failed save left nothing unsynced; the test needs a write in the page cache")
	}

	s = mustOpen(t, mem, "data", opts) // the restart, on the page cache
	if last, _ := s.LastIndex(); last != 8 {
		t.Fatalf("after the restart the log ends at %d, want 8 (the unsynced records read back)", last)
	}
	s.Close()
	mem.Crash() // then a power loss
	s = mustOpen(t, mem, "data", opts)
	defer s.Close()
	if last, _ := s.LastIndex(); last != 8 {
		t.Fatalf("after a power loss following the restart the log ends at %d, want 8", last)
	}
}

// The same for a directory entry: a process killed after it renamed a new segment
// into place and before it synced the WAL directory leaves a segment the next Open
// appends to; Open syncs the directory, so a power loss after that keeps it.
func TestOpenSyncsADirectoryAKilledProcessLeftUnsynced(t *testing.T) {
	mem := NewMemFS()
	fsys := NewFaultFS(mem)
	opts, _ := testOptions(t, MinSegmentSize)
	s := mustOpen(t, fsys, "data", opts)
	fsys.FailNth(OpSyncDir, 1, syscall.EIO) // the kill: at the first roll's directory sync
	var last uint64
	for first := uint64(1); first < 200; first += 10 {
		if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: first - 1}, makeEntries(first, 10, 1, 100)); err != nil {
			break
		}
		last = first + 9
	}
	s.Close()
	if fsys.Calls(OpSyncDir) == 0 || last >= 199 {
		t.Fatalf("no roll failed its directory sync (%d syncdirs, saved to %d); the test needs one", fsys.Calls(OpSyncDir), last)
	}

	s = mustOpen(t, mem, "data", opts) // the restart, on the page cache
	end, _ := s.LastIndex()
	if err := s.Save(raft.HardState{Term: 1, Vote: 1, Commit: end}, makeEntries(end+1, 3, 1, 100)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	mem.Crash() // then a power loss
	s = mustOpen(t, mem, "data", opts)
	defer s.Close()
	if got, _ := s.LastIndex(); got != end+3 {
		t.Fatalf("after a power loss following the restart the log ends at %d, want %d (acknowledged)", got, end+3)
	}
}
