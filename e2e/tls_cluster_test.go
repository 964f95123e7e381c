package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"raftkv/internal/testpki"
	"raftkv/internal/testport"
)

// clusterPKI is a CA and the certificate files of a test: one per member (for
// 127.0.0.1, server and client use, so the same file serves the client URL, the peer
// URL and the dials to peers) and one per client, in a directory of the test's own.
type clusterPKI struct {
	ca     *testpki.CA
	dir    string
	caFile string
}

func newClusterPKI(t *testing.T, name string) *clusterPKI {
	dir := t.TempDir()
	ca := testpki.NewCA(t, name)
	return &clusterPKI{ca: ca, dir: dir, caFile: ca.WriteFile(t, dir, name)}
}

// issue writes a certificate with common name cn and its key, and returns the files.
func (p *clusterPKI) issue(t *testing.T, cn string) (certFile, keyFile string) {
	return p.ca.Issue(t, cn, "127.0.0.1").WriteFiles(t, p.dir, cn)
}

// mutualTLSArgs are the flags of a member that serves clients and peers with TLS and
// requires certificates of this PKI from both.
func (p *clusterPKI) mutualTLSArgs(t *testing.T, name string) []string {
	cert, key := p.issue(t, name)
	return []string{
		"--cert-file", cert, "--key-file", key, "--trusted-ca-file", p.caFile, "--client-cert-auth",
		"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", p.caFile, "--peer-client-cert-auth",
	}
}

// clientTLS is a client's tls.Config: trusting this CA, presenting a certificate with
// common name cn.
func (p *clusterPKI) clientTLS(t *testing.T, cn string) *tls.Config {
	return &tls.Config{RootCAs: p.ca.Pool(), Certificates: []tls.Certificate{p.ca.Issue(t, cn).TLS(t)}}
}

