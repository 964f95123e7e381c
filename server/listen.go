package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// listen opens the peer and client listeners. It runs before the data dir is
// touched, so that a port in use fails the start with nothing written.
func (s *Server) listen() error {
	for _, group := range []struct {
		flag      string
		urls      []string
		listeners *[]net.Listener
	}{
		{"--listen-peer-urls", s.cfg.ListenPeerURLs, &s.peerListens},
		{"--listen-client-urls", s.cfg.ListenClientURLs, &s.clientListens},
	} {
		for _, u := range group.urls {
			addr, _ := hostPort(u)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("%s %s: %w%s", group.flag, u, err, listenHint(err))
			}
			*group.listeners = append(*group.listeners, l)
		}
	}
	return nil
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
