package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// TestEtcdctlLockAndElect runs etcdctl lock (held until Ctrl-C, and with a command
// to run while holding it) and etcdctl elect (campaign until Ctrl-C, and -l to
// observe) against an embedded etcd and a 3-member raftkv cluster; both must behave
// and print the same, which the test spells out.
func TestEtcdctlLockAndElect(t *testing.T) {
	t.Parallel()
	bin := etcdctlBinary(t)
	members := startRaftkv(t, 3, 0)
	var eps []string
	for _, m := range members {
		eps = append(eps, hostPort(m.clientURL))
	}
	etcd := startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })
	for _, side := range []struct {
		name string
		eps  []string
	}{{"etcd", []string{etcd}}, {"raftkv", eps}} {
		t.Run(side.name, func(t *testing.T) {
			cli := newClient(t, side.eps...)
			t.Run("lock", func(t *testing.T) { etcdctlLock(t, bin, side.eps, cli) })
			t.Run("elect", func(t *testing.T) { etcdctlElect(t, bin, side.eps) })
		})
	}
}

var lockKeyLine = regexp.MustCompile(`^(L1/[0-9a-f]+)\n\n$`)

func etcdctlLock(t *testing.T, bin string, eps []string, cli *clientv3.Client) {
	holder := startCtlProc(t, bin, eps, "lock", "L1")
	waitMatch(t, holder, "etcdctl lock L1", lockKeyLine)
	holderKey := lockKeyLine.FindStringSubmatch(holder.output())[1]

	// A second lock of the same name runs its command only once the first is
	// released, with the lock's key and revision in its environment.
	waiter := startCtlProc(t, bin, eps, "lock", "L1", "--", "sh", "-c", "echo holding $ETCD_LOCK_KEY at $ETCD_LOCK_REV")
	time.Sleep(500 * time.Millisecond)
	if out := waiter.output(); out != "" {
		t.Fatalf("etcdctl lock L1 <command> printed %q while another etcdctl holds the lock", out)
	}
	if err := holder.interrupt(t); err != nil {
		t.Fatalf("etcdctl lock L1 exited with %v on Ctrl-C; want status 0 (it unlocks)", err)
	}
	ran := regexp.MustCompile(`^holding (L1/[0-9a-f]+) at (\d+)\n$`)
	waitMatch(t, waiter, "etcdctl lock L1 sh -c ...", ran)
	m := ran.FindStringSubmatch(waiter.output())
	if m[1] == holderKey {
		t.Fatalf("the second holder's key %s is the first's", m[1])
	}
	select {
	case <-waiter.done:
	case <-time.After(10 * time.Second):
		t.Fatal("etcdctl lock with a command did not exit once the command ended")
	}
	if err := waiter.cmd.Wait(); err != nil {
		t.Fatalf("etcdctl lock with a command that succeeded: %v", err)
	}
	// Both released their keys.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := cli.Get(ctx, "L1/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("keys under L1/ after both unlocked: %v (%v)", resp, err)
	}

	// A command's exit status is etcdctl's, and the lock is released all the same.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	failing := exec.CommandContext(ctx2, bin, "--endpoints="+strings.Join(eps, ","), "lock", "L1", "--", "sh", "-c", "exit 3")
	var exit *exec.ExitError
	if err := failing.Run(); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("etcdctl lock L1 sh -c 'exit 3': %v; want exit status 3", err)
	}
	if resp, err := cli.Get(ctx, "L1/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("keys under L1/ after a failed command: %v (%v)", resp, err)
	}
}

func etcdctlElect(t *testing.T, bin string, eps []string) {
	leaderLine := regexp.MustCompile(`^E1/[0-9a-f]+\np1\n$`)
	leader := startCtlProc(t, bin, eps, "elect", "E1", "p1")
	waitMatch(t, leader, "etcdctl elect E1 p1", leaderLine)
	observer := startCtlProc(t, bin, eps, "elect", "-l", "E1")
	observer.expect(t, "-l E1", leader.output())

	candidate := startCtlProc(t, bin, eps, "elect", "E1", "p2")
	time.Sleep(500 * time.Millisecond)
	if out := candidate.output(); out != "" {
		t.Fatalf("etcdctl elect E1 p2 printed %q while p1 leads", out)
	}
	if err := leader.interrupt(t); err != nil {
		t.Fatalf("etcdctl elect E1 p1 exited with %v on Ctrl-C; want status 0 (it resigns)", err)
	}
	waitMatch(t, candidate, "etcdctl elect E1 p2", regexp.MustCompile(`^E1/[0-9a-f]+\np2\n$`))
	if candidate.output() == leader.output() {
		t.Fatalf("the second leader's key is the first's: %q", candidate.output())
	}
	observer.expect(t, "-l E1 after p1 resigned", leader.output()+candidate.output())
	for _, p := range []*watchProc{candidate, observer} {
		if err := p.interrupt(t); err != nil {
			t.Fatalf("%v exited with %v on Ctrl-C; want status 0", p.cmd.Args, err)
		}
	}
}

// waitMatch waits until p's output matches re.
func waitMatch(t *testing.T, p *watchProc, what string, re *regexp.Regexp) {
	t.Helper()
	err := eventually(15*time.Second, 10*time.Millisecond, func() error {
		if out := p.output(); !re.MatchString(out) {
			return fmt.Errorf("printed %q, want a match of %s", out, re)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
