package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"raftkv/server"
)

// A member in a container or a systemd unit is usually given a memory limit by its
// cgroup, and the kernel kills it when it passes that limit. Two parts of its memory
// do not know about the limit on their own: the Go heap, which by default grows to
// twice what is live before the collector runs (GOGC=100), and the storage engine's
// block cache and memtables, 64 MiB + 2 x 32 MiB by default. So at start the member
// reads its cgroup's memory limit and
//
//   - sizes the engine down to a quarter of the limit when its defaults would take
//     more (only what --backend-cache-bytes and --backend-memtable-bytes leave at 0),
//   - sets the Go runtime's soft memory limit (debug.SetMemoryLimit) to 90% of what
//     the limit leaves beside the engine's memory outside the Go heap, unless
//     GOMEMLIMIT is set, in which case the runtime already has the operator's limit;
//   - (in a cgo build, where that engine memory comes from malloc, glibc's malloc
//     arenas are capped at one as the program loads, limit or not, unless
//     MALLOC_ARENA_MAX is set: mallocArenas says why; the log line says so.)
//
// It logs what it did at start. The soft limit makes the collector run more often as the
// heap nears it, not fail: memory that is live above it is still allocated, so it
// spares the member the kill only for memory that was garbage.

// cgroupLimit is a cgroup's memory limit.
type cgroupLimit struct {
	bytes int64
	// file is the limit file the smallest limit came from, as the process sees it.
	file string
}

// noLimitV1 is the smallest value cgroup v1 shows for "no limit": the kernel
// writes the largest page-aligned int64 (9223372036854771712 on 4 KiB pages).
const noLimitV1 = 1 << 62

// readCgroupMemoryLimit returns the memory limit that holds this process: the
// smallest limit of its memory cgroup and of the cgroup's ancestors that the
// process can see. ok is false when no limit is set (or no memory cgroup is
// mounted). root is "/" except in tests, which lay out proc/self/cgroup,
// proc/self/mountinfo and the cgroup files under a temporary directory.
func readCgroupMemoryLimit(root string) (limit cgroupLimit, ok bool, err error) {
	procCgroup, err := os.ReadFile(filepath.Join(root, "proc/self/cgroup"))
	if errors.Is(err, fs.ErrNotExist) {
		return cgroupLimit{}, false, nil // not Linux, or no /proc
	}
	if err != nil {
		return cgroupLimit{}, false, err
	}
	mountinfo, err := os.ReadFile(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return cgroupLimit{}, false, err
	}
	dir, top, limitFile, found := memoryCgroupDir(string(procCgroup), string(mountinfo))
	if !found {
		return cgroupLimit{}, false, nil
	}
	return smallestLimit(root, dir, top, limitFile)
}

// cgroupMount is one cgroup hierarchy's mount: the cgroup it shows (its root,
// relative to the hierarchy's root in this namespace) and where.
type cgroupMount struct {
	root, point string
}

// memoryCgroupDir finds this process's memory cgroup: the directory that holds its
// limit file, and the mount point (top) above which no limit of its can be seen. The v1
// memory hierarchy wins over v2 when both are mounted: the memory controller is then
// bound to v1 (a hybrid host), and v2's directories have no memory files.
func memoryCgroupDir(procCgroup, mountinfo string) (dir, top, limitFile string, found bool) {
	v2, v1 := parseCgroupMountinfo(mountinfo)
	var v2path, v1path string
	var hasV2, hasV1 bool
	for line := range strings.Lines(procCgroup) {
		// "4:memory:/some/path" (v1) or "0::/some/path" (v2).
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2path, hasV2 = parts[2], true
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			v1path, hasV1 = parts[2], true
		}
	}
	switch {
	case hasV1 && v1 != nil:
		return mountedPath(*v1, v1path), path.Clean(v1.point), "memory.limit_in_bytes", true
	case hasV2 && v2 != nil:
		return mountedPath(*v2, v2path), path.Clean(v2.point), "memory.max", true
	}
	return "", "", "", false
}

