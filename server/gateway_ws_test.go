package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// dialGatewayWS opens a websocket on the gateway's path, with header.
func dialGatewayWS(t *testing.T, base, path string, header http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+path, header)
	if err != nil {
		t.Fatalf("websocket %s: %v (%v)", path, err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readWS reads one JSON message, within 10s.
func readWS(t *testing.T, conn *websocket.Conn) map[string]any {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	kind, msg, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("reading the websocket: %v", err)
	}
	if kind != websocket.TextMessage {
		t.Fatalf("message of kind %d, want text", kind)
	}
	var m map[string]any
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatalf("message %q: %v", msg, err)
	}
	return m
}

// A watch and a lease's keep-alives over websockets, as etcd's gateway serves them
// to browsers: each request a message, each result a message.
func TestGatewayWebsocketWatchAndKeepAlive(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	base := members[0].cfg.ListenClientURLs[0]
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})

	conn := dialGatewayWS(t, base, "/v3/watch", nil)
	// foo and fop, by two create requests on one stream.
	for _, req := range []string{`{"create_request":{"key":"Zm9v"}}`, `{"create_request":{"key":"Zm9w"}}`} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
		created, _ := readWS(t, conn)["result"].(map[string]any)
		if created["created"] != true {
			t.Fatalf("after %s: %v, want a created watch", req, created)
		}
	}
	gatewayJSON(t, base, "/v3/kv/put", `{"key":"Zm9w","value":"YmFy"}`, "")
	result, _ := readWS(t, conn)["result"].(map[string]any)
	events, _ := result["events"].([]any)
	if len(events) != 1 || result["watch_id"] != "1" {
		t.Fatalf("after the put of fop: %v, want its event on the second watch", result)
	}
	if kv, _ := events[0].(map[string]any)["kv"].(map[string]any); kv["key"] != "Zm9w" || kv["value"] != "YmFy" {
		t.Fatalf("event %v", events[0])
	}

	grant := gatewayJSON(t, base, "/v3/lease/grant", `{"TTL":60}`, "")
	ka := dialGatewayWS(t, base, "/v3/lease/keepalive", nil)
	for range 2 {
		if err := ka.WriteMessage(websocket.TextMessage, []byte(`{"ID":"`+grant["ID"].(string)+`"}`)); err != nil {
			t.Fatal(err)
		}
		if result, _ := readWS(t, ka)["result"].(map[string]any); result["ID"] != grant["ID"] || result["TTL"] != "60" {
			t.Fatalf("keep-alive: %v", result)
		}
	}
	// A unary method answers once.
	rng := dialGatewayWS(t, base, "/v3/kv/range", nil)
	if err := rng.WriteMessage(websocket.TextMessage, []byte(`{"key":"Zm9w"}`)); err != nil {
		t.Fatal(err)
	}
	if got := readWS(t, rng); got["count"] != "1" {
		t.Fatalf("range over a websocket: %v", got)
	}
}

// With auth enabled, the token goes in Sec-WebSocket-Protocol ("Bearer, <token>"),
// as browsers cannot set Authorization on a websocket, or in a "token" cookie.
func TestGatewayWebsocketToken(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	base := members[0].cfg.ListenClientURLs[0]
	ctx := testCtx(t)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})
	setupRootAndAlice(t, ctx, pb.NewAuthClient(members[0].conn))
	tok := gatewayJSON(t, base, "/v3/auth/authenticate", `{"name":"alice","password":"alicepw"}`, "")
	token, _ := tok["token"].(string)

	watch := func(header http.Header) map[string]any {
		conn := dialGatewayWS(t, base, "/v3/watch", header)
		// app/x, within alice's permissions.
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"create_request":{"key":"YXBwL3g="}}`)); err != nil {
			t.Fatal(err)
		}
		return readWS(t, conn)
	}
	if got, _ := watch(http.Header{"Sec-WebSocket-Protocol": {"Bearer, " + token}})["result"].(map[string]any); got["created"] != true {
		t.Fatalf("watch with the token in Sec-WebSocket-Protocol: %v", got)
	}
	if got, _ := watch(http.Header{"Cookie": {"token=" + token}})["result"].(map[string]any); got["created"] != true {
		t.Fatalf("watch with the token in a cookie: %v", got)
	}
	// A subprotocol that is no token sends an empty one, as wsproxy does.
	if got, _ := watch(http.Header{"Sec-WebSocket-Protocol": {"graphql-ws"}})["result"].(map[string]any); got["canceled"] != true ||
		!strings.Contains(fmt.Sprint(got["cancel_reason"]), "etcdserver: invalid auth token") {
		t.Fatalf("watch with another subprotocol: %v, want it canceled as etcd's: invalid auth token", got)
	}
	if got, _ := watch(nil)["result"].(map[string]any); got["canceled"] != true ||
		!strings.Contains(fmt.Sprint(got["cancel_reason"]), "etcdserver: user name is empty") {
		t.Fatalf("watch without a token: %v, want it canceled as etcd's: user name is empty", got)
	}
}

// A message larger than a request may be closes the websocket (1009) rather than
// being read whole, and the member's Stop ends the websockets still open.
func TestGatewayWebsocketLimitsAndStop(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes = 1 << 10 })
	base := members[0].cfg.ListenClientURLs[0]
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	})
	big := dialGatewayWS(t, base, "/v3/watch", nil)
	huge := `{"create_request":{"key":"` + strings.Repeat("A", int(gatewayMaxBodyBytes(1<<10))) + `"}}`
	_ = big.WriteMessage(websocket.TextMessage, []byte(huge))
	_ = big.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := big.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("after a message over the limit: %v, want close 1009 (message too big)", err)
	}

	// A watch whose client sent a request that does not decode, then another, then
	// left: the stream's sending side ended at the bad one (as etcd's), and the
	// websocket still sees the client go.
	bad := dialGatewayWS(t, base, "/v3/watch", nil)
	for _, m := range []string{`{"create_request":{"key":"Zm9v"}}`, `{"create_request":{"key":"not base64!"}}`, `{"create_request":{"key":"Zm9w"}}`} {
		if err := bad.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	readWS(t, bad)
	_ = bad.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	_ = bad.Close()
	gw := &members[0].srv.gateway.websockets
	deadline := time.Now().Add(10 * time.Second)
	for gw.open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d websockets still open 10s after their clients left", gw.open())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Stop ends a watch and a range whose one request has not come yet, each with a
	// close frame.
	idle := dialGatewayWS(t, base, "/v3/kv/range", nil)
	open := dialGatewayWS(t, base, "/v3/watch", nil)
	if err := open.WriteMessage(websocket.TextMessage, []byte(`{"create_request":{"key":"Zm9v"}}`)); err != nil {
		t.Fatal(err)
	}
	readWS(t, open)
	stopped := make(chan struct{})
	go func() {
		members[0].srv.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Stop did not return with a websocket open")
	}
	for _, c := range []*websocket.Conn{open, idle} {
		// The watch's end may come as a last message first.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var err error
		for err == nil {
			_, _, err = c.ReadMessage()
		}
		if !websocket.IsCloseError(err, websocket.CloseGoingAway, websocket.CloseNormalClosure) {
			t.Fatalf("after Stop the websocket of %s read %v, want a close", c.RemoteAddr(), err)
		}
	}
}
