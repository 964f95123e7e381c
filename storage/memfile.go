package storage

import (
	"io"
	"os"
	"slices"
	"syscall"
)

// memFile is a handle on a MemFS file. Every method takes the MemFS's lock: a file's
// bytes and the log of unsynced changes move together.
type memFile struct {
	fs       *MemFS
	node     *memNode
	name     string
	gen      uint64
	writable bool
	closed   bool
}

func (f *memFile) checkLocked(op string) error {
	switch {
	case f.closed:
		return memErr(op, f.name, os.ErrClosed)
	case f.gen != f.fs.gen:
		return memErr(op, f.name, errStaleHandle)
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("read"); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, memErr("read", f.name, syscall.EINVAL)
	}
	if off >= f.node.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), f.node.size-off))
	copied := 0
	if off < int64(len(f.node.data)) {
		copied = copy(p[:n], f.node.data[off:])
	}
	clear(p[copied:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("write"); err != nil {
		return 0, err
	}
	if !f.writable {
		return 0, memErr("write", f.name, syscall.EBADF)
	}
	if off < 0 {
		return 0, memErr("write", f.name, syscall.EINVAL)
	}
	if err := f.fs.checkGrowthLocked("write", f.name, f.node, off+int64(len(p))); err != nil {
		return 0, err
	}
	f.node.data = writeAt(f.node.data, p, off)
	f.node.size = max(f.node.size, off+int64(len(p)))
	f.fs.recordLocked(memOp{kind: opWrite, ino: f.node.ino, off: off, data: slices.Clone(p)})
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("sync"); err != nil {
		return err
	}
	for i := range f.fs.ops {
		op := &f.fs.ops[i]
		if !op.isNameOp() && op.ino == f.node.ino {
			op.syncedOld = true
		}
	}
	f.fs.foldLocked()
	return nil
}

// DropCache implements File. MemFS has no page cache apart from its live state, and
// after a Sync that state is the durable one for this file: nothing to drop.
func (f *memFile) DropCache() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.checkLocked("fadvise")
}

func (f *memFile) Preallocate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("fallocate"); err != nil {
		return err
	}
	if !f.writable {
		return memErr("fallocate", f.name, syscall.EBADF)
	}
	if err := f.fs.checkGrowthLocked("fallocate", f.name, f.node, size); err != nil {
		return err
	}
	if size > f.node.size {
		f.node.size = size
		f.fs.recordLocked(memOp{kind: opGrow, ino: f.node.ino, size: size})
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.checkLocked("stat"); err != nil {
		return 0, err
	}
	return f.node.size, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return memErr("close", f.name, os.ErrClosed)
	}
	f.closed = true
	return nil
}
