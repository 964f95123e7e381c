package storage

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"testing"
)

func readAll(t *testing.T, fsys FS, path string) []byte {
	t.Helper()
	f, err := fsys.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	size, _ := f.Size()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

func mustWrite(t *testing.T, f File, s string, off int64) {
	t.Helper()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

// newSyncedFile returns a MemFS holding /d/f, created and synced with its directory.
func newSyncedFile(t *testing.T, content string) (*MemFS, File) {
	t.Helper()
	m := NewMemFS()
	if err := m.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	m.SyncDir("/")
	f, err := m.Create("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, f, content, 0)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	m.SyncDir("/d")
	return m, f
}

func TestMemFSCrashLosesUnsyncedWrites(t *testing.T) {
	m, f := newSyncedFile(t, "synced")
	mustWrite(t, f, "-lost", 6)
	if got := string(readAll(t, m, "/d/f")); got != "synced-lost" {
		t.Fatalf("before the crash the file reads %q", got)
	}
	if n := m.UnsyncedOps(); n != 1 {
		t.Errorf("UnsyncedOps = %d; want 1", n)
	}
	m.Crash()
	if got := string(readAll(t, m, "/d/f")); got != "synced" {
		t.Fatalf("after the crash the file reads %q; want only what was synced", got)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, errStaleHandle) {
		t.Errorf("a handle from before the crash: %v; want it dead", err)
	}
}

func TestMemFSCrashPartialKeepsAnInOrderPrefix(t *testing.T) {
	m, f := newSyncedFile(t, "")
	mustWrite(t, f, "aaaa", 0)
	mustWrite(t, f, "bbbb", 4)
	mustWrite(t, f, "cccc", 8)
	m.CrashPartial(1, 3)
	if got := string(readAll(t, m, "/d/f")); got != "aaaabbb" {
		t.Fatalf("keeping 1 change and 3 bytes of the next: %q; want %q", got, "aaaabbb")
	}
}

func TestMemFSNewNamesNeedDirectorySync(t *testing.T) {
	m, _ := newSyncedFile(t, "x")
	g, _ := m.Create("/d/g")
	mustWrite(t, g, "data", 0)
	g.Sync() // the data, not the name
	if err := m.Rename("/d/f", "/d/h"); err != nil {
		t.Fatal(err)
	}
	m.Crash()
	if _, err := m.Open("/d/g"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file whose directory was never synced survived the crash: %v", err)
	}
	if _, err := m.Open("/d/f"); err != nil {
		t.Errorf("an unsynced rename took effect: %v", err)
	}

	g, _ = m.Create("/d/g")
	mustWrite(t, g, "data", 0)
	g.Sync()
	m.Rename("/d/f", "/d/h")
	m.SyncDir("/d")
	m.Crash()
	if got := string(readAll(t, m, "/d/g")); got != "data" {
		t.Errorf("file synced with its directory reads %q after the crash", got)
	}
	if got := string(readAll(t, m, "/d/h")); got != "x" {
		t.Errorf("renamed file reads %q after the crash", got)
	}
}

func TestMemFSPreallocateAndReadAt(t *testing.T) {
	m, f := newSyncedFile(t, "ab")
	if err := f.Preallocate(10); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 12)
	n, err := f.ReadAt(b, 0)
	if n != 10 || !errors.Is(err, io.EOF) || string(b[:10]) != "ab\x00\x00\x00\x00\x00\x00\x00\x00" {
		t.Fatalf("ReadAt past a preallocated end: n=%d err=%v %q", n, err, b[:n])
	}
	m.Crash() // the preallocation was not synced
	if got := readAll(t, m, "/d/f"); len(got) != 2 {
		t.Errorf("unsynced preallocation survived: %d bytes", len(got))
	}
	r, _ := m.Open("/d/f")
	if _, err := r.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EBADF) {
		t.Errorf("write through a read-only handle: %v", err)
	}
}

func TestMemFSLockIsExclusiveUntilReleasedOrCrash(t *testing.T) {
	m := NewMemFS()
	m.MkdirAll("/d")
	l, err := m.Lock("/d/LOCK")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Lock("/d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v; want ErrLocked", err)
	}
	l.Close()
	l, err = m.Lock("/d/LOCK")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	m.SyncDir("/")
	m.SyncDir("/d")
	m.Crash()
	if _, err := m.Lock("/d/LOCK"); err != nil {
		t.Fatalf("lock after a crash killed its holder: %v", err)
	}
	l.Close() // the dead holder's release must not free the new holder's lock
	if _, err := m.Lock("/d/LOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("a stale release freed the lock: %v", err)
	}
}

