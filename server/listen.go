package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// listen opens the peer and client listeners. It runs before the data dir is
// touched, so that a port in use fails the start with nothing written.
func (s *Server) listen() error {
	var err error
	s.peerListens, err = listenURLs("--listen-peer-urls", s.cfg.ListenPeerURLs, s.tls.peer)
	if err != nil {
		return err
	}
	s.clientListens, err = listenURLs("--listen-client-urls", s.cfg.ListenClientURLs, s.tls.client)
	return err
}

// listenURLs opens a listener for each of urls, with TLS applied: an http:// URL's
// listener yields TCP connections, an https:// URL's yields *tls.Conn made with
// tlsConfig, whose handshake runs at the first read or write, or at HandshakeContext,
// in the goroutine that serves the connection, so a slow client never holds up
// Accept. On the client side gRPC completes it (listenerTLS), on the peer side the
// transport. To serve something else beside gRPC on a client URL (HTTP, say), split a
// listener's connections by what they send first, as etcd does with cmux; on https://
// the split comes after the handshake, and the connections handed to gRPC must keep
// the *tls.Conn reachable through NetConn (see listenerTLS).
//
// On error it returns the listeners it opened too, for the caller to close.
func listenURLs(flag string, urls []string, tlsConfig *tls.Config) ([]net.Listener, error) {
	var listeners []net.Listener
	for _, u := range urls {
		addr, err := hostPort(u)
		if err != nil {
			return listeners, fmt.Errorf("%s: %w", flag, err)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return listeners, fmt.Errorf("%s %s: %w%s", flag, u, err, listenHint(err))
		}
		if strings.HasPrefix(u, "https://") {
			if tlsConfig == nil {
				// Config.Validate refuses an https:// URL without certificates.
				panic(fmt.Sprintf("server: %s %s is https:// but no TLS config was built for it", flag, u))
			}
			l = tls.NewListener(l, tlsConfig)
		}
		listeners = append(listeners, l)
	}
	return listeners, nil
}

// listenHint says what to do about a failed listen, where the cause is a common one.
func listenHint(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "; another member or process is using the port: stop it, or choose another port"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "; the host is not an address of this machine: listen on one of its own addresses (or 0.0.0.0)"
	case errors.Is(err, syscall.EACCES):
		return "; ports below 1024 need privileges: choose a port of 1024 or above"
	}
	return ""
}

// missingDirs returns dir and those of its parents that do not exist, outermost
// first, so that a failed start can remove what it created.
func missingDirs(dir string) []string {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		missing = append([]string{d}, missing...)
	}
	return missing
}
