package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"raftkv/internal/testpki"
	"raftkv/internal/testport"
)

// testPKI is a CA with a certificate for each member (peer and client API alike, for
// 127.0.0.1) and one for a client, written to a directory.
type testPKI struct {
	ca     *testpki.CA
	caFile string
	dir    string
}

func newTestPKI(t testing.TB, name string) *testPKI {
	dir := t.TempDir()
	ca := testpki.NewCA(t, name)
	return &testPKI{ca: ca, caFile: ca.WriteFile(t, dir, "ca"), dir: dir}
}

// issue writes a certificate with common name cn, for 127.0.0.1, and its key.
func (p *testPKI) issue(t testing.TB, cn string) (certFile, keyFile string) {
	return p.ca.Issue(t, cn, "127.0.0.1").WriteFiles(t, p.dir, cn)
}

// mutualTLS is the client and peer TLS of a member that requires certificates of
// this PKI from clients and peers alike.
func (p *testPKI) mutualTLS(t testing.TB, member string) TLSInfo {
	cert, key := p.issue(t, member)
	return TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: p.caFile, ClientCertAuth: true}
}

// clientTLS is a client's TLS config trusting this PKI's CA, presenting a certificate
// with common name cn unless cn is empty.
func (p *testPKI) clientTLS(t testing.TB, cn string) *tls.Config {
	cfg := &tls.Config{RootCAs: p.ca.Pool()}
	if cn != "" {
		cfg.Certificates = []tls.Certificate{p.ca.Issue(t, cn).TLS(t)}
	}
	return cfg
}

// startHTTPSCluster starts n members whose client and peer URLs are https://, with the
// TLS settings mutate gives each (by index), and clients using clientTLS.
func startHTTPSCluster(t testing.TB, n int, clientTLS *tls.Config, mutate func(i int, c *Config)) []*testMember {
	t.Helper()
	ports := testport.Free(t, 2*n)
	dir := t.TempDir()
	initial := map[string][]string{}
	for i := range n {
		initial[fmt.Sprintf("m%d", i)] = []string{fmt.Sprintf("https://127.0.0.1:%d", ports[2*i+1])}
	}
	members := make([]*testMember, n)
	for i := range n {
		client := fmt.Sprintf("https://127.0.0.1:%d", ports[2*i])
		cfg := Config{
			Name: fmt.Sprintf("m%d", i), DataDir: filepath.Join(dir, fmt.Sprintf("m%d", i)),
			ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
			ListenPeerURLs: initial[fmt.Sprintf("m%d", i)], InitialCluster: initial,
			HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		}
		mutate(i, &cfg)
		members[i] = &testMember{cfg: cfg}
	}
	for _, m := range members {
		srv, err := New(m.cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.srv = srv
		m.conn = dialTLS(t, m.cfg.ListenClientURLs[0], clientTLS)
		m.client = pb.NewKVClient(m.conn)
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.stop()
		}
	})
	return members
}

// dialTLS returns a gRPC connection to an https:// URL with cfg.
func dialTLS(t testing.TB, url string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(strings.TrimPrefix(url, "https://"), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestMutualTLSCluster: a cluster with mutual TLS on both sides serves clients that
// present a certificate of its CA, and refuses a client without one or with one of
// another CA; its peers replicate over TLS.
func TestMutualTLSCluster(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	members := startHTTPSCluster(t, 3, pki.clientTLS(t, "alice"), func(i int, c *Config) {
		c.ClientTLS = pki.mutualTLS(t, c.Name)
		c.PeerTLS = pki.mutualTLS(t, c.Name)
	})
	for i, m := range members {
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
			return err
		})
	}
	for _, m := range members {
		resp, err := m.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		if err != nil || resp.Count != 3 {
			t.Fatalf("member %s: %v, %v; want the 3 keys written over TLS", m.cfg.Name, resp, err)
		}
		if st := m.srv.transport.Stats(); st.StreamsAccepted == 0 {
			t.Fatalf("member %s accepted no peer stream: %+v", m.cfg.Name, st)
		}
	}

	for name, cfg := range map[string]*tls.Config{
		"no":                       pki.clientTLS(t, ""),
		"another CA's":             {RootCAs: pki.ca.Pool(), Certificates: newTestPKI(t, "another CA").clientTLS(t, "mallory").Certificates},
		"no trust in the server's": {Certificates: pki.clientTLS(t, "alice").Certificates},
	} {
		conn := dialTLS(t, members[0].cfg.ListenClientURLs[0], cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte("intruder"), Value: []byte("v")})
		cancel()
		conn.Close()
		if err == nil {
			t.Errorf("a client with %s certificate wrote to a member with --client-cert-auth", name)
		}
		t.Logf("client with %s certificate: %v", name, status.Convert(err).Message())
	}
	resp, err := members[0].client.Range(context.Background(), &pb.RangeRequest{Key: []byte("intruder")})
	if err != nil || resp.Count != 0 {
		t.Fatalf("after the refused clients: %v, %v; want no key", resp, err)
	}
}

