package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Capping a member's memory for the memory-cap scenario. Three ways, the first that
// works on this machine: systemd-run --scope -p MemoryMax= (a host booted with
// systemd), a cgroup v2 directory under the unified hierarchy's root (when its
// memory controller is enabled there), or a cgroup v1 memory cgroup under this
// process's own (nested, so whatever limit holds this process holds the member too).
// The cgroup ways need root. The member is started through "bench cgroup-exec", which
// moves itself into the cgroup and then execs the member, so no byte the member
// allocates escapes the cap and its pid stays the one the harness watches.

type capMethod int

const (
	capSystemd capMethod = iota
	capCgroup2
	capCgroup1
)

// memoryCapper makes memory-capped groups.
type memoryCapper struct {
	method capMethod
	parent string // the directory new cgroups go under (cgroup methods)
}

func (mc *memoryCapper) String() string {
	switch mc.method {
	case capSystemd:
		return "systemd-run --scope -p MemoryMax"
	case capCgroup2:
		return "cgroup v2 under " + mc.parent
	default:
		return "cgroup v1 under " + mc.parent
	}
}

// detectMemoryCapper finds a way to cap memory here, or says why there is none.
func detectMemoryCapper() (*memoryCapper, string) {
	var why []string
	if _, err := exec.LookPath("systemd-run"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "systemd-run", "--scope", "--quiet", "-p", "MemoryMax=64M", "true").CombinedOutput()
		cancel()
		if err == nil {
			return &memoryCapper{method: capSystemd}, ""
		}
		why = append(why, fmt.Sprintf("systemd-run: %v: %s", err, firstLine(out)))
	} else {
		why = append(why, "no systemd-run")
	}
	v2, v1, err := cgroupMounts()
	if err != nil {
		return nil, strings.Join(append(why, err.Error()), "; ")
	}
	if v2 != "" {
		if hasWord(v2+"/cgroup.subtree_control", "memory") {
			if probeCgroupDir(v2) == nil {
				return &memoryCapper{method: capCgroup2, parent: v2}, ""
			}
			why = append(why, "cannot create a cgroup under "+v2+" (not root?)")
		} else {
			why = append(why, "the cgroup v2 hierarchy at "+v2+" has no memory controller enabled for its children")
		}
	}
	if v1 != "" {
		own, err := ownCgroupV1("memory")
		if err != nil {
			return nil, strings.Join(append(why, err.Error()), "; ")
		}
		parent := filepath.Join(v1, own)
		if err := probeCgroupDir(parent); err != nil {
			return nil, strings.Join(append(why, fmt.Sprintf("cannot create a memory cgroup under %s: %v", parent, err)), "; ")
		}
		return &memoryCapper{method: capCgroup1, parent: parent}, ""
	}
	return nil, strings.Join(append(why, "no cgroup memory controller mounted"), "; ")
}

// cgroupMounts returns the mount point of the cgroup v2 hierarchy and of the cgroup v1
// memory hierarchy, either empty if absent.
func cgroupMounts() (v2, v1memory string, err error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	v2, v1memory = parseCgroupMounts(string(b))
	return v2, v1memory, nil
}

// parseCgroupMounts reads /proc/self/mountinfo for cgroupMounts.
func parseCgroupMounts(mountinfo string) (v2, v1memory string) {
	for line := range strings.Lines(mountinfo) {
		// "36 35 98:0 / /sys/fs/cgroup/memory rw,relatime shared:1 - cgroup cgroup rw,memory"
		pre, post, ok := strings.Cut(strings.TrimSpace(line), " - ")
		if !ok {
			continue
		}
		preF, postF := strings.Fields(pre), strings.Fields(post)
		if len(preF) < 5 || len(postF) < 3 {
			continue
		}
		switch postF[0] {
		case "cgroup2":
			if v2 == "" {
				v2 = preF[4]
			}
		case "cgroup":
			if slices.Contains(strings.Split(postF[2], ","), "memory") && v1memory == "" {
				v1memory = preF[4]
			}
		}
	}
	return v2, v1memory
}

