package main

import (
	"strings"
	"testing"
)

// TestFloorOptions: the floor runs beside the other systems on the put and get
// workloads and is refused, with the workload named, where it has nothing to answer.
func TestFloorOptions(t *testing.T) {
	o, err := parseOptions([]string{"--systems", "etcd,raftkv," + floorSystem, "--workloads", "a,b,c,d,e,f,g,l,m"})
	if err != nil {
		t.Fatalf("the put and get workloads with the floor: %v", err)
	}
	if want := []string{"etcd", "raftkv", floorSystem}; strings.Join(o.systems, ",") != strings.Join(want, ",") {
		t.Errorf("systems = %v, want %v", o.systems, want)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--systems", floorSystem, "--workloads", "a,h"}, "cannot run workload h (watch-latency)"},
		{[]string{"--systems", floorSystem, "--workloads", "j"}, "cannot run workload j (lease-keepalive)"},
		{[]string{"--systems", "etcd," + floorSystem, "--rolling-restart"}, "not --rolling-restart"},
		{[]string{"--systems", "etcd,zookeeper"}, `unknown system "zookeeper"`},
	} {
		_, err := parseOptions(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseOptions(%q) = %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestFloorTable: with the floor in the runs, the summary holds its medians and its
// ratio over etcd, and the text shows them beside raftkv's ratio.
func TestFloorTable(t *testing.T) {
	r := &report{Rounds: 1, Runs: []*systemRun{
		testRun("etcd", 1, 1000, 1, 2, 50), testRun("raftkv", 1, 1500, 1, 2, 30), testRun(floorSystem, 1, 1800, 1, 2, 20),
	}}
	r.summarize(workloads[:1])
	w := r.Workloads[0]
	if w.Floor == nil || w.Floor.RequestsPerSec != 1800 {
		t.Fatalf("floor summary = %+v, want 1800 req/s", w.Floor)
	}
	if w.FloorRatioRequestsPerSec != 1.8 || w.RatioRequestsPerSec != 1.5 {
		t.Errorf("ratios: floor %v, raftkv %v; want 1.8 and 1.5", w.FloorRatioRequestsPerSec, w.RatioRequestsPerSec)
	}
	table := formatTable(r)
	if !strings.Contains(table, "floor/etcd") {
		t.Fatalf("no floor table in:\n%s", table)
	}
	row := tableRow(table, "put-1c", "1800")
	if f := strings.Fields(row); len(f) != 7 || f[5] != "1.80x" || f[6] != "1.50x" {
		t.Errorf("floor row %q, want put-1c 1800 ... 1.80x 1.50x", row)
	}

	r = &report{Rounds: 1, Runs: []*systemRun{testRun("etcd", 1, 1000, 1, 2, 50), testRun("raftkv", 1, 1500, 1, 2, 30)}}
	r.summarize(workloads[:1])
	if table := formatTable(r); strings.Contains(table, "floor") {
		t.Errorf("a table without the floor mentions it:\n%s", table)
	}
}

// TestInterleaveOptions: --interleave runs with the workloads and is refused with
// the scenarios that run one system at a time.
func TestInterleaveOptions(t *testing.T) {
	o, err := parseOptions([]string{"--interleave", "--workloads", "a,b", "--rounds", "2"})
	if err != nil || !o.interleave {
		t.Fatalf("--interleave with workloads: %+v, %v", o, err)
	}
	for _, args := range [][]string{{"--interleave", "--rolling-restart"}, {"--interleave", "--data-scenarios", "restart"}} {
		if _, err := parseOptions(args); err == nil || !strings.Contains(err.Error(), "--interleave") {
			t.Errorf("parseOptions(%q) = %v, want an error naming --interleave", args, err)
		}
	}
}
