package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"raftkv/internal/testport"
)

// takenBasePort returns a --base-port for a 1-member cluster whose client port this
// test listens on: a command line that passed every check before the port check
// would be refused there, not start members (the test binary, under os.Executable).
func takenBasePort(t *testing.T) string {
	t.Helper()
	port := testport.Free(t, 1)[0]
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return strconv.Itoa(port)
}

// Flags after "--" that every member would refuse, or that raftkv cluster sets for
// each member itself, are refused before any member starts, with the member's own
// words and what to do. Members given them exited with status 2 and were restarted
// for good.
func TestClusterRefusesMemberFlagsBeforeStarting(t *testing.T) {
	for _, tc := range []struct {
		environ []string
		args    []string
		want    string
	}{
		{nil, []string{"--snapshot-count", "abc"}, `member flags after "--": invalid argument "abc" for "--snapshot-count" flag: "abc" is not a plain number of entries`},
		{nil, []string{"--no-such-flag"}, `member flags after "--": unknown flag: --no-such-flag (raftkv --help lists the member flags)`},
		{nil, []string{"put"}, `member flags after "--": "put" is no flag`},
		{nil, []string{"--help"}, `member flags after "--": --help would make every member print it and exit`},
		{nil, []string{"--name", "foo"}, `member flag --name cannot be given after "--": raftkv cluster names its members infra1, infra2, ...; remove it`},
		{nil, []string{"--data-dir", "x"}, `member flag --data-dir cannot be given after "--"`},
		{nil, []string{"--wal-dir", "x"}, `member flag --wal-dir cannot be given after "--": every member would write its WAL to that one directory`},
		{nil, []string{"--listen-client-urls=http://127.0.0.1:9"}, `member flag --listen-client-urls cannot be given after "--"`},
		{nil, []string{"--initial-cluster", "a=http://127.0.0.1:9"}, `member flag --initial-cluster cannot be given after "--"`},
		{nil, []string{"--initial-cluster-state", "existing"}, `member flag --initial-cluster-state cannot be given after "--"`},
		{nil, []string{"--initial-cluster-token", "t"}, `member flag --initial-cluster-token cannot be given after "--"`},
		{nil, []string{"--auto-tls"}, `member flag --auto-tls cannot be given after "--": use raftkv cluster --tls`},
		{nil, []string{"--" + supervisorFDFlag, "5"}, `member flag --supervisor-fd cannot be given after "--"`},
		// The member's config check, not only its parse.
		{nil, []string{"--election-timeout", "10"}, `the members would refuse to start: --election-timeout 10ms must be at least 5 times --heartbeat-interval 100ms`},
		{[]string{"RAFTKV_SNAPSHOT_COUNT=x"}, nil, `the members would refuse to start: environment variable RAFTKV_SNAPSHOT_COUNT="x" is not a valid --snapshot-count`},
		{[]string{"ETCD_WAL_DIR=/tmp/w"}, nil, `--wal-dir is set for every member by the environment or the --config-file`},
	} {
		dir := filepath.Join(t.TempDir(), "c")
		args := append([]string{"cluster", "--members", "1", "--base-port", takenBasePort(t), "--dir", dir, "--"}, tc.args...)
		stdout, stderr, code := runCLI(t, tc.environ, args...)
		if code != exitBadArgs || !strings.Contains(stderr, "Error: "+tc.want) || stdout != "" {
			t.Errorf("%q %q: exit %d, stdout %q, stderr\n%s\nwant exit %d and stderr with\n%s", tc.environ, tc.args, code, stdout, stderr, exitBadArgs, tc.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%q: --dir exists after the refusal (stat: %v)", tc.args, err)
		}
	}
}

// shellSupervisor returns a supervisor (not yet run) of members that are shell
// scripts, and the buffer of its output.
func shellSupervisor(t *testing.T, scripts ...string) (*supervisor, *lockedBuffer) {
	dir := t.TempDir()
	stdout := &lockedBuffer{}
	s := newSupervisor(&app{stdout: stdout, stderr: &lockedBuffer{}}, clusterOptions{})
	for i, script := range scripts {
		name := fmt.Sprintf("infra%d", i+1)
		s.members = append(s.members, &supervisedMember{
			// Port 1: nothing answers announceLeader there.
			localMember:  localMember{Name: name, ClientURL: "http://127.0.0.1:1", PeerURL: "http://127.0.0.1:1"},
			dataDir:      filepath.Join(dir, name),
			pidFile:      filepath.Join(dir, name+".pid"),
			args:         []string{"/bin/sh", "-c", script},
			restartDelay: firstRestartDelay,
		})
	}
	return s, stdout
}

// A member that exits with status 2 refused its command line, which a restart gives
// it again: the supervisor stops the others and returns, naming the member and its
// error, instead of restarting it for good.
func TestClusterStopsOnAMemberUsageError(t *testing.T) {
	s, stdout := shellSupervisor(t, "exec sleep 60", "echo 'Error: unknown flag: --bogus' >&2; exit 2")
	done := make(chan error, 1)
	go func() { done <- s.run() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		// run stops on SIGINT, which it catches.
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		<-done
		t.Fatalf("the supervisor still runs 15s after a member's usage error; its output:\n%s", stdout.String())
	}
	want := `member infra2 refused its command line: unknown flag: --bogus; fix the flags after "--"`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("run: %v; want an error with %q", err, want)
	}
	if s.running() != 0 {
		t.Errorf("%d members still run after run returned", s.running())
	}
	if out := stdout.String(); !strings.Contains(out, "exited: exit status 2: it refused its command line") || strings.Contains(out, "restarting in") {
		t.Errorf("the supervisor's output does not say why it stops, or restarts the member:\n%s", out)
	}
}

