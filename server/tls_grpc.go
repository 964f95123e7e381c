package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// tlsHandshakeTimeout bounds a client's TLS handshake, as etcd's does.
const tlsHandshakeTimeout = 10 * time.Second

// listenerTLS is the client API's gRPC transport credentials. The TLS itself belongs
// to the listener (listen.go: the listener of an https:// client URL comes from
// tls.NewListener), not to gRPC: so one gRPC server serves http:// and https:// URLs
// alike, and whatever else shares a client listener with gRPC (an HTTP handler, say)
// gets the same TLS. ServerHandshake completes the handshake the listener began and
// hands gRPC the connection state, which ClientCertCommonName reads; a connection
// without TLS (an http:// URL) passes through as with insecure credentials.
//
// A connection that a multiplexer wrapped is unwrapped through a method
// NetConn() net.Conn, the method tls.Conn itself has, to find the *tls.Conn; gRPC
// keeps reading through the wrapper.
type listenerTLS struct {
	logger *slog.Logger
}

var _ credentials.TransportCredentials = listenerTLS{}

func (c listenerTLS) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc := findTLSConn(conn)
	if tc == nil {
		return conn, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			level = slog.LevelDebug // a port check or a client that gave up: no one to tell
		}
		c.logger.Log(ctx, level, "refusing client connection: TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		return nil, nil, err
	}
	return conn, credentials.TLSInfo{
		State:          tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

// findTLSConn returns the *tls.Conn conn is or wraps, or nil.
func findTLSConn(conn net.Conn) *tls.Conn {
	for range 8 { // wrappers nest a level or two; a cycle must not hang us
		switch c := conn.(type) {
		case *tls.Conn:
			return c
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func (listenerTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("server: listenerTLS serves the client API; it does not dial")
}

func (listenerTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c listenerTLS) Clone() credentials.TransportCredentials { return c }

func (listenerTLS) OverrideServerName(string) error { return nil }

// ClientCertCommonName returns the common name of the certificate the client of a
// gRPC call presented, if this member verified it, and whether there is one. A
// client's certificate is verified on an https:// client URL with
// Config.ClientTLS.ClientCertAuth (--client-cert-auth) or TrustedCAFile; etcd then
// takes the common name as the call's user when the call carries no token. Calls on
// http:// URLs, and certificates without a common name, have none.
func ClientCertCommonName(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", false
	}
	for _, chain := range info.State.VerifiedChains {
		if len(chain) > 0 && chain[0].Subject.CommonName != "" {
			return chain[0].Subject.CommonName, true
		}
	}
	return "", false
}
