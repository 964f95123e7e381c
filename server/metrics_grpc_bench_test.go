package server

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// BenchmarkGRPCMetricsInterceptor is the cost the metrics add to each unary call of
// the client API, with a handler that does nothing (see grpcMetrics).
func BenchmarkGRPCMetricsInterceptor(b *testing.B) {
	for _, extensive := range []bool{false, true} {
		name := MetricsBasic
		if extensive {
			name = MetricsExtensive
		}
		b.Run(name, func(b *testing.B) {
			m := newGRPCMetrics(extensive)
			g := grpc.NewServer()
			pb.RegisterKVServer(g, pb.UnimplementedKVServer{})
			m.registerMethods(g)
			info := &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.KV/Range"}
			handler := func(ctx context.Context, req any) (any, error) { return req, nil }
			ctx, req := context.Background(), &pb.RangeRequest{}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = m.unaryInterceptor(ctx, req, info, handler)
			}
		})
	}
}
