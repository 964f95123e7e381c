package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Op names a kind of FS or File call, for FaultFS.
type Op uint8

// The calls FaultFS counts and can fail. OpOpen covers Open and OpenReadWrite.
const (
	OpCreate Op = iota
	OpOpen
	OpRemove
	OpRename
	OpMkdirAll
	OpList
	OpSyncDir
	OpLock
	OpRead
	OpWrite
	OpSync
	OpPreallocate
	OpSize
	numOps
)

var opNames = [numOps]string{
	OpCreate: "create", OpOpen: "open", OpRemove: "remove", OpRename: "rename",
	OpMkdirAll: "mkdir", OpList: "list", OpSyncDir: "syncdir", OpLock: "lock",
	OpRead: "read", OpWrite: "write", OpSync: "sync", OpPreallocate: "fallocate", OpSize: "stat",
}

// String returns the op's name, as it appears in injected errors.
func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// IsMutating reports whether calls of this kind can change what is on disk.
func (o Op) IsMutating() bool {
	switch o {
	case OpCreate, OpRemove, OpRename, OpMkdirAll, OpSyncDir, OpLock, OpWrite, OpSync, OpPreallocate:
		return true
	}
	return false
}

// ErrInjectedCrash is the error of every call FaultFS refuses after CrashAfter's
// budget ran out: from the file system's point of view the process is dead.
var ErrInjectedCrash = errors.New("faultfs: injected crash")

// FaultFS wraps an FS and fails chosen calls: the n-th call of an Op with a given errno
// (EIO, ENOSPC...), or every call after the n-th mutating one, as if the process had
// died there (CrashAfter; pair it with MemFS.Crash to see what survived). It counts
// the calls it sees. Close always passes through, so that no handle leaks.
//
// FaultFS is safe for concurrent use.
type FaultFS struct {
	inner FS

	mu         sync.Mutex
	calls      [numOps]int
	mutating   int
	faults     []fault
	crashAfter int // mutating calls still allowed before the crash; -1 means never
	crashWhen  func(op Op, name string) bool
	tornBytes  int
	crashed    bool
}

type fault struct {
	op  Op
	nth int // fail when calls[op] reaches this count
	err error
}

// NewFaultFS wraps inner with no faults armed.
func NewFaultFS(inner FS) *FaultFS {
	return &FaultFS{inner: inner, crashAfter: -1}
}

// FailNth makes the n-th call of op from now on (n >= 1) fail with err, which should be
// a syscall.Errno such as syscall.EIO or syscall.ENOSPC; the error returned wraps it in
// an *os.PathError. A failed call has no effect on the inner FS.
func (f *FaultFS) FailNth(op Op, n int, err error) {
	if n < 1 {
		panic(fmt.Sprintf("faultfs: FailNth(%v, %d): n counts from 1", op, n))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, fault{op: op, nth: f.calls[op] + n, err: err})
}

// CrashAfter lets the next n mutating calls through and fails every call after them
// with ErrInjectedCrash. If the first refused call is a write, its first tornBytes
// bytes reach the inner FS before it fails: a write torn by the crash.
func (f *FaultFS) CrashAfter(n, tornBytes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crashAfter, f.tornBytes = n, tornBytes
}

// CrashWhen has fn decide, at each mutating call, whether the crash happens there
// (as if CrashAfter's budget ran out at that call). fn runs under FaultFS's lock, so
// it can crash another file system at the same instant: a test of a process whose
// state is on two.
func (f *FaultFS) CrashWhen(fn func(op Op, name string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crashWhen = fn
}

// Crashed reports whether CrashAfter's budget has run out.
func (f *FaultFS) Crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashed
}

// Calls returns how many calls of op FaultFS has seen, failed ones included.
func (f *FaultFS) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// MutatingCalls returns how many mutating calls FaultFS has seen.
func (f *FaultFS) MutatingCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mutating
}

