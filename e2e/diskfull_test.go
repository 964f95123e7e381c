package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// exitDiskFull is the exit status of a member whose disk is full (cmd/raftkv).
const exitDiskFull = 4

// mountSmallDisk mounts a tmpfs of sizeMiB MiB on a new directory and unmounts it
// when the test ends (after the members' processes, which later cleanups kill
// first). It skips the test only when mounting is not permitted here.
func mountSmallDisk(t *testing.T, sizeMiB int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMiB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("mounting a %d MiB tmpfs on %s is not permitted here (%v: %s); the disk-full test needs root and mount(8)",
			sizeMiB, dir, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting the tmpfs on %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes the file path until the file system holding it is full, and
// returns its size.
func fillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	var size int64
	for {
		n, err := f.Write(chunk)
		size += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			return size
		}
		if err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

// startSmallDiskCluster starts a 3-member cluster of processes whose third member
// keeps its data dir (or only its WAL, if walOnly) on the directory small.
func startSmallDiskCluster(t *testing.T, small string, walOnly bool) *procCluster {
	t.Helper()
	return startProcClusterWith(t, 3, func(i int, m *procMember) []string {
		switch {
		case i != 2:
			return nil
		case walOnly:
			return []string{"--wal-dir", filepath.Join(small, "wal")}
		}
		m.dataDir = filepath.Join(small, m.name)
		return nil
	})
}

// lastStart returns the output of m's last start, from its log.
func lastStart(t *testing.T, m *procMember) string {
	t.Helper()
	data, err := os.ReadFile(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	out := string(data)
	if i := strings.LastIndex(out, "=== e2e: start #"); i >= 0 {
		out = out[i:]
	}
	return out
}

// waitDiskFullExit waits for m to exit and checks that it stopped as a member whose
// disk is full does: status exitDiskFull, and one line saying what is full (on the
// file system mounted at small), what it needed and what to do; no panic, no
// goroutine dump.
func waitDiskFullExit(t *testing.T, m *procMember, small string, timeout time.Duration) {
	t.Helper()
	m.mu.Lock()
	exited := m.exited
	m.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(timeout):
		t.Fatalf("%s still runs %v after its disk filled; its log ends:\n%s", m.name, timeout, tail(m.logPath, 20))
	}
	m.mu.Lock()
	code := m.cmd.ProcessState.ExitCode()
	m.mu.Unlock()
	out := lastStart(t, m)
	if code != exitDiskFull {
		t.Fatalf("%s exited with status %d; want %d (disk full). Its output:\n%s", m.name, code, exitDiskFull, tail(m.logPath, 30))
	}
	var full []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "panic") || strings.HasPrefix(line, "goroutine ") {
			t.Fatalf("%s panicked on a full disk:\n%s", m.name, out)
		}
		if strings.Contains(line, "disk full") || strings.Contains(line, "no space left") {
			full = append(full, line)
		}
	}
	if len(full) != 1 {
		t.Fatalf("%s said its disk is full on %d lines; want one. Its output:\n%s", m.name, len(full), out)
	}
	line := full[0]
	for _, want := range []string{"Error: member stopped: disk full: ", small, "free", "restart the member"} {
		if !strings.Contains(line, want) && !strings.Contains(line, strings.TrimPrefix(want, "Error: member stopped: ")) {
			t.Errorf("%s's stop line lacks %q: %s", m.name, want, line)
		}
	}
	t.Logf("%s stopped with status %d: %s", m.name, code, line)
}

// TestDiskFullStopsMemberAndItCatchesUp runs a 3-member cluster whose third member
// keeps its WAL on a 64 MiB tmpfs (the segments are 64 MiB: before adaptive
// preallocation it could not even start), fills that tmpfs while clients write
// through the other two, and checks the stop: status 4 and one line saying what is
// full, no panic; no acknowledged write lost on the others; a restart while still
// full stops the same way; once space is freed the member restarts and serves every
// write made meanwhile.
func TestDiskFullStopsMemberAndItCatchesUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		walOnly bool
	}{
		{"wal-dir", true},
		{"data-dir", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			small := mountSmallDisk(t, 64)
			c := startSmallDiskCluster(t, small, tc.walOnly)
			full := c.members[2]
			writer := newClient(t, hostPort(c.members[0].clientURL), hostPort(c.members[1].clientURL))
			acked := newAckedWrites()
			value := strings.Repeat("v", 32<<10)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var writes int
			wg.Go(func() {
				for ; ; writes++ {
					select {
					case <-stop:
						return
					default:
					}
					_ = acked.put(writer, fmt.Sprintf("full/%06d", writes), fmt.Sprintf("%d:%s", writes, value), 5*time.Second)
				}
			})
			stopWriter := func() {
				if stop != nil {
					close(stop)
					wg.Wait()
					stop = nil
				}
			}
			defer stopWriter()

			filler := filepath.Join(small, "filler")
			t.Logf("filled the tmpfs with %d MiB beside %s", fillDisk(t, filler)>>20, full.name)
			waitDiskFullExit(t, full, small, 60*time.Second)

			// The others go on: more writes are acknowledged, and none is lost.
			before, _ := acked.snapshot()
			if err := eventually(30*time.Second, 50*time.Millisecond, func() error {
				if now, _ := acked.snapshot(); len(now) < len(before)+20 {
					return fmt.Errorf("%d writes acknowledged since %s stopped", len(now)-len(before), full.name)
				}
				return nil
			}); err != nil {
				t.Fatalf("the two other members did not go on: %v", err)
			}
			stopWriter()
			kvs, failed := acked.snapshot()
			t.Logf("%d writes acknowledged (%d failed or timed out)", len(kvs), failed)
			verifyAcked(t, c.members[0], "full/", kvs, false, 10*time.Second)

			// A restart on the still-full disk stops with the same line.
			c.start(full)
			waitDiskFullExit(t, full, small, 60*time.Second)

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			c.start(full)
			verifyAcked(t, full, "full/", kvs, true, 60*time.Second)
			if out := lastStart(t, full); strings.Contains(out, "disk full") {
				t.Errorf("%s reported a full disk after space was freed:\n%s", full.name, out)
			}
			c.stop(full)
		})
	}
}
