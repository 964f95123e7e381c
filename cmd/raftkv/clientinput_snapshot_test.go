package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClientInputSnapshotPaths: snapshot save checks where it writes before any dial and
// blames the path; the reading commands refuse a directory and word the hash advice
// for themselves; restore names --data-dir and --backend-separate-value-bytes.
func TestClientInputSnapshotPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "afile")
	junk := filepath.Join(dir, "junk.db")
	for _, p := range []string{file, junk} {
		if err := os.WriteFile(p, make([]byte, 1000), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "nonexist", "x.db")
	endpoint := closedPort(t)
	checkClientInput(t, []clientInputCase{
		{[]string{"snapshot", "save", missing, "--endpoints", endpoint}, exitBadArgs,
			[]string{"cannot save to " + missing + ": directory " + filepath.Dir(missing) + " does not exist; create it"}, []string{endpoint, ".part"}},
		{[]string{"snapshot", "save", dir, "--endpoints", endpoint}, exitBadArgs, []string{"cannot save to " + dir + ": it is a directory"}, []string{endpoint}},
		{[]string{"snapshot", "save", filepath.Join(file, "x.db"), "--endpoints", endpoint}, exitBadArgs, []string{file + " is not a directory"}, []string{endpoint}},
		{[]string{"snapshot", "status", dir}, exitBadArgs, []string{dir + " is a directory, not a backup"}, []string{"restore"}},
		{[]string{"snapshot", "status", junk}, exitError, []string{"pass --skip-hash-check to read it unchecked"}, []string{"restore"}},
		{[]string{"snapshot", "to-etcd", junk, filepath.Join(dir, "out.db")}, exitError, []string{"pass --skip-hash-check to convert it unchecked"}, []string{"restore"}},
		{[]string{"snapshot", "restore", junk, "--data-dir", filepath.Join(dir, "d")}, exitError, []string{"pass --skip-hash-check to restore it unchecked"}, nil},
		{[]string{"snapshot", "status", junk, "-w", "yaml"}, exitBadArgs, []string{`-w "yaml": raftkv snapshot status prints table or json`}, nil},
		{[]string{"snapshot", "restore", junk, "--backend-separate-value-bytes", "-5"}, exitBadArgs,
			[]string{"--backend-separate-value-bytes -5 is out of range"}, []string{"kv: invalid config"}},
		{[]string{"snapshot", "restore", junk, "--data-dir", file}, exitBadArgs, []string{`--data-dir "` + file + `" is a file, not a directory`}, []string{"mkdir"}},
		{[]string{"snapshot", "restore", junk, "--data-dir", filepath.Join(file, "d")}, exitBadArgs,
			[]string{`--data-dir "` + filepath.Join(file, "d") + `" cannot be created: ` + file + " is a file"}, []string{"mkdir"}},
	})
	if _, err := os.Stat(missing + ".part"); err == nil {
		t.Errorf("%s.part was left behind", missing)
	}
}
