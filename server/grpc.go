package server

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// The client API's gRPC settings. Each is chosen for what it saves per request; the
// read benchmarks (bench/, get-lin-100c and get-ser-100c) spend most of the leader's
// CPU in gRPC's HTTP/2 layer, not in the store.
const (
	// grpcStreamWorkers is how many goroutines serve streams and are reused from one
	// request to the next. Without them gRPC starts a goroutine per request, whose
	// stack grows (and is copied) on every call through the handler: about a seventh
	// of the leader's CPU on serializable gets. A request arriving while every worker
	// is busy still gets a goroutine of its own, so this is a cache, not a limit; it
	// covers the common case of a hundred or so concurrent requests.
	grpcStreamWorkers = 128

	// grpcWindowBytes is the HTTP/2 flow-control window the server grants per stream
	// and per connection. Setting it turns off gRPC's bandwidth-delay estimator,
	// which pings the client on data received (once per round trip, so often on a
	// busy loopback connection) and makes the client answer each ping: frames and
	// flushes on both sides that carry no request. 1 MiB per stream and 16 MiB per
	// connection are what the estimator would grow to on a fast link anyway, and
	// requests are at most MaxRequestBytes, so a large one still streams through.
	grpcStreamWindowBytes = 1 << 20
	grpcConnWindowBytes   = 16 << 20

	// grpcKeepaliveMinTime is the shortest interval between a client's keepalive
	// pings that the server tolerates, etcd's --grpc-keepalive-min-time default. gRPC's
	// own default, 5 minutes, answers a client that pings more often (clientv3 with
	// DialKeepAliveTime, Kubernetes every 30 s) with GOAWAY after its third ping,
	// dropping every stream on the connection, watches included.
	grpcKeepaliveMinTime = 5 * time.Second
	// grpcKeepaliveInterval and grpcKeepaliveTimeout are etcd's defaults for the
	// server's own pings (--grpc-keepalive-interval, --grpc-keepalive-timeout): a
	// connection silent for 2 hours is pinged, and closed if no answer comes in 20 s.
	grpcKeepaliveInterval = 2 * time.Hour
	grpcKeepaliveTimeout  = 20 * time.Second
)

// newGRPCServer returns the client API's gRPC server, not yet serving; unknown answers
// the calls of methods no registered service serves, creds completes the TLS of the
// listeners' connections, and extra adds options (the metrics' interceptors).
func newGRPCServer(cfg Config, unknown grpc.StreamHandler, creds credentials.TransportCredentials, extra ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append([]grpc.ServerOption{
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(1<<31 - 1),
		grpc.NumStreamWorkers(grpcStreamWorkers),
		grpc.InitialWindowSize(grpcStreamWindowBytes),
		grpc.InitialConnWindowSize(grpcConnWindowBytes),
		grpc.UnknownServiceHandler(unknown),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcKeepaliveMinTime}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: grpcKeepaliveInterval, Timeout: grpcKeepaliveTimeout}),
	}, extra...)...)
}
