package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"raftkv/version"
)

// TestClientURLsServeEtcdsOtherPaths: /version and /debug/vars answer as etcd's do,
// other methods get 405 with Allow: GET, and every path of the client URLs carries
// etcd's default CORS headers, an OPTIONS preflight answered 200 with no body (a
// review found /version and /debug/vars missing, and the headers only under /v3/).
func TestClientURLsServeEtcdsOtherPaths(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	base := members[0].cfg.ListenClientURLs[0]
	code, body := httpGet(t, base+"/version")
	var v map[string]string
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
		t.Fatalf("GET /version: %d %q (%v)", code, body, err)
	}
	minor := version.APIVersion[:strings.LastIndex(version.APIVersion, ".")] + ".0"
	if want := map[string]string{"etcdserver": version.APIVersion, "etcdcluster": minor, "storage": minor}; len(v) != 3 ||
		v["etcdserver"] != want["etcdserver"] || v["etcdcluster"] != want["etcdcluster"] || v["storage"] != want["storage"] {
		t.Errorf("GET /version: %q, want %v", body, want)
	}
	code, body = httpGet(t, base+"/debug/vars")
	if code != 200 || !strings.Contains(body, `"cmdline":`) || !strings.Contains(body, `"memstats":`) || !strings.Contains(body, `"file_descriptor_limit":`) {
		t.Errorf("GET /debug/vars: %d %.200q", code, body)
	}
	for _, path := range []string{"/version", "/debug/vars"} {
		resp, err := http.Post(base+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
			t.Errorf("POST %s: %s, Allow %q; want 405 and Allow GET", path, resp.Status, resp.Header.Get("Allow"))
		}
	}
	for _, path := range []string{"/health", "/metrics", "/version", "/livez", "/no/such/path", "/v3/kv/range"} {
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			req, err := http.NewRequest(method, base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h := resp.Header
			if got := h.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" ||
				h.Get("Access-Control-Allow-Methods") != "POST, GET, OPTIONS, PUT, DELETE" ||
				h.Get("Access-Control-Allow-Headers") != "accept, content-type, authorization" {
				t.Errorf("%s %s: CORS headers %v", method, path, h)
			}
			if method == http.MethodOptions && (resp.StatusCode != 200 || len(body) != 0) {
				t.Errorf("OPTIONS %s: %s with %d bytes; want 200 and no body", path, resp.Status, len(body))
			}
		}
	}
}
