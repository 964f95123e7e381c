package storage

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"raftkv/raft"
)

// A power loss during the fdatasync of a write that spans several pages may persist
// a later page and not an earlier one: the last segment then holds a bad record with
// a page of zeros in it, and the write's later records after it. None of the write was reported
// durable, so recovery cuts it off, as etcd's WAL cuts a record holding a zeroed
// sector, and starts with everything before it; the WAL then takes appends and
// reopens. The same hole filled with other bytes is damage, not a tear, and stays
// refused.
func TestOutOfOrderTornWriteIsCutOff(t *testing.T) {
	for _, fill := range []byte{0, 0xff} {
		fsys := NewMemFS()
		opts, logs := testOptions(t, 0)
		s := mustOpen(t, fsys, "/data", opts)
		hs := raft.HardState{Term: 1, Vote: 1}
		want := makeEntries(1, 10, 1, 100)
		for i := range want {
			if err := s.Save(hs, want[i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
		path := onlySegment(t, fsys)
		before := dataEnd(t, fsys, path)
		// Two records after the sound ones, as one flush writes them (here two
		// do, which leaves the same bytes): a page of the first is then lost.
		if err := s.Save(hs, makeEntries(11, 1, 1, 12<<10)); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(hs, makeEntries(12, 1, 1, 100)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		after := dataEnd(t, fsys, path)
		page := (before + 4095) / 4096 * 4096
		if page+2*4096 > after {
			t.Fatalf("the last write spans [%d, %d): no whole page with data after it", before, after)
		}
		overwrite(t, fsys, path, page, slices.Repeat([]byte{fill}, 4096))

		s, err := Open(fsys, "/data", opts)
		if fill != 0 {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a bad record, a page of 0x%x and data after it: Open returned %v; want ErrCorrupt", fill, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("a write torn out of order (page at %d of [%d, %d) lost): Open returned %v; want it cut off", page, before, after, err)
		}
		if got := readState(t, s); got.Last != 10 || !entriesEqual(got.Entries, want) || got.HS != hs {
			t.Fatalf("after cutting the torn write: %v; want the 10 entries before it and %+v", got, hs)
		}
		if len(logs.find("torn by a power loss")) == 0 {
			t.Fatal("the cut was not logged")
		}
		more := makeEntries(11, 2, 2, 100)
		if err := s.Save(raft.HardState{Term: 2, Vote: 1}, more); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = mustOpen(t, fsys, "/data", opts)
		if got := readState(t, s); got.Last != 12 || !entriesEqual(got.Entries, append(slices.Clone(want), more...)) {
			t.Fatalf("appended after the cut and reopened: %v", got)
		}
		s.Close()
	}
}

func onlySegment(t *testing.T, fsys *MemFS) string {
	t.Helper()
	names, err := fsys.List("/data/wal")
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, n := range names {
		if filepath.Ext(n) == segmentExt {
			segs = append(segs, filepath.Join("/data/wal", n))
		}
	}
	if len(segs) != 1 {
		t.Fatalf("WAL segments %v; want one", segs)
	}
	return segs[0]
}

// dataEnd is the offset after the last non-zero byte of the file.
func dataEnd(t *testing.T, fsys FS, path string) int64 {
	t.Helper()
	size := fileSize(t, fsys, path)
	f, err := fsys.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return int64(i + 1)
		}
	}
	return 0
}

func overwrite(t *testing.T, fsys FS, path string, off int64, b []byte) {
	t.Helper()
	f, err := fsys.OpenReadWrite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func entriesEqual(a, b []raft.Entry) bool {
	return slices.EqualFunc(a, b, equalEntry)
}
