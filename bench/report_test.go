package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Error("median sorted its argument in place")
	}
}

func TestFormatLatency(t *testing.T) {
	for _, tc := range []struct {
		ms   float64
		want string
	}{
		{0.0423, "42µs"}, {0.85, "850µs"}, {1.123, "1.12ms"}, {12.34, "12.3ms"}, {123.4, "123ms"}, {1234, "1.23s"}, {math.NaN(), "-"},
	} {
		if got := formatLatency(tc.ms); got != tc.want {
			t.Errorf("formatLatency(%v) = %q, want %q", tc.ms, got, tc.want)
		}
	}
}

// testRun is a run of one system with one workload, for the summary tests.
func testRun(system string, round int, rps, p50, p99 float64, leaderRSS float64) *systemRun {
	return &systemRun{
		Round: round, System: system,
		Workloads: []*workloadRun{{Workload: "put-1c", RequestsPerSec: rps, P50Ms: p50, P99Ms: p99, CPUSeconds: 1, CPUMicrosPerRequest: 1e6 / rps, PeakRSSMiB: leaderRSS}},
		Members: []memberTotal{
			{Name: "m2", IsLeader: true, CPUSeconds: 0.6, PeakRSSMiB: leaderRSS},
			{Name: "m1", CPUSeconds: 0.2, PeakRSSMiB: 20},
			{Name: "m3", CPUSeconds: 0.2, PeakRSSMiB: 21},
		},
	}
}

func TestSummarizeTakesMediansOfRounds(t *testing.T) {
	r := &report{Rounds: 3, Runs: []*systemRun{
		testRun("etcd", 1, 900, 1.0, 2.0, 50), testRun("raftkv", 1, 1800, 0.5, 1.0, 30),
		testRun("etcd", 2, 1000, 1.2, 9.0, 52), testRun("raftkv", 2, 2200, 0.4, 1.1, 31),
		testRun("etcd", 3, 1100, 1.1, 3.0, 51), testRun("raftkv", 3, 2000, 0.6, 1.2, 32),
	}}
	r.summarize(workloads[:1])
	if len(r.Workloads) != 1 {
		t.Fatalf("%d workload rows, want 1", len(r.Workloads))
	}
	w := r.Workloads[0]
	if w.Etcd.RequestsPerSec != 1000 || w.Etcd.P50Ms != 1.1 || w.Etcd.P99Ms != 3.0 {
		t.Errorf("etcd medians = %+v, want 1000 req/s, p50 1.1, p99 3.0", *w.Etcd)
	}
	if w.Raftkv.RequestsPerSec != 2000 || w.RatioRequestsPerSec != 2 {
		t.Errorf("raftkv median %v req/s, ratio %v; want 2000 and 2", w.Raftkv.RequestsPerSec, w.RatioRequestsPerSec)
	}
	res := r.Resources["etcd"]
	if res.PeakRSSMiB != 51 || res.PeakRSSMiBByMember[0] != 51 || res.CPUSeconds != 1 {
		t.Errorf("etcd resources = %+v, want peak 51 MiB (the leader), 1 CPU second", *res)
	}
}

func TestFormatTableLinesUp(t *testing.T) {
	r := &report{Rounds: 3, DurationSeconds: 10, WarmupSeconds: 2, Machine: machineInfo{CPUs: 2, LoadAvgAtStart: "1 1 1", LoadAvgAtEnd: "1 1 1"},
		Runs: []*systemRun{testRun("etcd", 1, 880, 1.1, 2.0, 50), testRun("raftkv", 1, 1760, 0.85, 12.5, 30)}}
	r.summarize(workloads[:1])
	out := formatTable(r)
	lines := strings.Split(out, "\n")
	var header, row string
	for _, l := range lines {
		if strings.HasPrefix(l, "workload ") {
			header = l
		}
		if strings.HasPrefix(l, "put-1c ") && header != "" && row == "" {
			row = l
		}
	}
	if header == "" || row == "" {
		t.Fatalf("no header or put-1c row in:\n%s", out)
	}
	// Columns are right-aligned, so each header label ends where its value ends.
	if utf8.RuneCountInString(header) != utf8.RuneCountInString(row) {
		t.Errorf("header and row differ in width:\n%s\n%s", header, row)
	}
	for _, want := range []string{"880", "1.10ms", "2.00ms", "1760", "850µs", "12.5ms", "2.00x"} {
		if !strings.Contains(row, want) {
			t.Errorf("row %q lacks %q", row, want)
		}
	}
	for _, l := range lines {
		if strings.HasSuffix(l, " ") {
			t.Errorf("line %q ends in a space", l)
		}
	}
	if !strings.Contains(out, "50.0 / 20.0 / 21.0") {
		t.Errorf("footer lacks the per-member RSS, leader first:\n%s", out)
	}
}