// TestClusterRestartsAMemberThatPanicked: a Go panic exits with status 2 too, but
// prints no "Error: " line; the member is restarted, as any crash is, and the cluster
// is not stopped for it.
func TestClusterRestartsAMemberThatPanicked(t *testing.T) {
	s, stdout := shellSupervisor(t, "exec sleep 60", "echo 'panic: boom' >&2; echo 'goroutine 1 [running]:' >&2; exit 2")
	done := make(chan error, 1)
	go func() { done <- s.run() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stdout.String(), "restarting in") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the supervisor stopped after a member's panic: %v\n%s", err, stdout.String())
	default:
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGINT) // run stops on SIGINT, which it catches
	<-done
	if out := stdout.String(); !strings.Contains(out, "exited: exit status 2; restarting in") || strings.Contains(out, "refused its command line") {
		t.Errorf("a panicked member was not restarted as a crash:\n%s", out)
	}
}

// A --dir that is a file, or a path through one, is refused in the flag's words,
// not as "open afile/cluster.json: not a directory".
func TestClusterRefusesADirThatIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{
		file:                       fmt.Sprintf("Error: --dir %s is a file, not a directory; give a directory", file),
		filepath.Join(file, "sub"): fmt.Sprintf("Error: --dir %s is inside %s, a file, not a directory; give a directory", filepath.Join(file, "sub"), file),
	} {
		stdout, stderr, code := runCLI(t, nil, "cluster", "--members", "1", "--base-port", takenBasePort(t), "--dir", dir)
		if code != exitBadArgs || !strings.HasPrefix(stderr, want) || stdout != "" {
			t.Errorf("--dir %s: exit %d, stdout %q, stderr\n%s\nwant exit %d and stderr starting\n%s", dir, code, stdout, stderr, exitBadArgs, want)
		}
	}
}

