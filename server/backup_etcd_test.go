package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

// writeEtcdDB writes a bbolt database with etcd's buckets as fill makes them.
func writeEtcdDB(t *testing.T, fill func(tx *bbolt.Tx) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fill); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func putChange(t *testing.T, b *bbolt.Bucket, main, sub uint64, tombstone bool, kv *mvccpb.KeyValue) {
	t.Helper()
	v, err := proto.Marshal(kv)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(etcdRev{main: int64(main), sub: uint32(sub), tombstone: tombstone}.bucketKey(), v); err != nil {
		t.Fatal(err)
	}
}

// An etcd database is read as etcd keeps it: generations split at deletes, a txn's
// changes in their order, the compaction revision, and the revision of the last
// change (or of the compaction, past every change).
func TestEtcdBackupHistories(t *testing.T) {
	path := writeEtcdDB(t, func(tx *bbolt.Tx) error {
		keys, _ := tx.CreateBucket([]byte("key"))
		meta, _ := tx.CreateBucket([]byte("meta"))
		putChange(t, keys, 5, 0, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("3"), CreateRevision: 2, ModRevision: 5, Version: 3})
		putChange(t, keys, 6, 0, false, &mvccpb.KeyValue{Key: []byte("b"), Value: []byte("1"), CreateRevision: 6, ModRevision: 6, Version: 1})
		putChange(t, keys, 6, 1, true, &mvccpb.KeyValue{Key: []byte("a")})
		putChange(t, keys, 7, 0, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("new"), CreateRevision: 7, ModRevision: 7, Version: 1, Lease: 9})
		return meta.Put([]byte("finishedCompactRev"), etcdRev{main: 5, sub: 0, tombstone: false}.bucketKey())
	})
	f, br, err := openBackup(path, true, "read")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if br.info.Format != "etcd" || br.info.Revision != 7 || br.info.CompactRevision != 5 || br.info.TotalKeys != 2 || br.info.AuthState != nil {
		t.Fatalf("info %+v", br.info)
	}
	a, err := br.nextKey()
	if err != nil || string(a.Key) != "a" || len(a.Generations) != 2 {
		t.Fatalf("first key %+v, %v", a, err)
	}
	if g := a.Generations[0]; g.CreateRevision != 2 || g.FirstVersion != 3 || g.TombstoneRevision != 6 || g.TombstoneSub != 1 || len(g.Revisions) != 1 {
		t.Fatalf("a's first generation %+v", g)
	}
	if g := a.Generations[1]; g.TombstoneRevision != 0 || g.Revisions[0].Lease != 9 || string(g.Revisions[0].Value) != "new" {
		t.Fatalf("a's second generation %+v", g)
	}
	if b, err := br.nextKey(); err != nil || string(b.Key) != "b" {
		t.Fatalf("second key %+v, %v", b, err)
	}
	if end, err := br.nextKey(); end != nil || err != nil {
		t.Fatalf("after the last key: %+v, %v", end, err)
	}

	// Compacted past every change (all deleted, the deletes compacted too).
	path = writeEtcdDB(t, func(tx *bbolt.Tx) error {
		_, _ = tx.CreateBucket([]byte("key"))
		meta, _ := tx.CreateBucket([]byte("meta"))
		return meta.Put([]byte("finishedCompactRev"), etcdRev{main: 40, sub: 0, tombstone: false}.bucketKey())
	})
	f2, br, err := openBackup(path, true, "read")
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if br.info.Revision != 40 || br.info.TotalKeys != 0 {
		t.Fatalf("info %+v, want revision 40 and no keys", br.info)
	}
}

