package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// The differential test's vocabulary is small on purpose: few keys, so writes land on
// keys that exist and ranges overlap; few values, so sorting by value has ties.
var (
	diffKeys     = []string{"a", "a/1", "a/2", "ab", "b", "b/1", "ba", "c", "foo", "foo/bar", "z", "\xff"}
	diffPrefixes = []string{"", "a", "a/", "b", "f", "foo/", "q", "\xff"}
	diffValues   = []string{"", "v", "v1", "v2", "w", "xyz"}
)

// diffOp is one generated request: how to send it through clientv3, and how to
// describe it in a failure message.
type diffOp struct {
	kind       string
	desc       string
	compactRev int64 // the revision a compaction asks for
	// reputs: a txn that holds both a from-key delete and a put, so that it may
	// delete a key and put it back at one revision (see compactOp).
	reputs bool
	send   func(ctx context.Context, cli *clientv3.Client) (proto.Message, error)
}

func (op diffOp) run(cli *clientv3.Client) (proto.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return op.send(ctx, cli)
}

// opGen draws operations from a seeded source. It follows the store's revision and
// compaction point (from the oracle's answers) so that the revisions it asks for
// land around the interesting edges: compacted, current, future.
type opGen struct {
	rng       *rand.Rand
	rev       int64 // the store's revision after the last operation
	compacted int64 // the revision of the last successful compaction, 0 if none
	// reputRevs are the revisions written by txns with reputs set.
	reputRevs map[int64]bool
}

// observe updates the generator from the oracle's response to op.
func (g *opGen) observe(op diffOp, resp proto.Message) {
	if h := headerOf(resp); h != nil && h.Revision > g.rev {
		g.rev = h.Revision
		if op.reputs {
			if g.reputRevs == nil {
				g.reputRevs = map[int64]bool{}
			}
			g.reputRevs[h.Revision] = true
		}
	}
	if op.kind == "compact" {
		g.compacted = op.compactRev
	}
}

func headerOf(m proto.Message) *pb.ResponseHeader {
	switch r := m.(type) {
	case *pb.RangeResponse:
		return r.Header
	case *pb.PutResponse:
		return r.Header
	case *pb.DeleteRangeResponse:
		return r.Header
	case *pb.TxnResponse:
		return r.Header
	case *pb.CompactionResponse:
		return r.Header
	}
	return nil
}

func (g *opGen) chance(p float64) bool { return g.rng.Float64() < p }

func pick[T any](g *opGen, xs []T) T { return xs[g.rng.IntN(len(xs))] }

func (g *opGen) next() diffOp {
	switch p := g.rng.Float64(); {
	case p < 0.33:
		op, desc := g.getOp()
		return doOp("get", desc, op)
	case p < 0.58:
		op, desc := g.putOp(nil, true)
		return doOp("put", desc, op)
	case p < 0.68:
		op, desc := g.deleteOp(nil)
		return doOp("delete", desc, op)
	case p < 0.975:
		return g.txnOp()
	case p < 0.99:
		return g.compactOp()
	default:
		return g.bigTxnOp()
	}
}

func doOp(kind, desc string, op clientv3.Op) diffOp {
	return diffOp{kind: kind, desc: desc, send: func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		resp, err := cli.Do(ctx, op)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.Get() != nil:
			return (*pb.RangeResponse)(resp.Get()), nil
		case resp.Put() != nil:
			return (*pb.PutResponse)(resp.Put()), nil
		case resp.Del() != nil:
			return (*pb.DeleteRangeResponse)(resp.Del()), nil
		}
		return nil, fmt.Errorf("clientv3 returned no response for %s", kind)
	}}
}

// key is a key of the vocabulary, or now and then the empty key (an error).
func (g *opGen) key() string {
	if g.chance(0.015) {
		return ""
	}
	return pick(g, diffKeys)
}