// A --dir whose cluster runs is refused with the running supervisor's pid and how to
// stop it; before, with --base-port 0, only its ports were said to be taken. The
// supervisor is found by its cluster.pid or, without one (an older raftkv), as its
// members' parent; a pid file whose process is gone (a supervisor that was killed)
// does not count.
func TestClusterRefusesADirThatRuns(t *testing.T) {
	dir := t.TempDir()
	// A process named raftkv stands for the running supervisor and its member, and
	// this test's process for the member's parent.
	running := exec.Command("/bin/sleep", "60")
	running.Args[0] = "raftkv"
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		running.Process.Kill()
		running.Wait()
	})
	pid := running.Process.Pid
	writePids := func(pids map[string]int) {
		t.Helper()
		for _, f := range []string{supervisorPidFile, "infra1.pid"} {
			os.Remove(filepath.Join(dir, f))
		}
		for f, pid := range pids {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, tc := range []struct {
		pids       map[string]int
		supervisor int
	}{
		{map[string]int{supervisorPidFile: pid, "infra1.pid": pid}, pid},
		{map[string]int{"infra1.pid": pid}, os.Getpid()},
	} {
		writePids(tc.pids)
		_, stderr, code := runCLI(t, nil, "cluster", "--members", "1", "--base-port", takenBasePort(t), "--dir", dir)
		want := fmt.Sprintf("Error: --dir %s is in use: raftkv cluster (pid %d) runs its cluster, with members infra1 (pid %d); "+
			"use that cluster, or stop it (Ctrl-C in its terminal, or kill %d)", dir, tc.supervisor, pid, tc.supervisor)
		if code == 0 || !strings.HasPrefix(stderr, want) {
			t.Errorf("pid files %v: exit %d, stderr\n%s\nwant it to start with\n%s", tc.pids, code, stderr, want)
		}
	}

	gone := exec.Command("/bin/sh", "-c", "exit 0")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	writePids(map[string]int{supervisorPidFile: gone.Process.Pid, "infra1.pid": gone.Process.Pid})
	if err := checkDirNotRunning(dir); err != nil {
		t.Errorf("pid files of a process that exited: %v", err)
	}
}

// The advice of an out-of-range --base-port fits its value: a negative one needs a
// positive one (it said "use a lower --base-port"), one too high a lower one, and 7
// members fit no base port.
func TestClusterBasePortAdviceFitsTheValue(t *testing.T) {
	for _, tc := range []struct {
		members, basePort int
		want, notWant     string
	}{
		{3, -1, "--members 3 with --base-port -1 puts infra1 on ports -1 and 0 (client, peer), outside 1-65535; use a --base-port from 1 to 35534, or 0 for free ports", "lower"},
		{3, 60000, "puts infra2 on ports 80000 and 80001 (client, peer), outside 1-65535; use --base-port 35534 or lower, or 0 for free ports", ""},
		{1, 65535, "puts infra1 on ports 65535 and 65536 (client, peer), outside 1-65535; use --base-port 65534 or lower", ""},
		{7, 2379, "no --base-port fits 7 members on this layout; use --base-port 0 for free ports", "lower"},
	} {
		_, _, err := localPorts(tc.members, tc.basePort)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.notWant != "" && strings.Contains(err.Error(), tc.notWant)) {
			t.Errorf("--members %d --base-port %d: %v; want %q", tc.members, tc.basePort, err, tc.want)
		}
	}
	if client, _, err := localPorts(3, 35534); err != nil || client[2] != 65534 {
		t.Errorf("--base-port 35534, the highest for 3 members: %v %v", client, err)
	}
}

// A --members or --base-port that is no number says the flag, the value and the
// numbers it takes, not strconv's words.
func TestClusterNumberFlagsSayTheirRange(t *testing.T) {
	for flag, tc := range map[string]struct{ value, want string }{
		"--members":   {"abc", `Error: invalid argument "abc" for "--members" flag: "abc" is not a whole number; give a number of members from 1 to 7`},
		"--base-port": {"x1", `Error: invalid argument "x1" for "--base-port" flag: "x1" is not a whole number; give a port from 1 to 65535, or 0 for free ports`},
	} {
		stdout, stderr, code := runCLI(t, nil, "cluster", flag, tc.value)
		if code != exitBadArgs || !strings.HasPrefix(stderr, tc.want+"\n") || stdout != "" {
			t.Errorf("%s %s: exit %d, stdout %q, stderr\n%s\nwant exit %d and\n%s", flag, tc.value, code, stdout, stderr, exitBadArgs, tc.want)
		}
	}
}

// TestClaimDirTakesOverAStalePidFile: cluster.pid left by a supervisor that is gone is
// replaced by this one's pid, and releasing it removes only a file that still names
// this process (not one another supervisor wrote since).
func TestClaimDirTakesOverAStalePidFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, supervisorPidFile)
	writeFile(t, path, "999999999\n")
	release, err := claimDir(dir)
	if err != nil {
		t.Fatalf("claiming a --dir with a stale cluster.pid: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != fmt.Sprintf("%d\n", os.Getpid()) {
		t.Fatalf("cluster.pid holds %q, want this process's pid", data)
	}
	writeFile(t, path, "12345\n") // another supervisor's, say
	release()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("release removed a cluster.pid that names another process: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	release, err = claimDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("release left this process's cluster.pid: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, supervisorPidFile+".*")); len(left) > 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}