func TestFormatTableWithOneSystem(t *testing.T) {
	r := &report{Rounds: 1, Runs: []*systemRun{testRun("raftkv", 1, 1000, 1, 2, 30)}}
	r.summarize(workloads[:1])
	out := formatTable(r)
	if !strings.Contains(out, "put-1c") || !strings.Contains(out, "1000") {
		t.Fatalf("the raftkv-only table lacks its row:\n%s", out)
	}
	if r.Workloads[0].RatioRequestsPerSec != 0 {
		t.Errorf("a ratio with no etcd run: %v", r.Workloads[0].RatioRequestsPerSec)
	}
}

func TestSelectWorkloads(t *testing.T) {
	got, err := selectWorkloads("g, put-1c,b", defaultBigKeys)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range got {
		names = append(names, w.name)
	}
	if strings.Join(names, ",") != "put-1c,put-100c,mixed-90get" {
		t.Errorf("selected %v, want put-1c,put-100c,mixed-90get in table order", names)
	}
	if _, err := selectWorkloads("put-2c", defaultBigKeys); err == nil || !strings.Contains(err.Error(), "put-2c") {
		t.Errorf("an unknown workload gave %v, want an error naming it", err)
	}
	all, _ := selectWorkloads("", defaultBigKeys)
	if len(all) != 12 || all[11].name != "put-100c-fwd" || !all[11].viaFollower || all[0].viaFollower {
		t.Errorf("an empty list selected %d workloads, want all 12, put-100c-fwd through a follower last", len(all))
	}
	if l, err := selectWorkloads("l", defaultBigKeys); err != nil || len(l) != 1 || l[0].name != "put-1c-fwd" || !l[0].viaFollower {
		t.Errorf("--workloads l selected %v, %v; want put-1c-fwd, through a follower", l, err)
	}
}

func TestDropFlags(t *testing.T) {
	got := dropFlags([]string{"etcd-member", "--name", "m1", "--initial-cluster-state", "new", "--data-dir", "d"}, "--initial-cluster-state")
	if strings.Join(got, " ") != "etcd-member --name m1 --data-dir d" {
		t.Errorf("dropFlags = %v", got)
	}
}

// Rounds run the systems in the order given, then reversed, so that neither is
// always the one that runs second.
func TestRoundOrderAlternates(t *testing.T) {
	systems := []string{"etcd", "raftkv"}
	var got []string
	for round := 1; round <= 4; round++ {
		got = append(got, roundOrder(systems, round)...)
	}
	want := []string{"etcd", "raftkv", "raftkv", "etcd", "etcd", "raftkv", "raftkv", "etcd"}
	if !slices.Equal(got, want) {
		t.Fatalf("order over 4 rounds: %v, want %v", got, want)
	}
	if !slices.Equal(systems, []string{"etcd", "raftkv"}) {
		t.Fatalf("roundOrder changed its argument: %v", systems)
	}
	if got := roundOrder([]string{"raftkv"}, 2); !slices.Equal(got, []string{"raftkv"}) {
		t.Fatalf("one system in round 2: %v", got)
	}
}

// TestFormatTableRoundsTheRatioOnce: 22,269 against 17,893 req/s is 1.2446x; the
// ratio kept in the JSON, 1.245, must not be rounded again to 1.25x.
func TestFormatTableRoundsTheRatioOnce(t *testing.T) {
	r := &report{Rounds: 1, Runs: []*systemRun{testRun("etcd", 1, 17893, 1, 2, 50), testRun("raftkv", 1, 22269, 1, 2, 30)}}
	r.summarize(workloads[:1])
	if got := r.Workloads[0].RatioRequestsPerSec; got != 1.245 {
		t.Errorf("ratio in the JSON %v, want 1.245", got)
	}
	if out := formatTable(r); !strings.Contains(out, " 1.24x") || strings.Contains(out, "1.25x") {
		t.Errorf("the table's ratio is not 1.24x:\n%s", out)
	}
}

