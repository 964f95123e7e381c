package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcMetrics counts the client API's calls under the names, labels and types of
// go-grpc-prometheus, which etcd uses: grpc_server_started_total,
// grpc_server_handled_total (with grpc_code), grpc_server_msg_received_total,
// grpc_server_msg_sent_total and, with --metrics extensive,
// grpc_server_handling_seconds.
//
// It does what go-grpc-middleware's providers/prometheus does, without its cost per
// call: that interceptor builds a reporter and its label slices and looks each
// counter up by its label values (hashing them, under a read lock) on every call.
// Measured with BenchmarkGRPCMetricsInterceptor's no-op handler (and the same loop
// over providers/prometheus v1.1.1's interceptor, when this was written): the
// library's takes 1.0 µs and 2 allocations per unary call, 1.1-1.6 µs with the
// handling-time histogram; this one 40 ns and none, 200 ns with the histogram (two
// clock reads). It resolves every counter of every method once, when the services
// are registered, and then does one map read and three atomic adds per call. A
// serializable Range costs about 40-50 µs of CPU in all (BenchmarkRangeSerializable,
// client included), so the library would add 2% to the fastest request and a lock
// and allocations to every request's path.
type grpcMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec // nil unless extensive

	// methods holds each method's counters by full method name ("/etcdserverpb.KV/Range").
	// It is filled by registerMethods before the server serves, and only read after.
	methods map[string]*grpcMethodMetrics
}

// grpcMethodMetrics are one method's counters, resolved from the vectors once.
type grpcMethodMetrics struct {
	started, received, sent prometheus.Counter
	handled                 [numGRPCCodes]prometheus.Counter
	handling                prometheus.Observer // nil unless extensive
}

// numGRPCCodes is the number of gRPC status codes, OK (0) to Unauthenticated (16).
const numGRPCCodes = int(codes.Unauthenticated) + 1

func newGRPCMetrics(extensive bool) *grpcMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	m := &grpcMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total", Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total", Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels, "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total", Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total", Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		methods: map[string]*grpcMethodMetrics{},
	}
	if extensive {
		m.handling = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets,
		}, labels)
	}
	return m
}

// registerMethods resolves the counters of every method g serves, so that each
// series exists (at 0) from the start, as go-grpc-prometheus's InitializeMetrics
// makes them. Call it after the services are registered and before g serves.
func (m *grpcMetrics) registerMethods(g *grpc.Server) {
	for service, info := range g.GetServiceInfo() {
		for _, method := range info.Methods {
			typ := grpcType(method.IsClientStream, method.IsServerStream)
			mm := &grpcMethodMetrics{
				started:  m.started.WithLabelValues(typ, service, method.Name),
				received: m.received.WithLabelValues(typ, service, method.Name),
				sent:     m.sent.WithLabelValues(typ, service, method.Name),
			}
			for code := range numGRPCCodes {
				mm.handled[code] = m.handled.WithLabelValues(typ, service, method.Name, codes.Code(code).String())
			}
			if m.handling != nil {
				mm.handling = m.handling.WithLabelValues(typ, service, method.Name)
			}
			m.methods["/"+service+"/"+method.Name] = mm
		}
	}
}

func grpcType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}

func (m *grpcMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.started.Describe(ch)
	m.handled.Describe(ch)
	m.received.Describe(ch)
	m.sent.Describe(ch)
	if m.handling != nil {
		m.handling.Describe(ch)
	}
}

func (m *grpcMetrics) Collect(ch chan<- prometheus.Metric) {
	m.started.Collect(ch)
	m.handled.Collect(ch)
	m.received.Collect(ch)
	m.sent.Collect(ch)
	if m.handling != nil {
		m.handling.Collect(ch)
	}
}

// handledCode returns the counter for the status err carries.
func (mm *grpcMethodMetrics) handledCode(err error) prometheus.Counter {
	code := status.Code(err)
	if int(code) >= numGRPCCodes {
		code = codes.Unknown
	}
	return mm.handled[code]
}

// unaryInterceptor counts a unary call. Calls of methods no service registered
// (the unserved ones, answered by the unknown-service handler) are not counted.
func (m *grpcMetrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	mm := m.methods[info.FullMethod]
	if mm == nil {
		return handler(ctx, req)
	}
	mm.started.Inc()
	mm.received.Inc()
	var start time.Time
	if mm.handling != nil {
		start = time.Now()
	}
	resp, err := handler(ctx, req)
	if err == nil {
		mm.sent.Inc()
	}
	mm.handledCode(err).Inc()
	if mm.handling != nil {
		mm.handling.Observe(time.Since(start).Seconds())
	}
	return resp, err
}

// streamInterceptor counts a streaming call and each message of it.
func (m *grpcMetrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	mm := m.methods[info.FullMethod]
	if mm == nil {
		return handler(srv, ss)
	}
	mm.started.Inc()
	var start time.Time
	if mm.handling != nil {
		start = time.Now()
	}
	err := handler(srv, &countingStream{ServerStream: ss, mm: mm})
	mm.handledCode(err).Inc()
	if mm.handling != nil {
		mm.handling.Observe(time.Since(start).Seconds())
	}
	return err
}

// countingStream counts the messages of a stream.
type countingStream struct {
	grpc.ServerStream
	mm *grpcMethodMetrics
}

func (s *countingStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.mm.sent.Inc()
	}
	return err
}

func (s *countingStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.mm.received.Inc()
	}
	return err
}