// A database that is not etcd's, or whose records do not hold together, is refused
// with what is wrong.
func TestEtcdBackupRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		fill func(tx *bbolt.Tx) error
		want string
	}{
		{"no key bucket", func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("meta")); return err },
			"has no key bucket"},
		{"not a revision", func(tx *bbolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("key"))
			return b.Put([]byte("foo"), []byte("bar"))
		}, "is not a revision"},
		{"auth enabled without root", func(tx *bbolt.Tx) error {
			_, _ = tx.CreateBucket([]byte("key"))
			a, _ := tx.CreateBucket([]byte("auth"))
			return a.Put([]byte("authEnabled"), []byte{1})
		}, "auth is enabled without a root user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, _, err := openBackup(writeEtcdDB(t, c.fill), true, "read")
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, errBadEtcdBackup) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// What a compaction keeps of one key's changes: of a lifetime ended at or before it
// nothing, of the others the last put at or before it and all after; a delete with
// no put before it (a compaction at its revision) nothing.
func TestCompactEtcdRevs(t *testing.T) {
	put := func(main int64) etcdRev { return etcdRev{main: main} }
	del := func(main int64) etcdRev { return etcdRev{main: main, tombstone: true} }
	for _, c := range []struct {
		revs    []etcdRev
		compact int64
		want    []etcdRev
	}{
		{[]etcdRev{put(2), put(4), put(6)}, 0, []etcdRev{put(2), put(4), put(6)}},
		{[]etcdRev{put(2), put(4), put(6)}, 5, []etcdRev{put(4), put(6)}},
		{[]etcdRev{put(2), put(4), del(5), put(7)}, 5, []etcdRev{put(7)}},
		{[]etcdRev{put(2), put(4), del(6), put(7)}, 5, []etcdRev{put(4), del(6), put(7)}},
		{[]etcdRev{del(5), put(7), put(8)}, 5, []etcdRev{put(7), put(8)}},
		{[]etcdRev{del(5)}, 5, nil},
		{[]etcdRev{put(3), del(4), put(5), del(6)}, 9, nil},
	} {
		if got := compactEtcdRevs(c.revs, c.compact); !slices.Equal(got, c.want) {
			t.Errorf("compacting %v at %d: %v, want %v", c.revs, c.compact, got, c.want)
		}
	}
}

// A backup taken while a compaction was under way (scheduledCompactRev past
// finishedCompactRev) is read as etcd's restart finishes it; a delete left with no
// put before it by a compaction at its revision is no key.
func TestEtcdBackupUnfinishedCompaction(t *testing.T) {
	path := writeEtcdDB(t, func(tx *bbolt.Tx) error {
		keys, _ := tx.CreateBucket([]byte("key"))
		meta, _ := tx.CreateBucket([]byte("meta"))
		putChange(t, keys, 2, 0, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1})
		putChange(t, keys, 3, 0, true, &mvccpb.KeyValue{Key: []byte("gone")})
		putChange(t, keys, 4, 0, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("2"), CreateRevision: 2, ModRevision: 4, Version: 2})
		putChange(t, keys, 6, 0, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("3"), CreateRevision: 2, ModRevision: 6, Version: 3})
		if err := meta.Put([]byte("finishedCompactRev"), etcdRev{main: 3}.bucketKey()); err != nil {
			return err
		}
		return meta.Put([]byte("scheduledCompactRev"), etcdRev{main: 5}.bucketKey())
	})
	f, br, err := openBackup(path, true, "read")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if br.info.CompactRevision != 5 || br.info.Revision != 6 || br.info.TotalKeys != 1 {
		t.Fatalf("info %+v, want compaction 5, revision 6, one key", br.info)
	}
	h, err := br.nextKey()
	if err != nil || string(h.Key) != "a" || len(h.Generations) != 1 {
		t.Fatalf("%+v, %v", h, err)
	}
	if g := h.Generations[0]; g.FirstVersion != 2 || len(g.Revisions) != 2 || g.Revisions[0].ModRevision != 4 {
		t.Fatalf("a's history %+v, want versions 2 and 3 (revisions 4 and 6)", g)
	}
}

// A damaged database is refused with an error, not bbolt's panic: pages scribbled
// over (an assertion in bbolt), or a branch page naming a page far past the file's
// end (a memory fault).
func TestEtcdBackupDamaged(t *testing.T) {
	t.Run("scribbled", func(t *testing.T) {
		testEtcdBackupDamaged(t, func(data []byte) {
			// The pages after the two meta pages and the freelist.
			for i := 4 * 4096; i < len(data); i++ {
				data[i] = 0xAB
			}
		})
	})
	t.Run("page past the end", func(t *testing.T) {
		testEtcdBackupDamaged(t, func(data []byte) {
			for at := 4096; at+4096 <= len(data); at += 4096 {
				// A branch page (flags 0x01 after its 8-byte id): its first
				// element's child page id (16 bytes of header, then pos and ksize).
				if binary.LittleEndian.Uint16(data[at+8:]) == 0x01 {
					binary.LittleEndian.PutUint64(data[at+16+8:], 1<<30)
					return
				}
			}
			t.Fatal("no branch page in the database")
		})
	})
}

