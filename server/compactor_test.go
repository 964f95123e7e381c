package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"

	"raftkv/kv"
)

// fakeClock is a clock that moves only when the test advances it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.waiters = append(f.waiters, fakeTimer{at: f.now.Add(d), ch: ch})
	return ch
}

// advance waits until someone waits on the clock, then moves it by d and fires the
// timers due.
func (f *fakeClock) advance(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.waiters)
		f.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nobody waited on the fake clock within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- f.now
	}
	f.waiters = kept
}

type compaction struct {
	at  time.Duration // since the start
	rev int64
}

// runFakeCompactor runs policy on a fake clock whose revision is 100 plus the minutes
// elapsed, for total, advancing by step; it returns the compactions proposed.
func runFakeCompactor(t *testing.T, policy autoCompaction, step, total time.Duration, leader bool,
	revision func(elapsed time.Duration) int64, compactErr func(n int) error) []compaction {
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	start := clk.now
	var mu sync.Mutex
	var done []compaction
	var isLeader atomic.Bool
	isLeader.Store(leader)
	stop := make(chan struct{})
	c := &compactor{
		policy:   policy,
		clock:    clk,
		revision: func() int64 { return revision(clk.Now().Sub(start)) },
		isLeader: isLeader.Load,
		compact: func(rev int64) error {
			mu.Lock()
			defer mu.Unlock()
			done = append(done, compaction{at: clk.Now().Sub(start), rev: rev})
			if compactErr != nil {
				return compactErr(len(done))
			}
			return nil
		},
		logger: slog.New(slog.DiscardHandler),
		stop:   stop,
	}
	finished := make(chan struct{})
	go func() { c.run(); close(finished) }()
	for elapsed := time.Duration(0); elapsed < total; elapsed += step {
		clk.advance(t, step)
	}
	clk.advance(t, 0) // the last step's compaction, if any, is done
	close(stop)
	<-finished
	mu.Lock()
	defer mu.Unlock()
	return done
}

func minutesRev(elapsed time.Duration) int64 { return 100 + int64(elapsed/time.Minute) }

// Periodic mode, as etcd's: nothing for the first period, then a compaction to the
// revision of the start, then one every min(period, 1h) to the revision of about one
// period before; nothing on a follower.
func TestPeriodicAutoCompaction(t *testing.T) {
	for _, tc := range []struct {
		period, every, step time.Duration
	}{
		{time.Hour, time.Hour, 6 * time.Minute},
		{2 * time.Hour, time.Hour, 6 * time.Minute},
		{10 * time.Minute, 10 * time.Minute, time.Minute},
	} {
		t.Run(tc.period.String(), func(t *testing.T) {
			total := tc.period + 3*tc.every
			got := runFakeCompactor(t, autoCompaction{mode: CompactionPeriodic, period: tc.period}, tc.step, total, true, minutesRev, nil)
			if len(got) != 4 {
				t.Fatalf("%v of periodic %v: compactions %+v; want 4, at %v and every %v after", total, tc.period, got, tc.period, tc.every)
			}
			for i, c := range got {
				wantAt := tc.period + time.Duration(i)*tc.every
				if c.at != wantAt {
					t.Errorf("compaction %d at %v, want %v", i, c.at, wantAt)
				}
				// The revision of one period before, or up to one step more.
				newest, oldest := minutesRev(c.at-tc.period), minutesRev(c.at-tc.period-tc.step)
				if i == 0 {
					oldest = minutesRev(0)
				}
				if c.rev > newest || c.rev < oldest {
					t.Errorf("compaction %d at %v to revision %d, want the revision of about %v before (%d..%d)",
						i, c.at, c.rev, tc.period, oldest, newest)
				}
			}
			if got := runFakeCompactor(t, autoCompaction{mode: CompactionPeriodic, period: tc.period}, tc.step, total, false, minutesRev, nil); len(got) != 0 {
				t.Fatalf("a follower compacted: %+v", got)
			}
		})
	}
	// A failed compaction is tried again at the next step; an unchanged revision is
	// not compacted twice.
	fails := func(n int) error {
		if n == 1 {
			return errors.New("no leader")
		}
		return nil
	}
	still := func(time.Duration) int64 { return 7 }
	got := runFakeCompactor(t, autoCompaction{mode: CompactionPeriodic, period: time.Hour}, 6*time.Minute, 3*time.Hour, true, still, fails)
	if len(got) != 2 || got[0].at != time.Hour || got[1].at != time.Hour+6*time.Minute || got[1].rev != 7 {
		t.Fatalf("a failed compaction, then an unchanged revision: %+v; want a retry 6m later, then nothing", got)
	}
}

