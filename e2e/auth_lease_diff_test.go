package e2e

import (
	"context"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The lease steps of TestAuthDifferential. Leases are granted with ids the test
// picks (each server would pick its own otherwise), through the client's
// connection so that its token goes along.

// leaseGrantID grants lease id with a TTL of 600 s (above either server's minimum).
func leaseGrantID(id int64) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := pb.NewLeaseClient(c.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 600})
		if err != nil {
			return "", rpctypes.Error(err)
		}
		return fmt.Sprintf("id=%d ttl=%d", r.ID, r.TTL), nil
	}
}

func leaseRevoke(id int64) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := c.Revoke(ctx, clientv3.LeaseID(id))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("rev=%d", r.Header.Revision), nil
	}
}

func leaseKeepAliveOnce(id int64) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := c.KeepAliveOnce(ctx, clientv3.LeaseID(id))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("ttl=%d", r.TTL), nil
	}
}

func leaseTimeToLive(id int64, opts ...clientv3.LeaseOption) func(context.Context, *clientv3.Client) (string, error) {
	return func(ctx context.Context, c *clientv3.Client) (string, error) {
		r, err := c.TimeToLive(ctx, clientv3.LeaseID(id), opts...)
		if err != nil {
			return "", err
		}
		if r.TTL == -1 {
			return "ttl=-1", nil
		}
		// etcd lists the keys in its map's order.
		keys := make([]string, len(r.Keys))
		for i, k := range r.Keys {
			keys[i] = string(k)
		}
		slices.Sort(keys)
		return fmt.Sprintf("alive=%v granted=%d keys=%q", r.TTL > 0, r.GrantedTTL, keys), nil
	}
}

func leaseList(ctx context.Context, c *clientv3.Client) (string, error) {
	r, err := c.Leases(ctx)
	if err != nil {
		return "", err
	}
	var ids []int64
	for _, l := range r.Leases {
		ids = append(ids, int64(l.ID))
	}
	slices.Sort(ids)
	return fmt.Sprintf("leases=%v", ids), nil
}

// authLeaseSeeds are root's leases for the lease steps: 1001 holds app/l1 (alice may
// write and read it), 1002 app/l2 and other-l (alice may not touch the second), 1003
// nothing, 1004 log/l4 (alice may write it, not read it), 1005 m-l5 (bob may read it,
// alice nothing).
func authLeaseSeeds() []authStep {
	root := func(what string, do func(context.Context, *clientv3.Client) (string, error)) authStep {
		return authStep{user: "root", password: rootPW, what: "root: " + what, do: do}
	}
	var steps []authStep
	for _, id := range []int64{1001, 1002, 1003, 1004, 1005} {
		steps = append(steps, root(fmt.Sprintf("grant lease %d", id), leaseGrantID(id)))
	}
	for _, kv := range []struct {
		key string
		id  int64
	}{{"app/l1", 1001}, {"app/l2", 1002}, {"other-l", 1002}, {"log/l4", 1004}, {"m-l5", 1005}} {
		steps = append(steps, root(fmt.Sprintf("put %s with lease %d", kv.key, kv.id),
			authPut(kv.key, "l", clientv3.WithLease(clientv3.LeaseID(kv.id)))))
	}
	return steps
}

// authLeaseSteps are one user's lease requests (own is the id of the lease the user
// grants itself): every Lease call and a put naming a lease, allowed and denied.
// Root does not revoke root's leases here, so that the users after it find them.
func authLeaseSteps(user, pw, who string, own int64) []authStep {
	step := func(what string, do func(context.Context, *clientv3.Client) (string, error)) authStep {
		return authStep{user: user, password: pw, what: who + ": " + what, do: do}
	}
	withLease := func(id int64) clientv3.OpOption { return clientv3.WithLease(clientv3.LeaseID(id)) }
	steps := []authStep{
		step("grant its own lease", leaseGrantID(own)),
		step("put app/lease-"+who+" with its lease", authPut("app/lease-"+who, who, withLease(own))),
		step("put app/lx with lease 1001", authPut("app/lx", who, withLease(1001))),
		step("put app/ly with lease 1002", authPut("app/ly", who, withLease(1002))),
		step("put app/lz with lease 1003", authPut("app/lz", who, withLease(1003))),
		step("put app/lq with a lease that does not exist", authPut("app/lq", who, withLease(9999))),
		step("txn putting app/lt with lease 1002 in its else branch", authTxn(nil,
			[]clientv3.Op{clientv3.OpGet("app/l1")}, []clientv3.Op{clientv3.OpPut("app/lt", who, withLease(1002))})),
		step("keep-alive 1001", leaseKeepAliveOnce(1001)),
		step("keep-alive 1004", leaseKeepAliveOnce(1004)),
		step("keep-alive 1005", leaseKeepAliveOnce(1005)),
		step("keep-alive a lease that does not exist", leaseKeepAliveOnce(9999)),
		step("time-to-live 1001", leaseTimeToLive(1001)),
		step("time-to-live 1001 with keys", leaseTimeToLive(1001, clientv3.WithAttachedKeys())),
		step("time-to-live 1002 with keys", leaseTimeToLive(1002, clientv3.WithAttachedKeys())),
		step("time-to-live 1004 with keys", leaseTimeToLive(1004, clientv3.WithAttachedKeys())),
		step("time-to-live 1005 with keys", leaseTimeToLive(1005, clientv3.WithAttachedKeys())),
		step("time-to-live of a lease that does not exist, with keys", leaseTimeToLive(9999, clientv3.WithAttachedKeys())),
		step("list leases", leaseList),
	}
	if user != "root" {
		steps = append(steps, step("revoke 1002", leaseRevoke(1002)), step("revoke 1005", leaseRevoke(1005)))
	}
	return append(steps,
		step("revoke its own lease", leaseRevoke(own)),
		step("revoke a lease that does not exist", leaseRevoke(9999)),
	)
}

// authLeaseStepsAfter follow the users' lease steps: root revokes what alice may not
// touch, alice revokes the lease she may only write, and then may list the leases.
func authLeaseStepsAfter() []authStep {
	as := func(user, pw, what string, do func(context.Context, *clientv3.Client) (string, error)) authStep {
		return authStep{user: user, password: pw, what: what, do: do}
	}
	return []authStep{
		as("alice", alicePW, "alice lists leases while 1002, 1004 and 1005 hold keys she may not read", leaseList),
		as("root", rootPW, "root revokes 1002", leaseRevoke(1002)),
		as("root", rootPW, "root revokes 1005", leaseRevoke(1005)),
		as("alice", alicePW, "alice revokes 1004 (write, not read, on log/l4)", leaseRevoke(1004)),
		as("alice", alicePW, "alice lists leases", leaseList),
		as("bob", bobPW, "bob lists leases", leaseList),
		as("root", rootPW, "root lists leases", leaseList),
	}
}

// authLeaseStepsRevoked run once app/ is revoked from alice's role: the lease whose
// keys she could write is now out of her reach.
func authLeaseStepsRevoked() []authStep {
	as := func(what string, do func(context.Context, *clientv3.Client) (string, error)) authStep {
		return authStep{user: "alice", password: alicePW, what: "alice after the revoke: " + what, do: do}
	}
	return []authStep{
		as("keep-alive 1001", leaseKeepAliveOnce(1001)),
		as("time-to-live 1001 with keys", leaseTimeToLive(1001, clientv3.WithAttachedKeys())),
		as("put app/l9 with lease 1003", authPut("app/l9", "x", clientv3.WithLease(1003))),
		as("revoke 1001", leaseRevoke(1001)),
		as("list leases", leaseList),
	}
}