// rangeShape draws what a get or delete covers: one key, a prefix, from a key on, or
// [key, end) (possibly empty or inverted).
func (g *opGen) rangeShape(singleBias float64) (string, []clientv3.OpOption, string) {
	switch p := g.rng.Float64(); {
	case p < singleBias:
		k := g.key()
		return k, nil, fmt.Sprintf("%q", k)
	case p < singleBias+(1-singleBias)*0.4:
		k := pick(g, diffPrefixes)
		return k, []clientv3.OpOption{clientv3.WithPrefix()}, fmt.Sprintf("prefix %q", k)
	case p < singleBias+(1-singleBias)*0.6:
		k := pick(g, append(diffKeys[:len(diffKeys):len(diffKeys)], diffPrefixes...))
		return k, []clientv3.OpOption{clientv3.WithFromKey()}, fmt.Sprintf("from %q", k)
	default:
		k, end := g.key(), pick(g, diffKeys)
		return k, []clientv3.OpOption{clientv3.WithRange(end)}, fmt.Sprintf("[%q, %q)", k, end)
	}
}

// revision draws a revision around the interesting edges.
func (g *opGen) revision() int64 {
	switch p := g.rng.Float64(); {
	case p < 0.35:
		return 1 + g.rng.Int64N(g.rev)
	case p < 0.55:
		return max(1, g.rev-g.rng.Int64N(3))
	case p < 0.7:
		return g.rev + 1 + g.rng.Int64N(3) // future
	case p < 0.9:
		return max(1, g.compacted-1+g.rng.Int64N(3)) // just below, at and above the compaction
	default:
		return -1 - g.rng.Int64N(2) // negative: etcd reads the latest, or in a txn, says compacted
	}
}

var (
	sortTargets = []clientv3.SortTarget{clientv3.SortByKey, clientv3.SortByVersion, clientv3.SortByCreateRevision,
		clientv3.SortByModRevision, clientv3.SortByValue}
	sortOrders = []clientv3.SortOrder{clientv3.SortNone, clientv3.SortAscend, clientv3.SortDescend}
)

func (g *opGen) getOp() (clientv3.Op, string) {
	key, opts, shape := g.rangeShape(0.45)
	var desc []string
	if g.chance(0.3) {
		limit := g.rng.Int64N(5)
		opts = append(opts, clientv3.WithLimit(limit))
		desc = append(desc, fmt.Sprintf("limit=%d", limit))
	}
	if g.chance(0.3) {
		rev := g.revision()
		opts = append(opts, clientv3.WithRev(rev))
		desc = append(desc, fmt.Sprintf("rev=%d", rev))
	}
	if g.chance(0.35) {
		target, order := pick(g, sortTargets), pick(g, sortOrders)
		opts = append(opts, clientv3.WithSort(target, order))
		desc = append(desc, fmt.Sprintf("sort=%v/%v", target, order))
	}
	if g.chance(0.15) {
		opts = append(opts, clientv3.WithKeysOnly())
		desc = append(desc, "keys_only")
	}
	if g.chance(0.1) {
		opts = append(opts, clientv3.WithCountOnly())
		desc = append(desc, "count_only")
	}
	if g.chance(0.3) {
		opts = append(opts, clientv3.WithSerializable())
		desc = append(desc, "serializable")
	}
	for _, filter := range []struct {
		name string
		opt  func(int64) clientv3.OpOption
	}{
		{"min_mod", clientv3.WithMinModRev}, {"max_mod", clientv3.WithMaxModRev},
		{"min_create", clientv3.WithMinCreateRev}, {"max_create", clientv3.WithMaxCreateRev},
	} {
		if g.chance(0.06) {
			rev := g.rng.Int64N(g.rev + 2)
			opts = append(opts, filter.opt(rev))
			desc = append(desc, fmt.Sprintf("%s=%d", filter.name, rev))
		}
	}
	return clientv3.OpGet(key, opts...), fmt.Sprintf("get %s %s", shape, strings.Join(desc, " "))
}

