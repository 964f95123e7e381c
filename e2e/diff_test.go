package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

var (
	diffOps  = flag.Int("diff.ops", 0, "operations per differential run (default 10000 against one member and 3000 against three; a fifth of that with -short)")
	diffSeed = flag.Uint64("diff.seed", 0, "seed of the differential test's operation sequence (default: drawn from the clock)")
	diffLog  = flag.Bool("diff.log", false, "log every operation of the differential test before it runs")
)

// TestDifferential runs one seeded random sequence of Put/Range/DeleteRange/Txn/Compact
// through clientv3 against an embedded etcd and against raftkv, and requires every
// response to match field for field (kvs, revisions, versions, prev_kv, succeeded,
// count, more, errors), except the header's cluster id, member id and raft term.
// raftkv's kv package promises etcd's semantics exactly; this holds it to that.
func TestDifferential(t *testing.T) {
	t.Parallel()
	seed := *diffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for _, run := range []struct {
		members    int
		defaultOps int
	}{{1, 10000}, {3, 3000}} {
		t.Run(fmt.Sprintf("members=%d", run.members), func(t *testing.T) {
			ops := *diffOps
			if ops == 0 {
				ops = run.defaultOps
				if testing.Short() {
					ops /= 5
				}
			}
			logReplay(t, "seed %d, %d operations; replay with: go test -run 'TestDifferential/members=%d' -diff.seed=%d -diff.ops=%d",
				seed, ops, run.members, seed, ops)
			oracle := newClient(t, startEtcd(t))
			// Snapshots every 300 entries, so restarts restore the store from a
			// snapshot and the log after it.
			members := startRaftkv(t, run.members, 300)
			subject, restarted := members[0], members[0]
			if run.members > 1 {
				// A follower forwards every write, which is the longer path. One
				// endpoint only: serializable reads must see this client's writes.
				// The other follower restarts on the way and catches up; restarting
				// the leader would fail requests in flight on the raftkv side only.
				subject = follower(t, members)
				lead := leader(t, members)
				for _, m := range members {
					if m != subject && m != lead {
						restarted = m
					}
				}
			}
			restarts := map[int]func(){
				ops / 3:     func() { restarted.restart(t) },
				2 * ops / 3: func() { restarted.restart(t) },
			}
			cli := newClient(t, hostPort(subject.clientURL))
			runDifferential(t, seed, ops, oracle, cli, restarts)
			for _, m := range members {
				compareWholeStore(t, oracle, m)
			}
		})
	}
}

// runDifferential runs ops operations drawn from seed through oracle and subject and
// compares the responses. Before operation i it calls hooks[i], if set.
func runDifferential(t *testing.T, seed uint64, ops int, oracle, subject *clientv3.Client, hooks map[int]func()) {
	g := &opGen{rng: rand.New(rand.NewPCG(seed, 0x5eed)), rev: 1}
	var recent []string // the last few operations, for the failure message
	counts := map[string]int{}
	start := time.Now()
	for i := range ops {
		if hook := hooks[i]; hook != nil {
			hook()
			t.Logf("restarted a raftkv member before operation #%d", i)
		}
		op := g.next()
		recent = append(recent, fmt.Sprintf("#%d %s", i, op.desc))
		if *diffLog {
			t.Logf("#%d %s", i, op.desc)
		}
		if len(recent) > 8 {
			recent = recent[1:]
		}
		want, wantErr := op.run(oracle)
		got, gotErr := op.run(subject)
		if ws, gs := errString(wantErr), errString(gotErr); ws != gs {
			t.Fatalf("operation #%d (seed %d): errors differ\n  op:     %s\n  etcd:   %s\n  raftkv: %s\n  raftkv response: %s\nlast operations:\n  %s",
				i, seed, op.desc, orNone(ws), orNone(gs), format(got), strings.Join(recent, "\n  "))
		}
		if wantErr != nil {
			counts[op.kind+" error: "+errString(wantErr)]++
			if isTransportError(wantErr) {
				t.Fatalf("operation #%d: both sides failed with a transport error, the test cannot go on: %v", i, wantErr)
			}
			continue
		}
		normalizeHeaders(want)
		normalizeHeaders(got)
		if !proto.Equal(want, got) {
			t.Fatalf("operation #%d (seed %d): responses differ\n  op: %s\netcd:\n%s\nraftkv:\n%s\nlast operations:\n  %s",
				i, seed, op.desc, format(want), format(got), strings.Join(recent, "\n  "))
		}
		counts[op.kind]++
		g.observe(op, want)
	}
	// The whole key space, now and at a few past revisions still readable.
	for _, rev := range []int64{0, g.rev - 1, (g.rev + g.compacted) / 2, g.compacted} {
		if rev < 0 || (rev != 0 && rev <= g.compacted) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		want, wantErr := oracle.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev))
		got, gotErr := subject.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev))
		cancel()
		if errString(wantErr) != errString(gotErr) {
			t.Fatalf("final read at revision %d: etcd error %v, raftkv error %v", rev, wantErr, gotErr)
		}
		if wantErr == nil {
			w, g := (*pb.RangeResponse)(want), (*pb.RangeResponse)(got)
			normalizeHeaders(w)
			normalizeHeaders(g)
			if !proto.Equal(w, g) {
				t.Fatalf("final read of every key at revision %d differs\netcd:\n%s\nraftkv:\n%s", rev, format(w), format(g))
			}
		}
	}
	t.Logf("%d operations matched in %v (final revision %d, compacted at %d)",
		ops, time.Since(start).Round(time.Millisecond), g.rev, g.compacted)
	for _, kind := range slices.Sorted(maps.Keys(counts)) {
		t.Logf("  %6d %s", counts[kind], kind)
	}
}

