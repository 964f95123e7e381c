package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchProc is a running `etcdctl watch`, its output gathered as it comes.
type watchProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}

	waitOnce sync.Once
	waitErr  error
}

func startEtcdctlWatch(t *testing.T, bin string, endpoints []string, args ...string) *watchProc {
	t.Helper()
	return startCtlProc(t, bin, endpoints, append([]string{"watch"}, args...)...)
}

// startCtlProc starts a long-running etcdctl (or raftkv) command, its output gathered
// as it comes; it is killed when the test ends if it still runs.
func startCtlProc(t *testing.T, bin string, endpoints []string, args ...string) *watchProc {
	t.Helper()
	full := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--dial-timeout=3s"}, args...)
	p := &watchProc{cmd: exec.Command(bin, full...), done: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = lockedWriter{p} // errors land in the same buffer, after what came before them
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s %v: %v", bin, args, err)
	}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.waitOnce.Do(func() { p.waitErr = p.cmd.Wait() })
	})
	return p
}

type lockedWriter struct{ p *watchProc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// interrupt sends SIGINT, as Ctrl-C does, and returns the exit error once the
// process has exited (within 10s).
func (p *watchProc) interrupt(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("interrupting %v: %v", p.cmd.Args, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%v did not exit within 10s of SIGINT; it printed\n%s", p.cmd.Args, p.output())
	}
	p.waitOnce.Do(func() { p.waitErr = p.cmd.Wait() })
	return p.waitErr
}

func (p *watchProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// expect waits until the output is want.
func (p *watchProc) expect(t *testing.T, what, want string) {
	t.Helper()
	err := eventually(15*time.Second, 10*time.Millisecond, func() error {
		if got := p.output(); got != want {
			return fmt.Errorf("printed\n%q\nwant\n%q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("etcdctl watch %s: %v", what, err)
	}
}

// TestEtcdctlWatch runs etcdctl watch (a key, --prefix, --rev, --prev-kv,
// interactive) against an embedded etcd and a 3-member raftkv cluster of processes;
// each must print the same, which the test spells out.
func TestEtcdctlWatch(t *testing.T) {
	t.Parallel()
	bin := etcdctlBinary(t)
	etcdEndpoint := startEtcd(t)
	c := startProcCluster(t, 3)
	for _, sys := range []struct {
		name      string
		endpoints []string
		cli       *clientv3.Client
	}{{"etcd", []string{etcdEndpoint}, newClient(t, etcdEndpoint)}, {"raftkv", c.endpoints(), c.members[1].client}} {
		t.Run(sys.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			put := func(key, value string) int64 {
				t.Helper()
				resp, err := sys.cli.Put(ctx, key, value)
				if err != nil {
					t.Fatal(err)
				}
				return resp.Header.Revision
			}
			r0 := put("w/key", "v0")
			from := fmt.Sprintf("--rev=%d", r0+1)
			key := startEtcdctlWatch(t, bin, sys.endpoints, "w/key", from)
			prefix := startEtcdctlWatch(t, bin, sys.endpoints, "--prefix", "w/", from)
			prev := startEtcdctlWatch(t, bin, sys.endpoints, "w/key", fmt.Sprintf("--rev=%d", r0), "--prev-kv")
			interactive := startEtcdctlWatch(t, bin, sys.endpoints, "-i")
			if _, err := fmt.Fprintf(interactive.stdin, "watch w/ --prefix %s\n", from); err != nil {
				t.Fatal(err)
			}
			// A watch from now: no output until it is set up, so write until it shows.
			now := startEtcdctlWatch(t, bin, sys.endpoints, "w/now")
			err := eventually(15*time.Second, 100*time.Millisecond, func() error {
				put("w/now", "probe")
				if now.output() == "" {
					return fmt.Errorf("nothing printed")
				}
				return nil
			})
			if err != nil {
				t.Fatalf("etcdctl watch w/now printed nothing within 15s of puts")
			}

			put("w/key", "v1")
			put("w/other", "o1")
			if _, err := sys.cli.Delete(ctx, "w/key"); err != nil {
				t.Fatal(err)
			}
			if _, err := sys.cli.Txn(ctx).Then(clientv3.OpPut("w/key", "v2"), clientv3.OpPut("w/a", "a1")).Commit(); err != nil {
				t.Fatal(err)
			}
			put("w/now", "last")

			key.expect(t, "w/key "+from, "PUT\nw/key\nv1\nDELETE\nw/key\n\nPUT\nw/key\nv2\n")
			// The probes of w/now come first, as many as it took: counted once the
			// last event is printed, when every probe before it is too.
			if err := eventually(15*time.Second, 10*time.Millisecond, func() error {
				if !strings.HasSuffix(prefix.output(), "PUT\nw/now\nlast\n") {
					return fmt.Errorf("etcdctl watch --prefix w/ has not printed the last put:\n%s", prefix.output())
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			probes := strings.Count(prefix.output(), "w/now\nprobe\n")
			if probes == 0 {
				t.Fatalf("etcdctl watch --prefix w/ printed no probe of w/now:\n%s", prefix.output())
			}
			wantPrefix := strings.Repeat("PUT\nw/now\nprobe\n", probes) +
				"PUT\nw/key\nv1\nPUT\nw/other\no1\nDELETE\nw/key\n\nPUT\nw/key\nv2\nPUT\nw/a\na1\nPUT\nw/now\nlast\n"
			prefix.expect(t, "--prefix w/ "+from, wantPrefix)
			interactive.expect(t, "-i, watch w/ --prefix "+from, wantPrefix)
			prev.expect(t, fmt.Sprintf("w/key --rev=%d --prev-kv", r0),
				"PUT\nw/key\nv0\nPUT\nw/key\nv0\nw/key\nv1\nDELETE\nw/key\nv1\nw/key\n\nPUT\nw/key\nv2\n")
			// The watch from now prints the last put, and no more probes than the
			// history holds: wait for the last put before judging.
			if err := eventually(15*time.Second, 10*time.Millisecond, func() error {
				if out := now.output(); !strings.HasSuffix(out, "PUT\nw/now\nlast\n") {
					return fmt.Errorf("etcdctl watch w/now printed\n%s", out)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if out := now.output(); strings.Count(out, "probe") > probes {
				t.Fatalf("etcdctl watch w/now printed more probes than were put (%d):\n%s", probes, out)
			}
		})
	}
}