// TestPeerOfAnotherCAIsRefused: a member whose peer certificate another CA signed is
// kept out by --peer-client-cert-auth, and the two proper members still elect a leader
// and commit writes.
func TestPeerOfAnotherCAIsRefused(t *testing.T) {
	pki, rogue := newTestPKI(t, "cluster CA"), newTestPKI(t, "another CA")
	members := startHTTPSCluster(t, 3, pki.clientTLS(t, "alice"), func(i int, c *Config) {
		c.ClientTLS = pki.mutualTLS(t, c.Name)
		c.PeerTLS = pki.mutualTLS(t, c.Name)
		if i == 2 {
			c.PeerTLS = rogue.mutualTLS(t, c.Name)
		}
	})
	for i := range 5 {
		retry(t, func(ctx context.Context) error {
			_, err := members[i%2].client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
			return err
		})
	}
	if st := members[0].srv.transport.Stats(); st.StreamsRefused == 0 || st.Peers[members[2].srv.ID()].IsConnected {
		t.Fatalf("member m0's transport %+v: want m2's streams refused and none to it", st)
	}
	if applied := members[2].srv.applied.get(); applied > 0 {
		t.Fatalf("the member of another CA applied %d entries", applied)
	}
}

// TestAutoTLS: --auto-tls and --peer-auto-tls make a working cluster whose traffic is
// encrypted; a client that skips verification reaches it, one that verifies does not.
func TestAutoTLS(t *testing.T) {
	members := startHTTPSCluster(t, 3, &tls.Config{InsecureSkipVerify: true}, func(i int, c *Config) {
		c.ClientTLS = TLSInfo{AutoTLS: true}
		c.PeerTLS = TLSInfo{AutoTLS: true}
	})
	retry(t, func(ctx context.Context) error {
		_, err := members[1].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	conn := dialTLS(t, members[0].cfg.ListenClientURLs[0], &tls.Config{RootCAs: x509.NewCertPool()})
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewKVClient(conn).Range(ctx, &pb.RangeRequest{Key: []byte("k")}); err == nil {
		t.Fatal("a client verifying the self-signed certificate was served")
	}
}

// TestTLSBadInputRefusedAtStart: a missing file, a key of another certificate, a CA
// that does not parse, an unknown cipher suite or TLS version, an https:// URL without
// a certificate: New fails naming the flag, the file and the reason, and leaves no
// data dir behind.
func TestTLSBadInputRefusedAtStart(t *testing.T) {
	pki := newTestPKI(t, "CA")
	cert, key := pki.issue(t, "m")
	_, otherKey := pki.issue(t, "other")
	garbage := filepath.Join(pki.dir, "garbage.crt")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(pki.dir, "missing.crt")
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"missing cert", func(c *Config) { c.ClientTLS = TLSInfo{CertFile: missing, KeyFile: key} },
			[]string{"--cert-file", missing, "no such file"}},
		{"key of another cert", func(c *Config) { c.ClientTLS = TLSInfo{CertFile: cert, KeyFile: otherKey} },
			[]string{"--cert-file " + cert, "--key-file " + otherKey, "does not match", "give the matching key"}},
		{"CA does not parse", func(c *Config) { c.PeerTLS = TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: garbage} },
			[]string{"--peer-trusted-ca-file " + garbage, "does not parse"}},
		{"CA not PEM", func(c *Config) { c.ClientTLS = TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: key} },
			[]string{"--trusted-ca-file " + key, "holds no PEM certificate"}},
		{"cert without key", func(c *Config) { c.PeerTLS = TLSInfo{CertFile: cert} },
			[]string{"--peer-cert-file", "--peer-key-file", "give both"}},
		{"https without cert", func(c *Config) { c.ClientTLS = TLSInfo{} },
			[]string{"--listen-client-urls https://", "needs --cert-file and --key-file (or --auto-tls"}},
		{"unknown cipher", func(c *Config) { c.CipherSuites = []string{"TLS_RSA_WITH_ROT13"} },
			[]string{"--cipher-suites", "TLS_RSA_WITH_ROT13", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}},
		{"unknown version", func(c *Config) { c.TLSMinVersion = "TLS1.1" }, []string{"--tls-min-version \"TLS1.1\": use TLS1.2 or TLS1.3"}},
		{"min above max", func(c *Config) { c.TLSMinVersion, c.TLSMaxVersion = "TLS1.3", "TLS1.2" }, []string{"above --tls-max-version"}},
		{"ciphers with TLS 1.3 only", func(c *Config) {
			c.TLSMinVersion, c.CipherSuites = "TLS1.3", []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
		}, []string{"cannot be set with --tls-min-version TLS1.3"}},
		{"https peer without peer TLS", func(c *Config) {
			c.PeerTLS = TLSInfo{}
			c.ListenPeerURLs = []string{strings.Replace(c.ListenPeerURLs[0], "https", "http", 1)}
			c.InitialCluster = map[string][]string{c.Name: c.ListenPeerURLs, "other": {"https://127.0.0.1:1"}}
		}, []string{"--initial-cluster: peer other=https://127.0.0.1:1 is https://", "--peer-trusted-ca-file"}},
		{"allowed CN without client auth", func(c *Config) {
			c.PeerTLS.ClientCertAuth, c.PeerTLS.TrustedCAFile, c.PeerTLS.AllowedCNs = false, "", []string{"m1"}
		},
			[]string{"--peer-cert-allowed-cn m1 needs --peer-client-cert-auth (and --peer-trusted-ca-file)", "drop --peer-cert-allowed-cn"}},
		{"allowed hostname without client auth", func(c *Config) {
			c.ClientTLS.ClientCertAuth, c.ClientTLS.TrustedCAFile, c.ClientTLS.AllowedHostnames = false, "", []string{"a.example", "b.example"}
		},
			[]string{"--client-cert-allowed-hostname a.example,b.example needs --client-cert-auth", "no client certificate is verified"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ports := testport.Free(t, 2)
			client, peer := fmt.Sprintf("https://127.0.0.1:%d", ports[0]), fmt.Sprintf("https://127.0.0.1:%d", ports[1])
			dataDir := filepath.Join(t.TempDir(), "data")
			cfg := Config{
				Name: "m", DataDir: dataDir, ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
				ListenPeerURLs: []string{peer}, InitialCluster: map[string][]string{"m": {peer}},
				ClientTLS: TLSInfo{CertFile: cert, KeyFile: key},
				PeerTLS:   TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: pki.caFile, ClientCertAuth: true},
			}
			tc.mutate(&cfg)
			srv, err := New(cfg)
			if err == nil {
				srv.Stop()
				t.Fatal("New accepted the config")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if _, statErr := os.Stat(dataDir); !os.IsNotExist(statErr) {
				t.Errorf("the refused start left %s behind (%v)", dataDir, statErr)
			}
		})
	}
}

