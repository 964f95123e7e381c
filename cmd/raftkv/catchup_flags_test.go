package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestServeSnapshotCatchUpEntries: --snapshot-catchup-entries (and etcd 3.5/3.6's
// --experimental- name for it) reaches server.Config from the command line, the
// environment and a config file; unset it is 0, which the server reads as etcd's
// 5000 (or --snapshot-count if lower).
func TestServeSnapshotCatchUpEntries(t *testing.T) {
	check := func(what string, args, env []string, want uint64) {
		t.Helper()
		cfg, _, err := parseServe(args, env)
		if err != nil || cfg.SnapshotCatchUpEntries != want {
			t.Errorf("%s: SnapshotCatchUpEntries %d, %v; want %d", what, cfg.SnapshotCatchUpEntries, err, want)
		}
	}
	check("default", nil, nil, 0)
	check("flag", []string{"--snapshot-catchup-entries", "42"}, nil, 42)
	check("etcd 3.6's flag", []string{"--experimental-snapshot-catchup-entries=7"}, nil, 7)
	check("environment", nil, []string{"ETCD_SNAPSHOT_CATCHUP_ENTRIES=9"}, 9)
	file := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(file, []byte("snapshot-catchup-entries: 11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("config file", []string{"--config-file", file}, nil, 11)
	if _, _, err := parseServe([]string{"--snapshot-catchup-entries", "-1"}, nil); err == nil {
		t.Error("--snapshot-catchup-entries -1 accepted")
	}
}
