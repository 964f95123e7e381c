package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/protobuf/proto"

	"raftkv/server"
)

var (
	leaseOps  = flag.Int("lease.ops", 0, "operations per lease differential run (default 10000 against one member and 3000 against three; a fifth of that with -short)")
	leaseSeed = flag.Uint64("lease.seed", 0, "seed of the lease differential test (default: drawn from the clock)")
	leaseLog  = flag.Bool("lease.log", false, "log every operation of the lease differential test before it runs")
)

// leaseCheckpointInterval is the raftkv members' in the lease differential test: short,
// so that a restarted single member, which counts its leases down from their last
// checkpoint, stays within the remaining-TTL tolerance.
const leaseCheckpointInterval = 2 * time.Second

// TestLeaseDifferential runs one seeded random sequence of Put/Range/DeleteRange/Txn/
// Compact mixed with lease Grant (named and server-picked ids, TTLs below the minimum
// and above the maximum), Revoke, puts and txns with leases (and lease compares),
// TimeToLive (with keys), Leases and keep-alives, against an embedded etcd and against
// raftkv, and requires the answers to match: ids (through a mapping for the ids each
// server picks), granted TTLs, attached keys, errors, revisions, and every key's lease.
// Remaining TTLs must agree within a tolerance: raftkv's may be higher by the time a
// restart took plus a checkpoint interval, since a restarted leader counts a lease
// down from its last checkpoint.
func TestLeaseDifferential(t *testing.T) {
	t.Parallel()
	seed := *leaseSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for _, run := range []struct {
		members    int
		defaultOps int
	}{{1, 10000}, {3, 3000}} {
		t.Run(fmt.Sprintf("members=%d", run.members), func(t *testing.T) {
			ops := *leaseOps
			if ops == 0 {
				ops = run.defaultOps
				if testing.Short() {
					ops /= 5
				}
			}
			logReplay(t, "seed %d, %d operations; replay with: go test -run 'TestLeaseDifferential/members=%d' -lease.seed=%d -lease.ops=%d",
				seed, ops, run.members, seed, ops)
			// etcd with raftkv's test timings, so that both raise a TTL to the same
			// minimum: 3*10/2 heartbeats of 10ms, rounded up to 1s.
			oracle := newClient(t, startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 }))
			members := startRaftkv(t, run.members, 300, func(cfg *server.Config) { cfg.LeaseCheckpointInterval = leaseCheckpointInterval })
			subject, restarted := members[0], members[0]
			if run.members > 1 {
				// Through a follower, which forwards keep-alives and time-to-live to the
				// leader; the other follower restarts on the way.
				subject = follower(t, members)
				lead := leader(t, members)
				for _, m := range members {
					if m != subject && m != lead {
						restarted = m
					}
				}
			}
			d := &leaseDiff{t: t, seed: seed, oracle: oracle, subject: newClient(t, hostPort(subject.clientURL)),
				ids: newLeaseIDs(), slack: 3*time.Second + leaseCheckpointInterval}
			restart := func() {
				start := time.Now()
				restarted.restart(t)
				if run.members == 1 {
					// The restarted member leads again and counts from checkpoints.
					d.slack += time.Since(start)
				}
			}
			d.run(ops, map[int]func(){ops / 3: restart, 2 * ops / 3: restart})
			for _, m := range members {
				d.compareWholeStore(m)
			}
		})
	}
}

type leaseDiff struct {
	t               *testing.T
	seed            uint64
	oracle, subject *clientv3.Client
	ids             *leaseIDs // etcd's lease ids to raftkv's
	// slack is how much longer than etcd's raftkv's remaining TTL may be.
	slack time.Duration
	// recent are the last operations, for a failure's message; counts counts the
	// operations that matched, by kind and error.
	recent []string
	counts map[string]int
}

func (d *leaseDiff) run(ops int, hooks map[int]func()) {
	t := d.t
	g := &leaseGen{opGen: &opGen{rng: rand.New(rand.NewPCG(d.seed, 0x1ea5e)), rev: 1}}
	start := time.Now()
	for i := range ops {
		if hook := hooks[i]; hook != nil {
			hook()
			t.Logf("restarted a raftkv member before operation #%d", i)
		}
		d.step(i, g, g.next())
	}
	d.finish(g, ops, start)
}

