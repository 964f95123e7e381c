package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"expvar"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/soheilhy/cmux"
	etcdversion "go.etcd.io/etcd/api/v3/version"

	"raftkv/version"
)

// The client port serves gRPC and HTTP/1.1 on one listener, as etcd does: cmux reads
// the first bytes of each new connection and hands those that open with HTTP/2's
// preface to the gRPC server, everything else to the HTTP server (/metrics, /health,
// /livez, /readyz, /version, /debug/vars and, with --enable-pprof, /debug/pprof/).
// The choice is made once per connection, so a gRPC call costs what it did: its
// connection is the accepted one behind a reader that has handed back the sniffed
// bytes. (gRPC's own ServeHTTP,
// the other way etcd offers, runs every call through net/http's HTTP/2 server,
// several times slower.) --listen-metrics-urls adds listeners that serve the same
// HTTP endpoints, without /version, /debug/ and gRPC.
//
// On an https:// URL the sniffing comes after the TLS handshake (the listener is a
// tls.NewListener, listen.go): gRPC gets the decrypted connection and finds the
// *tls.Conn under it through NetConn (listenerTLS), for the client's certificate.
// The client URLs' TLS offers ALPN "h2" first, for gRPC, and "http/1.1": an HTTP
// client on an https:// client URL must speak HTTP/1.1 (curl --http1.1, Prometheus's
// enable_http2: false), since an HTTP/2 connection is taken for gRPC; the
// --listen-metrics-urls listeners, HTTP only, speak both.

// clientSniffTimeout bounds how long a new client connection may stay silent before
// cmux knows what it speaks; it then closes it. Stop waits for connections still
// being sniffed, so this is also how long a silent client can delay it.
const clientSniffTimeout = 5 * time.Second

// httpIdleTimeout closes an HTTP/1.1 keep-alive connection that has carried no
// request for this long, so that clients that never close theirs do not hold a
// goroutine and a file descriptor each for good (net/http keeps one forever with
// neither IdleTimeout nor ReadTimeout set). A stream in progress (a watch over the
// gateway) is a request, not idle.
var httpIdleTimeout = 2 * time.Minute

// httpShutdownTimeout bounds how long Stop lets HTTP requests in flight finish. A
// health check waits at most healthTimeout.
const httpShutdownTimeout = healthTimeout + time.Second

// listenMetrics opens the --listen-metrics-urls listeners. Like listen, it runs
// before the data dir is touched.
func (s *Server) listenMetrics() error {
	var err error
	// An https:// one serves with the client URLs' TLS, as etcd's does.
	s.metricsListens, err = listenURLs("--listen-metrics-urls", s.cfg.ListenMetricsURLs, s.tls.client)
	return err
}

