package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"raftkv/internal/testpki"
	"raftkv/internal/testport"
	"raftkv/server"
)

// TestClientCommandsOverTLS: put, get and status reach a member with mutual TLS
// through --cacert, --cert and --key; without a certificate, or without the CA, the
// command fails and says which flag is missing.
func TestClientCommandsOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "CA")
	caFile := ca.WriteFile(t, dir, "ca")
	memberCert, memberKey := ca.Issue(t, "m1", "127.0.0.1").WriteFiles(t, dir, "m1")
	clientCert, clientKey := ca.Issue(t, "alice").WriteFiles(t, dir, "alice")
	ports := testport.Free(t, 2)
	clientURL, peerURL := fmt.Sprintf("https://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	memberTLS := server.TLSInfo{CertFile: memberCert, KeyFile: memberKey, TrustedCAFile: caFile, ClientCertAuth: true}
	srv, err := server.New(server.Config{
		Name: "m1", DataDir: filepath.Join(dir, "m1"), ListenClientURLs: []string{clientURL}, AdvertiseClientURLs: []string{clientURL},
		ListenPeerURLs: []string{peerURL}, InitialCluster: map[string][]string{"m1": {peerURL}},
		HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, ClientTLS: memberTLS,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	tlsFlags := []string{"--endpoints", clientURL, "--cacert", caFile, "--cert", clientCert, "--key", clientKey}
	deadline := time.Now().Add(20 * time.Second)
	for {
		stdout, stderr, code := runCLI(t, nil, append([]string{"put", "foo", "bar"}, tlsFlags...)...)
		if code == 0 && stdout == "OK\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put over TLS: exit %d\n%s%s", code, stdout, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hostPort := strings.TrimPrefix(clientURL, "https://")
	// The boolean flag before the command, as etcdctl takes it: the server's
	// certificate is not checked (the member's is of a CA the command is not given).
	if stdout, stderr, code := runCLI(t, nil, "--insecure-skip-tls-verify", "--endpoints", hostPort, "--cert", clientCert, "--key", clientKey, "get", "foo"); code != 0 || stdout != "foo\nbar\n" {
		t.Fatalf("get --insecure-skip-tls-verify before the command: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code := runCLI(t, nil, "--insecure-skip-tls-verify"); code != 2 || !strings.Contains(stderr, "a flag of the commands (put, get, del, watch, lease, status, member, snapshot save)") {
		t.Fatalf("a member given --insecure-skip-tls-verify: exit %d\n%s", code, stderr)
	}
	// A bare host:port takes TLS when the TLS flags are given.
	bare := []string{"--endpoints", hostPort, "--cacert", caFile, "--cert", clientCert, "--key", clientKey}
	if stdout, stderr, code := runCLI(t, nil, append([]string{"get", "foo"}, bare...)...); code != 0 || stdout != "foo\nbar\n" {
		t.Fatalf("get over TLS: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := runCLI(t, nil, append([]string{"status"}, tlsFlags...)...); code != 0 || !strings.Contains(stdout, hostPort+"  m1") {
		t.Fatalf("status over TLS: exit %d\n%s%s", code, stdout, stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--endpoints", clientURL, "--cacert", caFile}, "give --cert and --key"},
		{[]string{"--endpoints", clientURL, "--cert", clientCert, "--key", clientKey}, "give --cacert"},
		{[]string{"--endpoints", clientURL, "--cacert", caFile, "--cert", clientCert}, `--cert "` + clientCert + `" and --key "": give both`},
		{[]string{"--endpoints", clientURL, "--cacert", clientKey}, "holds no PEM certificate"},
		{[]string{"--endpoints", clientURL, "--cacert", caFile, "--cert", clientCert, "--key", memberKey}, "private key does not match public key"},
		{[]string{"--endpoints", hostPort}, "if the member serves TLS, use an https:// endpoint"},
	} {
		stdout, stderr, code := runCLI(t, nil, append([]string{"get", "foo", "--dial-timeout", "5s"}, tc.args...)...)
		t.Logf("get %v: %s", tc.args, stderr)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("get %v: exit %d, want a failure saying %q\n%s%s", tc.args, code, tc.want, stdout, stderr)
		}
	}
}
