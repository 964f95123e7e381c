package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// raftkv snapshot save writes a backup that status reads and restore turns into a
// data dir; the errors say what was wrong: a file that is not a backup, a damaged
// one, a data dir that is not empty, a name missing from --initial-cluster.
func TestSnapshotSaveStatusRestore(t *testing.T) {
	members := startMembers(t, 1)
	ep := members[0].endpoint
	mustCLI(t, "OK\n", "--endpoints", ep, "put", "k", "v")
	dir := t.TempDir()
	backup := filepath.Join(dir, "b.db")
	mustCLI(t, "Snapshot saved at "+backup+"\n", "--endpoints", ep, "snapshot", "save", backup)
	if _, err := os.Stat(backup + ".part"); !os.IsNotExist(err) {
		t.Fatalf("the .part file is left behind (%v)", err)
	}
	stdout, stderr, code := runCLI(t, nil, "snapshot", "status", backup)
	if code != 0 || !strings.Contains(stdout, "TOTAL KEYS") || !strings.Contains(stdout, "COMPACT REVISION") {
		t.Fatalf("snapshot status: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	restore := func(args ...string) (string, string, int) {
		return runCLI(t, nil, append([]string{"snapshot", "restore"}, args...)...)
	}
	peer := "http://127.0.0.1:12380"
	stdout, stderr, code = restore(backup, "--name", "a", "--data-dir", filepath.Join(dir, "a"),
		"--initial-cluster", "a="+peer, "--initial-advertise-peer-urls", peer)
	if code != 0 || !strings.Contains(stdout, "restored snapshot at revision") {
		t.Fatalf("restore: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, tc := range []struct {
		what string
		args []string
		want string
	}{
		{"into a data dir that is not empty", []string{backup, "--name", "a", "--data-dir", filepath.Join(dir, "a"),
			"--initial-cluster", "a=" + peer, "--initial-advertise-peer-urls", peer}, "exists and is not empty"},
		{"a name not in --initial-cluster", []string{backup, "--name", "b", "--data-dir", filepath.Join(dir, "b"),
			"--initial-cluster", "a=" + peer, "--initial-advertise-peer-urls", peer}, `--name "b" is not in --initial-cluster`},
		{"a file that is not a backup", []string{filepath.Join(dir, "a", "member", "..", "..", "b.db.not"), "--data-dir", filepath.Join(dir, "c")},
			"no such file"},
	} {
		_, stderr, code := restore(tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("restore %s: exit %d, stderr %q, want %q", tc.what, code, stderr, tc.want)
		}
	}
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("not a backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = restore(junk, "--data-dir", filepath.Join(dir, "d"))
	if code == 0 || !strings.Contains(stderr, "--skip-hash-check") {
		t.Errorf("restore of a file without a checksum: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = restore(junk, "--data-dir", filepath.Join(dir, "d"), "--skip-hash-check")
	if code == 0 || !strings.Contains(stderr, "not a valid raftkv backup") {
		t.Errorf("restore of junk with --skip-hash-check: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Errorf("a refused restore left its data dir behind (%v)", err)
	}
}
