package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"raftkv/internal/testport"
	"raftkv/server"
)

// testMember is a member run in the test process.
type testMember struct {
	name     string
	endpoint string
	srv      *server.Server
}

// startMembers starts an n-member cluster in process with short timings and waits
// until every member serves a linearizable read.
func startMembers(t *testing.T, n int) []*testMember {
	t.Helper()
	ports := testport.Free(t, 2*n)
	dir := t.TempDir()
	initial := map[string][]string{}
	for i := range n {
		initial[fmt.Sprintf("m%d", i+1)] = []string{fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])}
	}
	var members []*testMember
	for i := range n {
		name := fmt.Sprintf("m%d", i+1)
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		srv, err := server.New(server.Config{
			Name:                name,
			DataDir:             filepath.Join(dir, name),
			ListenClientURLs:    []string{clientURL},
			AdvertiseClientURLs: []string{clientURL},
			ListenPeerURLs:      initial[name],
			InitialCluster:      initial,
			HeartbeatInterval:   10 * time.Millisecond,
			ElectionTimeout:     100 * time.Millisecond,
			// Membership changes right after the start: a stream up counts at once.
			StrictReconfigHealthInterval: time.Nanosecond,
		})
		if err != nil {
			t.Fatalf("starting %s: %v", name, err)
		}
		t.Cleanup(srv.Stop)
		members = append(members, &testMember{name: name, endpoint: strings.TrimPrefix(clientURL, "http://"), srv: srv})
	}
	for _, m := range members {
		waitServing(t, m.endpoint)
	}
	waitPublished(t, members)
	return members
}

