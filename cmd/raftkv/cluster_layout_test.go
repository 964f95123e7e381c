package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// saveLayout makes --dir and its parents, writes cluster.json whole, leaves it
// untouched when the layout is the one it holds (a start rewrites nothing), and
// replaces it whole when the layout changes, leaving no temporary file.
func TestSaveLayoutWritesOnlyAChange(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "cluster")
	plan := []localMember{{Name: "infra1", ClientURL: "http://127.0.0.1:2379", PeerURL: "http://127.0.0.1:2380"}}
	if err := saveLayout(dir, plan); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, layoutFile)
	read := func() []localMember {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []localMember
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return got
	}
	if got := read(); !slices.Equal(got, plan) {
		t.Fatalf("saved %v, want %v", got, plan)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := saveLayout(dir, plan); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(path); err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("the same layout saved again rewrote %s (%v)", path, err)
	}
	plan = append(plan, localMember{Name: "infra2", ClientURL: "http://127.0.0.1:22379", PeerURL: "http://127.0.0.1:22380"})
	if err := saveLayout(dir, plan); err != nil {
		t.Fatal(err)
	}
	if got := read(); !slices.Equal(got, plan) {
		t.Fatalf("saved %v, want %v", got, plan)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("--dir holds %v, want cluster.json alone", entries)
	}
}
