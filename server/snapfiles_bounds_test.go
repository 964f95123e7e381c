package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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

// A restore that fails into an existing empty --data-dir leaves it empty (it
// removes the member/ it made, not only directories it made the data dir with), so
// that running it again is not refused as "exists and is not empty", and the
// retry with a whole backup succeeds.
func TestRestoreFailedIntoEmptyDataDirLeavesItEmpty(t *testing.T) {
	dir := t.TempDir()
	data := backupOf(t)
	// Cut past the header, in the records: the restore fails once it has made
	// member/ and begun the store.
	cut := filepath.Join(dir, "cut.db")
	if err := os.WriteFile(cut, data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(whole, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	initial := map[string][]string{"r0": {"http://127.0.0.1:2380"}}
	if _, err := Restore(RestoreConfig{BackupPath: cut, DataDir: dataDir, Name: "r0", InitialCluster: initial,
		SkipHashCheck: true}); err == nil {
		t.Fatal("a backup cut short restored")
	}
	if left, err := os.ReadDir(dataDir); err != nil || len(left) != 0 {
		t.Fatalf("a failed restore into the empty %s left %v (%v) in it", dataDir, left, err)
	}
	if _, err := Restore(RestoreConfig{BackupPath: whole, DataDir: dataDir, Name: "r0", InitialCluster: initial}); err != nil {
		t.Fatalf("restoring again after a failed restore: %v", err)
	}
}

// A body a kill or power loss cut off while it was received (kv-in/.recv-<rand>:
// a directory of tables, or a file of an older version) is removed when the member
// starts, with a log line naming it and its size; a whole body stays for its
// snapshot.
func TestStartRemovesCutOffReceives(t *testing.T) {
	logs := &lockedBuffer{}
	m := startTestCluster(t, 1, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})[0]
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	m.stop()
	in := inboundDir(filepath.Join(m.cfg.DataDir, "member"))
	cutDir := filepath.Join(in, ".recv-0123456789abcdef")
	cutFile := filepath.Join(in, ".recv-4711") // an older version's
	if err := os.MkdirAll(cutDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{filepath.Join(cutDir, "000001.sst"), filepath.Join(cutDir, "000002.sst"), cutFile} {
		if err := os.WriteFile(p, make([]byte, 1000*(i+1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m.start(t)
	for _, p := range []string{cutDir, cutFile} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still in kv-in after a start (%v)", p, err)
		}
	}
	out := logs.String()
	for _, want := range []string{cutDir + " bytes=3000", cutFile + " bytes=3000"} {
		if !strings.Contains(out, want) {
			t.Errorf("the start logged no removal of %q:\n%s", want, out)
		}
	}
	retry(t, func(ctx context.Context) error {
		resp, err := m.client.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
		if err == nil && resp.Count != 1 {
			t.Fatalf("k: %d keys after the restart", resp.Count)
		}
		return err
	})
}
