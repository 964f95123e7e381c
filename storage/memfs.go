package storage

import (
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// MemFS is an in-memory FS that can crash. It keeps two states: the live one that
// reads and writes see, and the durable one a power loss would leave. A change reaches
// the durable state when it is synced: file writes and size changes by File.Sync,
// creations, renames and removals by SyncDir of the directory holding the name. Crash
// throws the live state away and restarts from the durable one, optionally keeping a
// prefix of the changes that were not synced yet, the last of them torn.
//
// The model of a disk behind it: changes not yet synced persist in the order they
// were made, so a crash keeps some prefix of them (possibly none), and the write where
// that prefix ends may be cut short anywhere. Handles opened before a crash fail on
// every later call, as if their process had died.
//
// MemFS is safe for concurrent use. Its zero value is not usable; call NewMemFS.
type MemFS struct {
	mu      sync.Mutex
	live    map[string]*memNode // path -> node, the namespace that calls see
	durable memImage            // the state folded from synced changes
	ops     []memOp             // changes since durable, oldest first
	locks   map[string]bool
	gen     uint64 // incremented by every crash; handles of older generations are dead
	nextIno uint64
	// capacity bounds the total size of the live files, 0 if unbounded (SetCapacity).
	capacity int64
}

// memFSUnboundedSize is the size Usage reports for a MemFS without a capacity.
const memFSUnboundedSize = 1 << 50

// SetCapacity makes m a disk of bytes bytes (0: unbounded, the default): a write or
// preallocation that would grow the live files' total size past it fails with ENOSPC
// and changes nothing. Lowering it below what the files hold already fills the disk.
func (m *MemFS) SetCapacity(bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.capacity = bytes
}

// Usage implements FS: the capacity and what the live files leave of it.
func (m *MemFS) Usage(dir string) (DiskUsage, error) {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirExistsLocked(dir) {
		return DiskUsage{}, memErr("statfs", dir, fs.ErrNotExist)
	}
	total := m.capacity
	if total == 0 {
		total = memFSUnboundedSize
	}
	return DiskUsage{Total: total, Free: max(total-m.usedLocked(), 0)}, nil
}

// usedLocked is the total size of the live files.
func (m *MemFS) usedLocked() int64 {
	var used int64
	for _, n := range m.live {
		used += n.size
	}
	return used
}

// checkGrowthLocked fails with ENOSPC if growing node to size would pass the capacity.
func (m *MemFS) checkGrowthLocked(op, name string, node *memNode, size int64) error {
	if m.capacity == 0 || size <= node.size {
		return nil
	}
	if m.usedLocked()+size-node.size > m.capacity {
		return memErr(op, name, syscall.ENOSPC)
	}
	return nil
}

type memNode struct {
	ino   uint64
	isDir bool
	data  []byte // bytes in [len(data), size) read as zero
	size  int64
}

// memImage is a namespace with file contents, the shape of the durable state.
type memImage struct {
	names    map[string]memName
	contents map[uint64]*memContent
}

type memName struct {
	ino   uint64
	isDir bool
}

type memContent struct {
	data []byte
	size int64
}

type memOpKind uint8

const (
	opLink     memOpKind = iota // a name appears (create, mkdir)
	opUnlink                    // a name goes (remove)
	opRename                    // a name moves
	opWrite                     // bytes written to an inode
	opTruncate                  // an inode's size set exactly (create over an existing file)
	opGrow                      // an inode's size raised (preallocate)
)

type memOp struct {
	kind    memOpKind
	path    string // link, unlink, rename: the name; rename: the old name
	newPath string // rename: the new name
	isDir   bool   // link
	ino     uint64
	off     int64  // write
	data    []byte // write: a private copy
	size    int64  // truncate, grow
	// A data op is durable after File.Sync; a name op after SyncDir of its directory
	// (both directories for a rename).
	syncedOld, syncedNew bool
}

func (op *memOp) isDurable() bool { return op.syncedOld && op.syncedNew }

func (op *memOp) isNameOp() bool { return op.kind <= opRename }

// NewMemFS returns an empty MemFS holding the root directories "/" and ".".
func NewMemFS() *MemFS {
	m := &MemFS{locks: map[string]bool{}, nextIno: 3}
	m.durable = memImage{
		names:    map[string]memName{"/": {ino: 1, isDir: true}, ".": {ino: 2, isDir: true}},
		contents: map[uint64]*memContent{},
	}
	m.live = m.durable.toLive()
	return m
}

// Crash simulates a power loss: every change not yet synced is lost.
func (m *MemFS) Crash() { m.CrashPartial(0, 0) }

// CrashPartial simulates a power loss after the disk persisted, in order, the first
// keep of the changes not yet synced and, if the next one is a write, its first
// tornBytes bytes. keep >= UnsyncedOps() keeps every change.
func (m *MemFS) CrashPartial(keep, tornBytes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	img := m.durable.clone()
	pending := 0
	for i := range m.ops {
		op := &m.ops[i]
		switch {
		case op.isDurable():
			img.apply(op)
		case pending < keep:
			img.apply(op)
			pending++
		case pending == keep && op.kind == opWrite && tornBytes > 0:
			torn := *op
			torn.data = op.data[:min(tornBytes, len(op.data))]
			img.apply(&torn)
			pending++
		default:
			pending++
		}
	}
	img.pruneOrphans()
	m.durable = img
	m.ops = nil
	m.live = img.toLive()
	m.locks = map[string]bool{}
	m.gen++
}

// CrashRandom crashes keeping a random prefix of the unsynced changes, with the write
// after it torn at a random length half of the time.
func (m *MemFS) CrashRandom(r *rand.Rand) {
	keep := r.IntN(m.UnsyncedOps() + 1)
	torn := 0
	if r.IntN(2) == 0 {
		torn = r.IntN(4096) + 1
	}
	m.CrashPartial(keep, torn)
}

// UnsyncedOps reports how many changes a crash now could lose.
func (m *MemFS) UnsyncedOps() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for i := range m.ops {
		if !m.ops[i].isDurable() {
			n++
		}
	}
	return n
}

