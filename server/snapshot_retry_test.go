package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// snapshotProbe is a member's Config.snapshotHook. Once active, it reports the
// index each local snapshot starts at on started and holds the snapshot until
// the test sends the result the hook returns (an error fails the snapshot, nil
// lets compactLog run); until then, or after close, it lets every snapshot run.
type snapshotProbe struct {
	active    atomic.Bool
	started   chan uint64
	result    chan error
	done      chan struct{}
	closeOnce sync.Once
}

func newSnapshotProbe() *snapshotProbe {
	return &snapshotProbe{started: make(chan uint64, 1), result: make(chan error), done: make(chan struct{})}
}

func (p *snapshotProbe) hook(index uint64) error {
	if !p.active.Load() {
		return nil
	}
	select {
	case p.started <- index:
	case <-p.done:
		return nil
	}
	select {
	case err := <-p.result:
		return err
	case <-p.done:
		return nil
	}
}

// close lets a held snapshot go, so that the member can stop.
func (p *snapshotProbe) close() { p.closeOnce.Do(func() { close(p.done) }) }

// quiesce waits until leader has applied every entry of its log and m has applied
// as far, and returns that index: no entry is in flight, so the next one m
// applies is the index after it.
func quiesce(t *testing.T, leader, m *testMember) uint64 {
	t.Helper()
	var last, applied uint64
	err := waitFor(10*time.Second, func() bool {
		last, _ = leader.srv.storage.LastIndex()
		applied = m.srv.applied.get()
		return leader.srv.applied.get() == last && applied == last
	})
	if err != nil {
		t.Fatalf("no quiet point: the leader's log ends at %d, member %s applied %d: %v", last, m.cfg.Name, applied, err)
	}
	return applied
}

