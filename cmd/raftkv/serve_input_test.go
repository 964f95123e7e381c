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
	"time"

	"raftkv/internal/testport"
)

// TestServeRefusesBadInputInTheFlagsWords: each value below was taken, crashed into a
// raw Go error, or was refused in words that did not name the flag or say what to
// do (a review of the member's input on 2026-12-07). Each is now refused with exit 2,
// one line, naming the flag and the value, in etcd's words where etcd has some.
func TestServeRefusesBadInputInTheFlagsWords(t *testing.T) {
	config := filepath.Join(t.TempDir(), "member.yaml")
	writeFile(t, config, "election-timeout: -5\n")
	for _, tc := range []struct {
		args, env []string
		want      string
	}{
		{args: []string{"--name", ""}, want: "--name is empty; give the member a name"},
		{args: []string{"--election-timeout", "60000"},
			want: "--election-timeout[60000ms] is too long, and should be set less than 50000ms"},
		// Once overflowed into a negative duration and the wrong reason.
		{args: []string{"--election-timeout", "10000000000000", "--heartbeat-interval", "100"},
			want: "--election-timeout[10000000000000ms] is too long"},
		{args: []string{"--heartbeat-interval", "10000000000000", "--election-timeout", "40000"},
			want: "--election-timeout 40000ms must be at least 5 times --heartbeat-interval 10000000000000ms"},
		{args: []string{"--strict-reconfig-check=maybe"}, want: `"maybe" is not true or false`},
		{args: []string{"--self-signed-cert-validity", "100000"}, want: "--self-signed-cert-validity 100000 years would end past 9999"},
		{args: []string{"--self-signed-cert-validity", "-1"}, want: `"-1" is negative`},
		{args: []string{"--auto-compaction-retention", "3000000h"}, want: `--auto-compaction-retention "3000000h" is too long; give at most 2562047h0m0s`},
		{args: []string{"--auto-compaction-retention", "1.2.3h"}, want: `--auto-compaction-retention "1.2.3h" is not a duration`},
		{args: []string{"--auto-compaction-retention", "h"}, want: `--auto-compaction-retention "h" is not a duration`},
		{args: []string{"--discovery", "http://127.0.0.1:1/x"}, want: "; drop it\n"},
		{args: []string{"--pre-vote=false"}, want: "drop it, or give etcd's default, true"},
		// A trailing slash made a second member of this one: two spellings, two ids.
		{args: []string{"--initial-cluster", "default=http://127.0.0.1:2380,b=http://127.0.0.1:2380/"},
			want: `--initial-cluster: member "b": URL must not contain a path: http://127.0.0.1:2380/`},
		{args: []string{"--listen-peer-urls", "http://127.0.0.1:2380/", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"},
			want: "--listen-peer-urls: URL must not contain a path: http://127.0.0.1:2380/"},
		{args: []string{"--initial-cluster", "default=http://127.0.0.1:2380,b=http://user:pw@127.0.0.1:2390"},
			want: `--initial-cluster: member "b": URL must not contain a query, fragment or user: http://user:pw@127.0.0.1:2390`},
		{args: []string{"--advertise-client-urls", "http://127.0.0.1:2379/v3"},
			want: "--advertise-client-urls: URL must not contain a path: http://127.0.0.1:2379/v3"},
		{args: []string{"--listen-client-urls", "http://example.invalid:2379"},
			want: "--listen-client-urls: expected IP in URL for binding (http://example.invalid:2379)"},
		{args: []string{"--listen-client-urls", "http://127.0.0.1:2379,http://127.0.0.1:2379"},
			want: "--listen-client-urls lists 127.0.0.1:2379 twice"},
		{args: []string{"--initial-cluster", "default=http://127.0.0.1:2380,b=http://127.0.0.1:2380"},
			want: `initial cluster has duplicate url http://127.0.0.1:2380 (members "b" and "default" in --initial-cluster)`},
		{args: []string{"--max-txn-ops", "-3"}, want: "--max-txn-ops -3 is out of range; give between 1 and 2147483647"},
		// Where a value came from, when not from the command line.
		{env: []string{"ETCD_LISTEN_CLIENT_URLS=http://localhost:2379/v3"},
			want: "(--listen-client-urls is from ETCD_LISTEN_CLIENT_URLS)"},
		{args: []string{"--config-file", config}, want: "(--election-timeout is from --config-file " + config + ")"},
	} {
		stdout, stderr, code := runCLI(t, tc.env, tc.args...)
		if code != exitBadArgs || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%q %q: exit %d, stderr %q; want exit %d and %q", tc.args, tc.env, code, stderr, exitBadArgs, tc.want)
		}
		if strings.Contains(stderr, "strconv.") || strings.Contains(stderr, "goroutine ") {
			t.Errorf("%q: a raw Go error: %q", tc.args, stderr)
		}
	}
}

