package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// etcdctl runs the etcdctl binary against a cluster's endpoints.
type etcdctl struct {
	t         *testing.T
	bin       string
	endpoints []string
}

// run runs etcdctl with args and stdin, bounded to 30s, and returns its stdout.
func (e etcdctl) run(stdin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"--endpoints=" + strings.Join(e.endpoints, ","), "--dial-timeout=3s", "--command-timeout=10s"}, args...)
	cmd := exec.CommandContext(ctx, e.bin, full...)
	// etcdctl reads ETCDCTL_* variables as flags; the test's environment must not
	// change what it does.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// expect runs etcdctl and requires its stdout to be want.
func (e etcdctl) expect(stdin, want string, args ...string) {
	e.t.Helper()
	out, stderr, err := e.run(stdin, args...)
	if err != nil {
		e.t.Fatalf("etcdctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr)
	}
	if out != want {
		e.t.Fatalf("etcdctl %s printed\n%q\nwant\n%q\nstderr:\n%s", strings.Join(args, " "), out, want, stderr)
	}
}

// TestEtcdctl drives the real etcdctl, built from go.mod's tool dependency, against a
// 3-member cluster of raftkv processes and compares its output with what etcd gives.
func TestEtcdctl(t *testing.T) {
	t.Parallel()
	bin := etcdctlBinary(t)
	c := startProcCluster(t, 3)
	ctl := etcdctl{t: t, bin: bin, endpoints: c.endpoints()}

	t.Run("kv", func(t *testing.T) {
		ctl := ctl
		ctl.t = t
		ctl.expect("", "OK\n", "put", "ctl/foo", "bar")
		ctl.expect("", "OK\n", "put", "ctl/foo2", "baz")
		ctl.expect("", "OK\n", "put", "ctl/zed", "z")
		ctl.expect("", "ctl/foo\nbar\nctl/foo2\nbaz\n", "get", "--prefix", "ctl/foo")
		ctl.expect("", "bar\n", "get", "ctl/foo", "--print-value-only")
		ctl.expect("", "ctl/foo\n\nctl/foo2\n\nctl/zed\n\n", "get", "--prefix", "ctl/", "--keys-only")
		ctl.expect("", "ctl/zed\nz\n", "get", "--prefix", "ctl/", "--sort-by=KEY", "--order=DESCEND", "--limit=1")
		if out, stderr, err := ctl.run("", "get", "--prefix", "ctl/", "--count-only", "-w", "fields"); err != nil ||
			!strings.Contains(out, "\"Count\" : 3\n") || strings.Contains(out, "\"Key\"") {
			t.Fatalf("etcdctl get --prefix ctl/ --count-only -w fields: %v; want \"Count\" : 3 and no keys in\n%s%s", err, out, stderr)
		}
		ctl.expect("", "1\n", "del", "ctl/zed")
		ctl.expect("", "0\n", "del", "ctl/zed")
		ctl.expect("", "OK\nctl/foo\nbar\n", "put", "ctl/foo", "bar2", "--prev-kv")

		// A txn whose compares hold, then one whose compares fail, from stdin.
		ctl.expect("value(\"ctl/foo\") = \"bar2\"\nmod(\"ctl/foo2\") > \"0\"\n\nput ctl/foo \"qux\"\nget ctl/foo2\n\nput ctl/foo \"nope\"\n\n",
			"SUCCESS\n\nOK\n\nctl/foo2\nbaz\n", "txn")
		ctl.expect("value(\"ctl/foo\") = \"bar2\"\n\nput ctl/foo \"nope\"\n\nget ctl/foo\ndel ctl/foo2\n\n",
			"FAILURE\n\nctl/foo\nqux\n\n1\n", "txn")
		ctl.expect("", "ctl/foo\nqux\n", "get", "--prefix", "ctl/")

		// Compaction, and a read below it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.members[0].client.Get(ctx, "ctl/foo")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rev := resp.Header.Revision
		ctl.expect("", fmt.Sprintf("compacted revision %d\n", rev), "compaction", "--physical", fmt.Sprint(rev))
		ctl.expect("", "ctl/foo\nqux\n", "get", "ctl/foo", fmt.Sprintf("--rev=%d", rev))
		out, stderr, err := ctl.run("", "get", "ctl/foo", fmt.Sprintf("--rev=%d", rev-1))
		if err == nil || !strings.Contains(stderr, "etcdserver: mvcc: required revision has been compacted") {
			t.Fatalf("etcdctl get --rev=%d below the compaction: err %v, stdout %q, stderr %q; want the compacted error", rev-1, err, out, stderr)
		}
		ctl.expect("", "1\n", "del", "--prefix", "ctl/")
		ctl.expect("", "", "get", "--prefix", "ctl/")
	})

	t.Run("endpoint status json", func(t *testing.T) {
		out, stderr, err := ctl.run("", "endpoint", "status", "-w", "json")
		if err != nil {
			t.Fatalf("etcdctl endpoint status -w json: %v\n%s\n%s", err, out, stderr)
		}
		var statuses []struct {
			Endpoint string
			Status   *pb.StatusResponse
		}
		if err := json.Unmarshal([]byte(out), &statuses); err != nil {
			t.Fatalf("etcdctl endpoint status -w json printed what does not parse: %v\n%s", err, out)
		}
		if len(statuses) != 3 {
			t.Fatalf("endpoint status gave %d statuses, want 3:\n%s", len(statuses), out)
		}
		ids := map[uint64]bool{}
		var leaders []uint64
		for i, st := range statuses {
			if st.Endpoint != ctl.endpoints[i] || st.Status == nil || st.Status.Header == nil {
				t.Fatalf("status %d is %+v; want endpoint %s with a status and header", i, st, ctl.endpoints[i])
			}
			if st.Status.Leader == 0 {
				t.Errorf("%s reports no leader", st.Endpoint)
			}
			if st.Status.RaftTerm == 0 || st.Status.RaftIndex == 0 || st.Status.Version == "" {
				t.Errorf("%s: raft term %d, raft index %d, version %q; want all set", st.Endpoint,
					st.Status.RaftTerm, st.Status.RaftIndex, st.Status.Version)
			}
			ids[st.Status.Header.MemberId] = true
			leaders = append(leaders, st.Status.Leader)
		}
		if len(ids) != 3 {
			t.Errorf("member ids %v are not 3 distinct ids", ids)
		}
		for _, l := range leaders {
			if l != leaders[0] || !ids[l] {
				t.Errorf("the endpoints disagree on the leader or name a non-member: %x (members %v)", leaders, ids)
				break
			}
		}
	})

	t.Run("endpoint status table", func(t *testing.T) {
		out, stderr, err := ctl.run("", "endpoint", "status")
		if err != nil {
			t.Fatalf("etcdctl endpoint status: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 {
			t.Fatalf("etcdctl endpoint status printed %d lines, want 3:\n%s", len(lines), out)
		}
		for i, line := range lines {
			if !strings.HasPrefix(line, ctl.endpoints[i]+", ") {
				t.Errorf("line %d is %q; want it to start with the endpoint %s", i, line, ctl.endpoints[i])
			}
		}
	})

	t.Run("endpoint health", func(t *testing.T) {
		out, stderr, err := ctl.run("", "endpoint", "health")
		if err != nil {
			t.Fatalf("etcdctl endpoint health: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
		}
		for _, ep := range ctl.endpoints {
			if !strings.Contains(out, ep+" is healthy") {
				t.Errorf("etcdctl endpoint health does not say %s is healthy:\n%s", ep, out)
			}
		}
	})

	t.Run("member list", func(t *testing.T) {
		// Members publish their names and client URLs through the log once they
		// run; give that a moment.
		var members []*pb.Member
		err := eventually(10*time.Second, 200*time.Millisecond, func() error {
			out, stderr, err := ctl.run("", "member", "list", "-w", "json")
			if err != nil {
				return fmt.Errorf("%v\n%s\n%s", err, out, stderr)
			}
			var resp pb.MemberListResponse
			if err := json.Unmarshal([]byte(out), &resp); err != nil {
				return fmt.Errorf("output does not parse: %v\n%s", err, out)
			}
			members = resp.Members
			if len(members) != 3 {
				return fmt.Errorf("%d members, want 3:\n%s", len(members), out)
			}
			for _, m := range members {
				if m.Name == "" || len(m.ClientURLs) == 0 {
					return fmt.Errorf("member %x has name %q and client URLs %v; want both published", m.ID, m.Name, m.ClientURLs)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("etcdctl member list -w json: %v", err)
		}
		// The table etcdctl prints, as etcd would print it for the same members.
		byName := map[string]*procMember{}
		for _, m := range c.members {
			byName[m.name] = m
		}
		var want strings.Builder
		for _, m := range members {
			pm := byName[m.Name]
			if pm == nil {
				t.Fatalf("member list names %q, which is not one of the cluster's members", m.Name)
			}
			fmt.Fprintf(&want, "%x, started, %s, %s, %s, false\n", m.ID, pm.name, pm.peerURL, pm.clientURL)
		}
		ctl.expect("", want.String(), "member", "list")
	})
}