// check counts a call and decides its fate: for a write cut by the crash, how many
// bytes to let through first (torn >= 0), and an error to return instead of calling
// through.
func (f *FaultFS) check(op Op, name string) (torn int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if op.IsMutating() {
		f.mutating++
	}
	if f.crashed {
		return -1, &os.PathError{Op: op.String(), Path: name, Err: ErrInjectedCrash}
	}
	if op.IsMutating() && f.crashWhen != nil && f.crashWhen(op, name) {
		f.crashed = true
		return -1, &os.PathError{Op: op.String(), Path: name, Err: ErrInjectedCrash}
	}
	if op.IsMutating() && f.crashAfter >= 0 {
		if f.crashAfter == 0 {
			f.crashed = true
			torn = -1
			if op == OpWrite {
				torn = f.tornBytes
			}
			return torn, &os.PathError{Op: op.String(), Path: name, Err: ErrInjectedCrash}
		}
		f.crashAfter--
	}
	for i, flt := range f.faults {
		if flt.op == op && flt.nth == f.calls[op] {
			f.faults = append(f.faults[:i], f.faults[i+1:]...)
			return -1, &os.PathError{Op: op.String(), Path: name, Err: flt.err}
		}
	}
	return -1, nil
}

// Create implements FS.
func (f *FaultFS) Create(name string) (File, error) {
	if _, err := f.check(OpCreate, name); err != nil {
		return nil, err
	}
	file, err := f.inner.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, inner: file, name: name}, nil
}

// Open implements FS.
func (f *FaultFS) Open(name string) (File, error) {
	if _, err := f.check(OpOpen, name); err != nil {
		return nil, err
	}
	file, err := f.inner.Open(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, inner: file, name: name}, nil
}

// OpenReadWrite implements FS.
func (f *FaultFS) OpenReadWrite(name string) (File, error) {
	if _, err := f.check(OpOpen, name); err != nil {
		return nil, err
	}
	file, err := f.inner.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, inner: file, name: name}, nil
}

// Remove implements FS.
func (f *FaultFS) Remove(name string) error {
	if _, err := f.check(OpRemove, name); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

// Rename implements FS.
func (f *FaultFS) Rename(oldname, newname string) error {
	if _, err := f.check(OpRename, newname); err != nil {
		return err
	}
	return f.inner.Rename(oldname, newname)
}

// MkdirAll implements FS.
func (f *FaultFS) MkdirAll(dir string) error {
	if _, err := f.check(OpMkdirAll, dir); err != nil {
		return err
	}
	return f.inner.MkdirAll(dir)
}

// List implements FS.
func (f *FaultFS) List(dir string) ([]string, error) {
	if _, err := f.check(OpList, dir); err != nil {
		return nil, err
	}
	return f.inner.List(dir)
}

// SyncDir implements FS.
func (f *FaultFS) SyncDir(dir string) error {
	if _, err := f.check(OpSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

// Lock implements FS.
func (f *FaultFS) Lock(name string) (io.Closer, error) {
	if _, err := f.check(OpLock, name); err != nil {
		return nil, err
	}
	return f.inner.Lock(name)
}

// Usage implements FS. It is not counted and never fails: it only reads.
func (f *FaultFS) Usage(dir string) (DiskUsage, error) { return f.inner.Usage(dir) }

type faultFile struct {
	fs    *FaultFS
	inner File
	name  string
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if _, err := f.fs.check(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.inner.ReadAt(p, off)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	torn, err := f.fs.check(OpWrite, f.name)
	if err != nil {
		if torn > 0 {
			n, _ := f.inner.WriteAt(p[:min(torn, len(p))], off)
			return n, err
		}
		return 0, err
	}
	return f.inner.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if _, err := f.fs.check(OpSync, f.name); err != nil {
		return err
	}
	return f.inner.Sync()
}

func (f *faultFile) Preallocate(size int64) error {
	if _, err := f.fs.check(OpPreallocate, f.name); err != nil {
		return err
	}
	return f.inner.Preallocate(size)
}

func (f *faultFile) Size() (int64, error) {
	if _, err := f.fs.check(OpSize, f.name); err != nil {
		return 0, err
	}
	return f.inner.Size()
}

// DropCache passes through, not counted and never failed: it changes nothing on disk.
func (f *faultFile) DropCache() error { return f.inner.DropCache() }

func (f *faultFile) Close() error { return f.inner.Close() }
