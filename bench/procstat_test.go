package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPUTicks(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (raft kv) x) S 1 4242 4242 0 -1 4194560 1043 0 0 0 731 269 0 0 20 0 12 0 1 2 3\n"
	got, err := parseStatCPUTicks([]byte(line))
	if err != nil || got != 731+269 {
		t.Fatalf("parseStatCPUTicks = %d, %v; want 1000 (utime 731 + stime 269)", got, err)
	}
	if _, err := parseStatCPUTicks([]byte("4242 (short) S 1 2")); err == nil {
		t.Fatal("a truncated stat line parsed without error")
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\traftkv\nVmPeak:\t  900 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n"
	got, err := parseStatusKiB([]byte(status), "VmHWM")
	if err != nil || got != 51234 {
		t.Fatalf("VmHWM = %d, %v; want 51234", got, err)
	}
	if _, err := parseStatusKiB([]byte(status), "VmSwap"); err == nil {
		t.Fatal("a missing key parsed without error")
	}
}

func TestReadProcOfSelf(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatalf("readProc(self): %v", err)
	}
	if s.peakRSSKiB < 1024 {
		t.Fatalf("this test process's peak RSS is %d KiB; a Go process has at least 1 MiB", s.peakRSSKiB)
	}
}

func TestParseStatusCount(t *testing.T) {
	status := "Name:\traftkv\nvoluntary_ctxt_switches:\t1234\nnonvoluntary_ctxt_switches:\t56\n"
	if got := parseStatusCount([]byte(status), "voluntary_ctxt_switches"); got != 1234 {
		t.Errorf("voluntary_ctxt_switches = %d, want 1234 (not the nonvoluntary line's 56)", got)
	}
	if got := parseStatusCount([]byte(status), "nonvoluntary_ctxt_switches"); got != 56 {
		t.Errorf("nonvoluntary_ctxt_switches = %d, want 56", got)
	}
	if got := parseStatusCount([]byte(status), "VmHWM"); got != 0 {
		t.Errorf("a missing key = %d, want 0", got)
	}
}

// TestThreadSwitchesCountsEveryThread: the sum over the task directory is at least
// the first thread's own count, and grows when threads block and wake.
func TestThreadSwitchesCountsEveryThread(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("no /proc task directory here")
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	first := parseStatusCount(status, "voluntary_ctxt_switches") + parseStatusCount(status, "nonvoluntary_ctxt_switches")
	before := threadSwitches(os.Getpid())
	if before < first {
		t.Fatalf("threadSwitches = %d, below the first thread's own %d", before, first)
	}
	for range 50 {
		done := make(chan struct{})
		go func() { time.Sleep(time.Millisecond); close(done) }()
		<-done
	}
	if after := threadSwitches(os.Getpid()); after <= before {
		t.Fatalf("threadSwitches went from %d to %d across 50 sleeps of 1 ms", before, after)
	}
}
