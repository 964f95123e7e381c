package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// clockTicksPerSecond is Linux's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat (sysconf(_SC_CLK_TCK)); it is 100 on every Linux ABI Go runs on.
const clockTicksPerSecond = 100

// procSample is what /proc says about a process at one moment.
type procSample struct {
	cpuTicks   uint64 // utime + stime, in clock ticks
	peakRSSKiB uint64 // VmHWM: the resident set's high-water mark since start
	// switches counts the context switches of the process's threads alive now,
	// voluntary (a thread that blocked) and not (one the kernel preempted).
	switches uint64
}

func (s procSample) cpuSeconds() float64 { return float64(s.cpuTicks) / clockTicksPerSecond }

// readProc samples process pid.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	ticks, err := parseStatCPUTicks(stat)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	hwm, err := parseStatusKiB(status, "VmHWM")
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return procSample{cpuTicks: ticks, peakRSSKiB: hwm, switches: threadSwitches(pid)}, nil
}

// threadSwitches sums the context switches of pid's threads (/proc/<pid>/task/*/status;
// the process's own status counts its first thread only). A thread that has exited
// takes its count with it; Go's runtime keeps its threads, so over a measured window
// that loses little. 0 if /proc has no task directory.
func threadSwitches(pid int) uint64 {
	statuses, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	var total uint64
	for _, path := range statuses {
		status, err := os.ReadFile(path)
		if err != nil {
			continue // the thread exited since the glob
		}
		total += parseStatusCount(status, "voluntary_ctxt_switches") + parseStatusCount(status, "nonvoluntary_ctxt_switches")
	}
	return total
}

// parseStatusCount returns the number of a "key:\t123" line of a status file, or 0.
func parseStatusCount(status []byte, key string) uint64 {
	for line := range bytes.Lines(status) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(name) != key {
			continue
		}
		n, _ := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
		return n
	}
	return 0
}

// parseStatCPUTicks returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat line.
// The command name (field 2) is in parentheses and may hold spaces and parentheses
// itself, so fields are counted from the last ')'.
func parseStatCPUTicks(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no ')' after the command name in %q", stat)
	}
	fields := bytes.Fields(stat[end+1:])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	utime, err1 := strconv.ParseUint(string(fields[14-3]), 10, 64)
	stime, err2 := strconv.ParseUint(string(fields[15-3]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q or stime %q is not a number", fields[14-3], fields[15-3])
	}
	return utime + stime, nil
}

// parseStatusKiB returns the value of a "Key:   123 kB" line of /proc/<pid>/status.
func parseStatusKiB(status []byte, key string) (uint64, error) {
	for line := range bytes.Lines(status) {
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(name) != key {
			continue
		}
		fields := bytes.Fields(rest)
		if len(fields) != 2 || string(fields[1]) != "kB" {
			return 0, fmt.Errorf("%s line %q is not \"<n> kB\"", key, bytes.TrimSpace(line))
		}
		return strconv.ParseUint(string(fields[0]), 10, 64)
	}
	return 0, fmt.Errorf("no %s line", key)
}

// loadAverage returns the first three fields of /proc/loadavg, or "?" if unreadable.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := bytes.Fields(b)
	if len(f) < 3 {
		return "?"
	}
	return string(bytes.Join(f[:3], []byte(" ")))
}
