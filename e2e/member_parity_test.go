package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"

	"raftkv/internal/testport"
)

// The same membership operations against an embedded etcd and a raftkv member (each a
// cluster of one) give the same answers and errors: the member list's shape, a
// learner added (no name, no client URLs until it starts), promoting it before it
// caught up, a peer URL in use, a second learner, bad URLs, unknown and removed ids,
// promoting a voter, updating and removing the learner, adding a voter.
func TestMembershipParityWithEtcd(t *testing.T) {
	// Not parallel: adding a voter to a cluster of one leaves it without a quorum
	// until the answer, and under the other tests' load its leader stepped down first
	// (CI: "leader changed" where etcd answered). It runs alone, before the others.
	etcd := newClient(t, startEtcd(t))
	raftkv := newClient(t, hostPort(startRaftkv(t, 1, 0)[0].clientURL))
	ports := testport.Free(t, 4)
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", ports[i]) }

	type step struct {
		what string
		run  func(cli *clientv3.Client, learner, self uint64) (string, uint64)
	}
	steps := []step{
		{"member list", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			return describeList(cli), 0
		}},
		{"add a learner", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := cli.MemberAddAsLearner(ctx, []string{url(0)})
			if err != nil {
				return describeErr(err), 0
			}
			return fmt.Sprintf("member {%s} of %s", describeMember(resp.Member, 0, resp.Member.ID), describeMembers(resp.Members, 0, resp.Member.ID)), resp.Member.ID
		}},
		{"promote the learner before it started", func(cli *clientv3.Client, learner, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberPromote(ctx, learner); return err }), 0
		}},
		{"add a peer URL in use", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			// etcd derives a new member's id from its peer URLs and the time in
			// seconds: within the second of the first add it would answer "member
			// ID already exist" for the same URLs.
			time.Sleep(1100 * time.Millisecond)
			return call(func(ctx context.Context) error { _, err := cli.MemberAdd(ctx, []string{url(0)}); return err }), 0
		}},
		{"add a second learner", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberAddAsLearner(ctx, []string{url(1)}); return err }), 0
		}},
		{"add bad URLs", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			var out []string
			// Through the bare gRPC client: clientv3 checks URLs itself.
			raw := etcdserverpb.NewClusterClient(cli.ActiveConnection())
			for _, bad := range [][]string{{"127.0.0.1:1"}, {"ftp://127.0.0.1:1"}, {"http://127.0.0.1"}, {"http://127.0.0.1:1/path"}, {}} {
				out = append(out, call(func(ctx context.Context) error {
					_, err := raw.MemberAdd(ctx, &etcdserverpb.MemberAddRequest{PeerURLs: bad})
					return err
				}))
			}
			return strings.Join(out, "; "), 0
		}},
		{"remove an unknown id", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberRemove(ctx, 0x1234); return err }), 0
		}},
		{"update an unknown id", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberUpdate(ctx, 0x1234, []string{url(2)}); return err }), 0
		}},
		{"promote an unknown id", func(cli *clientv3.Client, _, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberPromote(ctx, 0x1234); return err }), 0
		}},
		{"promote a voter", func(cli *clientv3.Client, _, self uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberPromote(ctx, self); return err }), 0
		}},
		{"update the learner's peer URLs", func(cli *clientv3.Client, learner, self uint64) (string, uint64) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := cli.MemberUpdate(ctx, learner, []string{url(2)})
			if err != nil {
				return describeErr(err), 0
			}
			return describeMembers(resp.Members, self, learner), 0
		}},
		{"update a peer URL to one in use", func(cli *clientv3.Client, learner, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error {
				list, err := cli.MemberList(ctx)
				if err != nil {
					return err
				}
				var other string
				for _, m := range list.Members {
					if m.ID != learner {
						other = m.PeerURLs[0]
					}
				}
				_, err = cli.MemberUpdate(ctx, learner, []string{other})
				return err
			}), 0
		}},
		{"remove the learner", func(cli *clientv3.Client, learner, self uint64) (string, uint64) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := cli.MemberRemove(ctx, learner)
			if err != nil {
				return describeErr(err), 0
			}
			return describeMembers(resp.Members, self, learner), 0
		}},
		{"remove the removed learner", func(cli *clientv3.Client, learner, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberRemove(ctx, learner); return err }), 0
		}},
		{"promote the removed learner", func(cli *clientv3.Client, learner, _ uint64) (string, uint64) {
			return call(func(ctx context.Context) error { _, err := cli.MemberPromote(ctx, learner); return err }), 0
		}},
		{"add a voter to a cluster of one", func(cli *clientv3.Client, _, self uint64) (string, uint64) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := cli.MemberAdd(ctx, []string{url(3)})
			if err != nil {
				return describeErr(err), 0
			}
			return fmt.Sprintf("member {%s} of %s", describeMember(resp.Member, self, resp.Member.ID), describeMembers(resp.Members, self, resp.Member.ID)), 0
		}},
	}
	selfID := func(cli *clientv3.Client) uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.MemberList(ctx)
		if err != nil || len(resp.Members) != 1 {
			t.Fatalf("member list: %v %v", resp, err)
		}
		return resp.Members[0].ID
	}
	// etcd is ready once it has published its name and client URLs; raftkv publishes
	// them through the log just after it starts.
	if err := eventually(10*time.Second, 50*time.Millisecond, func() error {
		if got := describeList(raftkv); got != describeList(etcd) {
			return fmt.Errorf("raftkv lists %s", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("raftkv did not publish its client URLs: %v", err)
	}
	etcdSelf, raftkvSelf := selfID(etcd), selfID(raftkv)
	var etcdLearner, raftkvLearner uint64
	for _, s := range steps {
		want, el := s.run(etcd, etcdLearner, etcdSelf)
		got, rl := s.run(raftkv, raftkvLearner, raftkvSelf)
		if el != 0 {
			etcdLearner, raftkvLearner = el, rl
		}
		if got != want {
			t.Errorf("%s:\n  etcd:   %s\n  raftkv: %s", s.what, want, got)
		} else {
			t.Logf("%s: %s", s.what, got)
		}
	}
}

// call runs op with a timeout and describes its error ("ok" if none).
func call(op func(ctx context.Context) error) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return describeErr(op(ctx))
}

func describeErr(err error) string {
	if err == nil {
		return "ok"
	}
	if ee, ok := err.(rpctypes.EtcdError); ok {
		return fmt.Sprintf("%s: %s", ee.Code(), ee.Error())
	}
	st, _ := status.FromError(err)
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}

func describeList(cli *clientv3.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return describeErr(err)
	}
	return describeMembers(resp.Members, resp.Members[0].ID, 0)
}

// describeMembers describes each member by role (self, new, other) and the shape of
// its fields, in an order that does not depend on the ids.
func describeMembers(list []*etcdserverpb.Member, self, added uint64) string {
	var out []string
	for _, m := range list {
		out = append(out, "{"+describeMember(m, self, added)+"}")
	}
	sort.Strings(out)
	return fmt.Sprintf("%d members %s", len(list), strings.Join(out, " "))
}

func describeMember(m *etcdserverpb.Member, self, added uint64) string {
	role := "other"
	switch m.ID {
	case self:
		role = "self"
	case added:
		role = "added"
	}
	return fmt.Sprintf("%s id:%v name:%v peers:%d clients:%d learner:%v", role, m.ID != 0, m.Name != "", len(m.PeerURLs), len(m.ClientURLs), m.IsLearner)
}