// step sends op to both servers, compares the answers (failing the test if they
// differ), and lets g follow etcd's answer.
func (d *leaseDiff) step(i int, g *leaseGen, op leaseOp) {
	t := d.t
	d.recent = append(d.recent, fmt.Sprintf("#%d %s", i, op.desc))
	if len(d.recent) > 8 {
		d.recent = d.recent[1:]
	}
	if *leaseLog {
		t.Logf("#%d %s", i, op.desc)
	}
	if d.counts == nil {
		d.counts = map[string]int{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	want, wantErr := op.send(ctx, d.oracle, identity)
	got, gotErr := op.send(ctx, d.subject, d.ids)
	cancel()
	fail := func(msg string, args ...any) {
		t.Helper()
		t.Fatalf("operation #%d (seed %d): %s\n  op: %s\netcd:\n%s\nraftkv:\n%s\nlast operations:\n  %s", i, d.seed,
			fmt.Sprintf(msg, args...), op.desc, format(want), format(got), strings.Join(d.recent, "\n  "))
	}
	if ws, gs := errString(wantErr), errString(gotErr); ws != gs {
		fail("errors differ: etcd %s, raftkv %s", orNone(ws), orNone(gs))
	}
	if wantErr != nil {
		d.counts[op.kind+" error: "+errString(wantErr)]++
		if isTransportError(wantErr) {
			t.Fatalf("operation #%d: both sides failed with a transport error, the test cannot go on: %v", i, wantErr)
		}
		return
	}
	if grant, ok := got.(*pb.LeaseGrantResponse); ok && op.lease == 0 {
		d.ids.record(want.(*pb.LeaseGrantResponse).ID, grant.ID)
	}
	normalizeLeaseResponse(want, identity)
	normalizeLeaseResponse(got, d.ids)
	if msg := d.compareRemainingTTL(want, got); msg != "" {
		fail("%s", msg)
	}
	if !proto.Equal(want, got) {
		fail("responses differ")
	}
	d.counts[op.kind]++
	g.observe(op, want, nil)
}

// finish logs the run and requires every live lease, with its keys, to be the same
// on both sides.
func (d *leaseDiff) finish(g *leaseGen, ops int, start time.Time) {
	t := d.t
	counts := d.counts
	t.Logf("%d operations matched in %v (final revision %d, %d leases live)", ops, time.Since(start).Round(time.Millisecond), g.rev, len(g.live))
	for _, kind := range slices.Sorted(maps.Keys(counts)) {
		t.Logf("  %6d %s", counts[kind], kind)
	}
	// Every live lease, with its keys, on both sides.
	for _, id := range g.live {
		op := leaseOp{desc: fmt.Sprintf("final timetolive %d", id), send: func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error) {
			return clientv3.RetryLeaseClient(cli).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: ids.side(id), Keys: true})
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		want, wantErr := op.send(ctx, d.oracle, identity)
		got, gotErr := op.send(ctx, d.subject, d.ids)
		cancel()
		if wantErr != nil || gotErr != nil {
			t.Fatalf("%s: etcd error %v, raftkv error %v", op.desc, wantErr, gotErr)
		}
		normalizeLeaseResponse(want, identity)
		normalizeLeaseResponse(got, d.ids)
		if msg := d.compareRemainingTTL(want, got); msg != "" || !proto.Equal(want, got) {
			t.Fatalf("%s differs %s\netcd:\n%s\nraftkv:\n%s", op.desc, msg, format(want), format(got))
		}
	}
}

// compareWholeStore is compareWholeStore (diff_test.go) with raftkv's lease ids
// written as etcd's.
func (d *leaseDiff) compareWholeStore(m *inProcessMember) {
	t := d.t
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want, err := d.oracle.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("reading every key from etcd: %v", err)
	}
	w := (*pb.RangeResponse)(want)
	normalizeLeaseResponse(w, identity)
	cli := newClient(t, hostPort(m.clientURL))
	defer cli.Close()
	var g *pb.RangeResponse
	err = eventually(10*time.Second, 50*time.Millisecond, func() error {
		got, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err != nil {
			return err
		}
		g = (*pb.RangeResponse)(got)
		normalizeLeaseResponse(g, d.ids)
		if !proto.Equal(w, g) {
			return fmt.Errorf("differs")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("member %s's own state differs from etcd's after the run (%v)\netcd:\n%s\nraftkv:\n%s", m.cfg.Name, err, format(w), format(g))
	}
}

// compareRemainingTTL checks a time-to-live answer's remaining TTL against etcd's
// within the tolerance, then sets raftkv's to etcd's so the rest compares exactly.
func (d *leaseDiff) compareRemainingTTL(want, got proto.Message) string {
	w, ok1 := want.(*pb.LeaseTimeToLiveResponse)
	g, ok2 := got.(*pb.LeaseTimeToLiveResponse)
	if !ok1 || !ok2 {
		return ""
	}
	if w.TTL == -1 || g.TTL == -1 {
		if w.TTL != g.TTL {
			return fmt.Sprintf("remaining TTL %d on etcd, %d on raftkv", w.TTL, g.TTL)
		}
		return ""
	}
	// The two answers are a few milliseconds apart and each rounds down.
	lo, hi := w.TTL-2, w.TTL+int64(d.slack/time.Second)+1
	if g.TTL < lo || g.TTL > hi {
		return fmt.Sprintf("remaining TTL %ds on raftkv, outside [%d, %d] around etcd's %ds", g.TTL, lo, hi, w.TTL)
	}
	g.TTL = w.TTL
	return ""
}

// normalizeLeaseResponse clears the header ids (as normalizeHeaders does), writes the
// side's lease ids as etcd's, and sorts what etcd returns in no particular order
// (a lease's keys, the list of leases).
func normalizeLeaseResponse(m proto.Message, ids *leaseIDs) {
	clearHeader := func(h *pb.ResponseHeader) {
		if h != nil {
			h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
		}
	}
	kvs := func(kvs ...*mvccpb.KeyValue) {
		for _, kv := range kvs {
			if kv != nil {
				kv.Lease = ids.etcd(kv.Lease)
			}
		}
	}
	switch r := m.(type) {
	case *pb.LeaseGrantResponse:
		clearHeader(r.Header)
		r.ID = ids.etcd(r.ID)
	case *pb.LeaseRevokeResponse:
		clearHeader(r.Header)
	case *pb.LeaseTimeToLiveResponse:
		clearHeader(r.Header)
		r.ID = ids.etcd(r.ID)
		slices.SortFunc(r.Keys, bytes.Compare)
	case *pb.LeaseLeasesResponse:
		clearHeader(r.Header)
		for _, l := range r.Leases {
			l.ID = ids.etcd(l.ID)
		}
		slices.SortFunc(r.Leases, func(a, b *pb.LeaseStatus) int { return int(min(max(a.ID-b.ID, -1), 1)) })
	case *pb.LeaseKeepAliveResponse:
		clearHeader(r.Header)
		r.ID = ids.etcd(r.ID)
	case *pb.RangeResponse:
		clearHeader(r.Header)
		kvs(r.Kvs...)
	case *pb.PutResponse:
		clearHeader(r.Header)
		kvs(r.PrevKv)
	case *pb.DeleteRangeResponse:
		clearHeader(r.Header)
		kvs(r.PrevKvs...)
	case *pb.TxnResponse:
		clearHeader(r.Header)
		for _, op := range r.Responses {
			switch u := op.Response.(type) {
			case *pb.ResponseOp_ResponseRange:
				normalizeLeaseResponse(u.ResponseRange, ids)
			case *pb.ResponseOp_ResponsePut:
				normalizeLeaseResponse(u.ResponsePut, ids)
			case *pb.ResponseOp_ResponseDeleteRange:
				normalizeLeaseResponse(u.ResponseDeleteRange, ids)
			case *pb.ResponseOp_ResponseTxn:
				normalizeLeaseResponse(u.ResponseTxn, ids)
			}
		}
	case *pb.CompactionResponse:
		clearHeader(r.Header)
	}
}
