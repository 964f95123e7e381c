package server

import (
	"context"
	"fmt"
	"io"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The Lock and Election services are etcd's recipes (clientv3's concurrency
// package) run inside the member, as etcd runs them: on a clientv3 client whose KV,
// Lease and Watch calls go straight to this member's own service implementations,
// with no network or gRPC transport in between. localConn is that path: a
// grpc.ClientConnInterface that calls the registered handlers in process.
//
// Each call keeps the context it was made with, so the recipes act as the client
// that called Lock or Campaign: its deadline and cancellation, its metadata (an
// auth token) and its connection's peer (a TLS certificate's common name) reach
// the KV, Lease and Watch handlers as if the client had called them itself. The
// exactly-once metadata is the one thing taken out: one Lock is several writes,
// and each must not be answered as a retry of the first.
//
// A request is copied on its way in and a response on its way out (proto.Merge),
// as a transport would, so neither side sees the other's later changes; the
// Lock and Election services are not a hot path, and a copy is a few hundred
// nanoseconds next to a write's trip through Raft.

// localConn calls the handlers of registered services in process.
type localConn struct {
	unary   map[string]localUnary  // "/etcdserverpb.KV/Range" → its handler
	streams map[string]localStream // "/etcdserverpb.Watch/Watch" → its handler
}

type localUnary struct {
	impl    any
	handler grpc.MethodHandler
}

type localStream struct {
	impl    any
	handler grpc.StreamHandler
}

func newLocalConn() *localConn {
	return &localConn{unary: map[string]localUnary{}, streams: map[string]localStream{}}
}

// register makes desc's methods, served by impl, callable through the conn.
func (c *localConn) register(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.unary["/"+desc.ServiceName+"/"+m.MethodName] = localUnary{impl, m.Handler}
	}
	for _, st := range desc.Streams {
		c.streams["/"+desc.ServiceName+"/"+st.StreamName] = localStream{impl, st.Handler}
	}
}

var _ grpc.ClientConnInterface = (*localConn)(nil)

// Invoke calls a unary method's handler with ctx.
func (c *localConn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	m, ok := c.unary[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "raftkv: %s is not served in process", method)
	}
	resp, err := m.handler(m.impl, localContext(ctx), func(in any) error {
		proto.Merge(in.(proto.Message), args.(proto.Message))
		return nil
	}, nil)
	if err != nil {
		return err
	}
	proto.Reset(reply.(proto.Message))
	proto.Merge(reply.(proto.Message), resp.(proto.Message))
	return nil
}

// NewStream runs a streaming method's handler in a goroutine of its own, connected
// to the returned client stream by unbuffered channels: a side that sends waits for
// the other to receive, so neither queues without bound. The handler's context ends
// with ctx, or when the handler returns.
func (c *localConn) NewStream(ctx context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	st, ok := c.streams[method]
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "raftkv: %s is not served in process", method)
	}
	ctx, cancel := context.WithCancel(localContext(ctx))
	p := &localPipe{ctx: ctx, toServer: make(chan proto.Message), toClient: make(chan proto.Message),
		sendClosed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer cancel()
		p.err = st.handler(st.impl, (*localServerStream)(p))
		close(p.done)
	}()
	return (*localClientStream)(p), nil
}

// localContext is ctx with the exactly-once metadata taken out of its incoming
// metadata (see above).
func localContext(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || (len(md.Get(MetadataClientID)) == 0 && len(md.Get(MetadataSequence)) == 0) {
		return ctx
	}
	md = md.Copy()
	md.Delete(MetadataClientID)
	md.Delete(MetadataSequence)
	return metadata.NewIncomingContext(ctx, md)
}

// localPipe is one in-process stream; localClientStream and localServerStream are
// its two ends.
type localPipe struct {
	ctx                context.Context
	toServer, toClient chan proto.Message
	closeSendOnce      sync.Once
	sendClosed         chan struct{} // closed by the client's CloseSend
	done               chan struct{} // closed when the handler has returned err
	err                error
}