// waitPublished waits until the member list names every member with its client URL
// (each member publishes its own after it starts), so that status can name them all.
func waitPublished(t *testing.T, members []*testMember) {
	t.Helper()
	conn := dialTest(t, members[0].endpoint)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
		cancel()
		published := 0
		if err == nil {
			for _, m := range resp.Members {
				if len(m.ClientURLs) > 0 {
					published++
				}
			}
		}
		if published == len(members) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member list does not give every member's client URL within 20s: %v, %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitServing(t *testing.T, endpoint string) {
	t.Helper()
	conn := dialTest(t, endpoint)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := pb.NewKVClient(conn).Range(ctx, &pb.RangeRequest{Key: []byte("ready-probe")})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve a linearizable read within 20s: %v", endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialTest(t *testing.T, endpoint string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// deadEndpoints returns n loopback endpoints where nothing listens.
func deadEndpoints(t *testing.T, n int) []string {
	var eps []string
	for _, p := range testport.Free(t, n) {
		eps = append(eps, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return eps
}

// TestClientFlagsBeforeOrAfterTheCommand: etcdctl's order (raftkv --endpoints X get
// foo) and the other one both work.
func TestClientFlagsBeforeOrAfterTheCommand(t *testing.T) {
	m := startMembers(t, 1)[0]
	for _, args := range [][]string{
		{"--endpoints", m.endpoint, "put", "foo", "bar"},
		{"put", "foo", "bar", "--endpoints", m.endpoint},
		{"--endpoints=" + m.endpoint, "--command-timeout", "9s", "put", "foo", "bar"},
	} {
		if stdout, stderr, code := runCLI(t, nil, args...); code != 0 || stdout != "OK\n" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	for _, args := range [][]string{
		{"--endpoints", m.endpoint, "get", "foo"},
		{"get", "foo", "--endpoints", m.endpoint},
		{"get", "--endpoints", m.endpoint, "foo"},
	} {
		if stdout, stderr, code := runCLI(t, nil, args...); code != 0 || stdout != "foo\nbar\n" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	stdout, _, code := runCLI(t, nil, "-w", "json", "--endpoints", m.endpoint, "get", "foo")
	var resp pb.RangeResponse
	if err := json.Unmarshal([]byte(stdout), &resp); code != 0 || err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "bar" {
		t.Errorf("-w json before the command: exit %d, %v, output %q", code, err, stdout)
	}
	if stdout, stderr, code := runCLI(t, nil, "--endpoints", m.endpoint, "del", "foo"); code != 0 || stdout != "1\n" {
		t.Errorf("del: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestDefaultEndpointsReachASingleMember: with no --endpoints the client commands
// work against one member on the first default endpoint, the others not answering.
func TestDefaultEndpointsReachASingleMember(t *testing.T) {
	m := startMembers(t, 1)[0]
	saved := defaultEndpoints
	defaultEndpoints = append([]string{m.endpoint}, deadEndpoints(t, 2)...)
	t.Cleanup(func() { defaultEndpoints = saved })

	if stdout, stderr, code := runCLI(t, nil, "put", "k", "v"); code != 0 || stdout != "OK\n" {
		t.Fatalf("put: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	stdout, stderr, code := runCLI(t, nil, "status")
	if code != 0 || stderr != "" {
		t.Fatalf("status: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], m.endpoint+" ") || !strings.Contains(lines[1], " m1 ") ||
		!strings.Contains(lines[1], " leader ") || !strings.HasPrefix(lines[2], "leader: m1 (id ") {
		t.Fatalf("status against one member on the default endpoints, want a header, one row and the leader:\n%s", stdout)
	}

	// Given explicitly, a dead endpoint is shown, and one member of one is a quorum.
	dead := deadEndpoints(t, 1)[0]
	stdout, stderr, code = runCLI(t, nil, "status", "--endpoints", m.endpoint+","+dead)
	if code != 0 || !strings.Contains(stdout, dead+" ") || !strings.Contains(stdout, "unreachable") || !strings.Contains(stdout, "connection refused") {
		t.Fatalf("status with a dead endpoint given: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
}

// TestStatusReportsUnreachableMembers: a quorum answering is success, with the others
// listed as unreachable; less than a quorum fails, with the error printed once.
func TestStatusReportsUnreachableMembers(t *testing.T) {
	members := startMembers(t, 3)
	eps := members[0].endpoint + "," + members[1].endpoint + "," + members[2].endpoint

	stdout, stderr, code := runCLI(t, nil, "status", "--endpoints", eps)
	if code != 0 || stderr != "" || strings.Count(stdout, " leader ") != 1 || strings.Count(stdout, " follower ") != 2 {
		t.Fatalf("status of a healthy cluster: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	leaderName := ""
	for _, m := range members {
		for _, line := range strings.Split(stdout, "\n") {
			if strings.HasPrefix(line, m.endpoint+" ") && strings.Contains(line, " leader ") {
				leaderName = m.name
			}
		}
	}
	if leaderName == "" || !strings.Contains(stdout, "\nleader: "+leaderName+" (id ") {
		t.Fatalf("the table's leader row and the leader line disagree (leader row: %q):\n%s", leaderName, stdout)
	}

	members[2].srv.Stop()
	stdout, stderr, code = runCLI(t, nil, "status", "--endpoints", eps)
	if code != 0 || stderr != "" || !strings.Contains(stdout, members[2].endpoint+"  m3 ") || !strings.Contains(stdout, "unreachable") {
		t.Fatalf("status with 2 of 3 members up: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	stdout, _, code = runCLI(t, nil, "status", "--endpoints", eps, "-w", "json")
	var rows []statusRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || code != 0 || len(rows) != 3 {
		t.Fatalf("status -w json: exit %d, %v\n%s", code, err, stdout)
	}
	if rows[2].Name != "m3" || rows[2].Role != roleUnreachable || rows[2].Error == "" || rows[0].Status == nil || rows[0].Name != "m1" {
		t.Fatalf("status -w json rows: %+v", rows)
	}

	members[1].srv.Stop()
	stdout, stderr, code = runCLI(t, nil, "status", "--endpoints", eps)
	if code != exitError || strings.Count(stderr, "Error:") != 1 ||
		!strings.Contains(stderr, "only 1 of the cluster's 3 members answered, not a quorum (2); no answer from m2, m3") {
		t.Fatalf("status with 1 of 3 members up: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	if !strings.Contains(stdout, members[0].endpoint+"  m1 ") {
		t.Fatalf("status without a quorum still prints the table:\n%s", stdout)
	}
}

// TestEveryEndpointsErrorIsPrinted: when no endpoint serves, the cause at each one is
// printed, once, not just the last endpoint's timeout.
func TestEveryEndpointsErrorIsPrinted(t *testing.T) {
	dead := deadEndpoints(t, 2)
	_, stderr, code := runCLI(t, nil, "get", "foo", "--endpoints", strings.Join(dead, ","))
	if code != exitError || strings.Count(stderr, "Error:") != 1 || strings.Contains(stderr, "deadline") {
		t.Fatalf("get against two dead endpoints: exit %d, stderr:\n%s", code, stderr)
	}
	for _, ep := range dead {
		if !strings.Contains(stderr, "\n  "+ep+": cannot connect: dial tcp "+ep+": connect: connection refused") {
			t.Errorf("stderr does not give %s's own error:\n%s", ep, stderr)
		}
	}

	// A dead endpoint first, then one whose answer is too large for the client: both
	// errors, the second with what to do.
	m := startMembers(t, 1)[0]
	if _, _, code := runCLI(t, nil, "put", "big", strings.Repeat("v", 4096), "--endpoints", m.endpoint); code != 0 {
		t.Fatal("put failed")
	}
	_, stderr, code = runCLI(t, nil, "get", "big", "--max-recv-bytes", "2048", "--endpoints", dead[0]+","+m.endpoint)
	if code != exitError || !strings.Contains(stderr, dead[0]+": cannot connect") ||
		!strings.Contains(stderr, m.endpoint+": grpc: received message larger than max") || !strings.Contains(stderr, "raise --max-recv-bytes") {
		t.Fatalf("get of a value over --max-recv-bytes: exit %d, stderr:\n%s", code, stderr)
	}
}