func testEtcdBackupDamaged(t *testing.T, damage func(data []byte)) {
	path := writeEtcdDB(t, func(tx *bbolt.Tx) error {
		keys, _ := tx.CreateBucket([]byte("key"))
		for i := range 2000 {
			putChange(t, keys, uint64(i+2), 0, false, &mvccpb.KeyValue{Key: []byte(fmt.Sprintf("k%04d", i)),
				Value: bytes.Repeat([]byte("v"), 100), CreateRevision: int64(i + 2), ModRevision: int64(i + 2), Version: 1})
		}
		return nil
	})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damage(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, br, err := openBackup(path, true, "read")
	for err == nil {
		var h *kv.KeyHistory
		if h, err = br.nextKey(); h == nil && err == nil {
			c.Close()
			t.Fatal("a damaged database read to its end")
		}
	}
	if c != nil {
		c.Close()
	}
	if !errors.Is(err, errBadEtcdBackup) {
		t.Fatalf("got %v, want errBadEtcdBackup", err)
	}
	t.Log(err)
}

// backupContents is what a backup holds besides its header.
type backupContents struct {
	Keys    []*kv.KeyHistory
	Deletes []kv.CompactionDelete // at the compaction revision
}

// histories reads every key's history of the backup at path, and the deletes at
// its compaction revision.
func histories(t *testing.T, path string) (BackupInfo, backupContents) {
	t.Helper()
	c, br, err := openBackup(path, false, "read")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out backupContents
	for {
		h, err := br.nextKey()
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		out.Keys = append(out.Keys, h)
	}
	for {
		d, err := br.nextDelete()
		if err != nil {
			t.Fatal(err)
		}
		if d == nil {
			return br.info, out
		}
		out.Deletes = append(out.Deletes, *d)
	}
}

// A raftkv backup written as etcd's database reads back as the same store: every
// key's history with its changes' places in their revisions, the revision, the
// compaction revision and the leases. A backup of format 1, without those places,
// and an existing output file are refused.
func TestWriteEtcdBackupRoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(src, backupOf(t), 0o600); err != nil {
		t.Fatal(err)
	}
	subs := filepath.Join(dir, "subs.db")
	if err := os.WriteFile(subs, backupBytes(t, revisionStore(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{src, subs} {
		out := path + ".etcd"
		info, err := WriteEtcdBackup(path, out, false)
		if err != nil {
			t.Fatal(err)
		}
		wantInfo, want := histories(t, path)
		gotInfo, got := histories(t, out)
		if gotInfo.Format != "etcd" || gotInfo.Revision != wantInfo.Revision || gotInfo.CompactRevision != wantInfo.CompactRevision ||
			!slices.Equal(gotInfo.Leases, wantInfo.Leases) || info.Revision != wantInfo.Revision {
			t.Fatalf("%s written as etcd's reads back as %+v, want %+v", path, gotInfo, wantInfo)
		}
		gotAuth, err1 := kv.DecodeAuthState(gotInfo.AuthState)
		wantAuth, err2 := kv.DecodeAuthState(wantInfo.AuthState)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(gotAuth, wantAuth) {
			t.Fatalf("%s written as etcd's: auth %+v (%v), want %+v (%v)", path, gotAuth, err1, wantAuth, err2)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s written as etcd's: the histories differ\n got %+v\nwant %+v", path, got, want)
		}
		if path == src && len(want.Deletes) == 0 {
			t.Fatalf("%s holds no delete at its compaction revision to write", path)
		}
		// etcd's own readers' encodings, beyond what raftkv's reader accepts.
		db, err := bbolt.Open(out, 0o400, &bbolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		err = db.View(func(tx *bbolt.Tx) error {
			if v := tx.Bucket([]byte("auth")).Get([]byte("authRevision")); len(v) != 8 {
				return fmt.Errorf("authRevision %x, want 8 bytes as etcd writes it", v)
			}
			if v := tx.Bucket([]byte("meta")).Get([]byte("storageVersion")); string(v) != "3.6.0" {
				return fmt.Errorf("storageVersion %q", v)
			}
			for _, name := range []string{"members", "members_removed", "cluster", "alarm"} {
				if tx.Bucket([]byte(name)) == nil {
					return fmt.Errorf("no %s bucket", name)
				}
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		if _, err := WriteEtcdBackup(path, out, false); err == nil || !strings.Contains(err.Error(), "exists") {
			t.Fatalf("writing over %s: %v, want it refused", out, err)
		}
	}
	out := filepath.Join(dir, "v1.etcd")
	if _, err := WriteEtcdBackup(filepath.Join("testdata", "backup-v1.db"), out, true); err == nil ||
		!strings.Contains(err.Error(), "does not keep the order of a revision's changes") {
		t.Fatalf("a format-1 backup: %v, want it refused", err)
	}
	for _, left := range []string{out, out + ".partial"} {
		if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused conversion left %s behind (%v)", left, err)
		}
	}
	// One that fails while writing (its source damaged past the header) leaves
	// nothing either.
	data := backupOf(t)
	damaged := filepath.Join(dir, "damaged.db")
	if err := os.WriteFile(damaged, data[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(dir, "damaged.etcd")
	if _, err := WriteEtcdBackup(damaged, out, true); err == nil {
		t.Fatal("a backup cut short converted")
	}
	for _, left := range []string{out, out + ".partial"} {
		if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a failed conversion left %s behind (%v)", left, err)
		}
	}
}

// The sort gives back every key in byte order, empty and 0x00/0xFF bytes
// included, each with its changes in revision order.
func TestEtcdChangeSortOrder(t *testing.T) {
	s, err := newEtcdChangeSort()
	if err != nil {
		t.Fatal(err)
	}
	dir := s.dir
	keys := [][]byte{{}, {0}, {0, 0}, {0, 1}, {0, 0xFF}, {1}, {0xFF}, {0xFF, 0}, []byte("a"), []byte("a\x00b"), []byte("ab")}
	want := map[string][]etcdRev{}
	for i := range 300 {
		k := keys[(i*7)%len(keys)]
		r := etcdRev{main: int64(i + 2), sub: uint32(i % 3), tombstone: i%5 == 0}
		if err := s.add(k, r); err != nil {
			t.Fatal(err)
		}
		want[string(k)] = append(want[string(k)], r)
	}
	if err := s.rewind(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		k, revs, ok, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(k))
		if !slices.Equal(revs, want[string(k)]) {
			t.Fatalf("key %q: changes %v, want %v", k, revs, want[string(k)])
		}
	}
	wantKeys := slices.Sorted(maps.Keys(want))
	if !slices.Equal(got, wantKeys) {
		t.Fatalf("keys %q, want %q", got, wantKeys)
	}
	// A failure in the background fails the calls that follow, naming TMPDIR.
	failure := errors.New("no space left on device")
	s.failed.Store(&failure)
	if err := s.add([]byte("x"), etcdRev{main: 1}); err == nil || !strings.Contains(err.Error(), "TMPDIR") {
		t.Fatalf("add after a background failure: %v", err)
	}
	s.failed.Store(nil)
	s.close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the sort left %s (%v)", dir, err)
	}
}

// A backup of 25,000 changes, more than one bbolt transaction and one sort batch,
// written as etcd's: its key bucket in strictly increasing revision order, its
// histories as the backup's, and nothing left in TMPDIR, after a success or a
// source cut short.
func TestWriteEtcdBackupLarge(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	s, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 25000 {
		cmd := &kv.Command{Put: &kv.PutRequest{Key: fmt.Appendf(nil, "k%05d", (i*7919)%3000), Value: bytes.Repeat([]byte{byte(i)}, 300)}}
		if res := s.ApplyCommand(s.AppliedIndex()+1, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	b := backupBytes(t, s)
	dir := t.TempDir()
	src, out := filepath.Join(dir, "backup.db"), filepath.Join(dir, "etcd.db")
	if err := os.WriteFile(src, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteEtcdBackup(src, out, false); err != nil {
		t.Fatal(err)
	}
	_, want := histories(t, src)
	_, got := histories(t, out)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%d histories read back, %d written; they differ", len(got.Keys), len(want.Keys))
	}
	db, err := bbolt.Open(out, 0o400, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = db.View(func(tx *bbolt.Tx) error {
		var prev []byte
		return tx.Bucket([]byte("key")).ForEach(func(k, _ []byte) error {
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return fmt.Errorf("key bucket out of order at %x", k)
			}
			prev, n = slices.Clone(k), n+1
			return nil
		})
	})
	db.Close()
	if err != nil || n != 25000 {
		t.Fatalf("key bucket: %d changes (%v), want 25000 in order", n, err)
	}
	cut := filepath.Join(dir, "cut.db")
	if err := os.WriteFile(cut, b[:len(b)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteEtcdBackup(cut, filepath.Join(dir, "cut.etcd"), true); err == nil {
		t.Fatal("a backup cut short converted")
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("TMPDIR holds %v after the conversions", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "cut.etcd.partial")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed conversion left its partial file (%v)", err)
	}
}
