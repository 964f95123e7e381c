//go:build unix

package server

import (
	"context"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// BenchmarkPut is the write path as bench/ drives put-100c: three members on the real
// disk (fsync on), 100 clients on 10 connections to the leader, puts of 256-byte
// values cycling through 1,000 keys. As for the read benchmarks, cpu-ns/op (the
// process's CPU per request, server and client together) is the figure to compare.
func BenchmarkPut(b *testing.B) {
	members := startTestCluster(b, 3, func(c *Config) {
		c.HeartbeatInterval, c.ElectionTimeout = DefaultHeartbeatInterval, DefaultElectionTimeout
	})
	leader := waitForLeader(b, members)
	clients := benchClientsTo(b, leader)
	value := make([]byte, 256)
	var key atomic.Int64
	defer reportPeerWrites(b, members)()
	runClients(b, clients, func(ctx context.Context, client pb.KVClient) error {
		_, err := client.Put(ctx, &pb.PutRequest{Key: benchKey(int(key.Add(1) % benchKeys)), Value: value})
		return err
	})
}
