package durable

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// WriteFile replaces a file whole, leaves no temporary file behind, and on an error
// leaves the old content as it was.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	for _, content := range []string{"first\n", "second, longer\n", "3\n"} {
		if err := WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != content {
			t.Fatalf("after writing %q: %q, %v", content, got, err)
		}
	}
	// The temporary file's name taken by a directory: the write fails, the old
	// content stays, and nothing of the attempt is left but what was there.
	if err := os.Mkdir(path+".tmp", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("never\n"), 0o644); err == nil {
		t.Fatal("a write whose temporary file cannot be created succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "3\n" {
		t.Fatalf("after a failed write: %q, want the old content", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("the directory holds %v (%v), want the file and the blocking directory", entries, err)
	}
}

// MkdirAll makes every missing directory, and takes one that exists.
func TestMkdirAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "c")
	for range 2 {
		if err := MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if info, err := os.Stat(dir); err != nil || !info.IsDir() || info.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, %v", dir, info, err)
		}
	}
	if err := MkdirAll(filepath.Join(dir, "f", "g"), 0o700); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(blocker, "x"), 0o700); err == nil {
		t.Fatal("MkdirAll under a file succeeded")
	}
}

// MkdirAll syncs the directory and its parent even when the directory is there
// already: a start killed between a mkdir and the parent's sync left an entry that
// is not durable, and the next start must sync it. On a fresh path it syncs the
// parent of each directory it made, and the directory.
func TestMkdirAllSyncsAnExistingDirAndItsParent(t *testing.T) {
	root := t.TempDir()
	dataDir := filepath.Join(root, "data")
	member := filepath.Join(dataDir, "member")
	if err := os.MkdirAll(member, 0o755); err != nil {
		t.Fatal(err)
	}
	var synced []string
	old := syncDir
	syncDir = func(dir string) error { synced = append(synced, dir); return old(dir) }
	t.Cleanup(func() { syncDir = old })

	if err := MkdirAll(member, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{member, dataDir} {
		if !slices.Contains(synced, want) {
			t.Errorf("MkdirAll(%s) on an existing dir synced %q, not %s", member, synced, want)
		}
	}
	synced = nil
	fresh := filepath.Join(root, "x", "y")
	if err := MkdirAll(fresh, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fresh, filepath.Join(root, "x"), root} {
		if !slices.Contains(synced, want) {
			t.Errorf("MkdirAll(%s) synced %q, not %s", fresh, synced, want)
		}
	}
}
