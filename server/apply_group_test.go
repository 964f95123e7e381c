package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Puts that wait to apply together share one engine batch (apply_group.go), and
// each is still answered once, with its own revision, after the batch commits.
// Every member's apply loop is held while 30 clients put, so that the committed
// entries queue up; released, each member applies them in groups, which
// raftkv_apply_group_entries counts. The loop is held again at the tenth put,
// with the nine before it in the open group: none of them is answered yet.
func TestQueuedPutsApplyInGroups(t *testing.T) {
	var held atomic.Bool
	var holdAt atomic.Uint64
	members := startTestCluster(t, 3, func(c *Config) {
		c.applyHook = func(index uint64) {
			for held.Load() || index == holdAt.Load() {
				time.Sleep(time.Millisecond)
			}
		}
	})
	defer func() { held.Store(false); holdAt.Store(0) }() // a failure must not leave the members stuck
	waitStarted(t, members[0], 3)
	waitConnected(t, members)
	leader := leaderOf(t, members)
	retry(t, func(ctx context.Context) error {
		_, err := leader.client.Put(ctx, &pb.PutRequest{Key: []byte("warm-up"), Value: []byte("v")})
		return err
	})
	before := make([]groupCounts, len(members))
	for i, m := range members {
		before[i] = applyGroupCounts(t, m)
	}

	const puts = 30
	held.Store(true)
	revs := make([]int64, puts)
	errs := make([]error, puts)
	var answered atomic.Int32
	var wg sync.WaitGroup
	for i := range puts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := leader.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "g%d", i%7), Value: fmt.Appendf(nil, "v%d", i)})
			answered.Add(1)
			if errs[i] = err; err == nil {
				revs[i] = resp.Header.Revision
			}
		})
	}
	// Wait until every put has committed: the leader's commit index is past them.
	start := leader.srv.node.Observe().Commit
	deadline := time.Now().Add(10 * time.Second)
	for leader.srv.node.Observe().Commit < start+puts && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := answered.Load(); n != 0 {
		t.Fatalf("%d puts answered while every apply loop was held", n)
	}
	holdAt.Store(start + 10)
	held.Store(false)
	time.Sleep(200 * time.Millisecond)
	if n := answered.Load(); n != 0 {
		t.Fatalf("%d puts answered before their group committed", n)
	}
	holdAt.Store(0)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	slices.Sort(revs)
	for i := 1; i < puts; i++ {
		if revs[i] != revs[i-1]+1 {
			t.Fatalf("the puts' revisions are not %d consecutive ones: %v", puts, revs)
		}
	}

	for i, m := range members {
		var after groupCounts
		waitMetrics(t, m, "the puts applied", func(f map[string]*dto.MetricFamily) bool {
			after = groupCountsOf(f)
			return after.entries-before[i].entries >= puts
		})
		batches, entries := after.batches-before[i].batches, after.entries-before[i].entries
		if batches >= entries/2 {
			t.Errorf("member %s applied %v put entries in %v engine batches: no grouping", m.cfg.Name, entries, batches)
		}
		for k := range 7 {
			resp, err := m.client.Range(context.Background(), &pb.RangeRequest{Key: fmt.Appendf(nil, "g%d", k), Serializable: true})
			if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision > revs[puts-1] || resp.Kvs[0].Version < int64(puts/7) {
				t.Fatalf("member %s, key g%d after the grouped puts: %v %v", m.cfg.Name, k, resp, err)
			}
		}
	}
}

// groupCounts is raftkv_apply_group_entries: its batches (the histogram's count)
// and their entries (its sum).
type groupCounts struct{ batches, entries float64 }

func applyGroupCounts(t *testing.T, m *testMember) groupCounts {
	t.Helper()
	return groupCountsOf(scrape(t, metricsURL(m)))
}

func groupCountsOf(f map[string]*dto.MetricFamily) groupCounts {
	fam := f["raftkv_apply_group_entries"]
	if fam == nil || len(fam.Metric) == 0 || fam.Metric[0].Histogram == nil {
		return groupCounts{}
	}
	h := fam.Metric[0].Histogram
	return groupCounts{batches: float64(h.GetSampleCount()), entries: h.GetSampleSum()}
}
