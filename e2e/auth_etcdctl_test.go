package e2e

import (
	"strings"
	"testing"
)

// TestEtcdctlAuth runs the same etcdctl commands, the way an operator sets up
// authentication (user add, role add, role grant-permission, user grant-role,
// auth enable), then works as each user with --user, against an embedded etcd and
// a 3-member raftkv cluster, and requires the same output, errors and exit status
// from both.
func TestEtcdctlAuth(t *testing.T) {
	t.Parallel()
	bin := etcdctlBinary(t)
	members := startRaftkv(t, 3, 1000)
	var raftkvEndpoints []string
	for _, m := range members {
		raftkvEndpoints = append(raftkvEndpoints, hostPort(m.clientURL))
	}
	ctls := []etcdctl{
		{t: t, bin: bin, endpoints: []string{startEtcd(t)}},
		{t: t, bin: bin, endpoints: raftkvEndpoints},
	}
	commands := [][]string{
		{"put", "app/seed", "s"},
		{"auth", "enable"},
		{"user", "add", "root:rootpw"},
		{"user", "add", "root:again"},
		{"user", "grant-role", "root", "root"},
		{"role", "add", "app"},
		{"role", "grant-permission", "app", "readwrite", "app/", "--prefix"},
		{"role", "grant-permission", "app", "read", "config"},
		{"role", "grant-permission", "app", "write", "log/", "log0"},
		{"role", "grant-permission", "app", "read", "z", "--from-key"},
		{"role", "get", "app"},
		{"user", "add", "alice:alicepw"},
		{"user", "add", "svc", "--no-password"},
		{"user", "grant-role", "alice", "app"},
		{"user", "get", "alice"},
		{"user", "list"},
		{"role", "list"},
		{"auth", "status"},
		{"auth", "enable"},
		{"put", "app/x", "anonymous"},
		{"get", "app/seed"},
		{"--user", "root:rootpw", "auth", "status"},
		{"--user", "alice:alicepw", "put", "app/x", "alice"},
		{"--user", "alice:alicepw", "get", "app/", "--prefix"},
		{"--user", "alice:alicepw", "put", "other", "alice"},
		{"--user", "alice:alicepw", "get", "other"},
		{"--user", "alice:alicepw", "del", "log/", "--prefix"},
		{"--user", "alice", "--password", "alicepw", "get", "app/x", "--print-value-only"},
		{"--user", "alice:wrong", "get", "app/x"},
		{"--user", "svc:pw", "get", "app/x"},
		{"--user", "alice:alicepw", "user", "list"},
		{"--user", "alice:alicepw", "user", "get", "alice"},
		{"--user", "alice:alicepw", "role", "get", "app"},
		{"--user", "alice:alicepw", "auth", "disable"},
		{"--user", "alice:alicepw", "compaction", "1"},
		{"--user", "root:rootpw", "role", "revoke-permission", "app", "app/", "--prefix"},
		{"--user", "alice:alicepw", "put", "app/x", "after"},
		{"--user", "root:rootpw", "user", "revoke-role", "alice", "app"},
		{"--user", "root:rootpw", "user", "get", "alice"},
		{"--user", "root:rootpw", "user", "delete", "root"},
		{"--user", "root:rootpw", "user", "delete", "alice"},
		{"--user", "alice:alicepw", "get", "app/x"},
		{"--user", "root:rootpw", "get", "app/x", "--print-value-only"},
		{"--user", "root:rootpw", "auth", "disable"},
		{"get", "app/x", "--print-value-only"},
	}
	for _, args := range commands {
		var outs [2]string
		for i, ctl := range ctls {
			stdout, stderr, err := ctl.run("", args...)
			exit := "exit 0"
			if err != nil {
				exit = err.Error()
			}
			outs[i] = "stdout:\n" + stdout + "stderr:\n" + withoutClientLogs(stderr) + exit
		}
		if outs[0] != outs[1] {
			t.Errorf("etcdctl %s:\n--- etcd:\n%s\n--- raftkv:\n%s", strings.Join(args, " "), outs[0], outs[1])
		}
	}
}

// withoutClientLogs drops clientv3's JSON log lines (their times, addresses and
// pointers differ from run to run); etcdctl's own "Error: ..." lines stay.
func withoutClientLogs(stderr string) string {
	var kept []string
	for _, line := range strings.SplitAfter(stderr, "\n") {
		if !strings.HasPrefix(line, "{\"level\":") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "")
}
