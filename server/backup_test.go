package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"raftkv/kv"
)

// backupOf returns a backup of a small store with puts, a delete, a compaction at
// the delete's revision, puts after it, and a lease.
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
	apply(&kv.Command{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("k1")}}) // 14
	apply(&kv.Command{Compact: &kv.CompactionRequest{Revision: 14}})
	for i := range 4 {
		apply(&kv.Command{Put: &kv.PutRequest{Key: fmt.Appendf(nil, "k%d", i%2), Value: []byte{byte(i)}}})
	}
	return backupBytes(t, s)
}

// backupBytes returns a backup of s, as Maintenance.Snapshot writes it.
func backupBytes(t *testing.T, s *kv.Store) []byte {
	t.Helper()
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
	_, err := ReadBackupInfo(path, true)
	return err
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
	if _, err := ReadBackupInfo(path, false); err != nil {
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
		if _, err := ReadBackupInfo(path, false); !errors.Is(err, errBadBackup) {
			t.Fatalf("byte %d changed: checksum check says %v", i, err)
		}
		if err := readAll(path); err != nil {
			continue
		}
		// Still well formed: Import checks what it says, or takes it.
		f, br, err := openBackup(path, true, "read")
		if err != nil {
			t.Fatal(err)
		}
		s, err := kv.NewStore(kv.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := br.importInto(s, 1); err == nil {
			imported++
		}
		s.Close()
		f.Close()
	}
	t.Logf("%d of %d one-byte changes still made an importable store (a value's byte, say)", imported, body)
}

// revisionStore is a store whose revision 3 changes c, then b, then deletes a: a
// txn's changes out of key order.
func revisionStore(t *testing.T) *kv.Store {
	t.Helper()
	s, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, cmd := range []*kv.Command{
		{Put: &kv.PutRequest{Key: []byte("a"), Value: []byte("1")}},
		{Txn: &kv.TxnRequest{Success: []kv.RequestOp{
			{Put: &kv.PutRequest{Key: []byte("c"), Value: []byte("3")}},
			{Put: &kv.PutRequest{Key: []byte("b"), Value: []byte("2")}},
			{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("a")}},
		}}},
	} {
		if res := s.ApplyCommand(s.AppliedIndex()+1, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	return s
}

// importBackup imports the backup at path into a new store, as restore does.
func importBackup(t *testing.T, path string) *kv.Store {
	t.Helper()
	f, br, err := openBackup(path, false, "read")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := br.importInto(s, 1); err != nil {
		t.Fatal(err)
	}
	return s
}

// eventsAt lists revision rev's changes as "PUT c=3" and "DELETE a", in order.
func eventsAt(t *testing.T, s *kv.Store, rev int64) []string {
	t.Helper()
	evs, err := s.Events(&kv.EventsRequest{FromRevision: rev, ToRevision: rev})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs.Events {
		if ev.Type == kv.EventDelete {
			out = append(out, "DELETE "+string(ev.Kv.Key))
		} else {
			out = append(out, fmt.Sprintf("PUT %s=%s", ev.Kv.Key, ev.Kv.Value))
		}
	}
	return out
}

// A backup keeps the order of a revision's changes (a txn's puts and deletes as it
// made them), which a restored store's watches replay; a backup of format 1
// (testdata/backup-v1.db, written by the code before the subs from the same
// store) still restores, with that revision's changes in key order.
func TestBackupKeepsTheOrderOfARevisionsChanges(t *testing.T) {
	src := revisionStore(t)
	want := []string{"PUT c=3", "PUT b=2", "DELETE a"}
	if got := eventsAt(t, src, 3); !slices.Equal(got, want) {
		t.Fatalf("the source's revision 3: %v, want %v", got, want)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, backupBytes(t, src), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := eventsAt(t, importBackup(t, path), 3); !slices.Equal(got, want) {
		t.Fatalf("restored from a backup, revision 3: %v, want %v", got, want)
	}
	old := importBackup(t, filepath.Join("testdata", "backup-v1.db"))
	if got, want := eventsAt(t, old, 3), []string{"DELETE a", "PUT b=2", "PUT c=3"}; !slices.Equal(got, want) {
		t.Fatalf("restored from a format-1 backup, revision 3: %v, want %v (key order)", got, want)
	}
	if r, err := old.Range(&kv.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}); err != nil || r.Count != 2 {
		t.Fatalf("a format-1 backup restored %v (%v); want b and c", r, err)
	}
}

// A restore keeps the values as the member's --backend-separate-value-bytes says: a
// store restored with -1 keeps every value inline, so its bytes in use are those
// of the same backup restored with the default less each separated value's record
// key and length; both answer the same.
func TestRestoreSeparatesValuesAsTheMemberWill(t *testing.T) {
	s, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const keys = 80 // values of 0, 5, ..., 395 bytes
	big := 0        // of them, values of at least the default of 128 bytes
	for i := range keys {
		if 5*i >= 128 {
			big++
		}
		cmd := &kv.Command{Put: &kv.PutRequest{Key: fmt.Appendf(nil, "k%03d", i), Value: bytes.Repeat([]byte{byte(i)}, 5*i)}}
		if res := s.ApplyCommand(s.AppliedIndex()+1, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	view, err := s.SnapshotView()
	if err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	_, err = writeBackup(f, view)
	view.Release()
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	restored := func(separate int) (kv.Sizes, *kv.RangeResponse) {
		dir := filepath.Join(t.TempDir(), "m")
		_, err := Restore(RestoreConfig{BackupPath: backup, DataDir: dir, Name: "m1",
			InitialCluster: map[string][]string{"m1": {"http://127.0.0.1:2380"}}, BackendSeparateValueBytes: separate})
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.OpenStore(kv.Config{SeparateValueBytes: separate}, storeDir(filepath.Join(dir, "member")))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		resp, err := st.Range(&kv.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
		if err != nil {
			t.Fatal(err)
		}
		return st.Sizes(), resp
	}
	sepSizes, sepResp := restored(0)
	inlineSizes, inlineResp := restored(-1)
	if !reflect.DeepEqual(sepResp.Kvs, inlineResp.Kvs) || len(sepResp.Kvs) != keys {
		t.Fatalf("the two restores answer differently: %d and %d keys", len(sepResp.Kvs), len(inlineResp.Kvs))
	}
	// 13 bytes of record key and 1-2 of length per separated value.
	if d := sepSizes.InUseBytes - inlineSizes.InUseBytes; d < int64(14*big) || d > int64(16*big) {
		t.Fatalf("bytes in use: %d with separated values, %d inline (%d more), want about 15 more for each of the %d values of 128 bytes and more",
			sepSizes.InUseBytes, inlineSizes.InUseBytes, d, big)
	}
}

// A delete at the compaction revision, which its key's history no longer holds,
// survives a backup and its restore, and the way through etcd's database and
// back, as etcd keeps it: a watch from exactly the compaction revision reports it.
func TestBackupKeepsTheDeletesAtTheCompactionRevision(t *testing.T) {
	src := revisionStore(t) // revision 3: PUT c=3, PUT b=2, DELETE a
	if res := src.ApplyCommand(src.AppliedIndex()+1, &kv.Command{Compact: &kv.CompactionRequest{Revision: 3}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	want := []string{"PUT c=3", "PUT b=2", "DELETE a"}
	if got := eventsAt(t, src, 3); !slices.Equal(got, want) {
		t.Fatalf("the source's revision 3, compacted there: %v, want %v", got, want)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(path, backupBytes(t, src), 0o600); err != nil {
		t.Fatal(err)
	}
	etcd := filepath.Join(dir, "etcd.db")
	if _, err := WriteEtcdBackup(path, etcd, false); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, etcd} {
		restored := importBackup(t, p)
		if got := eventsAt(t, restored, 3); !slices.Equal(got, want) {
			t.Fatalf("restored from %s, revision 3: %v, want %v", filepath.Base(p), got, want)
		}
		if restored.CompactRevision() != 3 {
			t.Fatalf("restored from %s: compaction revision %d, want 3", filepath.Base(p), restored.CompactRevision())
		}
	}
}

// handBackup returns a backup of no keys at revision 3, of the given format and
// compaction revision, with the records deletes writes between the auth state and
// the end.
func handBackup(version uint64, compactRev int64, deletes func(bw *backupWriter)) []byte {
	var b bytes.Buffer
	bw := newBackupWriter(&b)
	var p []byte
	p = binary.AppendUvarint(p, version)
	p = binary.AppendVarint(p, 3)
	p = binary.AppendVarint(p, compactRev)
	p = binary.AppendUvarint(p, 0) // keys
	p = binary.AppendUvarint(p, 0) // leases
	bw.record('H', p, nil)
	bw.record('A', nil, nil)
	deletes(bw)
	bw.record('E', binary.AppendUvarint(nil, 0), nil)
	if pad := bw.written % backupAlign; pad != 0 {
		bw.raw(make([]byte, backupAlign-pad))
	}
	bw.raw(bw.sha.Sum(nil))
	if err := bw.w.Flush(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// The 'D' records (format 3) are checked as they are read: each needs a key, a
// sub-revision and a compaction to be at; a format-2 backup has none.
func TestBackupDeleteRecordsChecked(t *testing.T) {
	del := func(sub uint64, key string) func(bw *backupWriter) {
		return func(bw *backupWriter) { bw.record('D', binary.AppendUvarint(nil, sub), []byte(key)) }
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	for _, c := range []struct {
		name       string
		version    uint64
		compactRev int64
		deletes    func(bw *backupWriter)
		ok         bool
	}{
		{"a delete at the compaction revision", backupVersion, 2, del(0, "a"), true},
		{"no delete", backupVersion, -1, func(*backupWriter) {}, true},
		{"no compaction", backupVersion, -1, del(0, "a"), false},
		{"no key", backupVersion, 2, del(0, ""), false},
		{"a sub-revision past 2^32-2", backupVersion, 2, del(1<<32-1, "a"), false},
		{"in a format-2 backup", backupVersionNoDeletes, 2, del(0, "a"), false},
	} {
		if err := os.WriteFile(path, handBackup(c.version, c.compactRev, c.deletes), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := ReadBackupInfo(path, false)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, errBadBackup) {
			t.Errorf("%s: %v, want it refused as not a valid backup", c.name, err)
		}
	}
}
