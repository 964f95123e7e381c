package e2e

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEtcdctlLease runs the same etcdctl lease commands (grant, put --lease,
// timetolive with and without --keys, list, keep-alive once and streaming, revoke,
// and their errors) against a 3-member cluster of raftkv processes and against an
// embedded etcd, and requires the same output from both, once each side's lease id is
// written <id> and the remaining TTL checked to be close.
func TestEtcdctlLease(t *testing.T) {
	t.Parallel()
	bin := etcdctlBinary(t)
	c := startProcCluster(t, 3)
	sides := []*leaseCtl{
		{name: "etcd", ctl: etcdctl{t: t, bin: bin, endpoints: []string{startEtcd(t)}}},
		{name: "raftkv", ctl: etcdctl{t: t, bin: bin, endpoints: c.endpoints()}},
	}

	// Each step runs on both sides; "{id}" and "{short}" stand for the lease granted in
	// the first and in the last step of each side.
	steps := [][]string{
		{"lease", "grant", "100"},
		{"put", "--lease={id}", "ctl/lease/a", "1"},
		{"put", "--lease={id}", "ctl/lease/b", "2"},
		{"put", "ctl/lease/c", "3"},
		{"get", "--prefix", "ctl/lease/"},
		{"lease", "timetolive", "{id}"},
		{"lease", "timetolive", "--keys", "{id}"},
		{"lease", "list"},
		{"lease", "keep-alive", "--once", "{id}"},
		{"put", "--lease=1234", "ctl/lease/d", "4"},
		{"lease", "revoke", "{id}"},
		{"get", "--prefix", "ctl/lease/"},
		{"lease", "timetolive", "{id}"},
		{"lease", "revoke", "{id}"},
		{"lease", "keep-alive", "--once", "{id}"},
		// Below the minimum TTL (2s with the default 1s election timeout): raised.
		{"lease", "grant", "1"},
		{"lease", "revoke", "{short}"},
		{"lease", "grant", "9000000001"},
	}
	for _, args := range steps {
		var outs []string
		for _, s := range sides {
			outs = append(outs, s.run(t, args))
		}
		if outs[0] != outs[1] {
			t.Fatalf("etcdctl %s:\netcd printed\n%s\nraftkv printed\n%s", strings.Join(args, " "), outs[0], outs[1])
		}
		t.Logf("etcdctl %s: %q", strings.Join(args, " "), outs[0])
	}

	// Streaming keep-alive: it renews until stopped, printing a line per renewal.
	raftkv := sides[1]
	raftkv.run(t, []string{"lease", "grant", "6"})
	out := raftkv.ctl.runFor(t, 3*time.Second, "lease", "keep-alive", raftkv.lastID)
	want := "lease " + raftkv.lastID + " keepalived with TTL(6)\n"
	if n := strings.Count(out, want); n < 1 || strings.ReplaceAll(out, want, "") != "" {
		t.Fatalf("etcdctl lease keep-alive printed %q; want lines %q", out, want)
	}
}

// leaseCtl is one side of TestEtcdctlLease: its etcdctl and the leases it granted.
type leaseCtl struct {
	name string
	ctl  etcdctl
	// firstID and lastID are the leases granted first and last, in hex as etcdctl
	// prints them (16 digits, zeros in front).
	firstID, lastID string
}

var (
	grantedRE   = regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n$`)
	remainingRE = regexp.MustCompile(`remaining\((\d+)s\)`)
	keysRE      = regexp.MustCompile(`attached keys\(\[([^]]*)\]\)`)
)

// run runs etcdctl with args and returns what it printed, stdout and stderr (less the
// client's logs), with the
// side's lease ids as <id> and <short>, the remaining TTL checked against the granted
// one and written as <remaining>, and attached keys sorted (etcd lists them in no
// particular order).
func (s *leaseCtl) run(t *testing.T, args []string) string {
	t.Helper()
	full := make([]string, len(args))
	for i, a := range args {
		a = strings.ReplaceAll(a, "{id}", s.firstID)
		full[i] = strings.ReplaceAll(a, "{short}", s.lastID)
	}
	out, stderr, err := s.ctl.run("", full...)
	if m := grantedRE.FindStringSubmatch(out); m != nil {
		if s.firstID == "" {
			s.firstID = m[1]
		}
		s.lastID = m[1]
	}
	text := out
	for _, line := range strings.SplitAfter(stderr, "\n") {
		// The client's own JSON logs carry times and ports; its error line does not.
		if !strings.HasPrefix(line, "{") {
			text += line
		}
	}
	if err != nil {
		text += "(exit status non-zero)\n"
	}
	if m := remainingRE.FindStringSubmatch(text); m != nil {
		if remaining, _ := strconv.Atoi(m[1]); remaining < 90 || remaining > 100 {
			t.Fatalf("%s: etcdctl %s printed a remaining TTL of %ds for a 100s lease granted a moment ago:\n%s",
				s.name, strings.Join(full, " "), remaining, text)
		}
		text = remainingRE.ReplaceAllString(text, "remaining(<remaining>)")
	}
	text = keysRE.ReplaceAllStringFunc(text, func(k string) string {
		keys := strings.Fields(keysRE.FindStringSubmatch(k)[1])
		slices.Sort(keys)
		return "attached keys([" + strings.Join(keys, " ") + "])"
	})
	for _, id := range []struct {
		hex, name string
	}{{s.firstID, "<id>"}, {s.lastID, "<short>"}} {
		if id.hex != "" {
			text = strings.ReplaceAll(text, id.hex, id.name)
		}
	}
	return text
}

// runFor runs etcdctl with args for d, then stops it, and returns its stdout.
func (e etcdctl) runFor(t *testing.T, d time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	full := append([]string{"--endpoints=" + strings.Join(e.endpoints, ",")}, args...)
	cmd := exec.CommandContext(ctx, e.bin, full...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	_ = cmd.Run() // killed when d passes, as intended
	return stdout.String()
}
