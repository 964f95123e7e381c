package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/internal/testport"
)

// scrape reads url's Prometheus text exposition.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: the exposition does not parse: %v", url, err)
	}
	return families
}

// metricValue returns the value of the series of name whose labels include want,
// and whether there is one: a counter's or gauge's value, a histogram's count.
func metricValue(families map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func metricsURL(m *testMember) string { return m.cfg.ListenClientURLs[0] + "/metrics" }

// waitMetrics scrapes m until ok holds, for up to 10 seconds.
func waitMetrics(t *testing.T, m *testMember, what string, ok func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		families := scrape(t, metricsURL(m))
		if ok(families) {
			return families
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %s: %s did not happen within 10s", m.cfg.Name, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A 3-member cluster exports etcd's metrics on its client ports, with values that
// follow what the cluster does: one leader known to all, commits that grow with
// writes, fsyncs timed, round trips to each peer measured, bytes sent to each.
func TestMetricsOfThreeMembers(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	for _, m := range members {
		waitMetrics(t, m, "has_leader 1", func(f map[string]*dto.MetricFamily) bool {
			v, _ := metricValue(f, "etcd_server_has_leader")
			return v == 1
		})
	}
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("warm-up"), Value: []byte("v")})
		return err
	})

	before := scrape(t, metricsURL(members[0]))
	committedBefore, _ := metricValue(before, "etcd_server_proposals_committed_total")
	putsBefore, _ := metricValue(before, "grpc_server_handled_total", "grpc_method", "Put", "grpc_code", "OK")
	failedBefore, _ := metricValue(before, "etcd_server_proposals_failed_total")
	const puts = 10
	for i := range puts {
		if _, err := members[0].client.Put(context.Background(), &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}

	leaders := 0.0
	for _, m := range members {
		peers := map[uint64]bool{}
		for _, other := range members {
			if other != m {
				peers[other.srv.ID()] = true
			}
		}
		f := waitMetrics(t, m, "every peer's round trip, the puts applied and no proposal pending", func(f map[string]*dto.MetricFamily) bool {
			for id := range peers {
				if n, _ := metricValue(f, "etcd_network_peer_round_trip_time_seconds", "To", hexID(id)); n == 0 {
					return false
				}
			}
			applied, _ := metricValue(f, "etcd_server_proposals_applied_total")
			pending, _ := metricValue(f, "etcd_server_proposals_pending")
			// The node publishes its commit index after it hands the entries to
			// apply, so the applied count can be ahead of it for a moment.
			committed, _ := metricValue(f, "etcd_server_proposals_committed_total")
			return applied >= committedBefore+puts && committed >= committedBefore+puts && pending == 0
		})
		check := func(name string, ok func(float64) bool, labels ...string) {
			t.Helper()
			v, found := metricValue(f, name, labels...)
			if !found || !ok(v) {
				t.Errorf("member %s: %s%v = %v (found %v)", m.cfg.Name, name, labels, v, found)
			}
		}
		positive := func(v float64) bool { return v > 0 }
		check("etcd_server_has_leader", func(v float64) bool { return v == 1 })
		check("etcd_server_leader_changes_seen_total", func(v float64) bool { return v >= 1 })
		check("etcd_server_proposals_committed_total", func(v float64) bool { return v >= committedBefore+puts })
		check("etcd_server_id", func(v float64) bool { return v == 1 }, "server_id", hexID(m.srv.ID()))
		check("etcd_server_version", func(v float64) bool { return v == 1 })
		check("etcd_server_is_learner", func(v float64) bool { return v == 0 })
		check("etcd_server_quota_backend_bytes", func(v float64) bool { return v == DefaultQuotaBackendBytes })
		check("etcd_disk_wal_fsync_duration_seconds", positive)
		check("etcd_disk_wal_write_bytes_total", positive)
		check("etcd_mvcc_db_total_size_in_bytes", positive)
		check("etcd_debugging_mvcc_keys_total", func(v float64) bool { return v >= puts })
		check("go_goroutines", positive)
		isLeader, _ := metricValue(f, "etcd_server_is_leader")
		leaders += isLeader
		for id := range peers {
			check("etcd_network_active_peers", func(v float64) bool { return v == 1 }, "Remote", hexID(id))
			// Raft's messages go between the leader and each follower only.
			if isLeader == 1 || members[0].srv.node.Observe().Lead == id {
				check("etcd_network_peer_sent_bytes_total", positive, "To", hexID(id))
				check("etcd_network_peer_received_bytes_total", positive, "From", hexID(id))
			}
		}
		if m == members[0] {
			check("etcd_server_proposals_failed_total", func(v float64) bool { return v == failedBefore })
			check("grpc_server_handled_total", func(v float64) bool { return v == putsBefore+puts },
				"grpc_type", "unary", "grpc_service", "etcdserverpb.KV", "grpc_method", "Put", "grpc_code", "OK")
			check("grpc_server_started_total", func(v float64) bool { return v >= putsBefore+puts }, "grpc_method", "Put")
			// Every code of every served method is there from the start, at 0.
			check("grpc_server_handled_total", func(v float64) bool { return v == 0 }, "grpc_method", "Compact", "grpc_code", "Unavailable")
			if _, found := metricValue(f, "grpc_server_handling_seconds"); found {
				t.Errorf("grpc_server_handling_seconds is exported without --metrics extensive")
			}
		}
	}
	if leaders != 1 {
		t.Errorf("etcd_server_is_leader adds up to %v over the members, want 1", leaders)
	}
}