// Revision mode, as etcd's: every 5 minutes, compact to the revision minus the
// retention if that is positive and new; ErrCompacted counts as done.
func TestRevisionAutoCompaction(t *testing.T) {
	revs := func(elapsed time.Duration) int64 {
		switch {
		case elapsed < 10*time.Minute:
			return 500
		case elapsed < 20*time.Minute:
			return 1500
		}
		return 3000
	}
	compacted := func(int) error { return kv.ErrCompacted }
	got := runFakeCompactor(t, autoCompaction{mode: CompactionRevision, revisions: 1000}, 5*time.Minute, 30*time.Minute, true, revs, compacted)
	want := []compaction{{10 * time.Minute, 500}, {20 * time.Minute, 2000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("revision mode compactions %+v, want %+v", got, want)
	}
	if got := runFakeCompactor(t, autoCompaction{mode: CompactionRevision, revisions: 1000}, 5*time.Minute, 30*time.Minute, false, revs, nil); len(got) != 0 {
		t.Fatalf("a follower compacted: %+v", got)
	}
}

func TestParseAutoCompaction(t *testing.T) {
	for _, tc := range []struct {
		mode, retention string
		want            autoCompaction
		err             string
	}{
		{"", "", autoCompaction{mode: CompactionPeriodic}, ""},
		{"periodic", "0", autoCompaction{mode: CompactionPeriodic}, ""},
		{"", "1", autoCompaction{mode: CompactionPeriodic, period: time.Hour}, ""},
		{"periodic", "30m", autoCompaction{mode: CompactionPeriodic, period: 30 * time.Minute}, ""},
		{"revision", "1000", autoCompaction{mode: CompactionRevision, revisions: 1000}, ""},
		{"revision", "1h", autoCompaction{}, "revision mode keeps a number of revisions"},
		{"periodic", "soon", autoCompaction{}, "neither a number of hours nor a duration"},
		{"periodic", "-1", autoCompaction{}, "negative"},
		{"hourly", "1", autoCompaction{}, `--auto-compaction-mode is "hourly"`},
	} {
		got, err := parseAutoCompaction(tc.mode, tc.retention)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q %q: %v, want an error saying %q", tc.mode, tc.retention, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q %q: %+v %v, want %+v", tc.mode, tc.retention, got, err, tc.want)
		}
	}
}

// Both modes compact a real member's store through the log, on the leader.
func TestAutoCompactionCompactsTheStore(t *testing.T) {
	defer func(old time.Duration) { revisionCompactionInterval = old }(revisionCompactionInterval)
	revisionCompactionInterval = 50 * time.Millisecond
	for _, tc := range []struct{ mode, retention string }{{"periodic", "500ms"}, {"revision", "10"}} {
		t.Run(tc.mode, func(t *testing.T) {
			members := startTestCluster(t, 3, func(c *Config) {
				c.AutoCompactionMode, c.AutoCompactionRetention = tc.mode, tc.retention
			})
			c := members[0].client
			deadline := time.Now().Add(20 * time.Second)
			var compacted int64
			for i := 0; ; i++ {
				retry(t, func(ctx context.Context) error {
					_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: fmt.Appendf(nil, "%d", i)})
					return err
				})
				compacted = members[0].srv.sm.store.CompactRevision()
				if compacted > 2 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if compacted <= 2 {
				t.Fatalf("no auto-compaction past revision 2 within 20s (compacted: %d)", compacted)
			}
			if tc.mode == "revision" {
				// With the writes stopped, the next compaction keeps exactly 10 revisions.
				store := members[0].srv.sm.store
				err := waitFor(10*time.Second, func() bool { return store.CompactRevision() == store.Revision()-10 })
				if err != nil {
					t.Fatalf("revision mode with retention 10: compacted to %d at revision %d", store.CompactRevision(), store.Revision())
				}
			}
			_, err := c.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), Revision: 2})
			if status.Convert(err).Message() != status.Convert(rpctypes.ErrGRPCCompacted).Message() {
				t.Fatalf("reading revision 2 after auto-compaction to %d: %v, want %v", compacted, err, rpctypes.ErrGRPCCompacted)
			}
		})
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