// ownCgroupV1 returns this process's cgroup path in the v1 hierarchy of controller.
func ownCgroupV1(controller string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	if path, ok := parseOwnCgroupV1(string(b), controller); ok {
		return path, nil
	}
	return "", fmt.Errorf("/proc/self/cgroup has no %s line", controller)
}

// parseOwnCgroupV1 reads /proc/self/cgroup for ownCgroupV1.
func parseOwnCgroupV1(procCgroup, controller string) (string, bool) {
	for line := range strings.Lines(procCgroup) {
		// "4:memory:/some/path"
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			return parts[2], true
		}
	}
	return "", false
}

// probeCgroupDir checks that a cgroup can be made under parent.
func probeCgroupDir(parent string) error {
	dir := filepath.Join(parent, fmt.Sprintf("raftkv-bench-probe-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return os.Remove(dir)
}

func hasWord(path, word string) bool {
	b, err := os.ReadFile(path)
	return err == nil && slices.Contains(strings.Fields(string(b)), word)
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line)
}

// memoryCgroup is one capped group.
type memoryCgroup struct {
	capper *memoryCapper
	dir    string // empty for systemd-run
	limit  int64
}

// createdCgroups are the cgroups this run made, removed by its cleanup even when it
// is interrupted.
var createdCgroups = struct {
	sync.Mutex
	dirs map[string]bool
}{dirs: map[string]bool{}}

// removeCreatedCgroups removes every cgroup this run made and has not removed yet
// (their processes must be gone).
func removeCreatedCgroups() {
	createdCgroups.Lock()
	defer createdCgroups.Unlock()
	for dir := range createdCgroups.dirs {
		_ = removeCgroupDir(dir)
		delete(createdCgroups.dirs, dir)
	}
}

// create makes a group capped at limit bytes.
func (mc *memoryCapper) create(name string, limit int64) (*memoryCgroup, error) {
	g := &memoryCgroup{capper: mc, limit: limit}
	if mc.method == capSystemd {
		return g, nil
	}
	g.dir = filepath.Join(mc.parent, fmt.Sprintf("raftkv-bench-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", g.dir, err)
	}
	createdCgroups.Lock()
	createdCgroups.dirs[g.dir] = true
	createdCgroups.Unlock()
	limitFile := "memory.max"
	if mc.method == capCgroup1 {
		limitFile = "memory.limit_in_bytes"
	}
	if err := os.WriteFile(filepath.Join(g.dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		_ = g.remove()
		return nil, fmt.Errorf("setting %s of %s to %d: %w", limitFile, g.dir, limit, err)
	}
	if mc.method == capCgroup2 {
		// No swap either, where the file exists: the cap is on memory, not on RAM.
		_ = os.WriteFile(filepath.Join(g.dir, "memory.swap.max"), []byte("0"), 0o644)
	}
	return g, nil
}

// command returns the program and arguments that run path with args in the group.
func (g *memoryCgroup) command(self, path string, args []string) (string, []string) {
	if g.capper.method == capSystemd {
		return "systemd-run", append([]string{"--scope", "--quiet", "-p", fmt.Sprintf("MemoryMax=%d", g.limit),
			"-p", "MemorySwapMax=0", "--", path}, args...)
	}
	return self, append([]string{"cgroup-exec", filepath.Join(g.dir, "cgroup.procs"), path}, args...)
}

// peakMiB is the group's peak memory use (its page cache included), or -1 if this
// kernel or method does not say.
func (g *memoryCgroup) peakMiB() float64 {
	file := "memory.peak"
	if g.capper.method == capCgroup1 {
		file = "memory.max_usage_in_bytes"
	}
	if g.dir == "" {
		return -1
	}
	b, err := os.ReadFile(filepath.Join(g.dir, file))
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return round2(float64(n) / (1 << 20))
}

// oomKills is how many processes the OOM killer killed in the group, or -1 if
// unknown.
func (g *memoryCgroup) oomKills() int {
	file := "memory.events"
	if g.capper.method == capCgroup1 {
		file = "memory.oom_control"
	}
	if g.dir == "" {
		return -1
	}
	b, err := os.ReadFile(filepath.Join(g.dir, file))
	if err != nil {
		return -1
	}
	return parseOOMKills(string(b))
}

// parseOOMKills reads the "oom_kill N" line of memory.events (v2) or
// memory.oom_control (v1); -1 if there is none.
func parseOOMKills(events string) int {
	for line := range strings.Lines(events) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
			if n, err := strconv.Atoi(f[1]); err == nil {
				return n
			}
		}
	}
	return -1
}