func TestMemFSErrors(t *testing.T) {
	m := NewMemFS()
	if _, err := m.Create("/missing/f"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("create in a missing dir: %v", err)
	}
	if _, err := m.List("/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("list of a missing dir: %v", err)
	}
	if err := m.Remove("/nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remove of a missing file: %v", err)
	}
	f, _ := m.Create("/f")
	f.Close()
	if _, err := f.Size(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("use after close: %v", err)
	}
	if err := m.MkdirAll("/f/sub"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("mkdir under a file: %v", err)
	}
}

func TestFaultFSFailsTheNthCall(t *testing.T) {
	ffs := NewFaultFS(NewMemFS())
	f, err := ffs.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	ffs.FailNth(OpWrite, 2, syscall.ENOSPC)
	if _, err := f.WriteAt([]byte("a"), 0); err != nil {
		t.Fatalf("first write: %v", err)
	}
	_, err = f.WriteAt([]byte("b"), 1)
	var pe *os.PathError
	if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &pe) || pe.Path != "/f" {
		t.Fatalf("second write: %v; want ENOSPC naming the file", err)
	}
	if _, err := f.WriteAt([]byte("c"), 1); err != nil {
		t.Fatalf("third write: %v", err)
	}
	if got := string(readAll(t, ffs, "/f")); got != "ac" {
		t.Errorf("file holds %q; the failed write must have had no effect", got)
	}
	if n := ffs.Calls(OpWrite); n != 3 {
		t.Errorf("Calls(OpWrite) = %d; want 3", n)
	}
}

func TestFaultFSCrashAfterTearsAndStops(t *testing.T) {
	mem := NewMemFS()
	ffs := NewFaultFS(mem)
	f, _ := ffs.Create("/f")
	ffs.CrashAfter(1, 2)
	if _, err := f.WriteAt([]byte("abc"), 0); err != nil {
		t.Fatalf("write within the budget: %v", err)
	}
	if _, err := f.WriteAt([]byte("defg"), 3); !errors.Is(err, ErrInjectedCrash) {
		t.Fatalf("write at the crash: %v", err)
	}
	if !ffs.Crashed() {
		t.Error("Crashed() = false after the budget ran out")
	}
	if err := f.Sync(); !errors.Is(err, ErrInjectedCrash) {
		t.Errorf("sync after the crash: %v", err)
	}
	if _, err := ffs.List("/"); !errors.Is(err, ErrInjectedCrash) {
		t.Errorf("list after the crash: %v", err)
	}
	if got := string(readAll(t, mem, "/f")); got != "abcde" {
		t.Errorf("file holds %q; want the torn write's first 2 bytes after abc", got)
	}
}

func TestMemFSFileInUnsyncedDirectoryIsLost(t *testing.T) {
	m := NewMemFS()
	m.MkdirAll("/a/b")
	f, _ := m.Create("/a/b/f")
	mustWrite(t, f, "x", 0)
	f.Sync()
	m.SyncDir("/a/b") // the file's name, but not /a/b's own entry in /a
	m.Crash()
	if _, err := m.Open("/a/b/f"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file in a directory whose entry was never synced survived: %v", err)
	}
}
