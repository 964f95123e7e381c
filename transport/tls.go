package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
)

// TLS on the peer streams is a layer under the frames, which do not change: a peer
// whose address is "https://host:port" is dialled with Config.TLS, and a listener
// from tls.NewListener given to Serve accepts TLS streams. Who may connect (a
// certificate signed by the peer CA, its names, its revocation) is the tls.Config's
// business, so that the transport has no policy of its own; the server builds it
// from etcd's --peer-* flags.

// httpsScheme marks a peer address dialled with TLS.
const httpsScheme = "https://"

// splitAddr returns the host:port of a peer address and whether it is dialled with
// TLS: "https://host:port" is, "host:port" and "http://host:port" are not.
func splitAddr(addr string) (hostPort string, isTLS bool) {
	if rest, ok := strings.CutPrefix(addr, httpsScheme); ok {
		return rest, true
	}
	return strings.TrimPrefix(addr, "http://"), false
}

// dialTLS runs the client side of the TLS handshake on conn, dialled at hostPort,
// within ctx. The server's certificate is checked against the host dialled unless
// cfg names another or skips verification.
func dialTLS(ctx context.Context, conn net.Conn, hostPort string, cfg *tls.Config) (*tls.Conn, error) {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(hostPort)
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", hostPort, err)
	}
	return tc, nil
}

// acceptTLS completes the server side of the handshake of an inbound TLS connection
// within the read deadline already set on it; a connection that is not TLS passes
// through. A refused certificate is the peer's misconfiguration (or an intruder), so
// it is logged at WARN with the reason, unlike a connection that just goes away.
func (t *Transport) acceptTLS(conn net.Conn) bool {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return true
	}
	err := tc.HandshakeContext(t.ctx)
	if err == nil {
		return true
	}
	if t.ctx.Err() != nil {
		return false
	}
	t.streamsRefused.Add(1)
	var recordErr tls.RecordHeaderError
	if errors.As(err, &recordErr) {
		t.refusals.warn(t.logger, "not TLS", "transport: refusing inbound connection: it does not speak TLS, and this peer listener is https://; "+
			"give every member an https:// URL for this member in --initial-cluster", "remote", conn.RemoteAddr().String())
		return false
	}
	t.refusals.warn(t.logger, err.Error(), "transport: refusing inbound connection: TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
	return false
}

// closeNow closes conn at once. A TLS connection is closed underneath, without the
// close_notify alert tls.Conn.Close would first write: that write may wait, up to
// five seconds, for a peer that no longer reads, and closing is what unblocks things
// here.
func closeNow(conn net.Conn) error {
	if tc, ok := conn.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return conn.Close()
}
