package server

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// etcdRev is a key of etcd's key bucket: main, '_', sub, and 't' for a delete.
func etcdRev(main, sub uint64, tombstone bool) []byte {
	k := binary.BigEndian.AppendUint64(nil, main)
	k = append(k, '_')
	k = binary.BigEndian.AppendUint64(k, sub)
	if tombstone {
		k = append(k, 't')
	}
	return k
}

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
	if err := b.Put(etcdRev(main, sub, tombstone), v); err != nil {
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
		return meta.Put([]byte("finishedCompactRev"), etcdRev(5, 0, false))
	})
	f, br, err := openBackup(path, true)
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
		return meta.Put([]byte("finishedCompactRev"), etcdRev(40, 0, false))
	})
	f2, br, err := openBackup(path, true)
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
			"without its key bucket"},
		{"not a revision", func(tx *bbolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("key"))
			return b.Put([]byte("foo"), []byte("bar"))
		}, "is not a revision"},
		{"delete without a put", func(tx *bbolt.Tx) error {
			b, _ := tx.CreateBucket([]byte("key"))
			putChange(t, b, 3, 0, true, &mvccpb.KeyValue{Key: []byte("a")})
			return nil
		}, `deletes key "a" at revision 3, which has no put before it`},
		{"auth enabled without root", func(tx *bbolt.Tx) error {
			_, _ = tx.CreateBucket([]byte("key"))
			a, _ := tx.CreateBucket([]byte("auth"))
			return a.Put([]byte("authEnabled"), []byte{1})
		}, "auth is enabled without a root user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, _, err := openBackup(writeEtcdDB(t, c.fill), true)
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, errBadBackup) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
