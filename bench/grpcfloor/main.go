// Command grpcfloor is the bench harness's gRPC floor: a member that answers the KV
// API's Put and Range, and Maintenance.Status, from memory on grpc-go, with no Raft, no
// store and no disk. The harness runs three of them as a third system beside etcd and
// raftkv (`--systems etcd,raftkv,grpc-floor`), under the same load: its CPU per
// request is what gRPC alone costs a server there (bench/README.md, "The gRPC
// floor"). It is a small program of its own, not the bench binary re-executed, so that
// nothing of the etcd server the bench binary holds runs or is scanned in it.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"

	"raftkv/bench/internal/pprofserve"
)

func main() {
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(heapBytes)
	os.Exit(run(os.Args[1:]))
}

// heapBytes is the Go heap the floor grows to before it collects garbage: the
// collector runs only at this soft limit (GOGC off), so the floor spends next to
// nothing on it. With GOGC=100 its live heap of a few MiB made it collect dozens of
// times a second, which left it behind raftkv (whose engine caches make a larger live
// heap and so rarer collections): 32,338-34,877 serializable gets a second against
// raftkv's 38,116 in one run. A floor must cost no more per request than any server.
const heapBytes = 512 << 20

// floorKV answers every Put with a header and every Range with the key asked for,
// holding a value of the workloads' size: what a server must send back at the least.
type floorKV struct {
	pb.UnimplementedKVServer
	header func() *pb.ResponseHeader
	value  []byte
}

func (f *floorKV) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{
		Header: f.header(),
		Kvs:    []*mvccpb.KeyValue{{Key: r.Key, Value: f.value, CreateRevision: 2, ModRevision: 2, Version: 1}},
		Count:  1,
	}, nil
}

func (f *floorKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	return &pb.PutResponse{Header: f.header()}, nil
}

// floorMaintenance answers Status, which the harness asks to find the leader: every
// floor member names the first member of --initial-cluster.
type floorMaintenance struct {
	pb.UnimplementedMaintenanceServer
	header func() *pb.ResponseHeader
	leader uint64
}

func (f *floorMaintenance) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{Header: f.header(), Version: "grpc-floor", Leader: f.leader}, nil
}

// newServer returns the gRPC server of the member with id (1 for the first member of
// --initial-cluster), answering Ranges with values of valueBytes, not yet serving.
func newServer(id uint64, valueBytes int) *grpc.Server {
	header := func() *pb.ResponseHeader {
		return &pb.ResponseHeader{ClusterId: 1, MemberId: id, Revision: 2, RaftTerm: 1}
	}
	// raftkv's client gRPC settings (server/grpc.go): reused stream workers and fixed
	// flow-control windows, each of which lowers the CPU a request costs; the floor
	// must not pay more per request than raftkv's own gRPC layer does.
	s := grpc.NewServer(
		grpc.NumStreamWorkers(128),
		grpc.InitialWindowSize(1<<20),
		grpc.InitialConnWindowSize(16<<20),
	)
	pb.RegisterKVServer(s, &floorKV{header: header, value: []byte(strings.Repeat("v", valueBytes))})
	pb.RegisterMaintenanceServer(s, &floorMaintenance{header: header, leader: 1})
	return s
}

// memberID is name's position in initialCluster (name=URL,...), from 1.
func memberID(name, initialCluster string) (uint64, error) {
	for i, part := range strings.Split(initialCluster, ",") {
		if n, _, _ := strings.Cut(part, "="); n == name {
			return uint64(i + 1), nil
		}
	}
	return 0, fmt.Errorf("--name %q is not in --initial-cluster %q", name, initialCluster)
}

// run serves one floor member until SIGTERM or SIGINT. It takes the flags the harness
// gives every member and uses --name, --initial-cluster, --listen-client-urls and
// --pprof-addr; the others name what a real member keeps on disk or tells its peers,
// which the floor has none of.
func run(args []string) int {
	fs := flag.NewFlagSet("grpcfloor", flag.ContinueOnError)
	name := fs.String("name", "", "member name, as in --initial-cluster")
	clientURL := fs.String("listen-client-urls", "", "client URL, http://host:port")
	initialCluster := fs.String("initial-cluster", "", "name=peerURL,...: the member's id is its name's position in it")
	pprofAddr := fs.String("pprof-addr", "", "host:port to serve /debug/pprof on; empty for none")
	valueBytes := fs.Int("value-bytes", 256, "the size of the value every Range answers with")
	for _, ignored := range []string{"data-dir", "advertise-client-urls", "listen-peer-urls", "initial-advertise-peer-urls",
		"initial-cluster-state", "initial-cluster-token"} {
		fs.String(ignored, "", "ignored: the floor keeps no data and has no peers")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	id, err := memberID(*name, *initialCluster)
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpcfloor: %v\n", err)
		return 2
	}
	if *valueBytes < 0 {
		fmt.Fprintf(os.Stderr, "grpcfloor: --value-bytes %d: give a size of 0 or more\n", *valueBytes)
		return 2
	}
	u, err := url.Parse(*clientURL)
	if err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "grpcfloor: --listen-client-urls %q is not a URL with a host:port\n", *clientURL)
		return 2
	}
	if err := pprofserve.Serve(*pprofAddr); err != nil {
		fmt.Fprintf(os.Stderr, "grpcfloor: %v\n", err)
		return 1
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpcfloor: --listen-client-urls %s: %v\n", *clientURL, err)
		return 1
	}
	s := newServer(id, *valueBytes)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		s.Stop()
	}()
	if err := s.Serve(l); err != nil {
		fmt.Fprintf(os.Stderr, "grpcfloor: %v\n", err)
		return 1
	}
	return 0
}
