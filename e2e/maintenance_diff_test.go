package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc/status"
)

// The maintenance calls answer raftkv's clients as etcd's do: the same errors for a
// MoveLeader to a member that does not exist and for HashKV of a compacted or a
// future revision; HashKV's compact and hash revisions; MoveLeader to the leader
// itself, Defragment and Hash succeed; no alarm on a new cluster. Single members, so
// that both answer from the leader.
func TestMaintenanceAnswersAsEtcd(t *testing.T) {
	t.Parallel()
	etcdEP := startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })
	raftkv := startRaftkv(t, 1, 0)
	script := func(cli *clientv3.Client, ep string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var out []string
		say := func(what string, err error) {
			if err != nil {
				st := status.Convert(err)
				out = append(out, fmt.Sprintf("%s: %v %s", what, st.Code(), st.Message()))
				return
			}
			out = append(out, what+": ok")
		}
		var rev int64
		for i := range 10 {
			resp, err := cli.Put(ctx, fmt.Sprintf("k%d", i%3), "v")
			if err != nil {
				t.Fatal(err)
			}
			rev = resp.Header.Revision
		}
		_, err := cli.Compact(ctx, rev-3)
		say("compact", err)
		_, err = cli.HashKV(ctx, ep, rev-5)
		say("hashkv compacted", err)
		_, err = cli.HashKV(ctx, ep, rev+5)
		say("hashkv future", err)
		h, err := cli.HashKV(ctx, ep, rev)
		say("hashkv", err)
		if err == nil {
			out = append(out, fmt.Sprintf("hashkv revisions: compact %d hash %d header %d", h.CompactRevision-rev, h.HashRevision-rev,
				h.Header.Revision-rev))
		}
		_, err = cli.HashKV(ctx, ep, 0)
		say("hashkv current", err)
		_, err = pb.NewMaintenanceClient(cli.ActiveConnection()).Hash(ctx, &pb.HashRequest{})
		say("hash", err)
		_, err = cli.Defragment(ctx, ep)
		say("defragment", err)
		st, err := cli.Status(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cli.MoveLeader(ctx, 0xbad)
		say("move-leader unknown", err)
		_, err = cli.MoveLeader(ctx, st.Header.MemberId)
		say("move-leader self", err)
		alarms, err := cli.AlarmList(ctx)
		say("alarm list", err)
		if err == nil {
			out = append(out, fmt.Sprintf("alarms: %d", len(alarms.Alarms)))
		}
		return strings.Join(out, "\n")
	}
	want := script(newClient(t, etcdEP), etcdEP)
	ep := hostPort(raftkv[0].clientURL)
	got := script(newClient(t, ep), ep)
	if got != want {
		t.Fatalf("raftkv answered\n%s\n\netcd answered\n%s", got, want)
	}
	t.Logf("both answered:\n%s", got)
}