type localClientStream localPipe

func (p *localClientStream) SendMsg(m any) error {
	msg := proto.Clone(m.(proto.Message))
	select {
	case p.toServer <- msg:
		return nil
	case <-p.done:
		return io.EOF // as gRPC: the reason comes from RecvMsg
	case <-p.ctx.Done():
		return status.FromContextError(p.ctx.Err()).Err()
	}
}

func (p *localClientStream) RecvMsg(m any) error {
	deliver := func(msg proto.Message) error {
		proto.Reset(m.(proto.Message))
		proto.Merge(m.(proto.Message), msg)
		return nil
	}
	select {
	case msg := <-p.toClient:
		return deliver(msg)
	case <-p.done:
		if p.err != nil {
			return status.Convert(p.err).Err()
		}
		return io.EOF
	case <-p.ctx.Done():
		// The handler may have returned in the meantime with a reason of its own.
		select {
		case <-p.done:
			if p.err != nil {
				return status.Convert(p.err).Err()
			}
			return io.EOF
		default:
		}
		return status.FromContextError(p.ctx.Err()).Err()
	}
}

func (p *localClientStream) CloseSend() error {
	p.closeSendOnce.Do(func() { close(p.sendClosed) })
	return nil
}

func (p *localClientStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (p *localClientStream) Trailer() metadata.MD         { return nil }
func (p *localClientStream) Context() context.Context     { return p.ctx }

type localServerStream localPipe

func (p *localServerStream) SendMsg(m any) error {
	msg := proto.Clone(m.(proto.Message))
	select {
	case p.toClient <- msg:
		return nil
	case <-p.ctx.Done():
		return status.FromContextError(p.ctx.Err()).Err()
	}
}

func (p *localServerStream) RecvMsg(m any) error {
	select {
	case msg := <-p.toServer:
		proto.Reset(m.(proto.Message))
		proto.Merge(m.(proto.Message), msg)
		return nil
	case <-p.sendClosed:
		return io.EOF
	case <-p.ctx.Done():
		return status.FromContextError(p.ctx.Err()).Err()
	}
}

func (p *localServerStream) SetHeader(metadata.MD) error  { return nil }
func (p *localServerStream) SendHeader(metadata.MD) error { return nil }
func (p *localServerStream) SetTrailer(metadata.MD)       {}
func (p *localServerStream) Context() context.Context     { return p.ctx }

// localClient returns a clientv3 client whose calls reach this member's services in
// process, each with the context it is made with (see localConn). It serves one
// request of the Lock or Election service, whose context is ctx, and must be closed
// when that request ends: it holds the request's watch and keep-alive streams, and
// streams of two requests, which may come from two users, must never be shared.
//
// The client's own context has ctx's values (the caller's metadata and peer) but
// not its end: the concurrency package cleans up with it after a request is
// canceled (a Lock given up while it waits deletes the key it queued), as it does
// with the server's context in etcd. Close ends it.
func (s *Server) localClient(ctx context.Context) *clientv3.Client {
	c := clientv3.NewCtxClient(context.WithoutCancel(ctx), clientv3.WithZapLogger(zap.NewNop()))
	c.KV = clientv3.NewKVFromKVClient(pb.NewKVClient(s.local), c)
	c.Lease = clientv3.NewLeaseFromLeaseClient(pb.NewLeaseClient(s.local), c, s.cfg.RequestTimeout)
	c.Watcher = clientv3.NewWatchFromWatchClient(pb.NewWatchClient(s.local), c)
	return c
}

// mustServe panics unless every one of the methods is registered: the in-process
// client cannot work without them, and that is a mistake in registerServices.
func (c *localConn) mustServe(methods ...string) {
	for _, m := range methods {
		_, unary := c.unary[m]
		_, stream := c.streams[m]
		if !unary && !stream {
			panic(fmt.Sprintf("server: the in-process client needs %s, which no registered service serves", m))
		}
	}
}
