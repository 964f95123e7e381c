package main

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"raftkv/internal/testport"
)

// "raftkv cluster --base-port 0" takes distinct ports that can be listened on, from
// below the kernel's ephemeral range, where outgoing connections could take them
// before the members bind them, and below the tests' own (internal/testport).
func TestFreeLocalPortsBelowTheEphemeralRange(t *testing.T) {
	if freePortsEnd > testport.First {
		t.Fatalf("the cluster's free ports [%d, %d) overlap the tests' from %d", freePortsFirst, freePortsEnd, testport.First)
	}
	start := min(freePortsEnd, ephemeralPortsStart())
	if start-freePortsFirst < 1000 {
		t.Skipf("the ephemeral range starts at %d: no room below it", start)
	}
	client, peer, err := freeLocalPorts(5)
	if err != nil {
		t.Fatal(err)
	}
	if len(client) != 5 || len(peer) != 5 {
		t.Fatalf("got %d client and %d peer ports, want 5 of each", len(client), len(peer))
	}
	seen := map[int]bool{}
	for _, p := range append(client, peer...) {
		if p < freePortsFirst || p >= start {
			t.Errorf("port %d outside [%d, %d)", p, freePortsFirst, start)
		}
		if seen[p] {
			t.Errorf("port %d given twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("listening on port %d: %v", p, err)
			continue
		}
		l.Close()
	}
}

// A cluster whose port another process listens on is refused before any member
// starts, naming the address, the member and what to do: a member that cannot bind
// was restarted for good, and "raftkv cluster: ready" named the other process's
// leader.
func TestClusterRefusesATakenPort(t *testing.T) {
	ports := testport.Free(t, 4)
	plan := []localMember{
		{Name: "infra1", ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1])},
		{Name: "infra2", ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2]), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[3])},
	}
	if err := checkPortsFree(plan); err != nil {
		t.Fatalf("free ports: %v", err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[3]))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = checkPortsFree(plan)
	want := fmt.Sprintf("127.0.0.1:%d (infra2's peer URL) cannot be listened on", ports[3])
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--base-port 0") {
		t.Fatalf("a taken port: %v; want an error saying %q and what to do", err, want)
	}
}
