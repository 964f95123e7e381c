package server

import (
	"context"
	"crypto/tls"
	"math"
	"net"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	etcdgw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
)

// etcd's JSON gateway (--enable-grpc-gateway, on by default): the client URLs serve
// /v3/… over HTTP/1.1, each path a method of the etcd API (POST /v3/kv/put with a
// PutRequest as JSON, bytes in base64), translated by grpc-gateway's handlers that
// etcd generates, with etcd's marshaler settings, so that the answers and error
// bodies are etcd's. A streamed method (/v3/watch, /v3/lease/keepalive,
// /v3/election/observe) answers newline-separated JSON objects {"result": …}.
//
// The handlers are gRPC clients. etcd dials its own first client URL for them
// (with its server certificate as the client's, and TLS verification off); the
// gateway here calls the member's gRPC server over an in-memory connection
// (bufconn) that the server serves like any listener's: each call passes the same
// interceptors (metrics, the leader and learner gates, auth) as a remote client's.
// It carries no TLS, so a call through the gateway is never authenticated by a
// client certificate, only by the token in its Authorization header, which the
// gateway forwards as the metadata "authorization" (tokenFromContext). The
// connection is opened at start and closed at Stop; the client's address, for the
// password-attempt limiter, is the HTTP client's (gatewayClientAddr).

// gatewayBufferBytes is the in-memory connection's buffer each way.
const gatewayBufferBytes = 1 << 20

// gateway is the JSON gateway: its HTTP handler and the connection it calls
// through.
type gateway struct {
	listener *bufconn.Listener
	conn     *grpc.ClientConn
	mux      *runtime.ServeMux
	jsonpb   *runtime.JSONPb // the mux's decoder of requests
	// websockets are the calls made over websockets (gateway_ws.go).
	websockets gatewayWebsockets
}

// startGateway serves the in-memory connection with the member's gRPC server and
// registers the handlers of every etcd service on a gateway mux.
func (s *Server) startGateway() error {
	l := bufconn.Listen(gatewayBufferBytes)
	conn, err := grpc.NewClient("passthrough:///raftkv-gateway",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			c, err := l.DialContext(ctx)
			if err != nil {
				return nil, err
			}
			return gatewayConn{c}, nil
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// etcd's: a response is as large as the server makes it.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		_ = l.Close()
		return err
	}
	// etcd's marshaler: proto field names (create_revision), unset fields left
	// out, unknown request fields ignored.
	jsonpb := &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard,
		&runtime.HTTPBodyMarshaler{Marshaler: jsonpb}),
		runtime.WithErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler,
			w http.ResponseWriter, r *http.Request, err error) {
			if b, ok := r.Body.(*gatewayBody); ok && b.over {
				err = b.tooLarge()
			}
			runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		}))
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		etcdgw.RegisterKVHandler,
		etcdgw.RegisterWatchHandler,
		etcdgw.RegisterLeaseHandler,
		etcdgw.RegisterClusterHandler,
		etcdgw.RegisterMaintenanceHandler,
		etcdgw.RegisterAuthHandler,
		lockgw.RegisterLockHandler,
		electiongw.RegisterElectionHandler,
	} {
		// The context only bounds the registration; each call runs with its
		// HTTP request's.
		if err := register(context.Background(), mux, conn); err != nil {
			_ = conn.Close()
			_ = l.Close()
			return err
		}
	}
	s.gateway = &gateway{listener: l, conn: conn, mux: mux, jsonpb: jsonpb}
	s.goTracked(func() { _ = s.grpc.Serve(gatewayListener{l}) })
	return nil
}