// putOp draws a put; with used non-nil, on a key not in used (or reports no op when
// none is left), so that the txn it goes into has no duplicate keys. ignoreFlags
// allows ignore_value and ignore_lease.
func (g *opGen) putOp(used map[string]bool, ignoreFlags bool) (clientv3.Op, string) {
	key := g.key()
	if used != nil {
		key = g.unusedKey(used)
		if key == "" {
			return clientv3.Op{}, ""
		}
	}
	value := pick(g, diffValues)
	var opts []clientv3.OpOption
	var desc []string
	if g.chance(0.4) {
		opts = append(opts, clientv3.WithPrevKV())
		desc = append(desc, "prev_kv")
	}
	if ignoreFlags && g.chance(0.07) {
		if g.chance(0.8) {
			value = "" // else: a value with ignore_value, an error
		}
		opts = append(opts, clientv3.WithIgnoreValue())
		desc = append(desc, "ignore_value")
	}
	if ignoreFlags && g.chance(0.07) {
		opts = append(opts, clientv3.WithIgnoreLease())
		desc = append(desc, "ignore_lease")
		if g.chance(0.2) {
			// A lease id with ignore_lease, which etcd rejects before looking the
			// lease up; puts to leases are in lease_diff_test.go.
			opts = append(opts, clientv3.WithLease(7))
			desc = append(desc, "lease=7")
		}
	}
	return clientv3.OpPut(key, value, opts...), fmt.Sprintf("put %q=%q %s", key, value, strings.Join(desc, " "))
}

func (g *opGen) unusedKey(used map[string]bool) string {
	for range 8 {
		if k := pick(g, diffKeys); !used[k] {
			used[k] = true
			return k
		}
	}
	return ""
}

func (g *opGen) deleteOp(used map[string]bool) (clientv3.Op, string) {
	var key, shape string
	var opts []clientv3.OpOption
	if used != nil {
		key = g.unusedKey(used)
		if key == "" {
			return clientv3.Op{}, ""
		}
		shape = fmt.Sprintf("%q", key)
	} else {
		key, opts, shape = g.rangeShape(0.6)
	}
	desc := ""
	if g.chance(0.5) {
		opts = append(opts, clientv3.WithPrevKV())
		desc = "prev_kv"
	}
	return clientv3.OpDelete(key, opts...), fmt.Sprintf("delete %s %s", shape, desc)
}

func (g *opGen) compare() (clientv3.Cmp, string) {
	key := pick(g, diffKeys)
	if g.chance(0.02) {
		key = ""
	}
	// The compare covers one key, a prefix, or [key, end).
	shape := g.rng.Float64()
	if shape < 0.15 {
		if key = pick(g, diffPrefixes); key == "" {
			key = "a"
		}
	}
	result := pick(g, []string{"=", "!=", "<", ">"})
	var cmp clientv3.Cmp
	var desc string
	switch g.rng.IntN(5) {
	case 0:
		v := pick(g, diffValues)
		cmp, desc = clientv3.Compare(clientv3.Value(key), result, v), fmt.Sprintf("value(%q) %s %q", key, result, v)
	case 1:
		v := g.rng.Int64N(4)
		cmp, desc = clientv3.Compare(clientv3.Version(key), result, v), fmt.Sprintf("version(%q) %s %d", key, result, v)
	case 2:
		v := g.rng.Int64N(g.rev + 2)
		cmp, desc = clientv3.Compare(clientv3.CreateRevision(key), result, v), fmt.Sprintf("create(%q) %s %d", key, result, v)
	case 3:
		v := g.rng.Int64N(g.rev + 2)
		cmp, desc = clientv3.Compare(clientv3.ModRevision(key), result, v), fmt.Sprintf("mod(%q) %s %d", key, result, v)
	default:
		v := g.rng.Int64N(2)
		cmp, desc = clientv3.Compare(clientv3.LeaseValue(key), result, v), fmt.Sprintf("lease(%q) %s %d", key, result, v)
	}
	switch {
	case shape < 0.15:
		cmp = cmp.WithPrefix()
		desc += " with prefix"
	case shape < 0.3:
		end := pick(g, diffKeys)
		cmp = cmp.WithRange(end)
		desc += fmt.Sprintf(" over [key, %q)", end)
	}
	return cmp, desc
}

