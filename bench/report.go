package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The JSON written by --json: one report, the medians first and every round's raw
// numbers after them.

type report struct {
	Started         string                      `json:"started"`
	Quick           bool                        `json:"quick"`
	Rounds          int                         `json:"rounds"`
	WarmupSeconds   float64                     `json:"warmup_s"`
	DurationSeconds float64                     `json:"duration_s"`
	WallSeconds     float64                     `json:"wall_s"`
	Machine         machineInfo                 `json:"machine"`
	Workloads       []workloadSummary           `json:"workloads"`
	Resources       map[string]*resourceSummary `json:"resources"`
	Runs            []*systemRun                `json:"runs"`
}

type machineInfo struct {
	CPUs           int    `json:"cpus"`
	GoVersion      string `json:"go_version"`
	LoadAvgAtStart string `json:"load_avg_at_start"`
	LoadAvgAtEnd   string `json:"load_avg_at_end"`
	RaftkvServer   string `json:"raftkv_server"` // "binary <path>" or "in-process (profiling)"
}

// workloadSummary is one table row: each system's median over the rounds.
type workloadSummary struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Etcd        *summary `json:"etcd,omitempty"`
	Raftkv      *summary `json:"raftkv,omitempty"`
	// Floor is the gRPC floor's (floor.go), when it ran.
	Floor *summary `json:"grpc_floor,omitempty"`
	// RatioRequestsPerSec is raftkv's throughput over etcd's: above 1, raftkv is faster.
	RatioRequestsPerSec float64 `json:"ratio_requests_per_s,omitempty"`
	// FloorRatioRequestsPerSec is the floor's throughput over etcd's: about the most
	// that a server on grpc-go reaches over etcd on this machine under this load.
	FloorRatioRequestsPerSec float64 `json:"grpc_floor_ratio_requests_per_s,omitempty"`
}

type summary struct {
	RequestsPerSec      float64 `json:"requests_per_s"`
	P50Ms               float64 `json:"p50_ms"`
	P99Ms               float64 `json:"p99_ms"`
	CPUSeconds          float64 `json:"cpu_s"`
	CPUMicrosPerRequest float64 `json:"cpu_us_per_request"`
	// LoadGenMicrosPerRequest: the load generator's CPU per request.
	LoadGenMicrosPerRequest float64 `json:"loadgen_cpu_us_per_request"`
	// SwitchesPerRequest: the members' context switches per request.
	SwitchesPerRequest float64 `json:"context_switches_per_request"`
	PeakRSSMiB         float64 `json:"peak_rss_mib"`
	Errors             int64   `json:"errors"` // over all rounds
	// DataLoad is the big workload's loading (the median of each field), if any.
	DataLoad *dataLoad `json:"data_load,omitempty"`
}

// resourceSummary is the footer: medians over rounds, members ordered leader first.
type resourceSummary struct {
	PeakRSSMiB         float64   `json:"peak_rss_mib"` // the largest member's
	PeakRSSMiBByMember []float64 `json:"peak_rss_mib_by_member"`
	CPUSeconds         float64   `json:"cpu_s"` // all members, measured windows only
	CPUSecondsByMember []float64 `json:"cpu_s_by_member"`
}

// systemRun is one cluster's life: one system in one round.
type systemRun struct {
	Round        int            `json:"round"`
	System       string         `json:"system"`
	StartSeconds float64        `json:"cluster_start_s"`
	Workloads    []*workloadRun `json:"workloads"`
	// Members are ordered leader first (the leader at the last workload).
	Members []memberTotal `json:"members"`
}

type memberTotal struct {
	Name               string  `json:"name"`
	IsLeader           bool    `json:"is_leader"`
	CPUSeconds         float64 `json:"cpu_s"`          // summed over the measured windows
	LifetimeCPUSeconds float64 `json:"lifetime_cpu_s"` // start-up and preloading included
	PeakRSSMiB         float64 `json:"peak_rss_mib"`
}

