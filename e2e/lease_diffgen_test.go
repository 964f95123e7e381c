package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// The lease differential test's operations. Lease ids are written as etcd's: a lease
// the client names has the same id on both sides, but one the server picks differs,
// so every operation is sent through a side's ids (leaseIDs) and raftkv's answers are
// translated back before they are compared.

// leaseIDs maps etcd's lease ids to one side's and back.
type leaseIDs struct {
	to, from map[int64]int64
}

func newLeaseIDs() *leaseIDs { return &leaseIDs{to: map[int64]int64{}, from: map[int64]int64{}} }

// side returns the side's id of etcd's id.
func (m *leaseIDs) side(id int64) int64 {
	if s, ok := m.to[id]; ok {
		return s
	}
	return id
}

// etcd returns etcd's id of the side's id.
func (m *leaseIDs) etcd(id int64) int64 {
	if e, ok := m.from[id]; ok {
		return e
	}
	return id
}

func (m *leaseIDs) record(etcdID, sideID int64) {
	m.to[etcdID], m.from[sideID] = sideID, etcdID
}

// identity is etcd's own mapping.
var identity = newLeaseIDs()

// leaseOp is one generated request, sent to one side through its ids.
type leaseOp struct {
	kind string
	desc string
	send func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error)
	// base is set for the KV operations of the plain differential generator, whose
	// revision bookkeeping must see their answers.
	base *diffOp
	// lease is the lease a grant names (0: the server picks) or a revoke revokes.
	lease int64
}

// leaseGen wraps the plain differential generator with lease operations.
type leaseGen struct {
	*opGen
	live    []int64 // etcd's ids of the leases granted and not revoked
	revoked []int64
}

const (
	// Chosen ids come from a small range, so grants collide with live leases.
	leaseIDRange = 48
	// Leases live far longer than a run, so neither side expires one on its own.
	minLongTTL = 2000
)

func (g *leaseGen) next() leaseOp {
	switch p := g.rng.Float64(); {
	case p < 0.55:
		op := g.opGen.next()
		return leaseOp{kind: op.kind, desc: op.desc, base: &op,
			send: func(ctx context.Context, cli *clientv3.Client, _ *leaseIDs) (proto.Message, error) {
				return op.send(ctx, cli)
			}}
	case p < 0.65:
		return g.grantOp()
	case p < 0.69:
		return g.revokeOp()
	case p < 0.81:
		return g.putWithLeaseOp()
	case p < 0.87:
		return g.leaseTxnOp()
	case p < 0.92:
		return g.timeToLiveOp()
	case p < 0.94:
		return leaseOp{kind: "leases", desc: "leases", send: func(ctx context.Context, cli *clientv3.Client, _ *leaseIDs) (proto.Message, error) {
			return clientv3.RetryLeaseClient(cli).LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
		}}
	default:
		return g.keepAliveOp()
	}
}

// observe follows the leases from etcd's answer to op (and the revision, for the
// plain operations).
func (g *leaseGen) observe(op leaseOp, resp proto.Message, err error) {
	if op.base != nil && err == nil {
		g.opGen.observe(*op.base, resp)
	}
	if h := leaseHeaderOf(resp); h != nil && h.Revision > g.rev {
		g.rev = h.Revision
	}
	switch r := resp.(type) {
	case *pb.LeaseGrantResponse:
		if op.kind == "grant" {
			g.live = append(g.live, r.ID)
		}
	case *pb.LeaseRevokeResponse:
		g.live = slices.DeleteFunc(g.live, func(l int64) bool { return l == op.lease })
		g.revoked = append(g.revoked, op.lease)
	}
}

// lease picks a live lease most of the time, else one revoked or never granted.
func (g *leaseGen) lease(pLive float64) int64 {
	switch {
	case len(g.live) > 0 && g.chance(pLive):
		return pick(g.opGen, g.live)
	case len(g.revoked) > 0 && g.chance(0.5):
		return pick(g.opGen, g.revoked)
	default:
		return 1000 + g.rng.Int64N(5)
	}
}

func (g *leaseGen) grantOp() leaseOp {
	var id int64
	if g.chance(0.6) {
		id = 1 + g.rng.Int64N(leaseIDRange)
	}
	ttl := minLongTTL + g.rng.Int64N(3000)
	kind := "grant"
	switch p := g.rng.Float64(); {
	case p < 0.06:
		ttl = 9_000_000_000 + g.rng.Int64N(2) // at and past etcd's MaxLeaseTTL
	case p < 0.14:
		// Below the minimum (1s with the test's 100ms election timeout): raised to it.
		// Such a lease would expire during the run, at slightly different moments
		// on the two sides, so the same operation revokes it at once.
		ttl = g.rng.Int64N(3) - 1
		kind = "grant-short"
	}
	return leaseOp{kind: kind, desc: fmt.Sprintf("%s id=%d ttl=%d", kind, id, ttl), lease: id,
		send: func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error) {
			lc := clientv3.RetryLeaseClient(cli)
			resp, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: ids.side(id), TTL: ttl})
			if err != nil || kind != "grant-short" {
				return resp, err
			}
			if _, err := lc.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: resp.ID}); err != nil {
				return nil, fmt.Errorf("revoking the short lease just granted: %w", err)
			}
			return resp, nil
		}}
}

