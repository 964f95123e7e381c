package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRaftkvCLIPrintsAsEtcdctl runs raftkv's watch and lease commands and etcdctl's
// beside them against the same 3-member cluster: each pair must print the same
// (a granted lease's id aside, which the server picks).
func TestRaftkvCLIPrintsAsEtcdctl(t *testing.T) {
	t.Parallel()
	members := startRaftkv(t, 3, 0)
	var eps []string
	for _, m := range members {
		eps = append(eps, hostPort(m.clientURL))
	}
	ctl := etcdctl{t: t, bin: etcdctlBinary(t), endpoints: eps}
	rkv := etcdctl{t: t, bin: raftkvBinary(t), endpoints: eps}
	// bothAt runs the command through etcdctl and through raftkv, each given
	// endpoints, and returns what each printed.
	bothAt := func(endpoints []string, args ...string) (string, string) {
		t.Helper()
		var outs [2]string
		for i, e := range []etcdctl{ctl, rkv} {
			e.endpoints = endpoints
			out, stderr, err := e.run("", args...)
			if err != nil {
				t.Fatalf("%s %s: %v\n%s%s", e.bin, strings.Join(args, " "), err, out, stderr)
			}
			outs[i] = out
		}
		return outs[0], outs[1]
	}
	both := func(args ...string) (string, string) {
		t.Helper()
		return bothAt(eps, args...)
	}
	sameAt := func(endpoints []string, args ...string) string {
		t.Helper()
		a, b := bothAt(endpoints, args...)
		if a != b {
			t.Fatalf("%s:\netcdctl printed\n%s\nraftkv printed\n%s", strings.Join(args, " "), a, b)
		}
		return a
	}
	same := func(args ...string) string {
		t.Helper()
		return sameAt(eps, args...)
	}
	// A member lists leases in its own order (the leader by expiry, a follower by
	// id; etcd's follower in no fixed order), and member 0 may change role between
	// the two tools' calls: both list through it, and their lines are compared
	// sorted.
	listLeases := func() string {
		t.Helper()
		a, b := bothAt(eps[:1], "lease", "list")
		if sortedLines(a) != sortedLines(b) {
			t.Fatalf("lease list:\netcdctl printed\n%s\nraftkv printed\n%s", a, b)
		}
		return a
	}

	granted := regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\(100s\)\n$`)
	a, b := both("lease", "grant", "100")
	ma, mb := granted.FindStringSubmatch(a), granted.FindStringSubmatch(b)
	if ma == nil || mb == nil {
		t.Fatalf("lease grant 100: etcdctl printed %q, raftkv %q", a, b)
	}
	ids := []string{ma[1], mb[1]}
	list := listLeases()
	if !strings.HasPrefix(list, "found 2 leases\n") || !strings.Contains(list, ids[0]) || !strings.Contains(list, ids[1]) {
		t.Fatalf("lease list printed %q; want both leases", list)
	}
	// put --lease and keep-alive --once print the same for the same arguments.
	same("put", "--lease="+ids[0], "cli/a", "1")
	same("put", "--lease="+ids[1], "cli/b", "2")
	same("lease", "keep-alive", "--once", ids[0])
	same("get", "--prefix", "cli/")
	// timetolive, with the keys and as JSON, through one member (the JSON names the
	// member that answers): the remaining seconds may tick between the two tools'
	// calls.
	ticks := regexp.MustCompile(`remaining\(\d+s\)|"ttl":\d+`)
	for _, args := range [][]string{{"lease", "timetolive", "--keys", ids[1]}, {"-w", "json", "lease", "timetolive", "--keys", ids[1]}} {
		a, b := bothAt(eps[:1], args...)
		if ticks.ReplaceAllString(a, "N") != ticks.ReplaceAllString(b, "N") || !strings.Contains(a, "granted") && !strings.Contains(a, `"granted-ttl":100`) {
			t.Fatalf("%s:\netcdctl printed\n%s\nraftkv printed\n%s", strings.Join(args, " "), a, b)
		}
	}
	if a, _ := both("lease", "timetolive", "--keys", ids[1]); !strings.Contains(a, "granted with TTL(100s)") || !strings.Contains(a, "attached keys([cli/b])") {
		t.Fatalf("lease timetolive --keys printed %q", a)
	}

	// A watch of each from the first put, with --prev-kv; then a revoke through
	// each tool (deleting a key) and a delete: the same events. (raftkv takes
	// etcdctl's flags before the command, so the same helper starts it.)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, err := newClient(t, eps...).Get(ctx, "cli/a")
	if err != nil || len(first.Kvs) != 1 {
		t.Fatalf("reading cli/a: %v %v", first, err)
	}
	from := fmt.Sprintf("--rev=%d", first.Kvs[0].CreateRevision)
	ctlWatch := startEtcdctlWatch(t, ctl.bin, eps, "--prefix", "cli/", "--prev-kv", from)
	rkvWatch := startEtcdctlWatch(t, rkv.bin, eps, "--prefix", "cli/", "--prev-kv", from)
	ctl.expect("", "lease "+ids[1]+" revoked\n", "lease", "revoke", ids[1]) // deletes cli/b
	if a := same("lease", "timetolive", ids[1]); a != "lease "+ids[1]+" already expired\n" {
		t.Fatalf("lease timetolive of a revoked lease printed %q", a)
	}
	same("put", "cli/a", "3")
	// The puts without --lease took cli/a off its lease: the revoke deletes nothing.
	rkv.expect("", "lease "+ids[0]+" revoked\n", "lease", "revoke", ids[0])
	rkv.expect("", "1\n", "del", "cli/a")
	// Each tool's put wrote v1 then v2 (etcdctl's put first), so the history is fixed.
	want := "PUT\ncli/a\n1\nPUT\ncli/a\n1\ncli/a\n1\nPUT\ncli/b\n2\nPUT\ncli/b\n2\ncli/b\n2\n" +
		"DELETE\ncli/b\n2\ncli/b\n\nPUT\ncli/a\n1\ncli/a\n3\nPUT\ncli/a\n3\ncli/a\n3\nDELETE\ncli/a\n3\ncli/a\n\n"
	ctlWatch.expect(t, "etcdctl "+from, want)
	rkvWatch.expect(t, "raftkv "+from, want)
	listLeases()
	same("get", "--prefix", "cli/")
	// Ctrl-C stops raftkv watch cleanly.
	if err := rkvWatch.interrupt(t); err != nil {
		t.Fatalf("raftkv watch exited with %v on SIGINT; want status 0", err)
	}
}

// sortedLines returns s with its lines sorted.
func sortedLines(s string) string {
	lines := strings.Split(s, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
