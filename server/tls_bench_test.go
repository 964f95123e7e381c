//go:build unix

package server

import (
	"context"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// BenchmarkPutTLS is BenchmarkPut (put-100c: three members on the real disk, 100
// clients on 10 connections to the leader, 256-byte values over 1,000 keys) with
// plaintext and with mutual TLS on the client connections and the peer streams, side
// by side: what TLS costs a write, in the process's CPU per request (cpu-ns/op, server
// and clients together) and in throughput.
func BenchmarkPutTLS(b *testing.B) {
	for _, mode := range []string{"plaintext", "mTLS"} {
		b.Run(mode, func(b *testing.B) {
			var members []*testMember
			var clients []pb.KVClient
			if mode == "plaintext" {
				members = startTestCluster(b, 3, func(c *Config) {
					c.HeartbeatInterval, c.ElectionTimeout = DefaultHeartbeatInterval, DefaultElectionTimeout
				})
				clients = benchClientsTo(b, waitForLeader(b, members))
			} else {
				pki := newTestPKI(b, "bench CA")
				members = startHTTPSCluster(b, 3, pki.clientTLS(b, "bench"), func(i int, c *Config) {
					c.HeartbeatInterval, c.ElectionTimeout = DefaultHeartbeatInterval, DefaultElectionTimeout
					c.ClientTLS, c.PeerTLS = pki.mutualTLS(b, c.Name), pki.mutualTLS(b, c.Name)
				})
				leader := waitForLeader(b, members)
				for range benchConnections {
					conn := dialTLS(b, leader.cfg.ListenClientURLs[0], pki.clientTLS(b, "bench"))
					b.Cleanup(func() { conn.Close() })
					clients = append(clients, pb.NewKVClient(conn))
				}
			}
			value := make([]byte, 256)
			var key atomic.Int64
			defer reportPeerWrites(b, members)()
			runClients(b, clients, func(ctx context.Context, client pb.KVClient) error {
				_, err := client.Put(ctx, &pb.PutRequest{Key: benchKey(int(key.Add(1) % benchKeys)), Value: value})
				return err
			})
		})
	}
}
