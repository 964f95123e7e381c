package main

import (
	"strings"
	"testing"
	"time"
)

func TestFormatDataTableReportsAKilledMember(t *testing.T) {
	d, err := parseDataOptions("all", 2000, 300, "64MiB", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	runs := []*dataRun{
		{
			System:    "etcd",
			Load:      &dataLoad{Keys: 2000, Seconds: 2, CPUMicrosPerKey: 100, PeakRSSMiB: 50},
			Restarts:  []*restartResult{{Kind: "SIGTERM", Member: "m1", FirstReadSeconds: 0.4}, {Kind: "SIGKILL", Member: "m1", FirstReadSeconds: 0.5}},
			CatchUp:   &restartResult{Kind: "catch-up", Member: "m4", FirstReadSeconds: 1, SinceAddSeconds: 1.1},
			MemoryCap: &memCapResult{CapMiB: 64, Member: "m1", Survived: true, KeysOK: 2000, FirstReadSeconds: 1, Outcome: "2000 of 2000 keys read back intact"},
		},
		{
			System:   "raftkv",
			Load:     &dataLoad{Keys: 2000, Seconds: 1, CPUMicrosPerKey: 50, PeakRSSMiB: 40},
			Restarts: []*restartResult{{Kind: "SIGTERM", Member: "m2", FirstReadSeconds: 0.2}, {Kind: "SIGKILL", Member: "m2", Error: "no read within 1m"}},
			CatchUp:  &restartResult{Kind: "catch-up", Member: "m4", FirstReadSeconds: 0.5, SinceAddSeconds: 0.6},
			MemoryCap: &memCapResult{CapMiB: 64, Member: "m2", OOMKills: 1,
				Outcome: "died before serving a read (signal: killed, OOM kills in its cgroup: 1) 0.4s after its start"},
		},
	}
	out := formatDataTable(d, &memoryCapper{method: capCgroup1, parent: "/sys/fs/cgroup/memory"}, runs)
	for _, want := range []string{
		"load: keys/s                                            1000         2000        2.00x",
		"restart after SIGTERM: start to first read s            0.40         0.20        0.50x",
		// A failed step shows no figure, and its error is a note.
		"restart after SIGKILL: start to first read s            0.50            -            -",
		"note: raftkv SIGKILL of m2 failed: no read within 1m",
		"catch-up: MemberAdd to read s                           1.10         0.60        0.55x",
		"memory-cap: survived, served every key                   yes           NO",
		"note: memory-cap raftkv (m2): died before serving a read (signal: killed, OOM kills in its cgroup: 1)",
		"cgroup v1 under /sys/fs/cgroup/memory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}

func TestFormatDataTableSaysWhyTheCapWasSkipped(t *testing.T) {
	d, err := parseDataOptions("memory-cap", 2000, 300, "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	runs := []*dataRun{{System: "raftkv", Load: &dataLoad{Keys: 2000, Seconds: 1},
		MemoryCap: &memCapResult{CapMiB: 64, Skipped: "no way to cap memory here: no systemd-run; no cgroup memory controller mounted"}}}
	out := formatDataTable(d, nil, runs)
	for _, want := range []string{"skipped", "note: memory-cap raftkv: skipped: no way to cap memory here: no systemd-run"} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "restart after") || strings.Contains(out, "catch-up:") {
		t.Errorf("the table has rows of scenarios that were not asked for:\n%s", out)
	}
}

func TestFormatGapTablePrintsCPUAndMemory(t *testing.T) {
	out := formatGapTable([]gapStats{{Scenario: "rolling-restart", System: "raftkv", Writes: 100, MaxGapMs: 120, P99GapMs: 8,
		LeaderRestarts: 1, CPUMicrosPerWrite: 1554, PeakRSSMiB: 42.1}})
	if !strings.Contains(out, "µs/write") || !strings.Contains(out, "1554") || !strings.Contains(out, "42.1") {
		t.Errorf("the availability table lacks the members' CPU per write or peak RSS:\n%s", out)
	}
}
