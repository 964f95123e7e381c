package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"raftkv/internal/testport"
)

// The member commands print etcdctl's sentences and table, and member add prints how
// to start the new member; errors are etcd's, with exit 1, and a bad id exits 2.
func TestMemberCommands(t *testing.T) {
	members := startMembers(t, 3)
	ep := members[0].endpoint
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, nil, append([]string{"--endpoints", ep}, args...)...)
	}
	stdout, stderr, code := run("member", "list")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 4 || !regexp.MustCompile(`^ID\s+STATUS\s+NAME\s+PEER ADDRS\s+CLIENT ADDRS\s+IS LEARNER$`).MatchString(lines[0]) {
		t.Fatalf("member list: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, l := range lines[1:] {
		if !regexp.MustCompile(`^[0-9a-f]+\s+started\s+m[123]\s+http://127\.0\.0\.1:\d+\s+http://127\.0\.0\.1:\d+\s+false$`).MatchString(l) {
			t.Fatalf("member list row %q", l)
		}
	}
	newPeer := fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t, 1)[0])
	stdout, stderr, code = run("member", "add", "m4", "--peer-urls", newPeer, "--learner")
	m := regexp.MustCompile(`^Member ([0-9a-f ]{16}) added as learner to cluster ([0-9a-f ]{16})\n\n`).FindStringSubmatch(stdout)
	if code != 0 || m == nil {
		t.Fatalf("member add: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, want := range []string{`RAFTKV_NAME="m4"`, `RAFTKV_INITIAL_CLUSTER_STATE="existing"`, `RAFTKV_INITIAL_ADVERTISE_PEER_URLS="` + newPeer + `"`,
		"m4=" + newPeer, "m1=http://", "--initial-cluster-state existing"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("member add printed %q; want %q in it", stdout, want)
		}
	}
	id := strings.TrimSpace(m[1])
	stdout, _, _ = run("member", "list", "-w", "simple", "--consistency", "l")
	if !strings.Contains(stdout, id+", unstarted, , "+newPeer+", , true") {
		t.Fatalf("member list -w simple printed %q; want the new learner unstarted", stdout)
	}
	stdout, stderr, code = run("member", "promote", id)
	if code != exitError || !strings.Contains(stderr, "etcdserver: can only promote a learner member which is in sync with leader") {
		t.Fatalf("promote a learner that never started: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = run("member", "add", "m5", "--peer-urls", newPeer)
	if code != exitError || !strings.Contains(stderr, "etcdserver: Peer URLs already exists") {
		t.Fatalf("add a peer URL in use: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	otherPeer := fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t, 1)[0])
	stdout, stderr, code = run("member", "update", id, "--peer-urls", otherPeer)
	if code != 0 || stdout != fmt.Sprintf("Member %16s updated in cluster %s\n", id, m[2]) {
		t.Fatalf("member update: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = run("member", "remove", id)
	if code != 0 || stdout != fmt.Sprintf("Member %16s removed from cluster %s\n", id, m[2]) {
		t.Fatalf("member remove: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = run("member", "remove", id)
	if code != exitError || !strings.Contains(stderr, "etcdserver: member not found") {
		t.Fatalf("remove a removed member: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, stderr, code = run("member", "remove", "xyz"); code != exitBadArgs || !strings.Contains(stderr, `bad member ID "xyz"`) {
		t.Fatalf("member remove xyz: exit %d, stderr %q", code, stderr)
	}
	if _, stderr, code = run("member", "add", "m6"); code != exitBadArgs || !strings.Contains(stderr, "member peer urls not provided: give --peer-urls with the new member's peer URLs") {
		t.Fatalf("member add without --peer-urls: exit %d, stderr %q", code, stderr)
	}
}

// member list asks the leader by default (--consistency l, as etcdctl 3.7's): a
// member cut off from its quorum cannot answer it, and answers its own list with
// --consistency s.
func TestMemberListIsLinearizableByDefault(t *testing.T) {
	members := startMembers(t, 3)
	members[1].srv.Stop()
	members[2].srv.Stop()
	args := []string{"--endpoints", members[0].endpoint, "--command-timeout", "1s", "member", "list", "-w", "simple"}
	if stdout, stderr, code := runCLI(t, nil, args...); code == 0 {
		t.Fatalf("member list with no quorum and no --consistency: exit 0, stdout %q, stderr %q; want it to fail as a linearizable list", stdout, stderr)
	}
	stdout, stderr, code := runCLI(t, nil, append(args, "--consistency", "s")...)
	if code != 0 || strings.Count(stdout, ", started, ") != 3 {
		t.Fatalf("member list --consistency s with no quorum: exit %d, stdout %q, stderr %q; want the member's own list of 3", code, stdout, stderr)
	}
}
