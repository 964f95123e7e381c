//go:build unix

package server

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

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
	var next, key atomic.Int64
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	cpuBefore := processCPU(b)
	b.RunParallel(func(p *testing.PB) {
		client := clients[next.Add(1)%int64(len(clients))]
		for p.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := client.Put(ctx, &pb.PutRequest{Key: benchKey(int(key.Add(1) % benchKeys)), Value: value})
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((processCPU(b)-cpuBefore).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