// compareWholeStore requires m's own state (a serializable read of every key) to
// match the oracle's, once m has caught up.
func compareWholeStore(t *testing.T, oracle *clientv3.Client, m *inProcessMember) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want, err := oracle.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("reading every key from etcd: %v", err)
	}
	w := (*pb.RangeResponse)(want)
	normalizeHeaders(w)
	cli := newClient(t, hostPort(m.clientURL))
	defer cli.Close()
	var g *pb.RangeResponse
	err = eventually(10*time.Second, 50*time.Millisecond, func() error {
		got, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err != nil {
			return err
		}
		g = (*pb.RangeResponse)(got)
		normalizeHeaders(g)
		if !proto.Equal(w, g) {
			return fmt.Errorf("differs")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("member %s's own state differs from etcd's after the run (%v)\netcd:\n%s\nraftkv:\n%s", m.cfg.Name, err, format(w), format(g))
	}
}

func orNone(s string) string {
	if s == "" {
		return "(no error)"
	}
	return s
}

// errString is what must match between the two servers for an error: its gRPC code
// and message as clientv3 reports them.
func errString(err error) string {
	if err == nil {
		return ""
	}
	var etcdErr rpctypes.EtcdError
	if errors.As(err, &etcdErr) {
		return etcdErr.Code().String() + ": " + etcdErr.Error()
	}
	if st, ok := status.FromError(err); ok {
		return st.Code().String() + ": " + st.Message()
	}
	return err.Error()
}

func isTransportError(err error) bool {
	s := errString(err)
	return strings.HasPrefix(s, "Unavailable") || strings.HasPrefix(s, "DeadlineExceeded") ||
		strings.Contains(s, "context deadline exceeded")
}

func format(m proto.Message) string {
	if m == nil {
		return "(none)"
	}
	return prototext.MarshalOptions{Multiline: true, Indent: "  "}.Format(m)
}

// normalizeHeaders clears what may differ between two servers with the same data:
// the ids in the response's header. The headers nested in a txn's responses are
// compared whole: etcd fills only their revision.
func normalizeHeaders(m proto.Message) {
	clear := func(h *pb.ResponseHeader) {
		if h != nil {
			h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
		}
	}
	switch r := m.(type) {
	case *pb.RangeResponse:
		clear(r.Header)
	case *pb.PutResponse:
		clear(r.Header)
	case *pb.DeleteRangeResponse:
		clear(r.Header)
	case *pb.CompactionResponse:
		clear(r.Header)
	case *pb.TxnResponse:
		clear(r.Header)
	}
}