func (g *leaseGen) revokeOp() leaseOp {
	id := g.lease(0.8)
	return leaseOp{kind: "revoke", desc: fmt.Sprintf("revoke %d", id), lease: id,
		send: func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error) {
			return clientv3.RetryLeaseClient(cli).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: ids.side(id)})
		}}
}

// putWithLease draws a put with a lease option: a lease, or ignore_lease.
func (g *leaseGen) putWithLease(key string) (func(ids *leaseIDs) clientv3.Op, string) {
	value := pick(g.opGen, diffValues)
	lease := g.lease(0.85)
	prevKV, ignoreLease := g.chance(0.3), g.chance(0.05)
	desc := fmt.Sprintf("put %q=%q lease=%d", key, value, lease)
	if prevKV {
		desc += " prev_kv"
	}
	if ignoreLease {
		desc = fmt.Sprintf("put %q=%q ignore_lease", key, value)
	}
	return func(ids *leaseIDs) clientv3.Op {
		var opts []clientv3.OpOption
		if prevKV {
			opts = append(opts, clientv3.WithPrevKV())
		}
		if ignoreLease {
			opts = append(opts, clientv3.WithIgnoreLease())
		} else {
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(ids.side(lease))))
		}
		return clientv3.OpPut(key, value, opts...)
	}, desc
}

func (g *leaseGen) putWithLeaseOp() leaseOp {
	op, desc := g.putWithLease(pick(g.opGen, diffKeys))
	return leaseOp{kind: "put-lease", desc: desc,
		send: func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error) {
			resp, err := cli.Do(ctx, op(ids))
			if err != nil {
				return nil, err
			}
			return (*pb.PutResponse)(resp.Put()), nil
		}}
}

// leaseTxnOp is a txn that compares keys' leases and puts with leases in both
// branches, on distinct keys.
func (g *leaseGen) leaseTxnOp() leaseOp {
	key := pick(g.opGen, diffKeys)
	cmpLease := g.lease(0.7)
	// Equality only: an id each server picks is arbitrary, so their order differs.
	result := pick(g.opGen, []string{"=", "!="})
	var thenOps, elseOps []func(*leaseIDs) clientv3.Op
	var thenDesc, elseDesc []string
	used := map[string]bool{}
	for _, branch := range []struct {
		ops  *[]func(*leaseIDs) clientv3.Op
		desc *[]string
	}{{&thenOps, &thenDesc}, {&elseOps, &elseDesc}} {
		clear(used)
		for range 1 + g.rng.IntN(3) {
			k := g.unusedKey(used)
			if k == "" {
				break
			}
			op, d := g.putWithLease(k)
			*branch.ops = append(*branch.ops, op)
			*branch.desc = append(*branch.desc, d)
		}
	}
	desc := fmt.Sprintf("txn{if [lease(%q) %s %d] then [%s] else [%s]}", key, result, cmpLease,
		strings.Join(thenDesc, "; "), strings.Join(elseDesc, "; "))
	return leaseOp{kind: "txn-lease", desc: desc,
		send: func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error) {
			build := func(fs []func(*leaseIDs) clientv3.Op) []clientv3.Op {
				var ops []clientv3.Op
				for _, f := range fs {
					ops = append(ops, f(ids))
				}
				return ops
			}
			cmp := clientv3.Compare(clientv3.LeaseValue(key), result, clientv3.LeaseID(ids.side(cmpLease)))
			resp, err := cli.Txn(ctx).If(cmp).Then(build(thenOps)...).Else(build(elseOps)...).Commit()
			if err != nil {
				return nil, err
			}
			return (*pb.TxnResponse)(resp), nil
		}}
}

func (g *leaseGen) timeToLiveOp() leaseOp {
	id := g.lease(0.85)
	keys := g.chance(0.6)
	return leaseOp{kind: "timetolive", desc: fmt.Sprintf("timetolive %d keys=%v", id, keys),
		send: func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error) {
			return clientv3.RetryLeaseClient(cli).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: ids.side(id), Keys: keys})
		}}
}

// keepAliveOp sends one keep-alive on a new stream, as clientv3's KeepAliveOnce does.
func (g *leaseGen) keepAliveOp() leaseOp {
	id := g.lease(0.85)
	return leaseOp{kind: "keepalive", desc: fmt.Sprintf("keepalive %d", id),
		send: func(ctx context.Context, cli *clientv3.Client, ids *leaseIDs) (proto.Message, error) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			// Wait for the connection, which a restart of the member breaks: clientv3
			// retries its own calls, and this one bypasses it.
			stream, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx, grpc.WaitForReady(true))
			if err != nil {
				return nil, err
			}
			if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: ids.side(id)}); err != nil {
				return nil, err
			}
			return stream.Recv()
		}}
}

func leaseHeaderOf(m proto.Message) *pb.ResponseHeader {
	switch r := m.(type) {
	case *pb.LeaseGrantResponse:
		return r.Header
	case *pb.LeaseRevokeResponse:
		return r.Header
	case *pb.LeaseTimeToLiveResponse:
		return r.Header
	case *pb.LeaseLeasesResponse:
		return r.Header
	case *pb.LeaseKeepAliveResponse:
		return r.Header
	}
	return headerOf(m)
}