// remove deletes the group; its processes must have exited.
func (g *memoryCgroup) remove() error {
	if g.dir == "" {
		return nil
	}
	createdCgroups.Lock()
	delete(createdCgroups.dirs, g.dir)
	createdCgroups.Unlock()
	return removeCgroupDir(g.dir)
}

// removeCgroupDir removes a cgroup, waiting up to 5s for the kernel to let go of a
// process that has just exited.
func removeCgroupDir(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w (remove it by hand: rmdir %s)", dir, err, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runCgroupExec is "bench cgroup-exec <cgroup.procs> <program> [args...]": it moves
// this process into the cgroup and replaces itself with program.
func runCgroupExec(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench cgroup-exec <cgroup.procs file> <program> [args...]")
		return 2
	}
	if err := os.WriteFile(args[0], []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "cgroup-exec: moving pid %d into %s: %v\n", os.Getpid(), args[0], err)
		return 1
	}
	err := syscall.Exec(args[1], args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "cgroup-exec: exec %s: %v\n", args[1], err)
	return 1
}

// evictFromPageCache writes out and drops from the page cache every file under dir
// (fdatasync, then POSIX_FADV_DONTNEED). A member restarted under a cap must read its
// data through pages charged to its own cgroup; pages its previous process left in
// the cache stay charged to the cgroup that read them first, and would let it hold
// more than the cap. It returns the bytes of the files it went through.
func evictFromPageCache(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", path, err)
		}
		info, err := f.Stat()
		if err != nil {
			return err
		}
		total += info.Size()
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("fadvise %s: %w", path, err)
		}
		return nil
	})
	return total, err
}

// anonBytes is the group's anonymous memory (its processes' heaps and stacks, which
// the kernel cannot reclaim without swap), apart from its page cache; ok is false if
// this kernel or method does not say.
func (g *memoryCgroup) anonBytes() (int64, bool) {
	if g.dir == "" {
		return 0, false
	}
	b, err := os.ReadFile(filepath.Join(g.dir, "memory.stat"))
	if err != nil {
		return 0, false
	}
	return parseAnonBytes(string(b), g.capper.method == capCgroup1)
}

// parseAnonBytes reads memory.stat for anonBytes: "anon" in v2, "total_rss" (this
// group and its children) in v1.
func parseAnonBytes(stat string, v1 bool) (int64, bool) {
	name := "anon"
	if v1 {
		name = "total_rss"
	}
	for line := range strings.Lines(stat) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// anonWatcher samples a group's anonymous memory every 100 ms until stopped, so
// that the peak of a member the OOM killer then kills is known: with the group's
// peak (page cache included) it tells a member that filled the cap itself from one
// whose reads filled it with cache.
type anonWatcher struct {
	peak   atomic.Int64 // -1 until a sample was read
	stopCh chan struct{}
	done   chan struct{}
}

func (g *memoryCgroup) watchAnon() *anonWatcher {
	w := &anonWatcher{stopCh: make(chan struct{}), done: make(chan struct{})}
	w.peak.Store(-1)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, ok := g.anonBytes(); ok {
				w.peak.Store(max(w.peak.Load(), n))
			}
			select {
			case <-tick.C:
			case <-w.stopCh:
				return
			}
		}
	}()
	return w
}

// stop ends the sampling and returns the peak in MiB, -1 if unknown. It may be
// called more than once.
func (w *anonWatcher) stop() float64 {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	<-w.done
	if p := w.peak.Load(); p >= 0 {
		return round2(float64(p) / (1 << 20))
	}
	return -1
}