type workloadRun struct {
	Workload            string  `json:"workload"`
	Requests            int64   `json:"requests"`
	Errors              int64   `json:"errors"`
	FirstError          string  `json:"first_error,omitempty"`
	WindowSeconds       float64 `json:"window_s"`
	RequestsPerSec      float64 `json:"requests_per_s"`
	P50Ms               float64 `json:"p50_ms"`
	P90Ms               float64 `json:"p90_ms"`
	P99Ms               float64 `json:"p99_ms"`
	P999Ms              float64 `json:"p999_ms"`
	MaxMs               float64 `json:"max_ms"`
	MeanMs              float64 `json:"mean_ms"`
	Leader              string  `json:"leader"`
	LeaderChanged       bool    `json:"leader_changed,omitempty"`
	CPUSeconds          float64 `json:"cpu_s"` // all members, over the window
	CPUMicrosPerRequest float64 `json:"cpu_us_per_request"`
	// LoadGenMicrosPerRequest is the load generator's own CPU per request (with
	// --cpuprofile the raftkv members run in its process and are counted too).
	LoadGenMicrosPerRequest float64 `json:"loadgen_cpu_us_per_request"`
	// SwitchesPerRequest is the members' context switches (every thread's, voluntary
	// and not) over the window per request: each is a thread put to sleep or woken.
	SwitchesPerRequest float64 `json:"context_switches_per_request"`
	// IdleClustersCPUShare, in an interleaved round (--interleave), is the CPU the
	// other systems' clusters used while this workload ran here, warm-up included,
	// in CPUs (0.05: 5% of one CPU).
	IdleClustersCPUShare float64       `json:"idle_clusters_cpu_share,omitempty"`
	PeakRSSMiB           float64       `json:"peak_rss_mib"` // the largest member's VmHWM at the window's end
	Members              []memberUsage `json:"members"`
	// DataLoad is the big workload's loading of its data set, before the warm-up.
	DataLoad *dataLoad `json:"data_load,omitempty"`
	Profiles []string  `json:"profiles,omitempty"`
}

