package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/soheilhy/cmux"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"raftkv/internal/testport"
)

// On https:// URLs with mutual TLS, the client port serves gRPC and, to an HTTP/1.1
// client with a certificate, the health endpoints; an https:// metrics URL serves
// /metrics over HTTP/2 or HTTP/1.1.
func TestMetricsAndHealthOverTLS(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	metricsURL := fmt.Sprintf("https://127.0.0.1:%d", testport.Free(t, 1)[0])
	clientTLS := pki.clientTLS(t, "prometheus")
	m := startHTTPSCluster(t, 1, clientTLS, func(i int, c *Config) {
		c.ClientTLS = pki.mutualTLS(t, c.Name)
		c.PeerTLS = pki.mutualTLS(t, c.Name)
		c.ListenMetricsURLs = []string{metricsURL}
	})[0]
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})

	http1 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: clientTLS.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	http2 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}
	for _, tc := range []struct {
		client    *http.Client
		url       string
		wantProto string
		wantBody  string
	}{
		{http1, m.cfg.ListenClientURLs[0] + "/health", "HTTP/1.1", `{"health":"true","reason":""}`},
		{http1, metricsURL + "/metrics", "HTTP/1.1", "etcd_server_has_leader 1"},
		{http2, metricsURL + "/metrics", "HTTP/2.0", "etcd_server_has_leader 1"},
	} {
		resp, err := tc.client.Get(tc.url)
		if err != nil {
			t.Errorf("GET %s: %v", tc.url, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Proto != tc.wantProto || !strings.Contains(string(body), tc.wantBody) {
			t.Errorf("GET %s: %s over %s, body %.200q; want 200 over %s with %q", tc.url, resp.Status, resp.Proto, body, tc.wantProto, tc.wantBody)
		}
	}
	// The JSON gateway over https://, HTTP/1.1 as every HTTP client of a client URL.
	resp, err := http1.Post(m.cfg.ListenClientURLs[0]+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"aw=="}`))
	if err != nil {
		t.Fatalf("POST /v3/kv/range over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"value":"dg=="`) {
		t.Errorf("POST /v3/kv/range over TLS: %s %s", resp.Status, body)
	}
	// A client without a certificate is refused by the TLS layer before any HTTP.
	noCert := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.clientTLS(t, ""), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	if resp, err := noCert.Get(m.cfg.ListenClientURLs[0] + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got /metrics: %s", resp.Status)
	}
}

// Behind cmux, a gRPC handler still sees the common name of the client's
// certificate: netConnListener keeps the *tls.Conn reachable for listenerTLS.
func TestClientCertCommonNameThroughCmux(t *testing.T) {
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
	mux := cmux.New(tls.NewListener(l, serverTLS.client))
	srv := grpc.NewServer(grpc.Creds(listenerTLS{logger: Config{}.withDefaults().Logger}), grpc.UnknownServiceHandler(echoCN))
	go srv.Serve(netConnListener{mux.Match(cmux.HTTP2())})
	go mux.Serve()
	defer srv.Stop()
	defer mux.Close()
	conn := dialTLS(t, l.Addr().String(), pki.clientTLS(t, "alice"))
	defer conn.Close()
	err = conn.Invoke(context.Background(), "/test.Echo/CN", &pb.RangeRequest{}, &pb.RangeResponse{})
	if got := status.Convert(err).Message(); got != `cn="alice" ok=true` {
		t.Fatalf("the handler behind cmux saw %q, want alice", got)
	}
}

// With --client-cert-auth and auth on, a gateway request from a client whose
// certificate names a user is refused, as etcd refuses it: the gateway's own calls
// carry no certificate, so it would be served as nobody (or as the token's user).
// The check never ran: http.Server fills in Request.TLS only for a *tls.Conn, and
// cmux hands it a wrapper.
func TestGatewayRefusesACommonNameUnderClientCertAuth(t *testing.T) {
	pki := newTestPKI(t, "cluster CA")
	clientTLS := pki.clientTLS(t, "root")
	m := startHTTPSCluster(t, 1, clientTLS, func(i int, c *Config) {
		c.ClientTLS = pki.mutualTLS(t, c.Name)
		c.PeerTLS = pki.mutualTLS(t, c.Name)
	})[0]
	auth := pb.NewAuthClient(m.conn)
	for _, step := range []func(ctx context.Context) error{
		func(ctx context.Context) error {
			_, err := auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"})
			return err
		},
		func(ctx context.Context) error {
			_, err := auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
			return err
		},
		func(ctx context.Context) error { _, err := auth.AuthEnable(ctx, &pb.AuthEnableRequest{}); return err },
	} {
		retry(t, step)
	}
	http1 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: clientTLS.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	resp, err := http1.Post(m.cfg.ListenClientURLs[0]+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"aw=="}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "CommonName of client sending a request against gateway will be ignored") {
		t.Fatalf("a gateway request with a certificate naming root: %s %s; want 400 and etcd's CommonName refusal", resp.Status, body)
	}
}
