package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"

	"raftkv/internal/testport"
)

// gatewayPost POSTs body to the gateway at base+path, with the Authorization
// header if token is set, and returns the status and the body.
func gatewayPost(t *testing.T, base, path, body, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	return doHTTP(t, 15*time.Second, req)
}

// isGatewayError reports whether an answer is the gateway's error: status code
// and a body {"code": grpcCode, "message": message} (protojson's spacing varies).
func isGatewayError(code int, body string, wantCode, grpcCode int, message string) bool {
	var got struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	var raw map[string]any
	if json.Unmarshal([]byte(body), &got) != nil || json.Unmarshal([]byte(body), &raw) != nil {
		return false
	}
	return code == wantCode && got.Code == grpcCode && got.Message == message && len(raw) == 2
}

// gatewayJSON is gatewayPost that wants 200 and decodes the body.
func gatewayJSON(t *testing.T, base, path, body, token string) map[string]any {
	t.Helper()
	code, out := gatewayPost(t, base, path, body, token)
	if code != http.StatusOK {
		t.Fatalf("POST %s %s: %d %s", path, body, code, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("POST %s: %v in %s", path, err, out)
	}
	return m
}

// The JSON gateway serves etcd's /v3/ paths on the client URL, as etcd does, and
// not on a metrics URL: a put, a range, a lease grant, and a watch whose streamed
// body carries the put's event; /metrics still answers beside it.
func TestGatewayServesKVLeaseAndWatch(t *testing.T) {
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t, 1)[0])
	members := startTestCluster(t, 1, func(c *Config) { c.ListenMetricsURLs = []string{metricsURL} })
	base := members[0].cfg.ListenClientURLs[0]
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})

	// foo=bar, in base64 as etcd's JSON wants bytes.
	put := gatewayJSON(t, base, "/v3/kv/put", `{"key":"Zm9v","value":"YmFy"}`, "")
	header, _ := put["header"].(map[string]any)
	if header["revision"] != "3" {
		t.Fatalf("put: %v, want header.revision \"3\" (int64 as a string, as etcd's JSON)", put)
	}
	rng := gatewayJSON(t, base, "/v3/kv/range", `{"key":"Zm9v"}`, "")
	kvs, _ := rng["kvs"].([]any)
	if len(kvs) != 1 || rng["count"] != "1" {
		t.Fatalf("range: %v", rng)
	}
	if kv := kvs[0].(map[string]any); kv["key"] != "Zm9v" || kv["value"] != "YmFy" || kv["create_revision"] != "3" {
		t.Fatalf("range: kv %v, want foo=bar with proto field names", kv)
	}
	grant := gatewayJSON(t, base, "/v3/lease/grant", `{"TTL":60}`, "")
	if grant["ID"] == nil || grant["TTL"] != "60" {
		t.Fatalf("lease grant: %v", grant)
	}
	if code, body := gatewayPost(t, base, "/v3beta/kv/range", `{"key":"Zm9v"}`, ""); code != 200 || !strings.Contains(body, `"count":"1"`) {
		t.Fatalf("/v3beta/kv/range: %d %s", code, body)
	}

	// A watch from the put's revision: its body streams {"result": …} objects,
	// the created one, then the put's event.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/watch",
		strings.NewReader(`{"create_request":{"key":"Zm9v","start_revision":"3"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: %s", resp.Status)
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	var events []any
	for len(events) == 0 {
		var msg struct {
			Result map[string]any `json:"result"`
			Error  any            `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			t.Fatalf("watch: reading the stream: %v", err)
		}
		if msg.Error != nil {
			t.Fatalf("watch: %v", msg.Error)
		}
		events, _ = msg.Result["events"].([]any)
	}
	ev := events[0].(map[string]any)
	if kv, _ := ev["kv"].(map[string]any); kv["key"] != "Zm9v" || kv["mod_revision"] != "3" {
		t.Fatalf("watch: event %v, want the put of foo at 3", ev)
	}

	if code, body := httpGet(t, base+"/metrics"); code != 200 || !strings.Contains(body, "grpc_server_handled_total") {
		t.Fatalf("/metrics on the client URL: %d", code)
	}
	if code, _ := gatewayPost(t, metricsURL, "/v3/kv/range", `{"key":"Zm9v"}`, ""); code != http.StatusNotFound {
		t.Fatalf("the metrics URL answered /v3/kv/range with %d, want 404: the gateway is the client URLs'", code)
	}

	// Stop ends the watch still open, at once rather than after the HTTP
	// shutdown's grace, and closes the gateway's connection.
	start := time.Now()
	members[0].stop()
	if took := time.Since(start); took > httpShutdownTimeout {
		t.Errorf("Stop with a gateway watch open took %v", took)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil && ctx.Err() != nil {
		t.Fatalf("the watch outlived Stop: %v", err)
	}
}

