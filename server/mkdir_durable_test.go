package server

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// mkdirDurably syncs the directory and its parent even when the directory is
// there already: a start killed between MkdirAll and the parent's sync left an
// entry that is not durable, and the next start must sync it.
func TestMkdirDurablySyncsAnExistingDirAndItsParent(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	member := filepath.Join(dataDir, "member")
	if err := os.MkdirAll(member, 0o755); err != nil {
		t.Fatal(err)
	}
	var synced []string
	old := syncDirHook
	syncDirHook = func(dir string) error { synced = append(synced, dir); return old(dir) }
	t.Cleanup(func() { syncDirHook = old })

	if err := mkdirDurably(member, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{member, dataDir} {
		if !slices.Contains(synced, want) {
			t.Errorf("mkdirDurably(%s) on an existing dir synced %q, not %s", member, synced, want)
		}
	}

	// A fresh path: the parent of each directory made, and the directory itself.
	synced = nil
	fresh := filepath.Join(root, "x", "y")
	if err := mkdirDurably(fresh, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fresh, filepath.Join(root, "x"), root} {
		if !slices.Contains(synced, want) {
			t.Errorf("mkdirDurably(%s) synced %q, not %s", fresh, synced, want)
		}
	}
}