// parseCgroupMountinfo returns the cgroup v2 mount and the cgroup v1 mount of the
// memory controller, nil where there is none.
func parseCgroupMountinfo(mountinfo string) (v2, v1memory *cgroupMount) {
	for line := range strings.Lines(mountinfo) {
		// "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory":
		// the fourth field is the mount's root, the fifth its mount point; after
		// " - ", the file system type and, third, the super options.
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		preF, postF := strings.Fields(pre), strings.Fields(post)
		if len(preF) < 5 || len(postF) < 3 {
			continue
		}
		m := &cgroupMount{root: unescapeMountinfo(preF[3]), point: unescapeMountinfo(preF[4])}
		switch postF[0] {
		case "cgroup2":
			if v2 == nil {
				v2 = m
			}
		case "cgroup":
			if v1memory == nil && slices.Contains(strings.Split(postF[2], ","), "memory") {
				v1memory = m
			}
		}
	}
	return v2, v1memory
}

// unescapeMountinfo undoes mountinfo's octal escapes of space, tab, newline and
// backslash ("\040").
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountedPath is where the cgroup at cgroupPath (as /proc/self/cgroup names it)
// is under mount m. A mount shows the hierarchy from its root down, so a cgroup
// below the root is found by its path relative to that root; a container whose
// cgroup namespace starts at its own cgroup sees "/" there and at the mount's
// root. A path outside the mount's root (a process moved out after the mount)
// falls back to the mount point, the nearest directory it can read.
func mountedPath(m cgroupMount, cgroupPath string) string {
	p, root := path.Clean("/"+cgroupPath), path.Clean("/"+m.root)
	if root == "/" {
		return path.Join(m.point, p)
	}
	if rel, ok := strings.CutPrefix(p, root); ok && (rel == "" || rel[0] == '/') {
		return path.Join(m.point, rel)
	}
	return m.point
}

// smallestLimit reads limitFile in dir and in every directory above it up to top,
// the mount point of the cgroup file system, and returns the smallest limit set. A
// limit of "max" (v2) or of at least noLimitV1 (v1) is none, and so is a missing
// file (a v2 root cgroup has no memory.max).
func smallestLimit(root, dir, top, limitFile string) (cgroupLimit, bool, error) {
	best := cgroupLimit{bytes: math.MaxInt64}
	found := false
	for d := dir; ; d = path.Dir(d) {
		file := path.Join(d, limitFile)
		b, err := os.ReadFile(filepath.Join(root, file))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return cgroupLimit{}, false, err
		default:
			s := strings.TrimSpace(string(b))
			if s != "max" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < 0 {
					return cgroupLimit{}, false, fmt.Errorf("cgroup memory limit file %s holds %q, not a number of bytes or \"max\"", file, s)
				}
				if n < noLimitV1 && n < best.bytes {
					best, found = cgroupLimit{bytes: n, file: file}, true
				}
			}
		}
		if d == top || d == "/" || !strings.HasPrefix(d, top+"/") {
			break
		}
	}
	return best, found, nil
}

// Engine sizing under a memory limit: the engine's default memory (the block cache
// and two memtables, 128 MiB) is kept when the limit is at least four times that;
// below it the engine gets a quarter of the limit, half of it cache and a quarter
// to each memtable, each at least minEngineShareBytes. A quarter leaves the rest to
// what the engine does not bound: the Go heap (requests in flight, the raft log's
// entries, the watch and lease tables) and the page cache the engine reads through.
const (
	engineShareOfLimit  = 4
	defaultCacheBytes   = 64 << 20 // kv's defaults, restated to size against
	defaultMemTable     = 32 << 20
	minEngineShareBytes = 2 << 20
	// offHeapOverhead is the room the Go limit leaves for the engine's malloc'd
	// memory, as a multiple of its configured size (3/2: half as much again, for
	// the allocator's waste and what pebble mallocs beside the cache and the
	// memtables). With glibc's default arenas the engine took nearly twice its
	// size (mallocArenas); with one arena, less than its size in the runs measured.
	offHeapOverheadNum, offHeapOverheadDen = 3, 2
)

// memoryPlan is what the member does about a memory limit.
type memoryPlan struct {
	// cacheBytes and memTableBytes are the engine sizes to use, 0 where the
	// flag's value (or the default) stands.
	cacheBytes, memTableBytes int64
	// goLimit is the Go soft memory limit to set, 0 for none.
	goLimit int64
}