// handler is the gateway as mounted on the client URLs under /v3/, as etcd does:
// /v3beta/ is taken for /v3/, and the CORS headers are those of etcd's default
// --cors "*".
func (g *gateway) handler(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st := tlsStateOf(r); st != nil && s.cfg.ClientTLS.ClientCertAuth && authEnabled(s) && hasCommonName(st) {
			// The gateway's calls carry no certificate: rather than serve as
			// nobody a client that believes its certificate names it, refuse it,
			// as etcd does.
			http.Error(w, "CommonName of client sending a request against gateway will be ignored and not used as expected", http.StatusBadRequest)
			return
		}
		addCORSHeaders(w.Header())
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v3beta/"); ok {
			r.URL.Path = "/v3/" + rest
			r.URL.RawPath = ""
		}
		if websocket.IsWebSocketUpgrade(r) {
			g.serveWebsocket(w, r, gatewayMaxBodyBytes(s.cfg.MaxRequestBytes))
			return
		}
		bound := gatewayMaxBodyBytes(s.cfg.MaxRequestBytes)
		if r.URL.Path == "/v3/watch" || r.URL.Path == "/v3/lease/keepalive" {
			// The two streams carry many requests over their life: each is
			// bounded as a unary call's body is (gateway_limit.go).
			limiter := newJSONMessageLimiter(r.Body, bound)
			path, remote := r.URL.Path, r.RemoteAddr
			limiter.onCut = func() {
				s.logger.Warn("gateway: a request on a stream passed the gateway's bound; reading the stream stopped",
					"path", path, "remote", remote, "bound", bound)
			}
			r.Body = readCloser{limiter, r.Body}
		} else {
			// A request's body bounded before it is read whole and decoded (gRPC
			// would refuse it only then): the largest request in JSON, its bytes
			// in base64, with room for the field names.
			r.Body = &gatewayBody{body: r.Body, left: bound, bound: bound, limit: s.cfg.MaxRequestBytes + grpcOverheadBytes}
		}
		g.mux.ServeHTTP(w, r)
	})
}

// gatewayMaxBodyBytes bounds a gateway request's body: twice the largest request
// gRPC takes, which holds its bytes in base64 (4/3) and JSON's field names.
func gatewayMaxBodyBytes(maxRequestBytes int) int64 {
	return 2 * int64(maxRequestBytes+grpcOverheadBytes)
}

func authEnabled(s *Server) bool {
	enabled, _ := s.sm.store.AuthStatus()
	return enabled
}

// hasCommonName reports whether the HTTP client presented a verified certificate
// with a common name.
func hasCommonName(st *tls.ConnectionState) bool {
	for _, chain := range st.VerifiedChains {
		if len(chain) > 0 && chain[0].Subject.CommonName != "" {
			return true
		}
	}
	return false
}

// close ends the gateway's calls still open and its connection. The gRPC server
// closes its side with its other listeners.
func (g *gateway) close() {
	_ = g.conn.Close()
	_ = g.listener.Close()
	// Hijacked, the websockets are not the HTTP server's to end.
	g.websockets.close()
}

// gatewayListener hands the gRPC server the gateway's in-memory connections, which
// say they come from the gateway.
type gatewayListener struct{ *bufconn.Listener }

func (l gatewayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return gatewayConn{c}, nil
}

// gatewayConn is an in-memory connection of the gateway's: its remote address
// marks the calls that come through the gateway.
type gatewayConn struct{ net.Conn }

func (gatewayConn) RemoteAddr() net.Addr { return gatewayAddr{} }
func (gatewayConn) LocalAddr() net.Addr  { return gatewayAddr{} }

type gatewayAddr struct{}

func (gatewayAddr) Network() string { return "raftkv-gateway" }
func (gatewayAddr) String() string  { return "raftkv-gateway" }

// gatewayClientAddr returns the address of the HTTP client of a call that came
// through the gateway, and whether it did. The gateway appends the HTTP client's
// address to the X-Forwarded-For the client sent, as metadata: only the last
// entry is the gateway's own word.
func gatewayClientAddr(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	if _, ok := p.Addr.(gatewayAddr); !ok {
		return "", false
	}
	v := metadata.ValueFromIncomingContext(ctx, "x-forwarded-for")
	if len(v) == 0 {
		return "", true
	}
	last := v[len(v)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last), true
}