// txnBody draws compares and both branches. used is shared by the whole txn when it
// keeps its writes on distinct keys (most do; the rest test the duplicate-key checks).
func (g *opGen) txnBody(depth int, used map[string]bool) ([]clientv3.Cmp, []clientv3.Op, []clientv3.Op, string) {
	var cmps []clientv3.Cmp
	var cmpDesc []string
	for range g.rng.IntN(4) {
		c, d := g.compare()
		cmps = append(cmps, c)
		cmpDesc = append(cmpDesc, d)
	}
	branch := func() ([]clientv3.Op, string) {
		var ops []clientv3.Op
		var desc []string
		for range g.rng.IntN(4) {
			var op clientv3.Op
			var d string
			switch p := g.rng.Float64(); {
			case p < 0.35:
				op, d = g.getOp()
			case p < 0.65:
				// etcd 3.7.3 crashes (index out of range in txn.put) on a put with
				// ignore_value or ignore_lease after a from-key delete of its key in
				// the same txn, which its duplicate-key check lets through; raftkv
				// refuses that txn up front (kv/txn.go, checkPath). Only txns that
				// keep writes on distinct single keys get the ignore flags.
				op, d = g.putOp(used, used != nil)
			case p < 0.85:
				op, d = g.deleteOp(used)
			case depth < 2:
				c, th, el, nd := g.txnBody(depth+1, used)
				op, d = clientv3.OpTxn(c, th, el), nd
			default:
				op, d = g.getOp()
			}
			if d == "" {
				continue // no unused key was left for a write
			}
			ops = append(ops, op)
			desc = append(desc, d)
		}
		return ops, strings.Join(desc, "; ")
	}
	thenOps, thenDesc := branch()
	elseOps, elseDesc := branch()
	return cmps, thenOps, elseOps, fmt.Sprintf("txn{if [%s] then [%s] else [%s]}", strings.Join(cmpDesc, ", "), thenDesc, elseDesc)
}

func (g *opGen) txnOp() diffOp {
	var used map[string]bool
	if g.chance(0.85) {
		used = map[string]bool{}
	}
	cmps, thenOps, elseOps, desc := g.txnBody(0, used)
	op := txnDiffOp("txn", desc, cmps, thenOps, elseOps)
	fromKeyDelete, put := txnWrites(thenOps, elseOps)
	op.reputs = fromKeyDelete && put
	return op
}

// txnWrites reports whether the branches, nested txns included, hold a from-key
// delete (range end "\x00": from a key on, or a prefix of "" or "\xff") and a put.
func txnWrites(branches ...[]clientv3.Op) (fromKeyDelete, put bool) {
	for _, ops := range branches {
		for _, op := range ops {
			switch {
			case op.IsDelete() && string(op.RangeBytes()) == "\x00":
				fromKeyDelete = true
			case op.IsPut():
				put = true
			case op.IsTxn():
				_, thenOps, elseOps := op.Txn()
				d, p := txnWrites(thenOps, elseOps)
				fromKeyDelete, put = fromKeyDelete || d, put || p
			}
		}
	}
	return fromKeyDelete, put
}

func txnDiffOp(kind, desc string, cmps []clientv3.Cmp, thenOps, elseOps []clientv3.Op) diffOp {
	return diffOp{kind: kind, desc: desc, send: func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
		resp, err := cli.Txn(ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
		if err != nil {
			return nil, err
		}
		return (*pb.TxnResponse)(resp), nil
	}}
}

