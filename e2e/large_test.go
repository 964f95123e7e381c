package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// TestLargeRequests puts values around the request size limits (--max-request-bytes,
// default 1.5 MiB, and gRPC's limit 512 KiB above it) into an embedded etcd and into
// raftkv, in a txn and plain, and requires the same answers.
func TestLargeRequests(t *testing.T) {
	t.Parallel()
	oracle := newClient(t, startEtcd(t))
	members := startRaftkv(t, 3, 0)
	lead, follow := leader(t, members), follower(t, members)
	// The leader proposes; a follower forwards. Both paths must answer alike.
	clients := map[string]*clientv3.Client{
		"through the leader": newClient(t, hostPort(lead.clientURL)),
		"through a follower": newClient(t, hostPort(follow.clientURL)),
	}
	const limit = 1536 * 1024
	check := func(t *testing.T, sizes []int) {
		for _, size := range sizes {
			value := strings.Repeat("x", size)
			for path, subject := range clients {
				for _, txn := range []bool{false, true} {
					name := fmt.Sprintf("put of %d bytes %s (txn %v)", size, path, txn)
					send := func(cli *clientv3.Client) (proto.Message, error) {
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						defer cancel()
						if txn {
							resp, err := cli.Txn(ctx).Then(clientv3.OpPut("large", value), clientv3.OpGet("large", clientv3.WithCountOnly())).Commit()
							if err != nil {
								return nil, err
							}
							return (*pb.TxnResponse)(resp), nil
						}
						resp, err := cli.Put(ctx, "large", value)
						if err != nil {
							return nil, err
						}
						return (*pb.PutResponse)(resp), nil
					}
					want, wantErr := send(oracle)
					got, gotErr := send(subject)
					if errString(wantErr) != errString(gotErr) {
						t.Errorf("%s: etcd says %s, raftkv says %s", name, orNone(errString(wantErr)), orNone(errString(gotErr)))
						continue
					}
					if wantErr == nil {
						normalizeHeaders(want)
						normalizeHeaders(got)
						if !proto.Equal(want, got) {
							t.Errorf("%s: responses differ\netcd:\n%s\nraftkv:\n%s", name, format(want), format(got))
						}
					}
				}
			}
		}
	}
	t.Run("beyond the limits", func(t *testing.T) {
		check(t, []int{1000 * 1000, limit + 1024, 2 * 1024 * 1024, 3 * 1024 * 1024})
	})
	t.Run("between 1 MiB and the limit", func(t *testing.T) {
		check(t, []int{1024*1024 - 16, 1024 * 1024, 1100 * 1024, limit - 1024})
	})
}
