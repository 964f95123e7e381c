package server

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"raftkv/internal/testpki"
)

// serverHandshake runs a TLS handshake over loopback TCP between a server with
// serverCfg and a client presenting kp and trusting ca, and returns the server's
// error.
func serverHandshake(t *testing.T, serverCfg *tls.Config, ca *testpki.CA, kp testpki.KeyPair) error {
	t.Helper()
	l := listenOn(t)
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, serverCfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		done <- tc.Handshake()
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := tls.Client(conn, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{kp.TLS(t)}})
	client.SetDeadline(time.Now().Add(10 * time.Second))
	_ = client.Handshake()
	// With TLS 1.3 the client is done before the server has checked its certificate;
	// a read waits for the server's verdict.
	_, _ = client.Read(make([]byte, 1))
	return <-done
}

// TestPeerCertificateChecks: beyond the CA, a member checks that a peer's certificate
// names the address it connects from (unless told not to), has an allowed common
// name or host name, and is not revoked.
func TestPeerCertificateChecks(t *testing.T) {
	pki := newTestPKI(t, "CA")
	cert, key := pki.issue(t, "server")
	peerTLS := func(mutate func(*TLSInfo)) *tls.Config {
		info := TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: pki.caFile, ClientCertAuth: true}
		mutate(&info)
		cfgs, err := Config{Name: "m", ListenPeerURLs: []string{"https://127.0.0.1:1"}, InitialCluster: map[string][]string{"m": {"https://127.0.0.1:1"}},
			PeerTLS: info}.withDefaults().buildTLS(true)
		if err != nil {
			t.Fatal(err)
		}
		return cfgs.peer
	}
	local := pki.ca.Issue(t, "m1", "127.0.0.1")
	elsewhere := pki.ca.Issue(t, "m1", "10.9.9.9")
	byName := pki.ca.Issue(t, "m1", "localhost")
	other := pki.ca.Issue(t, "m2", "127.0.0.1")
	crlFile := filepath.Join(pki.dir, "peer.crl")
	if err := os.WriteFile(crlFile, pki.ca.CRL(t, other), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*TLSInfo)
		peer   testpki.KeyPair
		want   string // "" to accept
	}{
		{"certificate for the address it connects from", func(*TLSInfo) {}, local, ""},
		{"certificate for another address", func(*TLSInfo) {}, elsewhere, "not 127.0.0.1, the address it connects from"},
		{"another address, SAN check skipped", func(i *TLSInfo) { i.SkipClientSANVerify = true }, elsewhere, ""},
		{"DNS name resolving to the address", func(*TLSInfo) {}, byName, ""},
		{"allowed CN", func(i *TLSInfo) { i.AllowedCNs = []string{"m1"} }, local, ""},
		{"CN not allowed", func(i *TLSInfo) { i.AllowedCNs = []string{"m1"} }, other, "not one of the allowed [m1]"},
		{"host name not allowed", func(i *TLSInfo) { i.AllowedHostnames = []string{"m1.example"} }, local, "valid for none of the allowed host names"},
		{"allowed host name", func(i *TLSInfo) { i.AllowedHostnames = []string{"127.0.0.1"} }, local, ""},
		{"not revoked", func(i *TLSInfo) { i.CRLFile = crlFile }, local, ""},
		{"revoked", func(i *TLSInfo) { i.CRLFile = crlFile }, other, "is revoked by " + crlFile},
	} {
		err := serverHandshake(t, peerTLS(tc.mutate), pki.ca, tc.peer)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want a refusal saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := (Config{PeerTLS: TLSInfo{CertFile: cert, KeyFile: key, CRLFile: key}}).withDefaults().buildTLS(false); err == nil ||
		!strings.Contains(err.Error(), "--peer-crl-file "+key+" does not parse") {
		t.Errorf("a CRL file that does not parse: %v", err)
	}
}