// TestCertificateReloadedWhenFilesChange: a member serves a renewed certificate to
// the next connection once its files change, without a restart.
func TestCertificateReloadedWhenFilesChange(t *testing.T) {
	pki := newTestPKI(t, "CA")
	cert, key := pki.issue(t, "first")
	members := startHTTPSCluster(t, 1, pki.clientTLS(t, ""), func(i int, c *Config) {
		c.ClientTLS = TLSInfo{CertFile: cert, KeyFile: key}
		c.PeerTLS = TLSInfo{CertFile: cert, KeyFile: key}
	})
	addr := strings.TrimPrefix(members[0].cfg.ListenClientURLs[0], "https://")
	servedCN := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pki.ca.Pool(), NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := servedCN(); cn != "first" {
		t.Fatalf("served %q, want first", cn)
	}
	renewed := pki.ca.Issue(t, "second", "127.0.0.1")
	for path, data := range map[string][]byte{cert: renewed.CertPEM, key: renewed.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		// A file system with coarse timestamps must still see a change.
		later := time.Now().Add(time.Minute)
		if err := os.Chtimes(path, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if cn := servedCN(); cn != "second" {
		t.Fatalf("after renewing the files: served %q, want second", cn)
	}
	// A pair that no longer loads keeps the last good one in service.
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(); cn != "second" {
		t.Fatalf("after breaking the key file: served %q, want second", cn)
	}
}

// TestClientCertCommonName: a gRPC handler behind listenerTLS sees the common name
// of the client's verified certificate; a client without one, or on a plaintext
// connection, has none.
func TestClientCertCommonName(t *testing.T) {
	pki := newTestPKI(t, "CA")
	cert, key := pki.issue(t, "server")
	serverTLS, err := Config{
		ListenClientURLs: []string{"https://127.0.0.1:1"},
		ClientTLS:        TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: pki.caFile, ClientCertAuth: true},
	}.withDefaults().buildTLS(true)
	if err != nil {
		t.Fatal(err)
	}
	echoCN := func(_ any, stream grpc.ServerStream) error {
		cn, ok := ClientCertCommonName(stream.Context())
		return status.Errorf(13, "cn=%q ok=%v", cn, ok)
	}
	l := listenOn(t)
	srv := grpc.NewServer(grpc.Creds(listenerTLS{logger: Config{}.withDefaults().Logger}), grpc.UnknownServiceHandler(echoCN))
	go srv.Serve(tls.NewListener(l, serverTLS.client))
	defer srv.Stop()
	conn := dialTLS(t, l.Addr().String(), pki.clientTLS(t, "alice"))
	defer conn.Close()
	err = conn.Invoke(context.Background(), "/test.Echo/CN", &pb.RangeRequest{}, &pb.RangeResponse{})
	if got := status.Convert(err).Message(); got != `cn="alice" ok=true` {
		t.Fatalf("the handler saw %q, want alice", got)
	}
	if _, ok := ClientCertCommonName(context.Background()); ok {
		t.Fatal("a context without a peer has a common name")
	}
}

// listenOn opens a loopback listener on a free port, closed at cleanup.
func listenOn(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