type memberUsage struct {
	Name       string  `json:"name"`
	IsLeader   bool    `json:"is_leader"`
	CPUSeconds float64 `json:"cpu_s"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func kibToMiB(kib uint64) float64 { return float64(kib) / 1024 }

// median returns the median of xs (the mean of the middle two for an even count), or
// NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize fills r.Workloads and r.Resources from r.Runs.
func (r *report) summarize(selected []workload) {
	r.Workloads = nil
	for _, w := range selected {
		ws := workloadSummary{Name: w.name, Description: w.description}
		for _, system := range []string{"etcd", "raftkv", floorSystem} {
			var rps, p50, p99, cpu, cpuPerReq, genPerReq, switchesPerReq, rss []float64
			var loadSec, loadCPU, loadCPUPerKey, loadRSS []float64
			var loadKeys int
			var errs int64
			for _, run := range r.Runs {
				if run.System != system {
					continue
				}
				for _, wr := range run.Workloads {
					if wr.Workload != w.name {
						continue
					}
					rps = append(rps, wr.RequestsPerSec)
					p50 = append(p50, wr.P50Ms)
					p99 = append(p99, wr.P99Ms)
					cpu = append(cpu, wr.CPUSeconds)
					cpuPerReq = append(cpuPerReq, wr.CPUMicrosPerRequest)
					genPerReq = append(genPerReq, wr.LoadGenMicrosPerRequest)
					switchesPerReq = append(switchesPerReq, wr.SwitchesPerRequest)
					rss = append(rss, wr.PeakRSSMiB)
					errs += wr.Errors
					if l := wr.DataLoad; l != nil {
						loadKeys = l.Keys
						loadSec = append(loadSec, l.Seconds)
						loadCPU = append(loadCPU, l.CPUSeconds)
						loadCPUPerKey = append(loadCPUPerKey, l.CPUMicrosPerKey)
						loadRSS = append(loadRSS, l.PeakRSSMiB)
					}
				}
			}
			if len(rps) == 0 {
				continue
			}
			s := &summary{
				RequestsPerSec: median(rps), P50Ms: median(p50), P99Ms: median(p99),
				CPUSeconds: median(cpu), CPUMicrosPerRequest: median(cpuPerReq), PeakRSSMiB: median(rss),
				LoadGenMicrosPerRequest: median(genPerReq), SwitchesPerRequest: median(switchesPerReq),
				Errors: errs,
			}
			if len(loadSec) > 0 {
				s.DataLoad = &dataLoad{Keys: loadKeys, Seconds: median(loadSec), CPUSeconds: median(loadCPU),
					CPUMicrosPerKey: median(loadCPUPerKey), PeakRSSMiB: median(loadRSS)}
			}
			switch system {
			case "etcd":
				ws.Etcd = s
			case "raftkv":
				ws.Raftkv = s
			default:
				ws.Floor = s
			}
		}
		if ws.Etcd != nil && ws.Etcd.RequestsPerSec > 0 {
			if ws.Raftkv != nil {
				ws.RatioRequestsPerSec = round3(ws.Raftkv.RequestsPerSec / ws.Etcd.RequestsPerSec)
			}
			if ws.Floor != nil {
				ws.FloorRatioRequestsPerSec = round3(ws.Floor.RequestsPerSec / ws.Etcd.RequestsPerSec)
			}
		}
		r.Workloads = append(r.Workloads, ws)
	}

	r.Resources = map[string]*resourceSummary{}
	for _, system := range []string{"etcd", "raftkv"} {
		var rss, cpu []float64
		var rssBy, cpuBy [][]float64
		for _, run := range r.Runs {
			if run.System != system || len(run.Members) == 0 {
				continue
			}
			var peak, total float64
			for i, m := range run.Members {
				peak = max(peak, m.PeakRSSMiB)
				total += m.CPUSeconds
				if i >= len(rssBy) {
					rssBy = append(rssBy, nil)
					cpuBy = append(cpuBy, nil)
				}
				rssBy[i] = append(rssBy[i], m.PeakRSSMiB)
				cpuBy[i] = append(cpuBy[i], m.CPUSeconds)
			}
			rss = append(rss, peak)
			cpu = append(cpu, total)
		}
		if len(rss) == 0 {
			continue
		}
		res := &resourceSummary{PeakRSSMiB: median(rss), CPUSeconds: median(cpu)}
		for i := range rssBy {
			res.PeakRSSMiBByMember = append(res.PeakRSSMiBByMember, median(rssBy[i]))
			res.CPUSecondsByMember = append(res.CPUSecondsByMember, median(cpuBy[i]))
		}
		r.Resources[system] = res
	}
}

// formatLatency prints a latency given in milliseconds with three significant digits
// where they matter: 850µs, 1.12ms, 12.3ms, 123ms, 1.23s.
func formatLatency(msec float64) string {
	switch {
	case math.IsNaN(msec):
		return "-"
	case msec < 1:
		return fmt.Sprintf("%.0fµs", msec*1000)
	case msec < 10:
		return fmt.Sprintf("%.2fms", msec)
	case msec < 100:
		return fmt.Sprintf("%.1fms", msec)
	case msec < 1000:
		return fmt.Sprintf("%.0fms", msec)
	default:
		return fmt.Sprintf("%.2fs", msec/1000)
	}
}

// formatTable renders the summary as fixed-width text: the throughput and latency
// table, the servers' CPU and memory per workload, and the per-system footer.
func formatTable(r *report) string {
	var b strings.Builder
	rounds := "1 round"
	if r.Rounds > 1 {
		rounds = fmt.Sprintf("median of %d rounds", r.Rounds)
	}
	mode := ""
	if r.Quick {
		mode = " (--quick)"
	}
	fmt.Fprintf(&b, "raftkv vs etcd%s: 3 members each on loopback, fsync on, clients send to the leader (to a follower in the -fwd rows)\n", mode)
	fmt.Fprintf(&b, "%gs per workload after %gs of warm-up, %s; %d CPUs, load average %s at start, %s at end\n\n",
		r.DurationSeconds, r.WarmupSeconds, rounds, r.Machine.CPUs, r.Machine.LoadAvgAtStart, r.Machine.LoadAvgAtEnd)

	const row = "%-15s %12s %8s %8s %14s %8s %8s %7s\n"
	fmt.Fprintf(&b, row, "workload", "etcd req/s", "p50", "p99", "raftkv req/s", "p50", "p99", "ratio")
	var notes []string
	for _, w := range r.Workloads {
		e, k := w.Etcd, w.Raftkv
		ratio := "-"
		if w.RatioRequestsPerSec > 0 {
			// From the rates, not from RatioRequestsPerSec, which is rounded to 3
			// places already: 1.2446 would print as 1.25.
			ratio = fmt.Sprintf("%.2fx", k.RequestsPerSec/e.RequestsPerSec)
		}
		fmt.Fprintf(&b, row, w.Name,
			rps(e), lat(e, func(s *summary) float64 { return s.P50Ms }), lat(e, func(s *summary) float64 { return s.P99Ms }),
			rps(k), lat(k, func(s *summary) float64 { return s.P50Ms }), lat(k, func(s *summary) float64 { return s.P99Ms }),
			ratio)
		for _, sys := range []struct {
			name string
			s    *summary
		}{{"etcd", e}, {"raftkv", k}} {
			if sys.s != nil && sys.s.Errors > 0 {
				notes = append(notes, fmt.Sprintf("%s: %s had %d failed requests (see the JSON for the first error)", w.Name, sys.name, sys.s.Errors))
			}
		}
	}
	b.WriteString("ratio: raftkv req/s over etcd req/s; above 1.00x raftkv is faster\n")
	for _, n := range notes {
		b.WriteString("note: " + n + "\n")
	}

	b.WriteString("\n")
	const cpuRow = "%-15s %12s %8s %8s %8s %14s %8s %8s %8s %10s\n"
	fmt.Fprintf(&b, cpuRow, "servers", "etcd CPU s", "µs/req", "gen µs", "RSS MiB", "raftkv CPU s", "µs/req", "gen µs", "RSS MiB", "µs ratio")
	for _, w := range r.Workloads {
		fmt.Fprintf(&b, cpuRow, w.Name, cpuSec(w.Etcd), cpuPerReq(w.Etcd), genPerReq(w.Etcd), rssMiB(w.Etcd),
			cpuSec(w.Raftkv), cpuPerReq(w.Raftkv), genPerReq(w.Raftkv), rssMiB(w.Raftkv), cpuRatio(w.Etcd, w.Raftkv))
	}
	b.WriteString("CPU s: all three members over the measured window; µs/req: that CPU per request;\n")
	b.WriteString("gen µs: the load generator's own CPU per request (it shares the machine's CPUs);\n")
	b.WriteString("RSS MiB: the largest member's peak resident set so far (VmHWM);\n")
	b.WriteString("µs ratio: etcd's members' µs/req over raftkv's, the throughput ratio the members alone would allow\n")
	b.WriteString(formatSwitchesTable(r))
	b.WriteString(formatIdleShare(r))
	for _, w := range r.Workloads {
		for _, sys := range []struct {
			name string
			s    *summary
		}{{"etcd", w.Etcd}, {"raftkv", w.Raftkv}} {
			if sys.s != nil && sys.s.DataLoad != nil {
				l := sys.s.DataLoad
				fmt.Fprintf(&b, "%s: %s loaded %d keys of 1 KiB first in %.1fs (%.0f keys/s), members' CPU %.0f µs/key, largest member %.1f MiB after\n",
					w.Name, sys.name, l.Keys, l.Seconds, float64(l.Keys)/l.Seconds, l.CPUMicrosPerKey, l.PeakRSSMiB)
			}
		}
	}
	b.WriteString("\n")
	b.WriteString(formatFloorTable(r))

	const footRow = "%-34s %-26s %-26s\n"
	fmt.Fprintf(&b, footRow, "per system", "etcd", "raftkv")
	etcd, raftkv := r.Resources["etcd"], r.Resources["raftkv"]
	fmt.Fprintf(&b, footRow, "peak RSS MiB, largest member",
		resField(etcd, func(s *resourceSummary) string { return fmt.Sprintf("%.1f", s.PeakRSSMiB) }),
		resField(raftkv, func(s *resourceSummary) string { return fmt.Sprintf("%.1f", s.PeakRSSMiB) }))
	fmt.Fprintf(&b, footRow, "  leader / follower / follower",
		resField(etcd, func(s *resourceSummary) string { return joinFloats(s.PeakRSSMiBByMember, "%.1f") }),
		resField(raftkv, func(s *resourceSummary) string { return joinFloats(s.PeakRSSMiBByMember, "%.1f") }))
	fmt.Fprintf(&b, footRow, "CPU seconds, all members",
		resField(etcd, func(s *resourceSummary) string { return fmt.Sprintf("%.1f", s.CPUSeconds) }),
		resField(raftkv, func(s *resourceSummary) string { return fmt.Sprintf("%.1f", s.CPUSeconds) }))
	fmt.Fprintf(&b, footRow, "  leader / follower / follower",
		resField(etcd, func(s *resourceSummary) string { return joinFloats(s.CPUSecondsByMember, "%.1f") }),
		resField(raftkv, func(s *resourceSummary) string { return joinFloats(s.CPUSecondsByMember, "%.1f") }))
	b.WriteString("CPU seconds are summed over the measured windows of every workload run\n")
	return trimLineEnds(b.String())
}

// formatSwitchesTable renders the members' context switches per request, a line
// per workload, or nothing if no run counted any (a system without /proc). On a
// small virtual machine a switch costs the kernel several µs, a good part of the
// CPU per request at low load (bench/README, "Context switches, and the wake-ups
// tried").
func formatSwitchesTable(r *report) string {
	var b strings.Builder
	const row = "%-15s %14s %16s %12s\n"
	for _, w := range r.Workloads {
		e, k := w.Etcd, w.Raftkv
		if (e == nil || e.SwitchesPerRequest == 0) && (k == nil || k.SwitchesPerRequest == 0) {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, row, "switches", "etcd per req", "raftkv per req", "etcd/raftkv")
		}
		ratio := "-"
		if e != nil && k != nil && k.SwitchesPerRequest > 0 {
			ratio = fmt.Sprintf("%.2fx", e.SwitchesPerRequest/k.SwitchesPerRequest)
		}
		fmt.Fprintf(&b, row, w.Name, switchesPerReq(e), switchesPerReq(k), ratio)
	}
	if b.Len() == 0 {
		return ""
	}
	b.WriteString("switches: context switches of all three members' threads (voluntary and not) per request\n")
	return b.String()
}

// formatIdleShare says, for an interleaved run, the most CPU the clusters not being
// measured took while one was, and where: work they had left from their own last
// workload (flushes, compactions) comes out of the measured system's share of the
// machine. Nothing for a run that did not interleave.
func formatIdleShare(r *report) string {
	var worst *workloadRun
	var where *systemRun
	for _, run := range r.Runs {
		for _, wr := range run.Workloads {
			if wr.IdleClustersCPUShare > 0 && (worst == nil || wr.IdleClustersCPUShare > worst.IdleClustersCPUShare) {
				worst, where = wr, run
			}
		}
	}
	if worst == nil {
		return ""
	}
	return fmt.Sprintf("interleaved: the clusters not being measured used at most %.1f%% of a CPU meanwhile (during %s's %s, round %d)\n",
		worst.IdleClustersCPUShare*100, where.System, worst.Workload, where.Round)
}

func switchesPerReq(s *summary) string {
	if s == nil || s.SwitchesPerRequest == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", s.SwitchesPerRequest)
}

// formatFloorTable renders the gRPC floor's rows (floor.go) beside etcd's and
// raftkv's ratios, or nothing if the floor did not run.
func formatFloorTable(r *report) string {
	var b strings.Builder
	const row = "%-15s %12s %8s %8s %8s %11s %12s\n"
	for _, w := range r.Workloads {
		f := w.Floor
		if f == nil {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, row, "grpc-floor", "req/s", "p99", "µs/req", "gen µs", "floor/etcd", "raftkv/etcd")
		}
		floorRatio, raftkvRatio := "-", "-"
		if e := w.Etcd; e != nil && e.RequestsPerSec > 0 {
			floorRatio = fmt.Sprintf("%.2fx", f.RequestsPerSec/e.RequestsPerSec)
			if k := w.Raftkv; k != nil {
				raftkvRatio = fmt.Sprintf("%.2fx", k.RequestsPerSec/e.RequestsPerSec)
			}
		}
		fmt.Fprintf(&b, row, w.Name, rps(f), lat(f, func(s *summary) float64 { return s.P99Ms }),
			cpuPerReq(f), genPerReq(f), floorRatio, raftkvRatio)
		if f.Errors > 0 {
			fmt.Fprintf(&b, "note: %s: %s had %d failed requests (see the JSON for the first error)\n", w.Name, floorSystem, f.Errors)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	b.WriteString("grpc-floor: members that answer every put and get from memory on grpc-go, no Raft, store or disk;\n")
	b.WriteString("µs/req is what gRPC alone costs per request here; floor/etcd is about the most a server on grpc-go reaches over etcd\n\n")
	return b.String()
}

// trimLineEnds drops the padding that fixed-width columns leave at the end of lines.
func trimLineEnds(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

func rps(s *summary) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", s.RequestsPerSec)
}

func lat(s *summary, field func(*summary) float64) string {
	if s == nil {
		return "-"
	}
	return formatLatency(field(s))
}

func genPerReq(s *summary) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", s.LoadGenMicrosPerRequest)
}

func cpuSec(s *summary) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", s.CPUSeconds)
}

func cpuPerReq(s *summary) string {
	if s == nil || s.RequestsPerSec == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", s.CPUMicrosPerRequest)
}

// cpuRatio is etcd's members' CPU per request over raftkv's: what the throughput
// ratio would be if the members had the CPUs to themselves. The load generator
// shares them, so the measured ratio is about (etcd's µs + its generator's) over
// (raftkv's + its generator's): between 1 and this one when the generator costs
// the same against both.
func cpuRatio(etcd, raftkv *summary) string {
	if etcd == nil || raftkv == nil || etcd.RequestsPerSec == 0 || raftkv.RequestsPerSec == 0 || raftkv.CPUMicrosPerRequest == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", etcd.CPUMicrosPerRequest/raftkv.CPUMicrosPerRequest)
}

func rssMiB(s *summary) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", s.PeakRSSMiB)
}

func resField(s *resourceSummary, f func(*resourceSummary) string) string {
	if s == nil {
		return "-"
	}
	return f(s)
}

func joinFloats(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, " / ")
}