// A local snapshot (log compaction) that fails with an error the member survives
// is retried on schedule (applyLoop): the failure is logged; no snapshot starts
// before retryAt, the index the failure was noticed at plus min(SnapshotCount,
// 1000); lastSnapshot and phase are put back as if the failed one had not
// started, so the retry is due at retryAt itself; it truncates the log, and
// every acknowledged write is still read.
//
// SnapshotCount is above 1000 on purpose: retryAt then comes 1000 entries after
// the failure, before a schedule that forgot the phase (or the failed snapshot's
// start) would be due again, so the retry's index tells the two apart. With
// SnapshotCount at most 1000, retryAt is past both and the phase could not be
// seen.
func TestFailedLocalSnapshotRetriesOnSchedule(t *testing.T) {
	t.Parallel() // it mostly waits
	const (
		count    = 1800 // SnapshotCount
		catchUp  = 50   // SnapshotCatchUpEntries
		retryGap = 1000 // min(count, 1000)
		prefix   = "k"
	)
	logs := &lockedBuffer{}
	probes := map[string]*snapshotProbe{}
	members := startTestCluster(t, 3, func(c *Config) {
		c.SnapshotCount, c.SnapshotCatchUpEntries = count, catchUp
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})).With("m", c.Name)
		p := newSnapshotProbe()
		probes[c.Name] = p
		c.snapshotHook = p.hook
		// Every entry to every follower as it is written: a follower outside the
		// last commit's quorum gets them gathered (Config.AppendToAll), and
		// applies the due index in a group with the next, which starts the snapshot
		// at the group's last (601 for 600, in 2 of 8 runs).
		c.AppendToAll = true
	})
	for _, p := range probes {
		t.Cleanup(p.close) // before the members stop (cleanups run last first)
	}
	// The member of the highest id has rank 2 of 3: phase 2*count/3, so its
	// first snapshot is due count/3 entries after its start at index 0.
	m := slices.MaxFunc(members, func(a, b *testMember) int { return cmp.Compare(a.srv.id, b.srv.id) })
	if phase := snapshotPhase(m.srv.id, m.srv.sm.members(), count); phase != 2*count/3 {
		t.Fatalf("member %s (rank 2 of 3): snapshotPhase %d, want %d", m.cfg.Name, phase, 2*count/3)
	}
	probe := probes[m.cfg.Name]
	probe.active.Store(true)
	leader := leaderOf(t, members)
	value := func(i int) []byte { return fmt.Appendf(nil, "v%d", i) }
	written := 0
	// putUntilSnapshot writes keys one at a time until m starts a snapshot, and
	// returns its index; it fails if m starts none by the time the leader's log
	// passes limit.
	putUntilSnapshot := func(limit uint64) uint64 {
		t.Helper()
		for {
			select {
			case index := <-probe.started:
				return index
			default:
			}
			if last, _ := leader.srv.storage.LastIndex(); last > limit {
				t.Fatalf("member %s started no snapshot by index %d (%d keys written)", m.cfg.Name, last, written)
			}
			retry(t, func(ctx context.Context) error {
				_, err := leader.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "%s%05d", prefix, written), Value: value(written)})
				return err
			})
			written++
		}
	}

	// The first snapshot starts when due, and fails.
	failedAt := putUntilSnapshot(count)
	if want := uint64(count - 2*count/3); failedAt != want {
		t.Fatalf("member %s started its first snapshot at index %d, want %d (SnapshotCount %d less phase %d)", m.cfg.Name, failedAt, want, count, 2*count/3)
	}
	quiet := quiesce(t, leader, m)
	probe.result <- errors.New("injected snapshot failure")
	if err := waitFor(10*time.Second, func() bool { return !m.srv.snapshotting.Load() }); err != nil {
		t.Fatalf("the failed snapshot did not end: %v", err)
	}
	// snapshotFailed is set before snapshotting is cleared: with nothing applied
	// meanwhile, the apply loop notices the failure at the next index.
	if a := m.srv.applied.get(); a != quiet {
		t.Fatalf("member %s applied %d while the snapshot failed, past the quiet point %d: the index the failure is noticed at is unknown", m.cfg.Name, a, quiet)
	}
	noticed := quiet + 1
	if first, err := m.srv.storage.FirstIndex(); err != nil || first != 1 {
		t.Fatalf("after the failed snapshot the log of %s starts at %d (%v), want 1", m.cfg.Name, first, err)
	}
	failedLine := false
	for _, line := range strings.Split(logs.String(), "\n") {
		failedLine = failedLine || strings.Contains(line, `msg="snapshot failed"`) && strings.Contains(line, "m="+m.cfg.Name) &&
			strings.Contains(line, fmt.Sprintf("index=%d", failedAt)) && strings.Contains(line, "injected snapshot failure")
	}
	if !failedLine {
		t.Fatalf("no warning of the failed snapshot at %d from %s in the log:\n%s", failedAt, m.cfg.Name, logs)
	}

	// The retry: not before retryAt, and at it, since the restored schedule (due
	// at failedAt) is past. A schedule without the phase put back would be due at
	// count, one without the failed snapshot undone at failedAt+count.
	retryAt := noticed + retryGap
	retried := putUntilSnapshot(failedAt + count + count/10)
	if retried != retryAt {
		t.Fatalf("member %s retried the snapshot at index %d; want %d (the failure at %d noticed at %d, plus %d); "+
			"%d if the phase were not restored, %d if the failed snapshot were not undone",
			m.cfg.Name, retried, retryAt, failedAt, noticed, retryGap, count, failedAt+count)
	}
	durable := quiesce(t, leader, m)
	probe.result <- nil
	if err := waitFor(10*time.Second, func() bool { return !m.srv.snapshotting.Load() }); err != nil {
		t.Fatalf("the retried snapshot did not end: %v", err)
	}
	if m.srv.snapshotFailed.Load() {
		t.Fatalf("the retried snapshot at %d failed:\n%s", retried, logs)
	}
	// It flushed the store at the quiet point and truncated the log to the
	// catch-up entries before it.
	if d := m.srv.durableSnap.Load(); d == nil || d.Index != durable {
		t.Fatalf("after the retry member %s records the durable snapshot %+v, want index %d", m.cfg.Name, d, durable)
	}
	if first, err := m.srv.storage.FirstIndex(); err != nil || first != durable-catchUp+1 {
		t.Fatalf("after the retry the log of %s starts at %d (%v), want %d (durable %d less %d catch-up entries, plus 1)",
			m.cfg.Name, first, err, durable-catchUp+1, durable, catchUp)
	}
	select {
	case index := <-probe.started:
		t.Fatalf("member %s started another snapshot at %d", m.cfg.Name, index)
	default:
	}

	// Every acknowledged write is read on m (its own applied state) and through
	// the leader.
	end := []byte(prefix)
	end[len(end)-1]++
	for _, read := range []struct {
		who          *testMember
		serializable bool
	}{{m, true}, {leader, false}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := read.who.client.Range(ctx, &pb.RangeRequest{Key: []byte(prefix), RangeEnd: end, Serializable: read.serializable})
		cancel()
		if err != nil {
			t.Fatalf("reading the keys on %s: %v", read.who.cfg.Name, err)
		}
		if len(resp.Kvs) != written {
			t.Fatalf("member %s reads %d keys, %d written", read.who.cfg.Name, len(resp.Kvs), written)
		}
		for i, kv := range resp.Kvs {
			if want := fmt.Sprintf("%s%05d", prefix, i); string(kv.Key) != want || string(kv.Value) != string(value(i)) {
				t.Fatalf("member %s reads key %d as %s=%s, want %s=%s", read.who.cfg.Name, i, kv.Key, kv.Value, want, value(i))
			}
		}
	}
	t.Logf("first snapshot at %d failed, noticed at %d; retried at %d, log truncated to %d; %d keys", failedAt, noticed, retried, durable-catchUp, written)
}
