package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// A restore writes the stream into tables beside the engine and ingests them:
// afterwards the records are in the LSM's files, none in a memtable, and the
// tables' directory is gone, whether the restore succeeded or failed.
func TestEngineRestoreIngestsTables(t *testing.T) {
	src := openTestEngine(t, t.TempDir(), nil)
	defer src.close()
	for i := range 2000 {
		w := src.beginWrite()
		if _, err := w.put([]byte{'k', byte(i >> 8), byte(i)}, bytes.Repeat([]byte("v"), 512), 0); err != nil {
			t.Fatal(err)
		}
		if err := w.commit(uint64(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	view := src.snapshot()
	var stream bytes.Buffer
	if _, err := view.writeTo(&stream); err != nil {
		t.Fatal(err)
	}
	view.close()

	dst := openTestEngine(t, t.TempDir(), nil)
	defer dst.close()
	flushedBefore := dst.db.Metrics().Levels[0].TableBytesFlushed
	if err := dst.restore(bytes.NewReader(stream.Bytes()), true, nil); err != nil {
		t.Fatal(err)
	}
	if dst.appliedIndex != 2000 {
		t.Fatalf("restored at applied index %d, want 2000", dst.appliedIndex)
	}
	if got, want := countRecords(t, dst.db), countRecords(t, src.db); got != want {
		t.Fatalf("%d records after the restore, the source has %d", got, want)
	}
	m := dst.db.Metrics()
	var ingested uint64
	for _, l := range m.Levels {
		ingested += l.TableBytesIngested
	}
	// The records are ingested; the flushes carry the marker only.
	if flushed := m.Levels[0].TableBytesFlushed - flushedBefore; ingested == 0 || flushed*10 > ingested {
		t.Fatalf("the restore ingested %d bytes and flushed %d; want the records ingested, not flushed", ingested, flushed)
	}
	if _, err := os.Stat(dst.restoreDir()); !os.IsNotExist(err) {
		t.Fatalf("%s after a restore: %v, want it removed", dst.restoreDir(), err)
	}

	// Records out of order: refused, and the tables' directory removed.
	bad := []byte(engineSnapshotMagic)
	bad = binary.AppendUvarint(bad, engineFormat)
	var body []byte
	for _, k := range []string{"\x01b", "\x01a"} {
		body = binary.AppendUvarint(body, uint64(len(k)))
		body = append(body, k...)
		body = binary.AppendUvarint(body, 1)
		body = append(body, 'v')
	}
	var out bytes.Buffer
	out.Write(bad)
	if err := writeEngineChunk(&out, body); err != nil {
		t.Fatal(err)
	}
	if err := writeEngineChunk(&out, nil); err != nil {
		t.Fatal(err)
	}
	err := dst.restore(bytes.NewReader(out.Bytes()), true, nil)
	if !errors.Is(err, ErrCorruptSnapshot) || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("restore of records out of order: %v, want ErrCorruptSnapshot saying so", err)
	}
	if _, err := os.Stat(dst.restoreDir()); !os.IsNotExist(err) {
		t.Fatalf("%s after a failed restore: %v, want it removed", dst.restoreDir(), err)
	}
}

// countRecords counts the records of db.
func countRecords(t *testing.T, db *pebble.DB) int {
	t.Helper()
	return countRecordsIn(t, db, nil)
}

// countRecordsIn counts the records of db within opts' bounds.
func countRecordsIn(t testing.TB, db *pebble.DB, opts *pebble.IterOptions) int {
	t.Helper()
	it, err := db.NewIter(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	return n
}

// WriteSnapshotTables writes a stream into tables that RestoreFromTables then
// ingests; a cut stream leaves no directory behind and the store untouched.
func TestStoreSnapshotTables(t *testing.T) {
	src := newTestStore(t, Config{})
	for i := range 50 {
		mustPut(t, src, fmt.Sprintf("k%02d", i), "v")
	}
	stream, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dst := newTestStore(t, Config{})
	mustPut(t, dst, "mine", "v")
	cut := filepath.Join(t.TempDir(), "cut")
	if _, err := dst.WriteSnapshotTables(bytes.NewReader(stream[:len(stream)-5]), cut); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("tables of a cut stream: %v, want ErrCorruptSnapshot", err)
	}
	if _, err := os.Stat(cut); !os.IsNotExist(err) {
		t.Fatalf("a cut stream left %s: %v", cut, err)
	}
	if r, err := dst.Range(&RangeRequest{Key: []byte("mine")}); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("the store after a cut stream's tables: %+v, %v", r, err)
	}
	dir := filepath.Join(t.TempDir(), "tables")
	n, err := dst.WriteSnapshotTables(bytes.NewReader(stream), dir)
	if err != nil || n != int64(len(stream)) {
		t.Fatalf("WriteSnapshotTables = %d, %v; want %d bytes", n, err, len(stream))
	}
	if err := dst.RestoreFromTables(dir, nil); err != nil {
		t.Fatal(err)
	}
	if dst.AppliedIndex() != src.AppliedIndex() {
		t.Fatalf("applied %d after the restore, want %d", dst.AppliedIndex(), src.AppliedIndex())
	}
	r, err := dst.Range(&RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	if err != nil || len(r.Kvs) != 50 {
		t.Fatalf("range after the restore: %d keys, %v; want 50", len(r.Kvs), err)
	}
	if r, err := dst.Range(&RangeRequest{Key: []byte("mine")}); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("a key of the store before the restore survived it: %+v, %v", r, err)
	}
	mustPut(t, dst, "after", "v") // the store applies on
}

// A restore that fails after the marker that says a restore is under way is gone
// (here: a stream without the layout format record, which is checked in the batch
// that ends the restore) leaves the store refusing Apply, not applying on the
// stream's records with the old revision and tables.
func TestRestoreFailingAtItsEndCutsTheStoreOff(t *testing.T) {
	src := newTestStore(t, Config{})
	mustPut(t, src, "a", "1")
	var snap bytes.Buffer
	if _, err := src.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&snap)
	if err := readEngineSnapshotHeader(br); err != nil {
		t.Fatal(err)
	}
	var body []byte
	dropped := false
	if err := readEngineSnapshot(br, true, func(k, v []byte) error {
		if bytes.Equal(k, metaFormat) {
			dropped = true
			return nil
		}
		body = binary.AppendUvarint(body, uint64(len(k)))
		body = append(body, k...)
		body = binary.AppendUvarint(body, uint64(len(v)))
		body = append(body, v...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !dropped {
		t.Fatal("the snapshot has no layout format record to drop")
	}
	var bad bytes.Buffer
	bad.Write(binary.AppendUvarint([]byte(engineSnapshotMagic), engineFormat))
	if err := writeEngineChunk(&bad, body); err != nil {
		t.Fatal(err)
	}
	if err := writeEngineChunk(&bad, nil); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	dst, err := OpenStore(Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { dst.Close() }()
	for _, k := range []string{"b", "c", "d", "e", "f"} {
		mustPut(t, dst, k, "old")
	}
	if err := dst.RestoreFrom(&bad, nil); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("restoring a stream without its format record: %v; want ErrCorruptSnapshot", err)
	}
	data, err := (&Command{Put: &PutRequest{Key: []byte("g"), Value: []byte("v")}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if res := dst.Apply(dst.AppliedIndex()+1, data); res.Err == nil {
		t.Fatalf("a put applied at revision %d on a store whose restore failed at its end; want it refused", res.Put.Header.Revision)
	}
	// Nor is it taken for an empty engine when opened again (the marker went to
	// disk with the flush before the ingest).
	dst.Close()
	if again, err := OpenStore(Config{}, dir); !errors.Is(err, ErrRestoreCutOff) {
		if err == nil {
			again.Close()
		}
		t.Fatalf("reopening the store whose restore failed at its end: %v; want ErrRestoreCutOff", err)
	}
}
