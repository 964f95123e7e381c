package main

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestClientInputNoMemberRunning: when every endpoint refuses the connection, one
// line says how to start a member or where to point --endpoints.
func TestClientInputNoMemberRunning(t *testing.T) {
	one, two := closedPort(t), closedPort(t)
	checkClientInput(t, []clientInputCase{
		{[]string{"get", "foo", "--endpoints", one, "--dial-timeout", "1s"}, exitError,
			[]string{"connection refused\nno member is running at this endpoint: start a local cluster with 'raftkv cluster' (or one member with 'raftkv'), or point --endpoints at"}, nil},
		{[]string{"put", "foo", "bar", "--endpoints", one + "," + two, "--dial-timeout", "1s"}, exitError,
			[]string{"none of 2 endpoints", "\nno member is running at these endpoints"}, nil},
		// status has its own hint for other failures; a refusal gets the one line once.
		{[]string{"status", "--endpoints", one, "--dial-timeout", "1s"}, exitError, []string{"no member is running at this endpoint"}, []string{"is a member running?"}},
	})
}

// TestClientInputPeerPort: an endpoint that answers with HTTP/2 frames of its own, as a
// member's peer port does, is named as not serving the client API.
func TestClientInputPeerPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	defer conns.Wait()
	defer ln.Close()
	conns.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer conn.Close()
				// A frame header of a type that is not SETTINGS, where gRPC waits for
				// the server's preface; then read until the client hangs up.
				conn.Write([]byte{0, 0, 0, 0xfe, 0, 0, 0, 0, 0})
				io.Copy(io.Discard, conn)
			})
		}
	})
	_, stderr, code := runCLI(t, nil, "get", "foo", "--endpoints", ln.Addr().String(), "--dial-timeout", "2s")
	want := "this address does not serve the client API: it may be a member's peer URL (a member's client URLs are its --advertise-client-urls, port 2379 by default)"
	if code != exitError || !strings.Contains(stderr, "not a settings frame") || !strings.Contains(stderr, want) {
		t.Errorf("get against a non-gRPC HTTP/2 port: exit %d, stderr %q; want exit 1 and %q", code, stderr, want)
	}
}
