package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"raftkv/internal/testport"
)

// A member joins a cluster whose peers and clients speak mutual TLS: MemberAdd
// through each member in turn (a follower forwards it to the leader's https:// client
// URL with its own certificate), the new member asks for the cluster over an https://
// peer URL, catches up and takes writes; then it is removed and exits with status 3.
func TestMemberJoinOverMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newClusterPKI(t, "cluster-ca")
	clientTLS := pki.clientTLS(t, "alice")
	c := startHTTPSProcCluster(t, 3, clientTLS, func(i int, name string) []string {
		return pki.mutualTLSArgs(t, name)
	}, 0, 1, 2)
	lead := c.leader(10 * time.Second)
	var via *procMember
	for _, m := range c.members {
		if m != lead {
			via = m
			break
		}
	}
	ports := testport.Free(t, 2)
	joiner := c.newJoiner("m4", "", pki.mutualTLSArgs(t, "m4")...)
	joiner.clientURL = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	joiner.peerURL = fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	joiner.args = withoutFlags(joiner.args, "--listen-client-urls", "--advertise-client-urls", "--listen-peer-urls", "--initial-advertise-peer-urls")
	joiner.args = append(joiner.args, "--listen-client-urls", joiner.clientURL, "--advertise-client-urls", joiner.clientURL,
		"--listen-peer-urls", joiner.peerURL, "--initial-advertise-peer-urls", joiner.peerURL)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{joiner.clientURL}, DialTimeout: 2 * time.Second, TLS: clientTLS, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	joiner.client = cli

	var resp *clientv3.MemberAddResponse
	_, err = untilHealthyEnough(func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var err error
		resp, err = via.client.MemberAdd(ctx, []string{joiner.peerURL})
		return "", err
	})
	if err != nil {
		t.Fatalf("MemberAdd through the follower %s: %v", via.name, err)
	}
	joiner.args = append(joiner.args, "--initial-cluster", initialClusterOf(resp, "m4"))
	c.start(joiner)
	c.waitWritable([]*procMember{joiner}, 30*time.Second)
	waitListed(t, lead.client, "m1", "m2", "m3", "m4")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	_, err = via.client.MemberRemove(ctx, resp.Member.ID)
	cancel()
	if err != nil {
		t.Fatalf("MemberRemove of the joined member: %v", err)
	}
	c.waitRemovedExit(joiner, 15*time.Second)
	waitListed(t, lead.client, "m1", "m2", "m3")
}