// bigTxnOp is a txn at etcd's default limit of 128 operations or one past it.
func (g *opGen) bigTxnOp() diffOp {
	n := 128 + g.rng.IntN(2)
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	var desc string
	if g.chance(0.5) {
		for i := range n {
			cmps = append(cmps, clientv3.Compare(clientv3.Version(diffKeys[i%len(diffKeys)]), ">", -1))
		}
		desc = fmt.Sprintf("txn with %d compares", n)
	} else {
		for i := range n {
			ops = append(ops, clientv3.OpGet(diffKeys[i%len(diffKeys)], clientv3.WithKeysOnly()))
		}
		desc = fmt.Sprintf("txn with %d gets", n)
	}
	return txnDiffOp("big-txn", desc, cmps, ops, nil)
}

func (g *opGen) compactOp() diffOp {
	var rev int64
	switch p := g.rng.Float64(); {
	case p < 0.45 && g.rev > g.compacted:
		rev = g.compacted + 1 + g.rng.Int64N(g.rev-g.compacted)
	case p < 0.6:
		rev = g.rev
	case p < 0.75:
		rev = g.compacted // already compacted
	case p < 0.9:
		rev = g.rev + 1 + g.rng.Int64N(2) // future
	default:
		rev = -g.rng.Int64N(2)
	}
	for g.reputRevs[rev] {
		// A txn at rev may have deleted a key and put it back. etcd 3.7.3's
		// duplicate-key check lets that through when the delete runs from a key on
		// (its range end "\x00" reads as an empty interval), and its compaction at
		// exactly that revision keeps the key's tombstone but drops the put from its
		// backend while its index still points at the put: the next read of the key
		// ends the process with "range failed to find revision pair". raftkv keeps
		// the put (kv's TestCompactAtARevisionThatDeletedAndPutBackAKey), so only the
		// oracle needs the detour. A later revision is safe for etcd: the key's newer
		// generation then holds the put at or below the compaction.
		rev++
	}
	var opts []clientv3.CompactOption
	physical := g.chance(0.5)
	if physical {
		opts = append(opts, clientv3.WithCompactPhysical())
	}
	return diffOp{kind: "compact", desc: fmt.Sprintf("compact rev=%d physical=%v", rev, physical), compactRev: rev,
		send: func(ctx context.Context, cli *clientv3.Client) (proto.Message, error) {
			resp, err := cli.Compact(ctx, rev, opts...)
			if err != nil {
				return nil, err
			}
			return (*pb.CompactionResponse)(resp), nil
		}}
}

// TestGeneratorKeepsCompactionsOffReputRevisions drives the generator with made-up
// answers (every txn writes one revision) and checks that no compaction it draws
// lands on a revision whose txn may have deleted a key and put it back, the case
// that crashes etcd 3.7.3 (see compactOp). It needs no server.
func TestGeneratorKeepsCompactionsOffReputRevisions(t *testing.T) {
	t.Parallel()
	g := &opGen{rng: rand.New(rand.NewPCG(1, 0x5eed)), rev: 1}
	moved := 0
	for range 200_000 {
		op := g.next()
		var resp proto.Message
		switch op.kind {
		case "txn":
			resp = &pb.TxnResponse{Header: &pb.ResponseHeader{Revision: g.rev + 1}}
		case "compact":
			if g.reputRevs[op.compactRev] {
				t.Fatalf("compaction at %d, a revision a txn with a from-key delete and a put wrote", op.compactRev)
			}
			if g.reputRevs[op.compactRev-1] {
				moved++
			}
			if op.compactRev <= g.compacted || op.compactRev > g.rev {
				continue // etcd refuses it; the generator's state stays
			}
		}
		g.observe(op, resp)
	}
	if len(g.reputRevs) == 0 || moved == 0 {
		t.Fatalf("%d reput revisions and %d compactions just after one: the case is not exercised", len(g.reputRevs), moved)
	}
	t.Logf("%d revisions written, %d by txns that may put back a key they deleted; %d compactions landed just after one", g.rev, len(g.reputRevs), moved)
}
