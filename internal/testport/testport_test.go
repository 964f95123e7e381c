package testport

import (
	"fmt"
	"net"
	"testing"
)

// Ports come from below the ephemeral range, each once, and can be listened on.
func TestFreeHandsOutDistinctListenablePorts(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		for _, p := range Free(t, 3) {
			if p < First || p >= Last {
				t.Fatalf("port %d outside [%d, %d)", p, First, Last)
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				t.Fatalf("listening on a port Free returned: %v", err)
			}
			l.Close()
		}
	}
}

// A port something else holds is skipped.
func TestFreeSkipsAPortInUse(t *testing.T) {
	next := Free(t, 1)[0] + 1
	if next >= Last {
		t.Skip("the cursor is about to wrap")
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", next))
	if err != nil {
		t.Skipf("port %d is taken already: %v", next, err)
	}
	defer l.Close()
	if p := Free(t, 1)[0]; p == next {
		t.Fatalf("Free returned port %d, which a listener holds", p)
	}
}
