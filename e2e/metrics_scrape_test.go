package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"raftkv/internal/testport"
)

// TestMetricsScrapeOfRaftkvProcesses scrapes real raftkv processes through
// --listen-metrics-urls, as Prometheus would: etcd's metrics are there with values
// that follow the cluster, /health answers, and a member that lost its quorum says
// so at once.
func TestMetricsScrapeOfRaftkvProcesses(t *testing.T) {
	t.Parallel()
	const n = 3
	c := &procCluster{t: t, bin: raftkvBinary(t)}
	dir := t.TempDir()
	ports := testport.Free(t, 3*n)
	var initial []string
	metricsURLs := map[*procMember]string{}
	for i := range n {
		m := &procMember{
			name:      fmt.Sprintf("m%d", i+1),
			clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[3*i]),
			peerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1]),
		}
		m.dataDir = filepath.Join(dir, m.name)
		m.logPath = filepath.Join(dir, m.name+".log")
		metricsURLs[m] = fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2])
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.args = []string{
			"--name", m.name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "e2e-" + t.Name(),
			"--listen-metrics-urls", metricsURLs[m], "--metrics", "extensive",
		}
		m.client = newClient(t, hostPort(m.clientURL))
	}
	t.Cleanup(c.cleanup)
	for _, m := range c.members {
		c.start(m)
	}
	c.waitWritable(c.members, 30*time.Second)
	lead := c.leader(10 * time.Second)

	committedBefore := promValue(t, promScrape(t, metricsURLs[lead]+"/metrics"), "etcd_server_proposals_committed_total")
	const puts = 20
	for i := range puts {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := lead.client.Put(ctx, fmt.Sprintf("metrics/%d", i), "v")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}

	leaders := 0.0
	for _, m := range c.members {
		families := promScrape(t, metricsURLs[m]+"/metrics")
		for _, name := range []string{"etcd_server_has_leader", "etcd_server_leader_changes_seen_total"} {
			if v := promValue(t, families, name); v < 1 {
				t.Errorf("%s: %s = %v, want at least 1", m.name, name, v)
			}
		}
		leaders += promValue(t, families, "etcd_server_is_leader")
		if v := promValue(t, families, "etcd_disk_wal_fsync_duration_seconds"); v == 0 {
			t.Errorf("%s: no WAL fsync timed", m.name)
		}
		if v := promValue(t, families, "etcd_network_peer_round_trip_time_seconds"); v == 0 {
			t.Errorf("%s: no peer round trip timed", m.name)
		}
		if m == lead {
			if v := promValue(t, families, "etcd_server_proposals_committed_total"); v < committedBefore+puts {
				t.Errorf("%s: proposals_committed_total %v after %d puts, from %v", m.name, v, puts, committedBefore)
			}
			if v := promValue(t, families, "grpc_server_handling_seconds"); v < puts {
				t.Errorf("%s: grpc_server_handling_seconds counts %v calls after %d puts with --metrics extensive", m.name, v, puts)
			}
		}
		// The client URL serves the same endpoints over HTTP/1.1 beside gRPC.
		if _, ok := promScrape(t, m.clientURL+"/metrics")["etcd_server_has_leader"]; !ok {
			t.Errorf("%s: the client URL's /metrics has no etcd_server_has_leader", m.name)
		}
		if code, body := get(t, metricsURLs[m]+"/health"); code != 200 || body != `{"health":"true","reason":""}` {
			t.Errorf("%s: /health: %d %q", m.name, code, body)
		}
		if code, _ := get(t, m.clientURL+"/debug/pprof/"); code != 404 {
			t.Errorf("%s: /debug/pprof/ answered %d without --enable-pprof", m.name, code)
		}
	}
	if leaders != 1 {
		t.Errorf("etcd_server_is_leader adds up to %v, want 1", leaders)
	}

	// Without a quorum, the survivor's /health answers false promptly: the member's
	// own request timeout is 7 s.
	survivor := c.others(lead)[0]
	c.kill(lead)
	for _, m := range c.others(lead) {
		if m != survivor {
			c.kill(m)
		}
	}
	start := time.Now()
	code, body := get(t, metricsURLs[survivor]+"/health")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("/health without a quorum took %v", took)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"health":"false"`) {
		t.Errorf("/health without a quorum: %d %q, want 503 and health false", code, body)
	}
}

// A bad --metrics or --listen-metrics-urls stops the member at once, saying why.
func TestMetricsFlagsRefuseBadValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--metrics", "verbose"}, `--metrics "verbose": use "basic" or "extensive"`},
		{[]string{"--listen-metrics-urls", "http://127.0.0.1:99999"}, "--listen-metrics-urls: port 99999"},
	} {
		cmd := exec.Command(raftkvBinary(t), append([]string{"--data-dir", filepath.Join(t.TempDir(), "d")}, tc.args...)...)
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("raftkv %v: exit %d, output %q; want exit 2 and %q", tc.args, cmd.ProcessState.ExitCode(), out, tc.want)
		}
	}
}

func promScrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body + "\n"))
	if err != nil {
		t.Fatalf("GET %s: the exposition does not parse: %v", url, err)
	}
	return families
}

// promValue sums a metric's series: counters and gauges by value, histograms by count.
func promValue(t *testing.T, families map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f := families[name]
	if f == nil {
		t.Errorf("no metric %s", name)
		return 0
	}
	sum := 0.0
	for _, m := range f.Metric {
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, strings.TrimSuffix(string(body), "\n")
}