// startHTTPSProcCluster starts n raftkv processes whose client and peer URLs are
// https://, member i with the flags args(i), and clients with clientTLS; it waits
// until the members in ready take a write.
func startHTTPSProcCluster(t *testing.T, n int, clientTLS *tls.Config, args func(i int, name string) []string, ready ...int) *procCluster {
	t.Helper()
	c := &procCluster{t: t, bin: raftkvBinary(t)}
	dir := t.TempDir()
	ports := testport.Free(t, 2*n)
	var initial []string
	for i := range n {
		m := &procMember{
			name:      fmt.Sprintf("m%d", i+1),
			clientURL: fmt.Sprintf("https://127.0.0.1:%d", ports[2*i]),
			peerURL:   fmt.Sprintf("https://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir, m.logPath = filepath.Join(dir, m.name), filepath.Join(dir, m.name+".log")
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for i, m := range c.members {
		m.args = append([]string{
			"--name", m.name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "e2e-" + t.Name(),
		}, args(i, m.name)...)
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, DialTimeout: 2 * time.Second, TLS: clientTLS, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		m.client = cli
	}
	t.Cleanup(c.cleanup)
	for _, m := range c.members {
		c.start(m)
	}
	var waitFor []*procMember
	for _, i := range ready {
		waitFor = append(waitFor, c.members[i])
	}
	c.waitWritable(waitFor, 30*time.Second)
	return c
}

// TestEtcdctlOverMutualTLS: the real etcdctl with --cacert, --cert and --key writes
// and reads through every member of a cluster with mutual TLS on clients and peers,
// and clientv3 with a tls.Config does too; etcdctl without a client certificate, or
// with one of another CA, is refused and writes nothing.
func TestEtcdctlOverMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newClusterPKI(t, "cluster-ca")
	c := startHTTPSProcCluster(t, 3, pki.clientTLS(t, "alice"), func(i int, name string) []string {
		return pki.mutualTLSArgs(t, name)
	}, 0, 1, 2)
	var urls []string
	for _, m := range c.members {
		urls = append(urls, m.clientURL)
	}
	cert, key := pki.issue(t, "etcdctl")
	ctl := etcdctl{t: t, bin: etcdctlBinary(t), endpoints: urls}
	tlsArgs := []string{"--cacert", pki.caFile, "--cert", cert, "--key", key}
	for i, ep := range urls {
		one := etcdctl{t: t, bin: ctl.bin, endpoints: []string{ep}}
		one.expect("", "OK\n", append(tlsArgs, "put", fmt.Sprintf("tls/%d", i), "v")...)
	}
	ctl.expect("", "tls/0\nv\ntls/1\nv\ntls/2\nv\n", append(tlsArgs, "get", "--prefix", "tls/")...)
	if out, stderr, err := ctl.run("", append(tlsArgs, "endpoint", "status", "-w", "table")...); err != nil || strings.Count(out, "https://127.0.0.1:") != 3 {
		t.Fatalf("etcdctl endpoint status over TLS: %v\n%s%s", err, out, stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.members[0].client.Get(ctx, "tls/", clientv3.WithPrefix())
	if err != nil || resp.Count != 3 {
		t.Fatalf("clientv3 over TLS: %v, %v", resp, err)
	}

	rogue := newClusterPKI(t, "rogue-ca")
	rogueCert, rogueKey := rogue.issue(t, "mallory")
	for what, args := range map[string][]string{
		"no client certificate":    {"--cacert", pki.caFile},
		"another CA's certificate": {"--cacert", pki.caFile, "--cert", rogueCert, "--key", rogueKey},
		"no TLS at all":            nil,
	} {
		one := etcdctl{t: t, bin: ctl.bin, endpoints: []string{strings.TrimPrefix(urls[0], "https://")}}
		if what != "no TLS at all" {
			one.endpoints = urls[:1]
		}
		out, stderr, err := one.run("", append(args, "--command-timeout=3s", "put", "intruder", what)...)
		if err == nil {
			t.Errorf("etcdctl with %s wrote to a member with --client-cert-auth:\n%s%s", what, out, stderr)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err = c.members[1].client.Get(ctx, "intruder")
	if err != nil || resp.Count != 0 {
		t.Fatalf("after the refused clients: %v, %v; want no key", resp, err)
	}
}

// TestPeerOfAnotherCAIsKeptOut: a member whose peer certificate another CA signed
// cannot join a cluster with --peer-client-cert-auth: the others refuse its
// connections and say why in their logs, and, a quorum without it, elect a leader and
// take writes; it never learns them.
func TestPeerOfAnotherCAIsKeptOut(t *testing.T) {
	t.Parallel()
	pki, rogue := newClusterPKI(t, "cluster-ca"), newClusterPKI(t, "rogue-ca")
	c := startHTTPSProcCluster(t, 3, pki.clientTLS(t, "alice"), func(i int, name string) []string {
		args := pki.mutualTLSArgs(t, name)
		if i == 2 {
			// Its client side is proper, so the test can ask it; its peer side is not.
			cert, key := rogue.issue(t, name)
			args = append(args, "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", rogue.caFile)
		}
		return args
	}, 0, 1)
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.members[i%2].client.Put(ctx, fmt.Sprintf("k%d", i), "v")
		cancel()
		if err != nil {
			t.Fatalf("put %d through %s: %v", i, c.members[i%2].name, err)
		}
	}
	err := eventually(20*time.Second, 100*time.Millisecond, func() error {
		log, _ := os.ReadFile(c.members[0].logPath)
		if !strings.Contains(string(log), "refusing inbound connection: TLS handshake failed") {
			return fmt.Errorf("m1's log does not show m3 refused")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.members[2].client.Get(ctx, "k0", clientv3.WithSerializable())
	if err != nil || resp.Count != 0 {
		t.Fatalf("the member of another CA answered a serializable get with %v, %v; want no key: it never got the log", resp, err)
	}
	if !c.members[2].running() {
		t.Fatalf("m3 exited; it should keep running, refused")
	}
}

// TestBadTLSInputExitsAtStart: a certificate that is not there, a key of another
// certificate, a CA that does not parse, an unknown cipher suite or TLS version: the
// member exits with status 2 and one line naming the flag, the file and the reason,
// and leaves no data dir behind.
func TestBadTLSInputExitsAtStart(t *testing.T) {
	t.Parallel()
	pki := newClusterPKI(t, "ca")
	cert, key := pki.issue(t, "m1")
	_, otherKey := pki.issue(t, "other")
	notCA := filepath.Join(pki.dir, "not-a-ca.crt")
	if err := os.WriteFile(notCA, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(pki.dir, "missing.crt")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cert-file", missing, "--key-file", key}, "--cert-file: open " + missing + ": no such file or directory"},
		{[]string{"--cert-file", cert, "--key-file", otherKey}, "private key does not match public key"},
		{[]string{"--cert-file", cert, "--key-file", key, "--trusted-ca-file", notCA}, "--trusted-ca-file " + notCA + " does not parse"},
		{[]string{"--cert-file", cert, "--key-file", key, "--cipher-suites", "TLS_NOT_A_SUITE"}, `--cipher-suites: unknown cipher suite "TLS_NOT_A_SUITE"`},
		{[]string{"--cert-file", cert, "--key-file", key, "--tls-min-version", "TLS1.0"}, `--tls-min-version "TLS1.0": use TLS1.2 or TLS1.3`},
		{nil, "--listen-client-urls https://127.0.0.1:"},
	} {
		ports := testport.Free(t, 2)
		dataDir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"--data-dir", dataDir,
			"--listen-client-urls", fmt.Sprintf("https://127.0.0.1:%d", ports[0]), "--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[1])}, tc.args...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, raftkvBinary(t), args...)
		out, _ := cmd.CombinedOutput()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("raftkv %v: exit status %d, want 2 (a usage error)", tc.args, code)
		}
		var errLine string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "Error: ") {
				errLine = line
			}
		}
		if !strings.Contains(errLine, tc.want) {
			t.Errorf("raftkv %v: error line %q, want it to say %q\n%s", tc.args, errLine, tc.want, out)
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("raftkv %v left its data dir behind (%v)", tc.args, err)
		}
	}
}

// TestClusterWithTLS: "raftkv cluster --tls" runs its members on https:// URLs with
// self-signed certificates; the client commands reach them with
// --insecure-skip-tls-verify, a plaintext client does not, and the same --dir is
// refused without --tls.
func TestClusterWithTLS(t *testing.T) {
	t.Parallel()
	c := startSupervisedCluster(t, false, "--tls")
	if !strings.Contains(c.stdout.String(), "https://127.0.0.1:") || !strings.Contains(c.stdout.String(), "--insecure-skip-tls-verify put foo bar") {
		t.Fatalf("the banner shows no https:// URL or TLS flag:\n%s", c.stdout.String())
	}
	eps := strings.Join(c.endpoints(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, raftkvBinary(t), "--insecure-skip-tls-verify", "--endpoints", eps, "put", "foo", "bar").CombinedOutput()
	if err != nil || string(out) != "OK\n" {
		t.Fatalf("raftkv put --insecure-skip-tls-verify: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, raftkvBinary(t), "--endpoints", eps, "get", "foo").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "if the member serves TLS, use an https:// endpoint") {
		t.Fatalf("raftkv get without TLS: %v, want a refusal with a hint\n%s", err, out)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	again := exec.CommandContext(ctx, raftkvBinary(t), "cluster", "--base-port", "0", "--dir", filepath.Join(c.dir, "data"))
	out, _ = again.CombinedOutput()
	if again.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "holds a cluster on https:// (--tls) URLs, not http://") {
		t.Fatalf("raftkv cluster without --tls on a --tls dir: %v\n%s", again.ProcessState, out)
	}
}