// TestServeTakesEtcdsLargeLimits: etcd caps --max-txn-ops nowhere, so a command line
// of etcd's with a large one starts raftkv too (it was refused above 1023), and
// localhost is an address to listen on, as in etcd.
func TestServeTakesEtcdsLargeLimits(t *testing.T) {
	cfg, _, err := parseServe([]string{"--max-txn-ops", "20000", "--listen-client-urls", "http://localhost:2379",
		"--data-dir", filepath.Join(t.TempDir(), "d")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("--max-txn-ops 20000 with a localhost client URL: %v", err)
	}
	if cfg.MaxTxnOps != 20000 {
		t.Fatalf("MaxTxnOps %d, want 20000", cfg.MaxTxnOps)
	}
}

// TestDataDirThatIsAFileIsNamed: a --data-dir that is a file is refused with the flag,
// the path and what to give instead, before any port is taken.
func TestDataDirThatIsAFileIsNamed(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "afile")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", file}, "cannot access data directory: --data-dir " + file + " is a file, not a directory"},
		{[]string{"--data-dir", filepath.Join(dir, "d"), "--wal-dir", filepath.Join(file, "wal")},
			"cannot access data directory: --wal-dir " + filepath.Join(file, "wal") + ": " + file + " is a file, not a directory"},
	} {
		// Port 1 is not ours to take: had the data dir been checked after the
		// listeners, the error would be about the port.
		args := append(tc.args, "--listen-client-urls", "http://127.0.0.1:1", "--listen-peer-urls", "http://127.0.0.1:2",
			"--initial-advertise-peer-urls", "http://127.0.0.1:2")
		_, stderr, code := runCLI(t, nil, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Errorf("a refused start left %s behind: %v", filepath.Join(dir, "d"), err)
	}
}

// TestSignalWhileStartingIsLogged: a SIGTERM while the member starts (here a join,
// which waits for the cluster) ends it as the signal would, after one log line
// saying so; it once ended it with no word at all, the handler being installed only
// once the member had started. A SIGINT that the process was started ignoring (a
// shell's background job) ends it too, with status 130, rather than being ignored
// again once the handler is reset.
func TestSignalWhileStartingIsLogged(t *testing.T) {
	if os.Getenv("RAFTKV_TEST_MEMBER") == "1" {
		os.Exit(run(strings.Fields(os.Getenv("RAFTKV_TEST_ARGS")), os.Environ(), os.Stdout, os.Stderr))
	}
	for _, tc := range []struct {
		sig     syscall.Signal
		ignored bool
	}{{syscall.SIGTERM, false}, {syscall.SIGINT, true}} {
		ports := testport.Free(t, 3)
		args := fmt.Sprintf("--name n2 --data-dir %s --initial-cluster-state existing "+
			"--initial-cluster n1=http://127.0.0.1:%d,n2=http://127.0.0.1:%d "+
			"--listen-peer-urls http://127.0.0.1:%[3]d --initial-advertise-peer-urls http://127.0.0.1:%[3]d "+
			"--listen-client-urls http://127.0.0.1:%d", filepath.Join(t.TempDir(), "n2"), ports[0], ports[1], ports[2])
		cmd := exec.Command(os.Args[0], "-test.run=^TestSignalWhileStartingIsLogged$")
		if tc.ignored {
			cmd = exec.Command("/bin/sh", "-c", `trap '' INT; exec "$0" "$@"`, os.Args[0], "-test.run=^TestSignalWhileStartingIsLogged$")
		}
		cmd.Env = append(os.Environ(), "RAFTKV_TEST_MEMBER=1", "RAFTKV_TEST_ARGS="+args)
		stderr := &lockedBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// n1 is not there, so the join waits; signal once the member has begun it.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stderr.String(), "starting raftkv") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		if err := cmd.Process.Signal(tc.sig); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		var err error
		select {
		case err = <-waited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
			t.Fatalf("%v (ignored at start: %v): the member still runs 15s later\n%s", tc.sig, tc.ignored, stderr.String())
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("%v: the member exited with %v; want its end by the signal\n%s", tc.sig, err, stderr.String())
		}
		ws, _ := exit.Sys().(syscall.WaitStatus)
		if byTheSignal := ws.Signaled() && ws.Signal() == tc.sig; !byTheSignal && ws.ExitStatus() != 128+int(tc.sig) {
			t.Errorf("%v (ignored at start: %v): the member ended with %v", tc.sig, tc.ignored, exit)
		}
		if !strings.Contains(stderr.String(), "shutting down while starting") {
			t.Errorf("%v: no log line for the signal:\n%s", tc.sig, stderr.String())
		}
	}
}
