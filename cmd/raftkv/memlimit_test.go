package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"raftkv/server"
)

// cgroupFS lays out the files readCgroupMemoryLimit reads under a temporary root:
// proc/self/cgroup, proc/self/mountinfo, and files by their absolute paths.
func cgroupFS(t *testing.T, procCgroup, mountinfo string, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	all := map[string]string{"/proc/self/cgroup": procCgroup, "/proc/self/mountinfo": mountinfo}
	for name, content := range files {
		all[name] = content
	}
	for name, content := range all {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	mountinfoV1 = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	procCgroupV1 = `9:name=systemd:/
4:memory:/process_api/abc
1:cpu:/
0::/
`
	mountinfoV2 = `25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	// A container that sees only its own cgroup, mounted with its root there.
	mountinfoV2Container = `1021 1012 0:22 /kubepods/pod1/c1 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw
`
	v1NoLimit = "9223372036854771712\n"
)

func TestCgroupMemoryLimit(t *testing.T) {
	tests := []struct {
		name       string
		procCgroup string
		mountinfo  string
		files      map[string]string
		wantBytes  int64
		wantFile   string
		wantOK     bool
	}{
		{
			name: "v1 limit on the process's own cgroup", procCgroup: procCgroupV1, mountinfo: mountinfoV1,
			files: map[string]string{
				"/sys/fs/cgroup/memory/memory.limit_in_bytes":                 v1NoLimit,
				"/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes":     v1NoLimit,
				"/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "67108864\n",
			},
			wantBytes: 64 << 20, wantFile: "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes", wantOK: true,
		},
		{
			name: "v1 nested: the parent's smaller limit holds", procCgroup: procCgroupV1, mountinfo: mountinfoV1,
			files: map[string]string{
				"/sys/fs/cgroup/memory/memory.limit_in_bytes":                 v1NoLimit,
				"/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes":     "536870912\n",
				"/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "1073741824\n",
			},
			wantBytes: 512 << 20, wantFile: "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", wantOK: true,
		},
		{
			name: "v1 without a limit", procCgroup: procCgroupV1, mountinfo: mountinfoV1,
			files: map[string]string{
				"/sys/fs/cgroup/memory/memory.limit_in_bytes":                 v1NoLimit,
				"/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes":     v1NoLimit,
				"/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": v1NoLimit,
			},
		},
		{
			name: "v2 limit", procCgroup: "0::/system.slice/raftkv.service\n", mountinfo: mountinfoV2,
			files: map[string]string{
				"/sys/fs/cgroup/system.slice/memory.max":                "max\n",
				"/sys/fs/cgroup/system.slice/raftkv.service/memory.max": "268435456\n",
			},
			wantBytes: 256 << 20, wantFile: "/sys/fs/cgroup/system.slice/raftkv.service/memory.max", wantOK: true,
		},
		{
			name:       "v2 nested: the smallest along the path, the root has no memory.max",
			procCgroup: "0::/a/b/c\n", mountinfo: mountinfoV2,
			files: map[string]string{
				"/sys/fs/cgroup/a/memory.max":     "1073741824\n",
				"/sys/fs/cgroup/a/b/memory.max":   "209715200\n",
				"/sys/fs/cgroup/a/b/c/memory.max": "max\n",
			},
			wantBytes: 200 << 20, wantFile: "/sys/fs/cgroup/a/b/memory.max", wantOK: true,
		},
		{
			name: "v2 max everywhere", procCgroup: "0::/a\n", mountinfo: mountinfoV2,
			files: map[string]string{"/sys/fs/cgroup/a/memory.max": "max\n"},
		},
		{
			name: "v2 in a container whose mount's root is its own cgroup", procCgroup: "0::/kubepods/pod1/c1\n",
			mountinfo: mountinfoV2Container,
			files:     map[string]string{"/sys/fs/cgroup/memory.max": "134217728\n"},
			wantBytes: 128 << 20, wantFile: "/sys/fs/cgroup/memory.max", wantOK: true,
		},
		{
			name: "v2 in a cgroup namespace: the process sees itself at /", procCgroup: "0::/\n",
			mountinfo: `1021 1012 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw` + "\n",
			files:     map[string]string{"/sys/fs/cgroup/memory.max": "100663296\n"},
			wantBytes: 96 << 20, wantFile: "/sys/fs/cgroup/memory.max", wantOK: true,
		},
		{
			name: "hybrid: memory is on v1 even with a v2 line", procCgroup: procCgroupV1, mountinfo: mountinfoV1,
			files: map[string]string{
				"/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "33554432\n",
				"/sys/fs/cgroup/unified/memory.max":                           "1048576\n",
			},
			wantBytes: 32 << 20, wantFile: "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes", wantOK: true,
		},
		{
			name: "no memory cgroup mounted", procCgroup: procCgroupV1,
			mountinfo: "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
		},
		{
			name: "a mount point with an escaped space", procCgroup: "0::/x\n",
			mountinfo: `25 1 0:22 / /my\040cgroups rw - cgroup2 cgroup2 rw` + "\n",
			files:     map[string]string{"/my cgroups/x/memory.max": "73400320\n"},
			wantBytes: 70 << 20, wantFile: "/my cgroups/x/memory.max", wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := cgroupFS(t, tt.procCgroup, tt.mountinfo, tt.files)
			got, ok, err := readCgroupMemoryLimit(root)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || got.bytes != tt.wantBytes && tt.wantOK || got.file != tt.wantFile && tt.wantOK {
				t.Fatalf("got %d bytes from %q, ok %v; want %d from %q, ok %v", got.bytes, got.file, ok, tt.wantBytes, tt.wantFile, tt.wantOK)
			}
		})
	}
}

func TestCgroupMemoryLimitErrors(t *testing.T) {
	root := cgroupFS(t, "0::/a\n", mountinfoV2, map[string]string{"/sys/fs/cgroup/a/memory.max": "lots\n"})
	_, _, err := readCgroupMemoryLimit(root)
	if err == nil || !strings.Contains(err.Error(), `/sys/fs/cgroup/a/memory.max holds "lots"`) {
		t.Fatalf("a limit file that holds no number: err %v, want one that names the file and its content", err)
	}
	// No /proc (not Linux): no limit, no error.
	if _, ok, err := readCgroupMemoryLimit(t.TempDir()); ok || err != nil {
		t.Fatalf("without /proc: ok %v, err %v; want no limit and no error", ok, err)
	}
}

func TestPlanMemory(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		name               string
		limit, cache, memT int64
		goMemLimitSet, cgo bool
		want               memoryPlan
	}{
		{
			name:  "a large limit keeps the engine's defaults; cgo leaves them and their malloc overhead room beside the Go heap",
			limit: 1024 * MiB, cgo: true,
			want: memoryPlan{goLimit: (1024*MiB - 192*MiB) / 10 * 9},
		},
		{
			name: "512 MiB is four times the defaults: kept", limit: 512 * MiB,
			want: memoryPlan{goLimit: 512 * MiB / 10 * 9},
		},
		{
			name: "64 MiB: the engine gets a quarter", limit: 64 * MiB, cgo: true,
			want: memoryPlan{cacheBytes: 8 * MiB, memTableBytes: 4 * MiB, goLimit: (64*MiB - 24*MiB) / 10 * 9},
		},
		{
			name: "a tiny limit: the engine's floor", limit: 8 * MiB,
			want: memoryPlan{cacheBytes: 2 * MiB, memTableBytes: 2 * MiB, goLimit: 8 * MiB / 10 * 9},
		},
		{
			name: "flags given are kept, the other is sized", limit: 64 * MiB, cache: 32 * MiB,
			want: memoryPlan{memTableBytes: 4 * MiB, goLimit: 64 * MiB / 10 * 9},
		},
		{
			name: "flags larger than the limit: the Go limit does not go below a quarter", limit: 64 * MiB,
			cache: 256 * MiB, memT: 64 * MiB, cgo: true,
			want: memoryPlan{goLimit: 16 * MiB},
		},
		{
			name: "GOMEMLIMIT set: no Go limit, the engine still sized", limit: 64 * MiB, goMemLimitSet: true,
			want: memoryPlan{cacheBytes: 8 * MiB, memTableBytes: 4 * MiB},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := planMemory(tt.limit, tt.cache, tt.memT, tt.goMemLimitSet, tt.cgo); got != tt.want {
				t.Fatalf("planMemory(%d, %d, %d, %v, %v) = %+v, want %+v", tt.limit, tt.cache, tt.memT, tt.goMemLimitSet, tt.cgo, got, tt.want)
			}
		})
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	root := cgroupFS(t, "0::/m\n", mountinfoV2, map[string]string{"/sys/fs/cgroup/m/memory.max": "67108864\n"})

	var log bytes.Buffer
	cfg := server.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))}
	applyMemoryLimitAt(root, &cfg, nil)
	want := planMemory(64<<20, 0, 0, false, engineOffHeap)
	if cfg.BackendCacheBytes != 8<<20 || cfg.BackendMemTableBytes != 4<<20 {
		t.Errorf("under a 64 MiB limit the engine got a %d-byte cache and %d-byte memtables; want 8 MiB and 4 MiB",
			cfg.BackendCacheBytes, cfg.BackendMemTableBytes)
	}
	if got := debug.SetMemoryLimit(-1); got != want.goLimit {
		t.Errorf("Go memory limit %d, want %d", got, want.goLimit)
	}
	for _, s := range []string{`limit="64 MiB"`, `from=/sys/fs/cgroup/m/memory.max`, `backend-cache-bytes="8 MiB"`, "go-memory-limit="} {
		if !strings.Contains(log.String(), s) {
			t.Errorf("the log line %q does not say %s", log.String(), s)
		}
	}

	// GOMEMLIMIT set and the engine flags given: nothing changes but the log line.
	debug.SetMemoryLimit(before)
	log.Reset()
	cfg = server.Config{Logger: slog.New(slog.NewTextHandler(&log, nil)), BackendCacheBytes: 32 << 20, BackendMemTableBytes: 8 << 20}
	applyMemoryLimitAt(root, &cfg, []string{"GOMEMLIMIT=50MiB"})
	if cfg.BackendCacheBytes != 32<<20 || cfg.BackendMemTableBytes != 8<<20 {
		t.Errorf("flags given were changed to %d and %d", cfg.BackendCacheBytes, cfg.BackendMemTableBytes)
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("with GOMEMLIMIT set the Go memory limit became %d", got)
	}
	if !strings.Contains(log.String(), `go-memory-limit="GOMEMLIMIT=50MiB"`) {
		t.Errorf("the log line %q does not say GOMEMLIMIT holds", log.String())
	}

	// No limit: nothing logged, nothing changed.
	log.Reset()
	cfg = server.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))}
	applyMemoryLimitAt(cgroupFS(t, "0::/m\n", mountinfoV2, map[string]string{"/sys/fs/cgroup/m/memory.max": "max\n"}), &cfg, nil)
	if log.Len() != 0 || cfg.BackendCacheBytes != 0 || debug.SetMemoryLimit(-1) != before {
		t.Errorf("without a limit: logged %q, cache %d, Go limit %d", log.String(), cfg.BackendCacheBytes, debug.SetMemoryLimit(-1))
	}
}
