package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// A healthy member answers /health, /livez and /readyz as etcd does, with
// ?verbose, ?exclude= and one check by its path.
func TestHealthEndpointsOfHealthyMember(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	// The put needs only two members, so members[1] may not have heard from the
	// leader when it returns (CI once saw "RAFT NO LEADER" here). Stopping
	// members[1] for the put makes that the case every time; once it has applied
	// the put, it knows the leader that committed it.
	members[1].stop()
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	members[1].start(t)
	waitAppliedEverywhere(t, members, leaderOf(t, members))
	base := members[1].cfg.ListenClientURLs[0]
	for _, tc := range []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/health", 200, `{"health":"true","reason":""}`},
		{"/health?serializable=true", 200, `{"health":"true","reason":""}`},
		{"/health?exclude=NOSPACE", 200, `{"health":"true","reason":""}`},
		{"/livez", 200, "ok"},
		{"/livez?verbose", 200, "[+]serializable_read ok\nok"},
		{"/readyz", 200, "ok"},
		{"/readyz?verbose", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok"},
		{"/readyz?verbose&exclude=linearizable_read&exclude=no_such_check", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]non_learner ok\nok"},
		{"/readyz/linearizable_read?verbose", 200, "[+]linearizable_read ok\nok"},
		{"/livez/serializable_read", 200, "ok"},
		{"/readyz/no_such_check", 404, "404 page not found"},
	} {
		if code, body := httpGet(t, base+tc.path); code != tc.wantCode || body != tc.wantBody {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.wantBody)
		}
	}
	resp, err := http.Post(base+"/health", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST /health: %s, Allow %q; want 405 and Allow GET", resp.Status, resp.Header.Get("Allow"))
	}
}

// A member that lost its quorum says so within about healthTimeout, far sooner than
// a request's timeout, rather than keep a probe waiting; its local checks still pass.
func TestHealthOfMemberWithoutQuorum(t *testing.T) {
	t.Parallel() // it mostly waits
	const requestTimeout = 30 * time.Second
	members := startTestCluster(t, 3, func(c *Config) { c.RequestTimeout = requestTimeout })
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	members[1].stop()
	members[2].stop()
	base := members[0].cfg.ListenClientURLs[0]
	// Bound on an answer: the health deadline, with room for a loaded machine, and
	// still far below the request timeout the read would otherwise wait for.
	const answerWithin = healthTimeout + 9*time.Second

	for _, tc := range []struct {
		path     string
		wantCode int
		want     []string // substrings of the body; any one of a "|"-separated set
	}{
		{"/health", 503, []string{`"health":"false"`, `RAFT NO LEADER|RANGE ERROR:etcdserver: request timed out|RANGE ERROR:etcdserver: no leader`}},
		{"/readyz/linearizable_read", 503, []string{"[-]linearizable_read failed: etcdserver: request timed out|[-]linearizable_read failed: etcdserver: no leader"}},
		{"/readyz", 503, []string{"[+]data_corruption ok", "[+]serializable_read ok", "[-]linearizable_read failed"}},
		{"/livez", 200, []string{"ok"}},
		{"/health?serializable=true", 200, []string{`{"health":"true","reason":""}`}},
	} {
		start := time.Now()
		code, body := httpGet(t, base+tc.path)
		took := time.Since(start)
		if took > answerWithin {
			t.Errorf("GET %s took %v without a quorum; want an answer within %v", tc.path, took, answerWithin)
		}
		if code != tc.wantCode {
			t.Errorf("GET %s without a quorum: %d %q, want %d", tc.path, code, body, tc.wantCode)
		}
		for _, w := range tc.want {
			if !containsAny(body, strings.Split(w, "|")) {
				t.Errorf("GET %s without a quorum: body %q lacks %q", tc.path, body, w)
			}
		}
	}
	// Once the member has noticed (CheckQuorum, an election timeout), /health names
	// the cause.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := httpGet(t, base+"/health")
		if strings.Contains(body, "RAFT NO LEADER") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health still says %q 10s after the quorum was lost; want RAFT NO LEADER", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A write without a quorum fails, and counts as a failed proposal once the
	// member's copy of its deadline passes, a moment after the client's. (A request
	// whose deadline passes before the member gets it is not a proposal: on a loaded
	// machine, try again.)
	var f map[string]*dto.MetricFamily
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("lost")})
		cancel()
		if err == nil {
			t.Fatal("a put succeeded on a member without a quorum")
		}
		var failed float64
		for polled := time.Now(); time.Since(polled) < 3*time.Second && failed < 1; time.Sleep(20 * time.Millisecond) {
			f = scrape(t, base+"/metrics")
			failed, _ = metricValue(f, "etcd_server_proposals_failed_total")
		}
		if failed >= 1 {
			break
		}
		if attempt == 5 {
			t.Fatalf("%d puts failed without a quorum, but proposals_failed_total is %v", attempt, failed)
		}
	}
	if v, _ := metricValue(f, "etcd_server_has_leader"); v != 0 {
		t.Errorf("etcd_server_has_leader = %v without a quorum, want 0", v)
	}
	if v, _ := metricValue(f, "etcd_server_health_failures"); v < 2 {
		t.Errorf("etcd_server_health_failures = %v after failed /health checks, want at least 2", v)
	}
	if v, _ := metricValue(f, "etcd_server_healthcheck", "type", "readyz", "name", "linearizable_read"); v != 0 {
		t.Errorf("etcd_server_healthcheck{readyz,linearizable_read} = %v after it failed, want 0", v)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// An HTTP/1.1 keep-alive connection that carries no request for httpIdleTimeout is
// closed by the member, so clients that never close theirs hold nothing for good.
func TestIdleHTTPConnectionsClosed(t *testing.T) {
	defer func(d time.Duration) { httpIdleTimeout = d }(httpIdleTimeout)
	httpIdleTimeout = 300 * time.Millisecond
	members := startTestCluster(t, 1, nil)
	u, err := url.Parse(members[0].cfg.ListenClientURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /version HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /version: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	// Idle now: the member closes the connection, well before this deadline.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("an idle keep-alive connection: read %d bytes, %v; want the member to close it (EOF)", n, err)
	}
}