func (img memImage) clone() memImage {
	c := memImage{names: make(map[string]memName, len(img.names)), contents: make(map[uint64]*memContent, len(img.contents))}
	for k, v := range img.names {
		c.names[k] = v
	}
	for k, v := range img.contents {
		c.contents[k] = &memContent{data: slices.Clone(v.data), size: v.size}
	}
	return c
}

// pruneOrphans drops names whose directory did not survive: a file synced into a
// directory whose own entry was never synced is unreachable after a crash.
func (img memImage) pruneOrphans() {
	var reachable func(path string) bool
	reachable = func(path string) bool {
		parent := filepath.Dir(path)
		if parent == path {
			return true
		}
		if n, ok := img.names[parent]; !ok || !n.isDir {
			return false
		}
		return reachable(parent)
	}
	for path := range img.names {
		if path != "." && !reachable(path) {
			delete(img.names, path)
		}
	}
}

func (img memImage) content(ino uint64) *memContent {
	c := img.contents[ino]
	if c == nil {
		c = &memContent{}
		img.contents[ino] = c
	}
	return c
}

func (img memImage) apply(op *memOp) {
	switch op.kind {
	case opLink:
		img.names[op.path] = memName{ino: op.ino, isDir: op.isDir}
	case opUnlink:
		delete(img.names, op.path)
	case opRename:
		delete(img.names, op.path)
		img.names[op.newPath] = memName{ino: op.ino}
	case opWrite:
		c := img.content(op.ino)
		c.data = writeAt(c.data, op.data, op.off)
		c.size = max(c.size, op.off+int64(len(op.data)))
	case opTruncate:
		c := img.content(op.ino)
		c.data = c.data[:min(int64(len(c.data)), op.size)]
		c.size = op.size
	case opGrow:
		c := img.content(op.ino)
		c.size = max(c.size, op.size)
	}
}

// toLive builds a live namespace from the image, with private copies of the contents.
func (img memImage) toLive() map[string]*memNode {
	live := make(map[string]*memNode, len(img.names))
	for path, n := range img.names {
		node := &memNode{ino: n.ino, isDir: n.isDir}
		if c := img.contents[n.ino]; c != nil {
			node.data = slices.Clone(c.data)
			node.size = c.size
		}
		live[path] = node
	}
	return live
}

func writeAt(buf, p []byte, off int64) []byte {
	end := int(off) + len(p)
	if end > len(buf) {
		buf = slices.Grow(buf, end-len(buf))[:end]
	}
	copy(buf[off:], p)
	return buf
}

// recordLocked appends a change to the log of changes a crash could lose. A data
// change waits for File.Sync only; a name change waits for SyncDir (of both
// directories, for a rename).
func (m *MemFS) recordLocked(op memOp) {
	op.syncedOld = false
	op.syncedNew = !op.isNameOp()
	m.ops = append(m.ops, op)
}

// foldLocked moves the synced prefix of the change log into the durable image, so the
// log holds only what a crash could still lose (and what follows it).
func (m *MemFS) foldLocked() {
	i := 0
	for i < len(m.ops) && m.ops[i].isDurable() {
		m.durable.apply(&m.ops[i])
		m.ops[i] = memOp{}
		i++
	}
	m.ops = m.ops[i:]
	if len(m.ops) == 0 {
		m.ops = nil
	}
}

func memErr(op, path string, err error) error { return &os.PathError{Op: op, Path: path, Err: err} }

// errStaleHandle is the error of every call on a handle opened before a crash.
var errStaleHandle = errors.New("memfs: file handle opened before a crash")

func (m *MemFS) dirExistsLocked(dir string) bool {
	n := m.live[dir]
	return n != nil && n.isDir
}

func (m *MemFS) newInoLocked() uint64 {
	m.nextIno++
	return m.nextIno
}

