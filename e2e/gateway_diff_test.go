package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// gatewayCall is one HTTP request to etcd's JSON gateway, and how to compare its
// answer.
type gatewayCall struct {
	method, path, body string
	// shape compares only the JSON's keys (and the length of its lists), for
	// answers that name the member: its ids, URLs, name, version, sizes.
	shape bool
}

// The JSON gateway answers the requests etcd's users curl as etcd's does: the same
// status codes and JSON bodies (header ids aside) for puts, ranges by key and
// prefix, a delete, a txn, a lease's grant, time-to-live and revoke, the member
// list's and status's shape, a downgrade's cancel, refused requests (an empty key, a
// body that is not JSON, an unknown path, a GET where a POST is wanted, downgrades
// to a target that is not a version or not the one below, of an unknown action), and
// a watch's stream.
func TestGatewayAnswersAsEtcd(t *testing.T) {
	t.Parallel()
	etcdURL := "http://" + startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })
	raftkvURL := startRaftkv(t, 1, 0)[0].clientURL

	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	calls := []gatewayCall{
		{"POST", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("foo"), b64("bar")), false},
		{"POST", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"prev_kv":true}`, b64("foo"), b64("baz")), false},
		{"POST", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("foo2"), b64("two")), false},
		{"POST", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("fop"), b64("p")), false},
		{"POST", "/v3/kv/range", fmt.Sprintf(`{"key":%q}`, b64("foo")), false},
		{"POST", "/v3/kv/range", fmt.Sprintf(`{"key":%q,"range_end":%q}`, b64("foo"), b64("fop")), false},
		{"POST", "/v3/kv/range", fmt.Sprintf(`{"key":%q,"range_end":%q,"count_only":true}`, b64("f"), b64("g")), false},
		{"POST", "/v3/kv/range", fmt.Sprintf(`{"key":%q,"range_end":%q,"limit":1,"keys_only":true}`, b64("f"), b64("g")), false},
		{"POST", "/v3/kv/deleterange", fmt.Sprintf(`{"key":%q,"prev_kv":true}`, b64("foo2")), false},
		{"POST", "/v3/kv/txn", fmt.Sprintf(`{"compare":[{"key":%q,"result":"EQUAL","target":"VALUE","value":%q}],`+
			`"success":[{"request_put":{"key":%q,"value":%q}}],"failure":[{"request_range":{"key":%q}}]}`,
			b64("foo"), b64("baz"), b64("txn"), b64("yes"), b64("foo")), false},
		{"POST", "/v3/kv/txn", fmt.Sprintf(`{"compare":[{"key":%q,"result":"EQUAL","target":"VALUE","value":%q}],`+
			`"success":[{"request_put":{"key":%q,"value":%q}}],"failure":[{"request_range":{"key":%q}}]}`,
			b64("foo"), b64("nope"), b64("txn"), b64("no"), b64("foo")), false},
		{"POST", "/v3/lease/grant", `{"TTL":60,"ID":4660}`, false},
		{"POST", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"lease":"4660"}`, b64("leased"), b64("v")), false},
		{"POST", "/v3/lease/timetolive", `{"ID":4660,"keys":true}`, false},
		{"POST", "/v3/lease/leases", `{}`, false},
		{"POST", "/v3/lease/revoke", `{"ID":4660}`, false},
		{"POST", "/v3/lease/timetolive", `{"ID":4660}`, false},
		{"POST", "/v3/kv/range", fmt.Sprintf(`{"key":%q}`, b64("leased")), false},
		{"POST", "/v3/kv/compaction", `{"revision":1000}`, false},
		{"POST", "/v3/cluster/member/list", `{}`, true},
		{"POST", "/v3/maintenance/status", `{}`, true},
		{"POST", "/v3/auth/status", `{}`, false},
		{"POST", "/v3/maintenance/downgrade", `{"action":"CANCEL"}`, false},
		// Refused.
		{"POST", "/v3/maintenance/downgrade", ``, false},
		{"POST", "/v3/maintenance/downgrade", `{"action":"VALIDATE","version":"v3.6"}`, false},
		{"POST", "/v3/maintenance/downgrade", `{"action":"ENABLE","version":"3.5"}`, false},
		{"POST", "/v3/maintenance/downgrade", `{"action":7,"version":"3.6"}`, false},
		{"POST", "/v3/kv/put", fmt.Sprintf(`{"value":%q}`, b64("no key")), false},
		{"POST", "/v3/kv/range", `{"key":`, false},
		{"POST", "/v3/kv/range", `{"key":"not base64!"}`, false},
		{"POST", "/v3/kv/nothing", `{}`, false},
		{"GET", "/v3/kv/range", ``, false},
		{"POST", "/v3/lease/revoke", `{"ID":4660}`, false},
	}
	for _, c := range calls {
		wantCode, want := gatewayDo(t, etcdURL, c)
		gotCode, got := gatewayDo(t, raftkvURL, c)
		if gotCode != wantCode || got != want {
			t.Errorf("%s %s %s:\nraftkv %d %s\netcd   %d %s", c.method, c.path, c.body, gotCode, got, wantCode, want)
		}
	}

	// A body over raftkv's bound (4 MiB at the default --max-request-bytes) is
	// refused as etcd refuses the request it decodes to: the same status and
	// gRPC code; the message's sizes differ (see README, The JSON gateway).
	big := gatewayCall{"POST", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q}`, b64("big"), strings.Repeat("QUFB", 5<<20/4)), false}
	wantBigCode, wantBig := gatewayDo(t, etcdURL, big)
	gotBigCode, gotBig := gatewayDo(t, raftkvURL, big)
	var wantErr, gotErr struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal([]byte(wantBig), &wantErr) != nil || json.Unmarshal([]byte(gotBig), &gotErr) != nil ||
		gotBigCode != wantBigCode || gotErr.Code != wantErr.Code || !strings.HasPrefix(gotErr.Message, "grpc: received message larger than max (") {
		t.Errorf("a 5 MiB put:\nraftkv %d %.300s\netcd   %d %.300s", gotBigCode, gotBig, wantBigCode, wantBig)
	}

	// A watch from revision 2: the stream's first objects, the created one and
	// the put of foo at 2.
	body := fmt.Sprintf(`{"create_request":{"key":%q,"start_revision":"2"}}`, b64("foo"))
	want := gatewayWatch(t, etcdURL, body, 2)
	got := gatewayWatch(t, raftkvURL, body, 2)
	if !slices.Equal(got, want) {
		t.Errorf("watch stream:\nraftkv %s\netcd   %s", strings.Join(got, "\n       "), strings.Join(want, "\n       "))
	}
}

// gatewayDo sends c to base and returns the status code and the body normalized
// (normalizeJSON), or as it came if it is not JSON.
func gatewayDo(t *testing.T, base string, c gatewayCall) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	return resp.StatusCode, normalizeJSON(b, c.shape)
}

// gatewayWatch opens a watch through the gateway with body and returns its first
// n streamed objects, normalized; it then goes away.
func gatewayWatch(t *testing.T, base, body string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/watch", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	var out []string
	for range n {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("watch at %s: %v after %v", base, err, out)
		}
		out = append(out, normalizeJSON(raw, false))
	}
	return out
}

// normalizeJSON re-encodes a JSON body with its keys sorted, the ids and term of
// every "header" taken out (they differ between two clusters with the same data),
// a lease's remaining TTL rounded to its granted one when within 5 s of it, and
// with shape, every value other than an object or list replaced by its JSON type.
func normalizeJSON(b []byte, shape bool) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return strings.TrimSpace(string(b))
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			if h, ok := x["header"].(map[string]any); ok {
				delete(h, "cluster_id")
				delete(h, "member_id")
				delete(h, "raft_term")
			}
			if ttl, granted := x["TTL"], x["grantedTTL"]; ttl != nil && granted != nil {
				var t, g int
				if _, err := fmt.Sscan(fmt.Sprint(ttl), &t); err == nil {
					if _, err := fmt.Sscan(fmt.Sprint(granted), &g); err == nil && t <= g && t > g-5 {
						x["TTL"] = granted
					}
				}
			}
			for k, e := range x {
				x[k] = walk(e)
			}
			return x
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
			return x
		default:
			if shape {
				return fmt.Sprintf("%T", x)
			}
			return x
		}
	}
	out, _ := json.Marshal(walk(v)) // encoding/json sorts map keys
	return string(out)
}