func TestFormatTableShowsSwitchesPerRequest(t *testing.T) {
	etcd, raftkv := testRun("etcd", 1, 900, 1.0, 2.0, 50), testRun("raftkv", 1, 1800, 0.5, 1.0, 30)
	etcd.Workloads[0].SwitchesPerRequest, raftkv.Workloads[0].SwitchesPerRequest = 62.4, 48
	r := &report{Rounds: 1, Runs: []*systemRun{etcd, raftkv}}
	r.summarize(workloads[:1])
	out := formatTable(r)
	row := tableRow(out, "put-1c ", "62.4")
	if row == "" || !strings.Contains(row, "48.0") || !strings.Contains(row, "1.30x") {
		t.Fatalf("no switches row with 62.4, 48.0 and 1.30x in:\n%s", out)
	}

	// Runs that counted none (no /proc) print no switches table.
	r = &report{Rounds: 1, Runs: []*systemRun{testRun("etcd", 1, 900, 1.0, 2.0, 50), testRun("raftkv", 1, 1800, 0.5, 1.0, 30)}}
	r.summarize(workloads[:1])
	if out := formatTable(r); strings.Contains(out, "switches") {
		t.Fatalf("a switches table with nothing counted:\n%s", out)
	}
}

func TestServersTableShowsTheCPURatio(t *testing.T) {
	// 1 CPU second over 880 and 1,760 requests a second: 1,136 and 568 µs a request.
	r := &report{Rounds: 1, Runs: []*systemRun{testRun("etcd", 1, 880, 1.1, 2.0, 50), testRun("raftkv", 1, 1760, 0.85, 12.5, 30)}}
	r.summarize(workloads[:1])
	out := formatTable(r)
	header := tableRow(out, "servers ", "")
	row := tableRow(out[strings.Index(out, header):], "put-1c ", "")
	if header == "" || row == "" || !strings.HasSuffix(header, "µs ratio") {
		t.Fatalf("no servers header ending in the ratio, or no row, in:\n%s", out)
	}
	if !strings.HasSuffix(row, " 2.00x") || utf8.RuneCountInString(row) != utf8.RuneCountInString(header) {
		t.Errorf("servers row %q: want it to end in 2.00x, as wide as its header %q", row, header)
	}
	if got := cpuRatio(r.Workloads[0].Etcd, nil); got != "-" {
		t.Errorf("the ratio with no raftkv run = %q, want -", got)
	}
}

// tableRow returns the first line of out that starts with prefix and holds want,
// without its newline, or "" if none does.
func tableRow(out, prefix, want string) string {
	for l := range strings.Lines(out) {
		if l = strings.TrimSuffix(l, "\n"); strings.HasPrefix(l, prefix) && strings.Contains(l, want) {
			return l
		}
	}
	return ""
}

func TestFormatIdleShareNamesTheWorstTurn(t *testing.T) {
	etcd, raftkv := testRun("etcd", 2, 900, 1.0, 2.0, 50), testRun("raftkv", 2, 1800, 0.5, 1.0, 30)
	etcd.Workloads[0].IdleClustersCPUShare, raftkv.Workloads[0].IdleClustersCPUShare = 0.012, 0.087
	r := &report{Rounds: 1, Runs: []*systemRun{etcd, raftkv}}
	r.summarize(workloads[:1])
	if line := tableRow(formatTable(r), "interleaved:", ""); !strings.Contains(line, "8.7% of a CPU") || !strings.Contains(line, "raftkv's put-1c, round 2") {
		t.Errorf("idle line %q, want 8.7%% during raftkv's put-1c in round 2", line)
	}
	r = &report{Rounds: 1, Runs: []*systemRun{testRun("etcd", 1, 900, 1.0, 2.0, 50)}}
	r.summarize(workloads[:1])
	if out := formatTable(r); strings.Contains(out, "interleaved") {
		t.Errorf("a run that did not interleave has an idle line:\n%s", out)
	}
}