// httpHandler returns the HTTP endpoints; client adds those only the client URLs
// serve: the JSON gateway under /v3/ (and /v3beta/), and with --enable-pprof,
// /debug/pprof/.
func (s *Server) httpHandler(client bool) http.Handler {
	mux := http.NewServeMux()
	if client && s.gateway != nil {
		gw := s.gateway.handler(s)
		mux.Handle("/v3/", gw)
		mux.Handle("/v3beta/", gw)
	}
	withPprof := client && s.cfg.EnablePprof
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{
		// A collector's error costs the scrape only the metric that failed.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	s.health.install(mux)
	if client {
		mux.HandleFunc("/version", serveVersion)
		mux.HandleFunc("/debug/vars", serveVars)
	}
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if !client {
		return mux
	}
	// etcd sends the CORS headers of its default --cors "*" on every path of its
	// client URLs, and answers OPTIONS (a browser's preflight) with 200 on each: a
	// dashboard on another origin reads /health and /metrics. The gateway under /v3/
	// does both itself, after its own check.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; s.gateway != nil && (strings.HasPrefix(p, "/v3/") || strings.HasPrefix(p, "/v3beta/")) {
			mux.ServeHTTP(w, r)
			return
		}
		addCORSHeaders(w.Header())
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// addCORSHeaders adds the headers of etcd's default --cors "*".
func addCORSHeaders(h http.Header) {
	h.Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
	h.Add("Access-Control-Allow-Origin", "*")
	h.Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
}

// serveVersion answers /version as etcd does: the etcd release whose API raftkv
// speaks, and the cluster and storage versions it reports in Status (major.minor.0).
func serveVersion(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	b, _ := json.Marshal(&etcdversion.Versions{Server: version.APIVersion, Cluster: storageVersion(version.APIVersion),
		Storage: storageVersion(version.APIVersion)})
	_, _ = w.Write(b)
}

// serveVars answers /debug/vars as etcd does: the process's expvar variables
// (cmdline, memstats, and file_descriptor_limit, which etcd publishes).
func serveVars(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	publishVars.Do(func() {
		expvar.Publish("file_descriptor_limit", expvar.Func(func() any {
			var lim syscall.Rlimit
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
			return lim.Cur
		}))
	})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	expvar.Handler().ServeHTTP(w, r)
}

// publishVars publishes the expvar variables etcd adds, once per process.
var publishVars sync.Once

// serveClients serves gRPC and HTTP on every client listener, and HTTP on every
// metrics listener.
func (s *Server) serveClients() {
	clientHTTP := &http.Server{Handler: s.httpHandler(true), ReadHeaderTimeout: clientSniffTimeout, IdleTimeout: httpIdleTimeout,
		// http.Server fills in Request.TLS only for a *tls.Conn; cmux hands it
		// its own wrapper, so the TLS state travels in the context (tlsStateOf).
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if mc, ok := c.(*cmux.MuxConn); ok {
				c = muxConn{mc}
			}
			if tc := findTLSConn(c); tc != nil {
				st := tc.ConnectionState()
				return context.WithValue(ctx, tlsStateKey{}, &st)
			}
			return ctx
		}}
	metricsHTTP := &http.Server{Handler: s.httpHandler(false), ReadHeaderTimeout: clientSniffTimeout, IdleTimeout: httpIdleTimeout}
	s.httpServers = append(s.httpServers, clientHTTP, metricsHTTP)
	for _, l := range s.clientListens {
		m := cmux.New(l)
		m.SetReadTimeout(clientSniffTimeout)
		grpcL := netConnListener{m.Match(cmux.HTTP2())}
		httpL := m.Match(cmux.Any())
		s.goTracked(func() { _ = s.grpc.Serve(grpcL) })
		s.goTracked(func() { _ = clientHTTP.Serve(httpL) })
		s.goTracked(func() {
			if err := m.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
				s.logger.Warn("client listener stopped", "addr", l.Addr().String(), "err", err)
			}
		})
	}
	for _, l := range s.metricsListens {
		s.goTracked(func() { _ = metricsHTTP.Serve(l) })
	}
}

// stopHTTP lets HTTP requests in flight finish, briefly, then closes the HTTP
// servers and the metrics listeners. The client listeners are closed with gRPC.
func (s *Server) stopHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	for _, srv := range s.httpServers {
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	}
	for _, l := range s.metricsListens {
		_ = l.Close()
	}
}

type tlsStateKey struct{}

// tlsStateOf returns the TLS state of the client connection r came on, or nil for
// plaintext.
func tlsStateOf(r *http.Request) *tls.ConnectionState {
	if r.TLS != nil {
		return r.TLS
	}
	st, _ := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	return st
}

// netConnListener hands out cmux's connections with the connection they wrap
// reachable through NetConn, as tls.Conn does, so that listenerTLS finds the
// *tls.Conn of an https:// URL under them.
type netConnListener struct{ net.Listener }

func (l netConnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if mc, ok := c.(*cmux.MuxConn); ok {
		return muxConn{mc}, nil
	}
	return c, err
}

// muxConn is a cmux.MuxConn (whose Read hands back the sniffed bytes first) that
// says what it wraps.
type muxConn struct{ *cmux.MuxConn }

func (c muxConn) NetConn() net.Conn { return c.MuxConn.Conn }
