package e2e

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"raftkv/server"
)

var (
	mixedOps  = flag.Int("mixed.ops", 0, "operations per mixed watch and lease differential run (default 10000 against one member and 3000 against three; a fifth with -short)")
	mixedSeed = flag.Uint64("mixed.seed", 0, "seed of the mixed watch and lease differential test (default: drawn from the clock)")
)

// TestWatchLeaseDifferential is the lease differential test's operations (Put,
// Range, DeleteRange, Txn, Compact, lease Grant and Revoke, puts and txns with
// leases, TimeToLive, Leases, keep-alives) with the watch differential test's
// watches opened and canceled among them, at random revisions, on random ranges,
// with random filters: every answer must match etcd's as in TestLeaseDifferential,
// and every watch must deliver what etcd's delivers, as in TestWatchDifferential,
// now with the events of lease revokes (a lease's keys deleted at one revision) and
// keys' lease ids in the events.
func TestWatchLeaseDifferential(t *testing.T) {
	t.Parallel()
	seed := *mixedSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for _, run := range []struct {
		members    int
		defaultOps int
	}{{1, 10000}, {3, 3000}} {
		t.Run(fmt.Sprintf("members=%d", run.members), func(t *testing.T) {
			ops := *mixedOps
			if ops == 0 {
				ops = run.defaultOps
				if testing.Short() {
					ops /= 5
				}
			}
			logReplay(t, "seed %d, %d operations; replay with: go test -run 'TestWatchLeaseDifferential/members=%d' -mixed.seed=%d -mixed.ops=%d",
				seed, ops, run.members, seed, ops)
			// etcd with raftkv's test timings, so that both raise a TTL to the same
			// minimum (see TestLeaseDifferential).
			oracle := newClient(t, startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 }))
			members := startRaftkv(t, run.members, 300, func(cfg *server.Config) { cfg.LeaseCheckpointInterval = leaseCheckpointInterval })
			writer, watched := members[0], members[0]
			if run.members > 1 {
				// Writes through one follower, which forwards them and the keep-alives
				// and time-to-live requests; watches on the other, from its own apply.
				writer = follower(t, members)
				lead := leader(t, members)
				for _, m := range members {
					if m != writer && m != lead {
						watched = m
					}
				}
			}
			d := &leaseDiff{t: t, seed: seed, oracle: oracle, subject: newClient(t, hostPort(writer.clientURL)),
				ids: newLeaseIDs(), slack: 3 * time.Second}
			g := &leaseGen{opGen: &opGen{rng: rand.New(rand.NewPCG(seed, 0x3a7c5)), rev: 1}}
			h := newWatchHarness(t, seed, g.opGen, oracle, [2]*clientv3.Client{d.subject, newClient(t, hostPort(watched.clientURL))}, d.ids)
			start := time.Now()
			h.openWatch() // before the operations
			for i := 0; i < ops; {
				if h.maybeChange() {
					continue
				}
				op := g.next()
				if op.kind == "compact" {
					h.waitCaughtUp("before a compaction")
				}
				d.step(i, g, op)
				i++
			}
			events := h.finish()
			d.finish(g, ops, start)
			t.Logf("%d watches (%d canceled on the way), %d events matched; compacted at %d",
				len(h.pairs), len(h.pairs)-len(h.open), events, g.compacted)
			for _, m := range members {
				d.compareWholeStore(m)
			}
		})
	}
}