// --metrics extensive adds gRPC's handling-time histograms; the metrics listener
// serves /metrics and the health endpoints, but neither gRPC nor pprof.
func TestMetricsListenerAndExtensive(t *testing.T) {
	ports := testport.Free(t, 1)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	m := startTestCluster(t, 1, func(c *Config) {
		c.ListenMetricsURLs = []string{metricsURL}
		c.Metrics = MetricsExtensive
		c.EnablePprof = true
	})[0]
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	f := scrape(t, metricsURL+"/metrics")
	if n, _ := metricValue(f, "grpc_server_handling_seconds", "grpc_method", "Put"); n < 1 {
		t.Errorf("grpc_server_handling_seconds{grpc_method=Put} counts %v calls with --metrics extensive, want at least 1", n)
	}
	if code, body := httpGet(t, metricsURL+"/health"); code != http.StatusOK || body != `{"health":"true","reason":""}` {
		t.Errorf("/health on the metrics listener: %d %q", code, body)
	}
	if code, _ := httpGet(t, metricsURL+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ on the metrics listener answered %d; pprof belongs on the client port only", code)
	}
}

// pprof is served on the client port with EnablePprof, and only then.
func TestPprofOnlyWhenEnabled(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		m := startTestCluster(t, 1, func(c *Config) { c.EnablePprof = enabled })[0]
		code, body := httpGet(t, m.cfg.ListenClientURLs[0]+"/debug/pprof/")
		switch {
		case enabled && (code != http.StatusOK || !strings.Contains(body, "goroutine")):
			t.Errorf("EnablePprof: /debug/pprof/ answered %d %.100q, want the pprof index", code, body)
		case !enabled && code != http.StatusNotFound:
			t.Errorf("without EnablePprof: /debug/pprof/ answered %d, want 404", code)
		}
		m.stop()
	}
}

// httpGet returns the status and body of a GET, with a deadline far above any
// health check's.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, body := doHTTP(t, 30*time.Second, req)
	return status, strings.TrimSuffix(body, "\n")
}

// doHTTP sends req with a client of the given timeout and returns the status and
// the whole body, failing t if either cannot be had.
func doHTTP(t testing.TB, timeout time.Duration, req *http.Request) (int, string) {
	t.Helper()
	client := http.Client{Timeout: timeout}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, string(body)
}
