// Package testport hands tests loopback ports to listen on, for members whose
// addresses must be known before they start (an initial cluster names every peer).
//
// A port found by listening on 127.0.0.1:0 and closing lies in the kernel's
// ephemeral range (ip_local_port_range, 32768-60999 by default), the range every
// outgoing connection's source port and every other :0 listener is drawn from:
// between the close and the member's bind, a test running beside it can take the
// port (e2e CI failed so, "bind: address already in use"). Free hands out ports from
// below that range, through one cursor per process, so that no two tests of a run
// are given the same port, each checked free by binding it. Processes that run at
// once (go test runs packages side by side) start their cursors apart, and each
// port handed out stays reserved for its process until the process exits (on
// Linux, an abstract unix socket named after the port; reserve_linux.go): a member
// stopped and started again on its ports by one test binary cannot lose one to
// another test binary's Free in between.
package testport

import (
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
)

// First and Last bound the ports Free hands out: [First, Last), below the kernel's
// default ephemeral range.
const First, Last = 20000, 32000

var cursor struct {
	mu      sync.Mutex
	started bool
	next    int
}

// Free returns n loopback ports that were free a moment ago, none of them returned
// before in this process (until the cursor has gone once round the range). It fails
// the test if the range has fewer than n free ports.
func Free(t testing.TB, n int) []int {
	t.Helper()
	cursor.mu.Lock()
	defer cursor.mu.Unlock()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries == Last-First {
			t.Fatalf("testport: finding %d free loopback ports: only %d of the %d from %d to %d were free", n, len(out), Last-First, First, Last)
		}
		if !cursor.started {
			// A prime stride spreads the processes' starting points over the range.
			cursor.started, cursor.next = true, First+os.Getpid()*7919%(Last-First)
		}
		if cursor.next >= Last {
			cursor.next = First
		}
		p := cursor.next
		cursor.next++
		if !reserve(p) {
			continue // handed out by Free in another process that is still running
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			release(p) // in use, by something outside this process: not handed out
			continue
		}
		l.Close()
		out = append(out, p)
	}
	return out
}
