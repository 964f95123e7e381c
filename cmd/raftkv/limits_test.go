package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"raftkv/internal/testport"
	"raftkv/server"
)

// A member started on a full disk stops with one line saying what is full, how much
// it needed and what to do, and exit status 4; a second start does the same (no
// crash loop of panics). The disk is a 4 MiB tmpfs the test mounts and fills.
func TestStartOnFullDiskIsOneLineAndExitsDiskFull(t *testing.T) {
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs on %s is not permitted here (%v: %s); this test needs root and mount(8)", small, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", small).CombinedOutput(); err != nil {
			t.Errorf("unmounting the tmpfs on %s: %v: %s", small, err, out)
		}
	})
	f, err := os.Create(filepath.Join(small, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 64<<10); ; {
		if _, err := f.Write(chunk); errors.Is(err, syscall.ENOSPC) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	for start := 1; start <= 2; start++ {
		ports := testport.Free(t, 2)
		client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		_, stderr, code := runCLI(t, nil, "--name", "m1", "--data-dir", filepath.Join(small, "m1"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "m1="+peer)
		if code != exitDiskFull {
			t.Fatalf("start %d on a full disk: exit %d, want %d; stderr:\n%s", start, code, exitDiskFull, stderr)
		}
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "Error: disk full: ") {
			t.Fatalf("start %d on a full disk wrote %q; want one line starting \"Error: disk full: \"", start, stderr)
		}
		for _, want := range []string{filepath.Join(small, "m1"), "needed", "mounted at " + small, "free space", "restart the member"} {
			if !strings.Contains(lines[0], want) {
				t.Errorf("start %d: the line lacks %q: %s", start, want, lines[0])
			}
		}
		t.Logf("start %d: exit %d: %s", start, code, lines[0])
	}
}

// A member whose WAL fails its checks is refused at start with one line naming the
// file, the offset and the reason, and what to do; never rebuilt silently.
func TestStartOnCorruptWALNamesTheFile(t *testing.T) {
	ports := testport.Free(t, 2)
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	dataDir := filepath.Join(t.TempDir(), "m1")
	args := []string{"--name", "m1", "--data-dir", dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "m1=" + peer}
	cfg, _, err := parseServe(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	segment := filepath.Join(dataDir, "member", "wal", "0000000000000001.wal")
	f, err := os.OpenFile(segment, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("X"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, stderr, code := runCLI(t, nil, args...)
	if code != exitError {
		t.Fatalf("start on a corrupt WAL: exit %d, want %d; stderr:\n%s", code, exitError, stderr)
	}
	want := "Error: storage: " + segment + " is corrupt at offset 0: no segment magic"
	if lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], want) ||
		!strings.Contains(lines[0], "move the data dir aside") {
		t.Fatalf("start on a corrupt WAL wrote %q; want one line starting %q and saying what to do", stderr, want)
	}
}
