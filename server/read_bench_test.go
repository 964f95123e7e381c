//go:build unix

package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The read path as bench/ drives it (get-lin-100c, get-ser-100c): a three-member
// cluster with the default heartbeat, 1,000 keys of 256-byte values, and 100 clients
// sharing 10 connections to the leader, each with its own deadline per request. The
// clients run in this process, so ns/op is the cost of a request to server and client
// together, which is what bounds throughput on a small machine. The machine is often
// shared, so the process's CPU time per request (cpu-ns/op) is the figure to compare;
// ns/op moves with whatever else runs.

func BenchmarkRangeSerializable(b *testing.B) { benchmarkRange(b, true) }

func BenchmarkRangeLinearizable(b *testing.B) { benchmarkRange(b, false) }

const (
	benchKeys        = 1000
	benchClients     = 100
	benchConnections = 10
)

func benchmarkRange(b *testing.B, serializable bool) {
	members := startTestCluster(b, 3, func(c *Config) {
		c.HeartbeatInterval, c.ElectionTimeout = DefaultHeartbeatInterval, DefaultElectionTimeout
	})
	leader := waitForLeader(b, members)
	value := make([]byte, 256)
	for i := range benchKeys {
		retry(b, func(ctx context.Context) error {
			_, err := leader.client.Put(ctx, &pb.PutRequest{Key: benchKey(i), Value: value})
			return err
		})
	}
	clients := benchClientsTo(b, leader)
	roundsBefore := leader.srv.readRounds.Load()
	defer reportPeerWrites(b, members)()
	runClients(b, clients, func(ctx context.Context, client pb.KVClient) error {
		resp, err := client.Range(ctx, &pb.RangeRequest{Key: benchKey(rand.IntN(benchKeys)), Serializable: serializable})
		if err == nil && len(resp.Kvs) != 1 {
			err = fmt.Errorf("got %d keys, want 1", len(resp.Kvs))
		}
		return err
	})
	if !serializable {
		b.ReportMetric(float64(leader.srv.readRounds.Load()-roundsBefore)/float64(b.N), "rounds/op")
	}
}

// runClients runs benchClients concurrent clients over the connections, each
// calling op with a 10s deadline until b.N calls are done, and reports the process's
// CPU per call (cpu-ns/op).
func runClients(b *testing.B, clients []pb.KVClient, op func(context.Context, pb.KVClient) error) {
	var next atomic.Int64
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	cpuBefore := processCPU(b)
	b.RunParallel(func(p *testing.PB) {
		client := clients[next.Add(1)%int64(len(clients))]
		for p.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := op(ctx, client)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64((processCPU(b)-cpuBefore).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// benchClientsTo opens benchConnections client connections to m, closed at cleanup.
func benchClientsTo(b *testing.B, m *testMember) []pb.KVClient {
	clients := make([]pb.KVClient, benchConnections)
	for i := range clients {
		conn, err := grpc.NewClient(m.cfg.ListenClientURLs[0][len("http://"):],
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		clients[i] = pb.NewKVClient(conn)
	}
	return clients
}

// reportPeerWrites counts the peer messages the members send and the writes they
// take from when it is called until the function it returns is, and reports both per
// request: on a small machine each write wakes another process, which costs more CPU
// than the message itself.
func reportPeerWrites(b *testing.B, members []*testMember) func() {
	count := func() (msgs, writes uint64) {
		for _, m := range members {
			for _, p := range m.srv.transport.Stats().Peers {
				msgs += p.Sent
				writes += p.Flushes
			}
		}
		return msgs, writes
	}
	msgs0, writes0 := count()
	return func() {
		msgs, writes := count()
		b.ReportMetric(float64(msgs-msgs0)/float64(b.N), "peer-msgs/op")
		b.ReportMetric(float64(writes-writes0)/float64(b.N), "peer-writes/op")
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchKey(i int) []byte { return fmt.Appendf(nil, "%08x", i) }

// waitForLeader returns the member that leads once one does.
func waitForLeader(t testing.TB, members []*testMember) *testMember {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range members {
			if _, isLeader := m.srv.node.State(); isLeader {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader after 10s")
	return nil
}
