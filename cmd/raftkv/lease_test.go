package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLeaseCommands: grant (with and without --id), put --lease, list, keep-alive
// once and streaming, revoke, in etcdctl's formats, through a follower of three.
func TestLeaseCommands(t *testing.T) {
	members := startMembers(t, 3)
	ep := members[1].endpoint
	cli := func(want string, args ...string) {
		t.Helper()
		mustCLI(t, want, append([]string{"--endpoints", ep}, args...)...)
	}
	cli("lease 00000000000000ab granted with TTL(60s)\n", "lease", "grant", "60", "--id", "ab")
	// Below the minimum TTL (1s with the members' 100ms election timeout): raised.
	stdout, stderr, code := runCLI(t, nil, "--endpoints", ep, "lease", "grant", "0")
	m := regexp.MustCompile(`^lease ([0-9a-f]{16}) granted with TTL\(1s\)\n$`).FindStringSubmatch(stdout)
	if code != 0 || m == nil {
		t.Fatalf("lease grant 0: exit %d, printed %q, stderr %q", code, stdout, stderr)
	}
	short := m[1]
	cli("OK\n", "put", "l/a", "1", "--lease", "ab")
	stdout, _, _ = runCLI(t, nil, "--endpoints", ep, "lease", "list")
	if lines := strings.Split(stdout, "\n"); !strings.HasPrefix(stdout, "found ") || !strings.Contains(stdout, "\n00000000000000ab\n") || len(lines) < 3 {
		t.Fatalf("lease list printed %q; want found N leases, then each id", stdout)
	}
	cli("lease 00000000000000ab keepalived with TTL(60)\n", "lease", "keep-alive", "--once", "ab")
	stdout, _, _ = runCLI(t, nil, "--endpoints", ep, "lease", "timetolive", "--keys", "ab")
	if !regexp.MustCompile(`^lease 00000000000000ab granted with TTL\(60s\), remaining\((59|60)s\), attached keys\(\[l/a\]\)\n$`).MatchString(stdout) {
		t.Fatalf("lease timetolive --keys ab printed %q", stdout)
	}

	// The short lease lives as long as it is kept alive, and is reported gone once
	// revoked.
	k := startCLI(t, "--endpoints", ep, "lease", "keep-alive", short)
	time.Sleep(3 * time.Second) // three TTLs
	cli("lease "+short+" revoked\n", "lease", "revoke", short)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(k.stdout.String(), "lease "+short+" expired or revoked.\n") {
		if time.Now().After(deadline) {
			t.Fatalf("keep-alive of a revoked lease printed %q, stderr %q", k.stdout.String(), k.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	renewals := strings.Count(k.stdout.String(), "lease "+short+" keepalived with TTL(1)\n")
	if renewals < 3 {
		t.Fatalf("keep-alive renewed a 1s lease %d times in 3s; want a renewal every 0.5s at least:\n%s", renewals, k.stdout.String())
	}
	if err := k.stop(t); err != nil {
		t.Fatalf("keep-alive of a revoked lease ended with %v; want a clean exit, as etcdctl's", err)
	}

	cli("lease 00000000000000ab revoked\n", "lease", "revoke", "ab")
	cli("", "get", "l/a")
	cli("lease 00000000000000ab already expired\n", "lease", "timetolive", "ab")
	stdout, stderr, code = runCLI(t, nil, "--endpoints", ep, "lease", "revoke", "ab")
	if code != exitError || stdout != "" || !strings.Contains(stderr, "etcdserver: requested lease not found") {
		t.Fatalf("revoking a revoked lease: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code = runCLI(t, nil, "--endpoints", ep, "lease", "revoke", "xyz")
	if code != exitBadArgs || !strings.Contains(stderr, `bad lease ID "xyz"`) {
		t.Fatalf("lease revoke xyz: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestLeaseKeepAliveMovesToTheNextEndpoint: when the member a keep-alive goes
// through stops, the renewals go on through the next endpoint and the lease lives.
func TestLeaseKeepAliveMovesToTheNextEndpoint(t *testing.T) {
	members := startMembers(t, 3)
	eps := members[0].endpoint + "," + members[1].endpoint + "," + members[2].endpoint
	mustCLI(t, "lease 00000000000000cd granted with TTL(2s)\n", "--endpoints", eps, "lease", "grant", "2", "--id", "cd")
	k := startCLI(t, "--endpoints", eps, "lease", "keep-alive", "cd")
	renewals := func() int { return strings.Count(k.stdout.String(), "lease 00000000000000cd keepalived with TTL(2)\n") }
	waitRenewals := func(n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for renewals() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d renewals within 20s, want %d:\n%s\nstderr: %s", renewals(), n, k.stdout.String(), k.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitRenewals(2)
	members[0].srv.Stop()
	waitRenewals(renewals() + 4) // two TTLs' worth through the others
	if !strings.Contains(k.stderr.String(), "keep-alive through "+members[0].endpoint+" failed") {
		t.Errorf("nothing said of the stopped endpoint; stderr: %q", k.stderr.String())
	}
	if err := k.stop(t); err != nil {
		t.Fatalf("Ctrl-C: %v", err)
	}
	if strings.Contains(k.stdout.String(), "expired or revoked") {
		t.Fatalf("the lease was lost:\n%s", k.stdout.String())
	}
	mustCLI(t, "OK\n", "--endpoints", members[1].endpoint, "put", "still", "here", "--lease", "cd")
}