// planMemory decides the engine's sizes and the Go soft limit under a cgroup limit
// of limit bytes. cacheFlag and memTableFlag are the flags' values (0 for the
// default). goMemLimitSet says GOMEMLIMIT is in the environment; engineOffHeap
// says the engine's cache and memtables are outside the Go heap (a cgo build: pebble
// allocates them with malloc), so the Go limit must leave room for them.
func planMemory(limit, cacheFlag, memTableFlag int64, goMemLimitSet, engineOffHeap bool) memoryPlan {
	var p memoryPlan
	cache, memTable := cacheFlag, memTableFlag
	if cache == 0 {
		cache = defaultCacheBytes
	}
	if memTable == 0 {
		memTable = defaultMemTable
	}
	if share := limit / engineShareOfLimit; cache+2*memTable > share {
		if cacheFlag == 0 {
			cache = roundMiB(max(share/2, minEngineShareBytes))
			p.cacheBytes = cache
		}
		if memTableFlag == 0 {
			memTable = roundMiB(max(share/4, minEngineShareBytes))
			p.memTableBytes = memTable
		}
	}
	if !goMemLimitSet {
		avail := limit
		if engineOffHeap {
			avail -= (cache + 2*memTable) * offHeapOverheadNum / offHeapOverheadDen
		}
		// Never below a quarter of the limit: flags that give the engine more than
		// the limit are the operator's choice, and a Go limit near zero would only
		// make the collector run without pause.
		p.goLimit = max(avail/10*9, limit/4)
	}
	return p
}

// roundMiB rounds n down to whole MiB, at least 1 MiB.
func roundMiB(n int64) int64 { return max(n>>20, 1) << 20 }

// applyMemoryLimit reads the cgroup's memory limit and adjusts cfg and the Go
// runtime to it (see planMemory), logging what it did. Without a limit it changes
// nothing. A limit it cannot read is logged and ignored: the member runs as it
// would without one.
func applyMemoryLimit(cfg *server.Config, environ []string) {
	applyMemoryLimitAt("/", cfg, environ)
}

// applyMemoryLimitAt is applyMemoryLimit with the files under root (tests).
func applyMemoryLimitAt(root string, cfg *server.Config, environ []string) {
	limit, ok, err := readCgroupMemoryLimit(root)
	if err != nil {
		cfg.Logger.Warn("cannot read the cgroup's memory limit; running without adjusting to it", "err", err.Error())
		return
	}
	if !ok {
		return
	}
	goMemLimit, goMemLimitSet := lookupEnv(environ, "GOMEMLIMIT")
	p := planMemory(limit.bytes, cfg.BackendCacheBytes, cfg.BackendMemTableBytes, goMemLimitSet, engineOffHeap)
	attrs := []any{"limit", byteCount(limit.bytes), "from", limit.file}
	if p.cacheBytes != 0 {
		cfg.BackendCacheBytes = p.cacheBytes
		attrs = append(attrs, "backend-cache-bytes", byteCount(p.cacheBytes))
	}
	if p.memTableBytes != 0 {
		cfg.BackendMemTableBytes = p.memTableBytes
		attrs = append(attrs, "backend-memtable-bytes", byteCount(p.memTableBytes))
	}
	if p.goLimit != 0 {
		debug.SetMemoryLimit(p.goLimit)
		attrs = append(attrs, "go-memory-limit", byteCount(p.goLimit))
	} else {
		attrs = append(attrs, "go-memory-limit", "GOMEMLIMIT="+goMemLimit)
	}
	if n := mallocArenas(); n > 0 {
		attrs = append(attrs, "malloc-arenas", n)
	}
	msg := "memory limit of the cgroup"
	if p.cacheBytes != 0 || p.memTableBytes != 0 {
		msg += "; the storage engine is sized down to a quarter of it (set --backend-cache-bytes and --backend-memtable-bytes to choose)"
	}
	cfg.Logger.Info(msg, attrs...)
}

// lookupEnv is os.LookupEnv over environ.
func lookupEnv(environ []string, key string) (string, bool) {
	for _, kv := range slices.Backward(environ) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// byteCount prints n for a log line: whole MiB ("460 MiB", rounded down) from
// 1 MiB on, bytes below.
func byteCount(n int64) string {
	if n >= 1<<20 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}
