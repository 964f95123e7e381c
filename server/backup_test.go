package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"raftkv/kv"
)

// backupOf returns a backup of a small store with puts, a delete, a compaction and
// a lease.
func backupOf(t *testing.T) []byte {
	t.Helper()
	s, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	apply := func(cmd *kv.Command) {
		if res := s.ApplyCommand(s.AppliedIndex()+1, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(&kv.Command{LeaseGrant: &kv.LeaseGrantRequest{ID: 9, TTL: 100}})
	for i := range 12 {
		apply(&kv.Command{Put: &kv.PutRequest{Key: fmt.Appendf(nil, "k%d", i%4), Value: bytes.Repeat([]byte{byte(i)}, i), Lease: int64(9 * (i % 2))}})
	}
	apply(&kv.Command{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("k1")}})
	apply(&kv.Command{Compact: &kv.CompactionRequest{Revision: 6}})
	view, err := s.SnapshotView()
	if err != nil {
		t.Fatal(err)
	}
	defer view.Release()
	var b bytes.Buffer
	if _, err := writeBackup(&b, view); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readAll reads the backup at path whole, as restore does, without the checksum.
func readAll(path string) error {
	f, br, err := openBackup(path, true)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		h, err := br.nextKey()
		if err != nil || h == nil {
			return err
		}
	}
}

// A backup cut short anywhere, or with any one byte changed, is refused with an
// error (never a panic) by the reader even when the checksum is not checked, or
// reads as well-formed records whose histories Import then checks; with the
// checksum checked, every change is refused.
func TestDamagedBackupRefused(t *testing.T) {
	good := backupOf(t)
	if len(good)%backupAlign != 32 {
		t.Fatalf("backup of %d bytes is not a multiple of %d plus the checksum", len(good), backupAlign)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "b")
	write := func(b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(good)
	if err := readAll(path); err != nil {
		t.Fatalf("the intact backup: %v", err)
	}
	if _, err := ReadBackupInfo(path); err != nil {
		t.Fatalf("the intact backup with its checksum: %v", err)
	}
	body := len(good) - 32
	// Cut before the end record is through: cut in the padding after it, the records
	// are whole (and only the checksum, skipped here, tells).
	end := body
	for end > 0 && good[end-1] == 0 {
		end--
	}
	for n := 0; n < end; n++ {
		write(good[:n])
		if err := readAll(path); err == nil {
			t.Fatalf("a backup cut at byte %d of %d read without error", n, body)
		}
	}
	imported := 0
	for i := range body {
		damaged := bytes.Clone(good)
		damaged[i] ^= 0x5a
		write(damaged)
		if _, err := ReadBackupInfo(path); !errors.Is(err, errBadBackup) {
			t.Fatalf("byte %d changed: checksum check says %v", i, err)
		}
		if err := readAll(path); err != nil {
			continue
		}
		// Still well formed: Import checks what it says, or takes it.
		f, br, err := openBackup(path, true)
		if err != nil {
			t.Fatal(err)
		}
		s, err := kv.NewStore(kv.Config{})
		if err != nil {
			t.Fatal(err)
		}
		info := br.info
		if err := s.Import(kv.ImportHeader{AppliedIndex: 1, Revision: info.Revision, CompactRevision: info.CompactRevision,
			Leases: info.Leases, AuthState: info.AuthState}, br.nextKey); err == nil {
			imported++
		}
		s.Close()
		f.Close()
	}
	t.Logf("%d of %d one-byte changes still made an importable store (a value's byte, say)", imported, body)
}
