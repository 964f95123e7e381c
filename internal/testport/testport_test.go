package testport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
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

// A port that Free handed out in another process that is still running is
// skipped, though nothing listens on it; once that process exits, it can be
// handed out again.
func TestFreeSkipsAPortAnotherProcessWasGiven(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reservations need Linux's abstract unix sockets")
	}
	if os.Getenv("TESTPORT_CHILD") != "" {
		// The child: take ports, say which, and hold them until stdin closes.
		fmt.Println(Free(t, 3))
		_, _ = io.Copy(io.Discard, os.Stdin)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFreeSkipsAPortAnotherProcessWasGiven$")
	cmd.Env = append(os.Environ(), "TESTPORT_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Ends the child if a check below failed before it was told to.
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var held [3]int
	if _, err := fmt.Fscanf(bufio.NewReader(stdout), "[%d %d %d]\n", &held[0], &held[1], &held[2]); err != nil {
		t.Fatalf("reading the child's ports: %v", err)
	}
	for _, p := range held {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d: the child holds it, yet something listens on it: %v", p, err)
		}
		l.Close()
	}
	// Point this process's cursor at the child's first port.
	cursor.mu.Lock()
	cursor.started, cursor.next = true, held[0]
	cursor.mu.Unlock()
	got := Free(t, 1)[0]
	if slices.Contains(held[:], got) {
		t.Fatalf("Free returned port %d, which the child (pid %d) was given and still holds", got, cmd.Process.Pid)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the child: %v", err)
	}
	cursor.mu.Lock()
	cursor.next = held[0]
	cursor.mu.Unlock()
	if got := Free(t, 1)[0]; got != held[0] {
		t.Fatalf("after the child exited Free returned %d, want its port %d again", got, held[0])
	}
}
