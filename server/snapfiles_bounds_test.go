package server

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A conversion that finds dst.partial already there (another conversion's, still
// running, or one a crash left) refuses, as its error says, and leaves that file
// as it was: it removes only a partial file it created itself.
func TestWriteEtcdBackupKeepsAnotherPartial(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(src, backupOf(t), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.etcd")
	other := []byte("another conversion's output so far")
	if err := os.WriteFile(out+".partial", other, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := WriteEtcdBackup(src, out, false)
	if err == nil || !strings.Contains(err.Error(), "remove it if no conversion is running") {
		t.Fatalf("converting beside another's partial file: %v, want it refused", err)
	}
	if got, err := os.ReadFile(out + ".partial"); err != nil || string(got) != string(other) {
		t.Fatalf("the other conversion's partial file is now %q (%v), want it untouched", got, err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused conversion made %s (%v)", out, err)
	}
	// Nor would an interrupt (RemoveTempFiles) remove it for this call.
	RemoveTempFiles()
	if _, err := os.Stat(out + ".partial"); err != nil {
		t.Fatalf("RemoveTempFiles removed another conversion's partial file: %v", err)
	}
}
