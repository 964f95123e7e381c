package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// lockedBuffer is a bytes.Buffer that a command writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runningCLI is a client command running in the background until its context ends.
type runningCLI struct {
	stdout, stderr *lockedBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startCLI runs the command line in a goroutine, as run does, with a context the
// test cancels in place of Ctrl-C.
func startCLI(t *testing.T, args ...string) *runningCLI {
	t.Helper()
	r := &runningCLI{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	a := &app{stdout: r.stdout, stderr: r.stderr}
	root := a.newRootCommand()
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%q did not stop within 10s of its context's end", args)
		}
	})
	return r
}

// waitOutput waits until the command printed want.
func (r *runningCLI) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.stdout.String() != want {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("the command ended (%v) having printed %q; want %q\nstderr: %s", err, r.stdout.String(), want, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("printed %q; want %q\nstderr: %s", r.stdout.String(), want, r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop cancels the command, as Ctrl-C does, and returns its error.
func (r *runningCLI) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not stop within 10s of Ctrl-C")
		return nil
	}
}

func mustCLI(t *testing.T, want string, args ...string) {
	t.Helper()
	stdout, stderr, code := runCLI(t, nil, args...)
	if code != 0 || stdout != want {
		t.Fatalf("%q: exit %d, printed %q, want %q\nstderr: %s", args, code, stdout, want, stderr)
	}
}

// TestWatchPrintsAsEtcdctl: raftkv watch prints etcdctl's format for a key, a prefix
// from a past revision, and with --prev-kv, and stops cleanly on Ctrl-C.
func TestWatchPrintsAsEtcdctl(t *testing.T) {
	ep := startMembers(t, 1)[0].endpoint
	mustCLI(t, "OK\n", "--endpoints", ep, "put", "w/a", "1")
	// The put above is revision 2 (the store starts at 1).
	prefix := startCLI(t, "--endpoints", ep, "watch", "--prefix", "w/", "--rev", "2")
	prev := startCLI(t, "--endpoints", ep, "watch", "w/a", "--prev-kv", "--rev", "2")
	prefix.waitOutput(t, "PUT\nw/a\n1\n")
	prev.waitOutput(t, "PUT\nw/a\n1\n")
	mustCLI(t, "OK\n", "--endpoints", ep, "put", "w/b", "2")
	mustCLI(t, "OK\n", "--endpoints", ep, "put", "w/a", "3")
	mustCLI(t, "1\n", "--endpoints", ep, "del", "w/a")
	prefix.waitOutput(t, "PUT\nw/a\n1\nPUT\nw/b\n2\nPUT\nw/a\n3\nDELETE\nw/a\n\n")
	prev.waitOutput(t, "PUT\nw/a\n1\nPUT\nw/a\n1\nw/a\n3\nDELETE\nw/a\n3\nw/a\n\n")
	for _, r := range []*runningCLI{prefix, prev} {
		if err := r.stop(t); err != nil {
			t.Fatalf("Ctrl-C: the watch ended with %v; want a clean exit", err)
		}
	}
}

// TestWatchResumesThroughTheNextEndpoint: when the member serving a watch stops,
// raftkv watch goes on through the next endpoint from the revision after the last it
// printed: every event once, in order.
func TestWatchResumesThroughTheNextEndpoint(t *testing.T) {
	members := startMembers(t, 3)
	eps := []string{members[0].endpoint, members[1].endpoint, members[2].endpoint}
	w := startCLI(t, "--endpoints", strings.Join(eps, ","), "watch", "--prefix", "r/")
	// A watch from now prints nothing until it is set up: write until it shows.
	var want strings.Builder
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !strings.Contains(w.stdout.String(), "r/probe"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the watch printed nothing within 20s of puts: %q %s", w.stdout.String(), w.stderr.String())
		}
		mustCLI(t, "OK\n", "--endpoints", eps[1], "put", "r/probe", fmt.Sprint(i))
		time.Sleep(20 * time.Millisecond)
	}
	// A probe acknowledged through members[1] may not have reached the watch yet: a
	// fence written after them all comes after them in the watch, so once it shows,
	// the output so far is every first event.
	mustCLI(t, "OK\n", "--endpoints", eps[1], "put", "r/fence", "f")
	for !strings.HasSuffix(w.stdout.String(), "PUT\nr/fence\nf\n") {
		if time.Now().After(deadline) {
			t.Fatalf("the watch did not print the fence within 20s: %q %s", w.stdout.String(), w.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	want.WriteString(w.stdout.String())
	members[0].srv.Stop()
	for i := range 5 {
		mustCLI(t, "OK\n", "--endpoints", eps[1], "put", fmt.Sprintf("r/%d", i), "v")
		fmt.Fprintf(&want, "PUT\nr/%d\nv\n", i)
	}
	w.waitOutput(t, want.String())
	if !strings.Contains(w.stderr.String(), "watch through "+eps[0]+" failed") {
		t.Errorf("the watch said nothing of the failed endpoint; stderr: %q", w.stderr.String())
	}
	if err := w.stop(t); err != nil {
		t.Fatalf("Ctrl-C: %v", err)
	}
}

// TestWatchFromACompactedRevision exits with status 1 naming the compaction.
func TestWatchFromACompactedRevision(t *testing.T) {
	m := startMembers(t, 1)[0]
	for i := range 3 {
		mustCLI(t, "OK\n", "--endpoints", m.endpoint, "put", "c", fmt.Sprint(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pb.NewKVClient(dialTest(t, m.endpoint)).Compact(ctx, &pb.CompactionRequest{Revision: 3}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, nil, "--endpoints", m.endpoint, "watch", "c", "--rev", "2")
	if code != exitError || stdout != "" || !strings.Contains(stderr, "the history before revision 3 is compacted") {
		t.Fatalf("watch --rev 2 after a compaction at 3: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = runCLI(t, nil, "--endpoints", m.endpoint, "watch", "c", "--rev", "-1")
	if code != exitBadArgs || !strings.Contains(stderr, "--rev -1 cannot be negative") {
		t.Fatalf("watch --rev -1: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
