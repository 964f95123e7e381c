package main

import (
	"fmt"
	"net"
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