// With auth enabled, a gateway request carries its token in the Authorization
// header (etcd's clients over HTTP do); without it, the request is refused as etcd
// refuses it: 400 with gRPC's InvalidArgument and "user name is empty".
func TestGatewayAuthorizationHeader(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	base := members[0].cfg.ListenClientURLs[0]
	ctx := testCtx(t)
	auth := pb.NewAuthClient(members[0].conn)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})
	setupRootAndAlice(t, ctx, auth)

	code, body := gatewayPost(t, base, "/v3/auth/authenticate", `{"name":"alice","password":"wrong"}`, "")
	if !isGatewayError(code, body, http.StatusBadRequest, 3, "etcdserver: authentication failed, invalid user ID or password") {
		t.Fatalf("wrong password: %d %s", code, body)
	}
	tok := gatewayJSON(t, base, "/v3/auth/authenticate", `{"name":"alice","password":"alicepw"}`, "")
	token, _ := tok["token"].(string)
	if token == "" {
		t.Fatalf("authenticate: %v", tok)
	}
	// app/x = v
	gatewayJSON(t, base, "/v3/kv/put", `{"key":"YXBwL3g=","value":"dg=="}`, token)
	if rng := gatewayJSON(t, base, "/v3/kv/range", `{"key":"YXBwL3g="}`, token); rng["count"] != "1" {
		t.Fatalf("range with the token: %v", rng)
	}
	code, body = gatewayPost(t, base, "/v3/kv/range", `{"key":"YXBwL3g="}`, "")
	if !isGatewayError(code, body, http.StatusBadRequest, 3, "etcdserver: user name is empty") {
		t.Fatalf("range without a token: %d %s, want etcd's 400 and user name is empty", code, body)
	}
	code, body = gatewayPost(t, base, "/v3/kv/range", `{"key":"YXBwL3g="}`, "not-a-token")
	if !isGatewayError(code, body, http.StatusUnauthorized, 16, "etcdserver: invalid auth token") {
		t.Fatalf("range with a bad token: %d %s, want etcd's 401 and invalid auth token", code, body)
	}
	// Outside alice's permissions.
	code, body = gatewayPost(t, base, "/v3/kv/put", `{"key":"b3RoZXI=","value":"dg=="}`, token)
	if !isGatewayError(code, body, http.StatusForbidden, 7, "etcdserver: permission denied") {
		t.Fatalf("put outside alice's permissions: %d %s", code, body)
	}
}

// --enable-grpc-gateway=false: no /v3/ on the client URLs, the other HTTP
// endpoints as before.
func TestGatewayDisabled(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.DisableGRPCGateway = true })
	base := members[0].cfg.ListenClientURLs[0]
	if code, _ := gatewayPost(t, base, "/v3/kv/range", `{"key":"Zm9v"}`, ""); code != http.StatusNotFound {
		t.Fatalf("/v3/kv/range with the gateway off: %d, want 404", code)
	}
	if code, _ := httpGet(t, base+"/livez"); code != 200 {
		t.Fatalf("/livez: %d", code)
	}
}

// A request body is bounded before it is read whole: one far over what gRPC takes
// is refused at the gateway, not decoded into memory first.
func TestGatewayBoundsTheRequestBody(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes = 4096 })
	base := members[0].cfg.ListenClientURLs[0]
	big := `{"key":"` + strings.Repeat("QUFB", int(gatewayMaxBodyBytes(4096))/4+1) + `"}`
	code, body := gatewayPost(t, base, "/v3/kv/range", big, "")
	bound := gatewayMaxBodyBytes(4096)
	want := fmt.Sprintf("grpc: received message larger than max (a JSON body over the gateway's bound of %d bytes vs. %d); "+
		"the gateway takes a request of at most --max-request-bytes, in JSON with its bytes in base64", bound, 4096+grpcOverheadBytes)
	// etcd answers a request over gRPC's limit so: 429, ResourceExhausted.
	if !isGatewayError(code, body, http.StatusTooManyRequests, int(codes.ResourceExhausted), want) {
		t.Fatalf("a %d-byte body over the gateway's bound: %d %.300s; want 429, code 8, %q", len(big), code, body, want)
	}
	if code, body := gatewayPost(t, base, "/v3/kv/put", `{"key":"aw==","value":"dg=="}`, ""); code != http.StatusOK {
		t.Fatalf("a small put after it: %d %s", code, body)
	}
}

// A watch stream's body is bounded a request at a time: one endless request is cut
// at the gateway's bound, so the member stops reading the body (without the bound,
// the handler's decoder would buffer it for as long as the client sends).
func TestGatewayBoundsEachRequestOfAStream(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes = 4096 })
	base := members[0].cfg.ListenClientURLs[0]
	for _, c := range []struct {
		path string
		body func() io.Reader
	}{
		{"/v3/watch", func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"create_request":{"key":"`), infiniteByte('x'))
		}},
		{"/v3/lease/keepalive", func() io.Reader { return io.MultiReader(strings.NewReader(`{"ID":"`), infiniteByte('1')) }},
		// The decoder holds the spaces before a value as it holds a value.
		{"/v3/watch", func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"create_request":{"key":"YQ=="}}`), infiniteByte(' '))
		}},
	} {
		path := c.path
		sent := &countingReader{r: c.body()}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, sent)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		<-ctx.Done()
		cancel()
		// The bound, and what the sockets' buffers between them hold.
		if n, most := atomic.LoadInt64(&sent.n), gatewayMaxBodyBytes(4096)+32<<20; n > most {
			t.Errorf("%s: the member read %d bytes of one endless request in 3 s, want at most %d", path, n, most)
		}
	}
}
