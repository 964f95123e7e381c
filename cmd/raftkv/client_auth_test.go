package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// enableAuth makes root (root role) and alice (readwrite on app/), with passwords,
// and enables auth.
func enableAuth(t *testing.T, endpoint string) {
	t.Helper()
	auth := pb.NewAuthClient(dialTest(t, endpoint))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, step := range []func() error{
		func() error {
			_, err := auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"})
			return err
		},
		func() error {
			_, err := auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
			return err
		},
		func() error { _, err := auth.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "app"}); return err },
		func() error {
			_, err := auth.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: "app",
				Perm: &authpb.Permission{PermType: authpb.READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")}})
			return err
		},
		func() error {
			_, err := auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "alice", Password: "alicepw"})
			return err
		},
		func() error {
			_, err := auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "alice", Role: "app"})
			return err
		},
		func() error { _, err := auth.AuthEnable(ctx, &pb.AuthEnableRequest{}); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
}

// The client commands take etcdctl's --user NAME:PASSWORD, or --user NAME with
// --password, before or after the command: the command authenticates once and
// every call carries the token, on any endpoint (a dead first one included), with
// the user's permissions; a wrong password, no user and a denied request fail with
// etcd's errors. A cluster with auth disabled takes --user and ignores it, as
// etcdctl's client does. Bad combinations are usage errors that repeat no password,
// and --user without a password and without a terminal says how to give it.
func TestClientUserFlags(t *testing.T) {
	members := startMembers(t, 3)
	eps := members[0].endpoint + "," + members[1].endpoint + "," + members[2].endpoint
	if stdout, stderr, code := runCLI(t, nil, "--endpoints", eps, "--user", "alice:any", "put", "app/x", "before"); code != 0 || stdout != "OK\n" {
		t.Fatalf("--user with auth disabled: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	enableAuth(t, members[0].endpoint)

	for _, args := range [][]string{
		{"--endpoints", eps, "--user", "alice:alicepw", "put", "app/x", "1"},
		{"put", "app/x", "1", "--endpoints", eps, "--user", "alice", "--password", "alicepw"},
		{"--endpoints", deadEndpoints(t, 1)[0] + "," + members[2].endpoint, "--user=alice:alicepw", "put", "app/x", "1"},
	} {
		if stdout, stderr, code := runCLI(t, nil, args...); code != 0 || stdout != "OK\n" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	if stdout, stderr, code := runCLI(t, nil, "--endpoints", eps, "--user", "alice:alicepw", "get", "app/", "--prefix"); code != 0 || stdout != "app/x\n1\n" {
		t.Errorf("alice gets app/: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if stdout, stderr, code := runCLI(t, nil, "--endpoints", eps, "--user", "root:rootpw", "status"); code != 0 || strings.Count(stdout, "\n127.0.0.1:") != 3 {
		t.Errorf("root's status: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "alice:alicepw", "put", "other", "1"}, "etcdserver: permission denied (PermissionDenied)"},
		{[]string{"--user", "alice:alicepw", "del", "app/", "app0", "--user", "alice:wrong"}, "etcdserver: authentication failed, invalid user ID or password (InvalidArgument)"},
		{[]string{"put", "app/x", "2"}, "etcdserver: user name is empty (InvalidArgument)"},
		{[]string{"get", "app/x"}, "etcdserver: user name is empty (InvalidArgument)"},
		{[]string{"status"}, "etcdserver: user name is empty (InvalidArgument)"},
		{[]string{"status"}, "the members run with authentication on: give --user NAME:PASSWORD"},
	} {
		stdout, stderr, code := runCLI(t, nil, append([]string{"--endpoints", eps}, c.args...)...)
		if code != exitError || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", c.args, code, stdout, stderr, exitError, c.want)
		}
	}
	if stdout, _, _ := runCLI(t, nil, "--endpoints", eps, "--user", "root:rootpw", "get", "app/x"); stdout != "app/x\n1\n" {
		t.Errorf("after the refused commands app/x reads %q", stdout)
	}

	// Usage errors: never the password.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = saved; r.Close(); w.Close() })
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--password", "s3cret", "get", "app/x"}, "--password is given without --user"},
		{[]string{"--user", ":s3cret", "get", "app/x"}, "--user names no user"},
		{[]string{"--user", "alice", "get", "app/x"}, "--user alice has no password, and stdin is not a terminal to ask the password on: give --user alice:PASSWORD or --password"},
	} {
		stdout, stderr, code := runCLI(t, nil, append([]string{"--endpoints", eps}, c.args...)...)
		if code != exitBadArgs || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "s3cret") || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d and %q", c.args, code, stdout, stderr, exitBadArgs, c.want)
		}
	}
}