// Create implements FS.
func (m *MemFS) Create(name string) (File, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	node, err := m.createLocked("create", name, true)
	if err != nil {
		return nil, err
	}
	return &memFile{fs: m, node: node, name: name, gen: m.gen, writable: true}, nil
}

func (m *MemFS) createLocked(opName, name string, truncate bool) (*memNode, error) {
	if !m.dirExistsLocked(filepath.Dir(name)) {
		return nil, memErr(opName, name, fs.ErrNotExist)
	}
	if node := m.live[name]; node != nil {
		if node.isDir {
			return nil, memErr(opName, name, syscall.EISDIR)
		}
		if truncate {
			node.data, node.size = nil, 0
			m.recordLocked(memOp{kind: opTruncate, ino: node.ino})
		}
		return node, nil
	}
	node := &memNode{ino: m.newInoLocked()}
	m.live[name] = node
	m.recordLocked(memOp{kind: opLink, path: name, ino: node.ino})
	return node, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.open("open", name, false) }

// OpenReadWrite implements FS.
func (m *MemFS) OpenReadWrite(name string) (File, error) { return m.open("open", name, true) }

func (m *MemFS) open(opName, name string, writable bool) (File, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	node := m.live[name]
	if node == nil {
		return nil, memErr(opName, name, fs.ErrNotExist)
	}
	if node.isDir {
		return nil, memErr(opName, name, syscall.EISDIR)
	}
	return &memFile{fs: m, node: node, name: name, gen: m.gen, writable: writable}, nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	node := m.live[name]
	if node == nil {
		return memErr("remove", name, fs.ErrNotExist)
	}
	if node.isDir {
		return memErr("remove", name, syscall.EISDIR)
	}
	delete(m.live, name)
	m.recordLocked(memOp{kind: opUnlink, path: name, ino: node.ino})
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	node := m.live[oldname]
	if node == nil {
		return memErr("rename", oldname, fs.ErrNotExist)
	}
	if node.isDir {
		return memErr("rename", oldname, syscall.EISDIR)
	}
	if !m.dirExistsLocked(filepath.Dir(newname)) {
		return memErr("rename", newname, fs.ErrNotExist)
	}
	if dst := m.live[newname]; dst != nil && dst.isDir {
		return memErr("rename", newname, syscall.EISDIR)
	}
	delete(m.live, oldname)
	m.live[newname] = node
	m.recordLocked(memOp{kind: opRename, path: oldname, newPath: newname, ino: node.ino})
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if node := m.live[d]; node != nil {
			if !node.isDir {
				return memErr("mkdir", d, syscall.ENOTDIR)
			}
			break
		}
		missing = append(missing, d)
	}
	for _, d := range slices.Backward(missing) {
		node := &memNode{ino: m.newInoLocked(), isDir: true}
		m.live[d] = node
		m.recordLocked(memOp{kind: opLink, path: d, ino: node.ino, isDir: true})
	}
	return nil
}

// List implements FS.
func (m *MemFS) List(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirExistsLocked(dir) {
		return nil, memErr("open", dir, fs.ErrNotExist)
	}
	var names []string
	for path := range m.live {
		if path != dir && filepath.Dir(path) == dir {
			names = append(names, filepath.Base(path))
		}
	}
	slices.Sort(names)
	return names, nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirExistsLocked(dir) {
		return memErr("sync", dir, fs.ErrNotExist)
	}
	for i := range m.ops {
		op := &m.ops[i]
		if !op.isNameOp() {
			continue
		}
		if filepath.Dir(op.path) == dir {
			op.syncedOld = true
			if op.kind != opRename {
				op.syncedNew = true
			}
		}
		if op.kind == opRename && filepath.Dir(op.newPath) == dir {
			op.syncedNew = true
		}
	}
	m.foldLocked()
	return nil
}

// Lock implements FS. Locks are per MemFS and vanish in a crash, like the processes
// that held them.
func (m *MemFS) Lock(name string) (io.Closer, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.createLocked("lock", name, false); err != nil {
		return nil, err
	}
	if m.locks[name] {
		return nil, memErr("flock", name, ErrLocked)
	}
	m.locks[name] = true
	return &memLock{fs: m, name: name, gen: m.gen}, nil
}

type memLock struct {
	fs       *MemFS
	name     string
	gen      uint64
	released bool
}

func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if !l.released && l.gen == l.fs.gen {
		delete(l.fs.locks, l.name)
	}
	l.released = true
	return nil
}

// String describes the live files and their sizes, for test failure messages.
func (m *MemFS) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	paths := make([]string, 0, len(m.live))
	for p := range m.live {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		n := m.live[p]
		if n.isDir {
			b.WriteString(p + "/\n")
			continue
		}
		b.WriteString(p)
		b.WriteString(" ")
		b.WriteString(strconv.FormatInt(n.size, 10))
		b.WriteString("\n")
	}
	return b.String()
}
