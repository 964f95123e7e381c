package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"raftkv/internal/testport"
)

// etcdHelpFlag is one flag of `etcd --help`, with the default the help prints ("" if
// it prints none).
type etcdHelpFlag struct {
	name, def string
	hasDef    bool
}

// etcdHelpFlags builds etcd 3.7 from go.mod and returns the flags its --help lists.
func etcdHelpFlags(t *testing.T) []etcdHelpFlag {
	t.Helper()
	bin := buildBinary(t, "etcd", "go.etcd.io/etcd/server/v3")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput() // etcd --help exits 0 or 2 by version
	var flags []etcdHelpFlag
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)(?: '(.*)'| (\S+))?$`).FindAllStringSubmatch(string(out), -1) {
		flags = append(flags, etcdHelpFlag{name: m[1], def: m[2] + m[3], hasDef: m[2] != "" || m[3] != "" || strings.Contains(m[0], "''")})
	}
	if len(flags) < 100 {
		t.Fatalf("etcd --help lists %d flags; the pattern no longer matches its layout:\n%s", len(flags), out)
	}
	return flags
}

// TestReadmeMapsEveryEtcdFlag: README.md's table of etcd's flags has a row for every
// flag etcd's own --help lists (the cmd/raftkv tests hold the table to the code).
func TestReadmeMapsEveryEtcdFlag(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| (served|ignored|refused)").FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = true
	}
	for _, f := range etcdHelpFlags(t) {
		if !rows[f.name] {
			t.Errorf("etcd --help lists --%s; README.md's table of etcd's flags has no row for it", f.name)
		}
	}
}

// TestEtcdCommandLineStartsAMember: a member given every flag of etcd --help at
// etcd's default (then its own URLs and data dir) starts, serves, and warns about the
// flags it ignores; one naming a certificate without its key is refused with the
// reason.
func TestEtcdCommandLineStartsAMember(t *testing.T) {
	t.Parallel()
	var args []string
	for _, f := range etcdHelpFlags(t) {
		switch {
		case f.hasDef:
			args = append(args, fmt.Sprintf("--%s=%s", f.name, f.def))
		case f.name == "memory-mlock" || f.name == "enable-grpc-gateway":
			args = append(args, "--"+f.name) // etcd's boolean flags the help gives no default
		case f.name == "snapshot-catchup-entries":
			// A number whose default etcd's help does not print; etcd refuses an
			// empty value ("parse error"), so the command line gives its default.
			args = append(args, "--"+f.name+"=5000")
		default:
			args = append(args, "--"+f.name+"=")
		}
	}
	ports := testport.Free(t, 2)
	dir := t.TempDir()
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	args = append(args, "--data-dir", filepath.Join(dir, "data"), "--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default="+peer)

	out := &syncBuffer{}
	cmd := exec.Command(raftkvBinary(t), args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	cli := newClient(t, hostPort(client))
	err := eventually(30*time.Second, 100*time.Millisecond, func() error {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("the member exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Put(ctx, "etcd-flags", "ok")
		return err
	})
	if err != nil {
		t.Fatalf("a member with etcd's command line takes no write: %v\n%s", err, tail(writeTemp(t, []byte(out.String())), 40))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("the member exited with %v after SIGTERM", err)
	}
	exited <- nil
	for _, want := range []string{`--max-wals \"5\" (from the command line) is accepted for etcd compatibility and ignored`,
		`--client-cert-file \"\" (from the command line) is accepted`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the member's log has no warning %q", want)
		}
	}

	refused := exec.Command(raftkvBinary(t), "--data-dir", filepath.Join(dir, "refused"), "--cert-file", "server.crt")
	msg, err := refused.CombinedOutput()
	if refused.ProcessState.ExitCode() != 2 || !strings.Contains(string(msg), `--cert-file "server.crt" and --key-file "": give both, or neither`) {
		t.Fatalf("--cert-file server.crt: %v\n%s", err, msg)
	}
}

func writeTemp(t *testing.T, data []byte) string {
	path := filepath.Join(t.TempDir(), "out.log")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
