package storage

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"raftkv/raft"
)

// checkLog reads every range of s's log (a sample of them, with and without a size
// limit) and compares it with m.
func checkLog(t *testing.T, s *Storage, m *model, r *rand.Rand, what string) {
	t.Helper()
	want := m.state()
	if got := readState(t, s); !equalState(got, want) {
		t.Fatalf("%s: read %v, want %v", what, got, want)
	}
	first, last := want.First, want.Last
	if last < first {
		return
	}
	for range 50 {
		lo := first + uint64(r.IntN(int(last-first+1)))
		hi := lo + 1 + uint64(r.IntN(int(last-lo+1)))
		maxBytes := uint64(1 << 62)
		if r.IntN(2) == 0 {
			maxBytes = uint64(r.IntN(3000))
		}
		got, err := s.Entries(lo, hi, maxBytes)
		if err != nil {
			t.Fatalf("%s: Entries(%d, %d, %d): %v", what, lo, hi, maxBytes, err)
		}
		exp := limitSize(want.Entries[lo-first:hi-first], maxBytes)
		if len(got) != len(exp) {
			t.Fatalf("%s: Entries(%d, %d, %d) returned %d entries, want %d", what, lo, hi, maxBytes, len(got), len(exp))
		}
		for i := range got {
			if !equalEntry(got[i], exp[i]) {
				t.Fatalf("%s: Entries(%d, %d, %d)[%d] = %d/%d, want %d/%d", what, lo, hi, maxBytes, i,
					got[i].Index, got[i].Term, exp[i].Index, exp[i].Term)
			}
		}
		for i := lo; i < hi; i++ {
			if term, err := s.Term(i); err != nil || term != m.term(i) {
				t.Fatalf("%s: Term(%d) = %d, %v; want %d", what, i, term, err, m.term(i))
			}
		}
	}
}

// TestLogCacheReadsEvictedEntriesBack runs a log far larger than the cache through
// appends spanning segments, a follower's suffix overwrite reaching below the cache,
// compaction and restarts, and reads it all back after each.
func TestLogCacheReadsEvictedEntriesBack(t *testing.T) {
	disk := NewMemFS()
	opts := Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize, LogCacheBytes: 2000}
	s := mustOpen(t, disk, "/data", opts)
	defer func() { s.Close() }()
	r := rand.New(rand.NewPCG(1, 2))
	var m model
	save := func(hs raft.HardState, ents []raft.Entry) { t.Helper(); saveWithModel(t, s, &m, hs, ents) }
	for i := uint64(1); i <= 300; i += 10 {
		save(raft.HardState{Term: 1, Vote: 1, Commit: 50}, makeEntries(i, 10, 1, 50+int(i%7)*40))
	}
	if segs, _ := disk.List("/data/wal"); len(segs) < 5 {
		t.Fatalf("%d segments; the test wants entries spread over many", len(segs))
	}
	// The last write is over the bound on its own, and not yet durable when it was
	// cached: it stays until the next write finds it durable.
	if len(s.mu.cache) > 10 {
		t.Fatalf("cache holds %d entries of %d bytes; the bound is 2000 and the last write 10 entries", len(s.mu.cache), s.mu.cachedSize)
	}
	checkLog(t, s, &m, r, "after appends")

	// A new leader overwrites from 60 on: far below the cache.
	save(raft.HardState{Term: 2, Vote: 2, Commit: 50}, makeEntries(60, 25, 2, 120))
	checkLog(t, s, &m, r, "after a suffix overwrite")
	save(raft.HardState{Term: 2, Vote: 2, Commit: 70}, makeEntries(85, 30, 2, 90))
	checkLog(t, s, &m, r, "after appending to the overwrite")

	if _, err := s.CreateSnapshot(65, raft.Membership{}, []byte("state at 65")); err != nil {
		t.Fatal(err)
	}
	m.createSnapshot(65, raft.Membership{}, []byte("state at 65"))
	checkLog(t, s, &m, r, "after compaction")
	if _, err := s.Entries(65, 70, 1<<30); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("Entries(65, 70) after a snapshot at 65: %v; want ErrCompacted", err)
	}

	s.Close()
	s = mustOpen(t, disk, "/data", opts)
	checkLog(t, s, &m, r, "after a restart")
	save(raft.HardState{Term: 3, Vote: 1, Commit: 70}, makeEntries(100, 40, 3, 200))
	checkLog(t, s, &m, r, "after a restart and an overwrite")
	s.Close()
	s = mustOpen(t, disk, "/data", Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize})
	checkLog(t, s, &m, r, "after a restart with the default cache")
}

// TestLogCacheConcurrentReads reads entries, most from the WAL, while one writer
// appends, overwrites suffixes and compacts. Every read must return either an error
// the interface allows (ErrCompacted, ErrUnavailable) or entries that were in the log
// together: consecutive indexes, data matching index and term, terms not falling.
func TestLogCacheConcurrentReads(t *testing.T) {
	opts := Options{ClusterID: testClusterID, SegmentSize: MinSegmentSize, LogCacheBytes: 1500}
	s := mustOpen(t, NewMemFS(), "/data", opts)
	defer s.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				if last < first {
					continue
				}
				lo := first + uint64(r.IntN(int(last-first+1)))
				hi := min(lo+1+uint64(r.IntN(40)), last+1)
				ents, err := s.Entries(lo, hi, 1<<30)
				if errors.Is(err, raft.ErrCompacted) || errors.Is(err, raft.ErrUnavailable) {
					continue
				}
				if err != nil {
					t.Errorf("Entries(%d, %d): %v", lo, hi, err)
					return
				}
				for i, e := range ents {
					want := makeEntries(e.Index, 1, e.Term, len(e.Data))[0]
					if e.Index != lo+uint64(i) || !equalEntry(e, want) || (i > 0 && e.Term < ents[i-1].Term) {
						t.Errorf("Entries(%d, %d)[%d] = %d/%d with data of another entry, or out of order", lo, hi, i, e.Index, e.Term)
						return
					}
				}
			}
		})
	}
	r := rand.New(rand.NewPCG(3, 3))
	term, next, commit, snap := uint64(1), uint64(1), uint64(0), uint64(0)
	var ticket Ticket
	for range 1500 {
		switch p := r.IntN(10); {
		case p < 7:
			n := 1 + r.IntN(6)
			commit = min(next+uint64(n)-1, commit+uint64(r.IntN(5)))
			tk, err := s.SaveAsync(raft.HardState{Term: term, Commit: commit}, makeEntries(next, n, term, 30+r.IntN(200)))
			if err != nil {
				t.Fatal(err)
			}
			ticket = max(ticket, tk)
			next += uint64(n)
		case p < 8 && next-1 > commit:
			term++
			from := commit + 1 + uint64(r.IntN(int(next-1-commit)))
			n := 1 + r.IntN(4)
			tk, err := s.SaveAsync(raft.HardState{Term: term, Commit: commit}, makeEntries(from, n, term, 60))
			if err != nil {
				t.Fatal(err)
			}
			ticket = max(ticket, tk)
			next = from + uint64(n)
		case p < 9 && commit > snap+20:
			if err := s.WaitDurable(ticket); err != nil {
				t.Fatal(err)
			}
			snap = commit - 10
			if _, err := s.CreateSnapshot(snap, raft.Membership{}, []byte("state")); err != nil {
				t.Fatal(err)
			}
		default:
			if t, err := s.SaveAsync(raft.HardState{Term: term, Commit: commit}, nil); err == nil && t != 0 {
				s.WaitDurable(t)
			}
		}
	}
	close(stop)
	wg.Wait()
}
