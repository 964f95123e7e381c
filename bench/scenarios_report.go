package main

import (
	"fmt"
	"slices"
	"strings"
)

// formatDataTable renders the data scenarios' results, one row per figure, the
// systems side by side.
func formatDataTable(d *dataOptions, capper *memoryCapper, runs []*dataRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data scenarios: %d keys of 1 KiB (%.1f MiB), 3 members on loopback, fsync on; --snapshot-count %d for both\n",
		d.keys, float64(d.keys)*bigValueBytes/(1<<20), d.snapshotCount)
	fmt.Fprintf(&b, "(--snapshot-catchup-entries %d), --quota-backend-bytes 8 GiB for both; load average %s\n\n", d.snapshotCount/2, loadAverage())
	var etcd, raftkv *dataRun
	for _, r := range runs {
		switch r.System {
		case "etcd":
			etcd = r
		case "raftkv":
			raftkv = r
		}
	}
	const row = "%-47s %12s %12s %12s\n"
	fmt.Fprintf(&b, row, "", "etcd", "raftkv", "raftkv/etcd")
	num := func(label, format string, get func(*dataRun) (float64, bool), noRatio ...bool) {
		cell := func(r *dataRun) (string, float64, bool) {
			if r == nil {
				return "-", 0, false
			}
			v, ok := get(r)
			if !ok {
				return "-", 0, false
			}
			return fmt.Sprintf(format, v), v, true
		}
		es, ev, eok := cell(etcd)
		ks, kv, kok := cell(raftkv)
		ratio := "-"
		if eok && kok && ev > 0 && len(noRatio) == 0 {
			ratio = fmt.Sprintf("%.2fx", kv/ev)
		}
		fmt.Fprintf(&b, row, label, es, ks, ratio)
	}
	text := func(label string, get func(*dataRun) string) {
		cell := func(r *dataRun) string {
			if r == nil {
				return "-"
			}
			return get(r)
		}
		fmt.Fprintf(&b, row, label, cell(etcd), cell(raftkv), "")
	}
	load := func(f func(*dataLoad) float64) func(*dataRun) (float64, bool) {
		return func(r *dataRun) (float64, bool) {
			if r.Load == nil {
				return 0, false
			}
			return f(r.Load), true
		}
	}
	num("load: seconds", "%.1f", load(func(l *dataLoad) float64 { return l.Seconds }))
	num("load: keys/s", "%.0f", load(func(l *dataLoad) float64 { return float64(l.Keys) / l.Seconds }))
	num("load: members' CPU µs per key", "%.0f", load(func(l *dataLoad) float64 { return l.CPUMicrosPerKey }))
	num("load: peak RSS MiB, largest member", "%.1f", load(func(l *dataLoad) float64 { return l.PeakRSSMiB }))

	restart := func(kind string, f func(*restartResult) float64) func(*dataRun) (float64, bool) {
		return func(r *dataRun) (float64, bool) {
			for _, rr := range append(slices.Clone(r.Restarts), r.CatchUp) {
				if rr != nil && rr.Kind == kind && rr.Error == "" {
					return f(rr), true
				}
			}
			return 0, false
		}
	}
	var notes []string
	if d.scenarios["restart"] {
		cache := "the member's data files still in the page cache (a process restart)"
		if d.coldRestart {
			cache = "the member's data files dropped from the page cache first (--cold-restart)"
		}
		fmt.Fprintf(&b, "restart: %s\n", cache)
		for _, kind := range []string{"SIGTERM", "SIGKILL"} {
			num("restart after "+kind+": stop s (signal to exit)", "%.2f", restart(kind, func(r *restartResult) float64 { return r.StopSeconds }))
			num("restart after "+kind+": start to first read s", "%.2f", restart(kind, func(r *restartResult) float64 { return r.FirstReadSeconds }))
			num("restart after "+kind+": CPU s to first read", "%.2f", restart(kind, func(r *restartResult) float64 { return r.CPUSeconds }))
			num("restart after "+kind+": member's peak RSS MiB", "%.1f", restart(kind, func(r *restartResult) float64 { return r.PeakRSSMiB }))
		}
	}
	if d.scenarios["catch-up"] {
		num("catch-up: new member start to read s", "%.2f", restart("catch-up", func(r *restartResult) float64 { return r.FirstReadSeconds }))
		num("catch-up: MemberAdd to read s", "%.2f", restart("catch-up", func(r *restartResult) float64 { return r.SinceAddSeconds }))
		num("catch-up: new member's CPU s to first read", "%.2f", restart("catch-up", func(r *restartResult) float64 { return r.CPUSeconds }))
		num("catch-up: new member's peak RSS MiB", "%.1f", restart("catch-up", func(r *restartResult) float64 { return r.PeakRSSMiB }))
	}
	for _, r := range runs {
		for _, rr := range append(slices.Clone(r.Restarts), r.CatchUp) {
			if rr != nil && rr.Error != "" {
				notes = append(notes, fmt.Sprintf("%s %s of %s failed: %s", r.System, rr.Kind, rr.Member, rr.Error))
			}
		}
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("%s stopped early: %s", r.System, r.Error))
		}
	}
	if d.scenarios["memory-cap"] {
		how := "not run"
		if capper != nil {
			how = capper.String()
		}
		fmt.Fprintf(&b, "memory-cap: %.0f MiB on one follower restarted on the data (%s)\n", float64(d.memoryCapBytes)/(1<<20), how)
		mc := func(f func(*memCapResult) (float64, bool)) func(*dataRun) (float64, bool) {
			return func(r *dataRun) (float64, bool) {
				if r.MemoryCap == nil || r.MemoryCap.Skipped != "" {
					return 0, false
				}
				return f(r.MemoryCap)
			}
		}
		text("memory-cap: survived, served every key", func(r *dataRun) string {
			switch {
			case r.MemoryCap == nil:
				return "-"
			case r.MemoryCap.Skipped != "":
				return "skipped"
			case r.MemoryCap.Survived:
				return "yes"
			default:
				return "NO"
			}
		})
		num("memory-cap: start to first read s", "%.2f", mc(func(m *memCapResult) (float64, bool) { return m.FirstReadSeconds, m.FirstReadSeconds > 0 }))
		num("memory-cap: keys read back intact", "%.0f", mc(func(m *memCapResult) (float64, bool) { return float64(m.KeysOK), true }), true)
		num("memory-cap: reading every key back s", "%.2f", mc(func(m *memCapResult) (float64, bool) { return m.VerifySeconds, m.VerifySeconds > 0 }))
		num("memory-cap: member's peak RSS MiB (VmHWM)", "%.1f", mc(func(m *memCapResult) (float64, bool) { return m.PeakRSSMiB, true }))
		num("memory-cap: cgroup's peak MiB (page cache too)", "%.1f", mc(func(m *memCapResult) (float64, bool) { return m.CgroupPeakMiB, m.CgroupPeakMiB >= 0 }))
		num("memory-cap: cgroup's peak anon MiB (no cache)", "%.1f", mc(func(m *memCapResult) (float64, bool) { return m.CgroupPeakAnonMiB, m.CgroupPeakAnonMiB >= 0 }))
		for _, r := range runs {
			if m := r.MemoryCap; m != nil {
				outcome := m.Outcome
				if m.Skipped != "" {
					outcome = "skipped: " + m.Skipped
				}
				who := r.System
				if m.Member != "" {
					who += " (" + m.Member + ")"
				}
				notes = append(notes, fmt.Sprintf("memory-cap %s: %s", who, outcome))
			}
		}
	}
	b.WriteString("raftkv/etcd: raftkv's figure over etcd's; below 1.00x raftkv takes less time, CPU or memory (keys/s: above 1.00x is faster);\n")
	b.WriteString("first read: a serializable Get of the last loaded key served by that member, with its value, at a revision no older than the last write\n")
	for _, n := range notes {
		b.WriteString("note: " + n + "\n")
	}
	return trimLineEnds(b.String())
}
