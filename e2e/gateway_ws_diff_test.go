package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.etcd.io/etcd/server/v3/embed"
)

// The JSON gateway over websockets answers as etcd's (its wsproxy): on /v3/watch,
// two watches created on one websocket, a bad request, the events of puts, a
// cancel; on /v3/lease/keepalive, a lease's keep-alives and an unknown lease's.
// Each side gets the same messages, one at a time, and each answer is compared
// with its ids and term taken out.
func TestGatewayWebsocketAnswersAsEtcd(t *testing.T) {
	t.Parallel()
	etcdURL := "http://" + startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })
	raftkvURL := startRaftkv(t, 1, 0)[0].clientURL
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, base := range []string{etcdURL, raftkvURL} {
		gatewayDo(t, base, gatewayCall{"POST", "/v3/lease/grant", `{"TTL":60,"ID":4660}`, false})
	}

	type step struct {
		send    string // a message to send, or empty
		put     string // else a key to put through the plain gateway
		answers int    // messages to read after it
	}
	run := func(base, path string, steps []step) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		conn, _, err := websocket.DefaultDialer.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+path, nil)
		if err != nil {
			t.Fatalf("websocket %s%s: %v", base, path, err)
		}
		defer conn.Close()
		var out []string
		for _, s := range steps {
			switch {
			case s.send != "":
				if err := conn.WriteMessage(websocket.TextMessage, []byte(s.send)); err != nil {
					t.Fatal(err)
				}
			case s.put != "":
				gatewayDo(t, base, gatewayCall{"POST", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64(s.put), b64("v")), false})
			}
			for range s.answers {
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, msg, err := conn.ReadMessage()
				if err != nil {
					t.Fatalf("%s%s after %+v: %v (so far %v)", base, path, s, err, out)
				}
				out = append(out, normalizeJSON(msg, false))
			}
		}
		return out
	}
	for _, c := range []struct {
		path  string
		steps []step
	}{
		{"/v3/watch", []step{
			{send: fmt.Sprintf(`{"create_request":{"key":%q}}`, b64("ws/a")), answers: 1},
			{send: fmt.Sprintf(`{"create_request":{"key":%q,"range_end":%q,"prev_kv":true}}`, b64("ws/"), b64("ws0")), answers: 1},
			{put: "ws/a", answers: 2},
			{put: "ws/b", answers: 1},
			{send: `{"cancel_request":{"watch_id":"0"}}`, answers: 1},
			{put: "ws/a", answers: 1},
			{send: `{"create_request":{"key":"not base64!"}}`},
			{put: "ws/c", answers: 1},
		}},
		{"/v3/lease/keepalive", []step{
			{send: `{"ID":"4660"}`, answers: 1},
			{send: `{"ID":4660}`, answers: 1},
			{send: `{"ID":"999"}`, answers: 1},
		}},
	} {
		want := run(etcdURL, c.path, c.steps)
		got := run(raftkvURL, c.path, c.steps)
		// Two watches' events of one put may come in either order.
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Errorf("%s:\nraftkv:\n  %s\netcd:\n  %s", c.path, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}
