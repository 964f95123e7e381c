package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBigKeyIndexInvertsBigKey(t *testing.T) {
	for _, i := range []int{0, 1, 255, 999_999, 1 << 20} {
		got, ok := bigKeyIndex([]byte(bigKey(i)))
		if !ok || got != i {
			t.Errorf("bigKeyIndex(%q) = %d, %v; want %d, true", bigKey(i), got, ok, i)
		}
	}
	for _, key := range []string{"filler", "bigzz", "000000ff"} {
		if _, ok := bigKeyIndex([]byte(key)); ok {
			t.Errorf("bigKeyIndex(%q) took a key that is not of the data set", key)
		}
	}
	// The verifier pages through a range in key order: key order must be index order.
	if !(bigKey(9) < bigKey(10) && bigKey(0xff) < bigKey(0x100) && bigKey(999_999) < bigKey(1_000_000)) {
		t.Error("bigKey's order is not its index's order")
	}
}

func TestBigValueIsPerKeyAndIncompressible(t *testing.T) {
	a, b := bigValue(7), bigValue(8)
	if len(a) != bigValueBytes {
		t.Fatalf("len(bigValue(7)) = %d, want %d", len(a), bigValueBytes)
	}
	if !bytes.Equal(a, bigValue(7)) {
		t.Error("bigValue(7) differs between two calls: a reader could not check it")
	}
	if bytes.Equal(a, b) {
		t.Error("keys 7 and 8 have the same value: a key read back from the wrong place would pass")
	}
	// Pseudo-random bytes: every byte value shows up in 1 KiB about 4 times, so far
	// more than half of the 256 values must appear (a repeated pattern would not).
	seen := map[byte]bool{}
	for _, c := range a {
		seen[c] = true
	}
	if len(seen) < 200 {
		t.Errorf("bigValue(7) uses %d distinct byte values, want at least 200 (incompressible data)", len(seen))
	}
}

func TestBigLabelAndWorkloadName(t *testing.T) {
	for _, tc := range []struct {
		keys int
		want string
	}{{1_000_000, "big-1m-1k"}, {102_400, "big-102k-1k"}, {2000, "big-2k-1k"}, {500, "big-500-1k"}} {
		if got := bigWorkload(tc.keys).name; got != tc.want {
			t.Errorf("bigWorkload(%d).name = %q, want %q", tc.keys, got, tc.want)
		}
	}
}

func TestParseDataSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"100MiB", 100 << 20}, {"1GiB", 1 << 30}, {"512KiB", 512 << 10}, {"4096", 4096}} {
		got, err := parseDataSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseDataSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "1GB", "-5MiB", "0", "lots"} {
		if _, err := parseDataSize(in); err == nil || !strings.Contains(err.Error(), "e.g. 100MiB") {
			t.Errorf("parseDataSize(%q) = %v, want an error that shows the form", in, err)
		}
	}
}

func TestSelectWorkloadsBigOnlyByName(t *testing.T) {
	all, err := selectWorkloads("all", 2000)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range all {
		if w.op == opBigMixed {
			t.Errorf("\"all\" selected %s, which loads a gigabyte by default", w.name)
		}
	}
	withBig, err := selectWorkloads("all,big", 2000)
	if err != nil || len(withBig) != len(all)+1 {
		t.Errorf("\"all,big\" selected %d workloads (%v), want the %d of \"all\" and big", len(withBig), err, len(all))
	}
	for _, list := range []string{"big", "k", "big-1m-1k", "put-1c,big-2k-1k", "all,big"} {
		got, err := selectWorkloads(list, 2000)
		if err != nil {
			t.Fatalf("selectWorkloads(%q): %v", list, err)
		}
		last := got[len(got)-1]
		if last.op != opBigMixed || last.keySpace != 2000 || last.name != "big-2k-1k" {
			t.Errorf("selectWorkloads(%q) ends with %s over %d keys, want big-2k-1k over 2000", list, last.name, last.keySpace)
		}
	}
}

func TestParseDataOptions(t *testing.T) {
	d, err := parseDataOptions("restart, memory-cap", 1<<20, 10_000, "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !d.scenarios["restart"] || !d.scenarios["memory-cap"] || d.scenarios["catch-up"] {
		t.Errorf("scenarios %v, want restart and memory-cap", d.scenarios)
	}
	if d.memoryCapBytes != 512<<20 {
		t.Errorf("default cap for 1 GiB of data = %d, want half of it, 512 MiB", d.memoryCapBytes)
	}
	if d, _ := parseDataOptions("all", 2000, 300, "", time.Minute); len(d.scenarios) != len(dataScenarioNames) || d.memoryCapBytes != 64<<20 {
		t.Errorf("all over 2000 keys: scenarios %v, cap %d; want all three and the 64 MiB floor", d.scenarios, d.memoryCapBytes)
	}
	if _, err := parseDataOptions("restart,reboot", 2000, 300, "", time.Minute); err == nil || !strings.Contains(err.Error(), `"reboot"`) {
		t.Errorf("an unknown scenario gave %v, want an error naming it", err)
	}
}

func TestParseCgroupFiles(t *testing.T) {
	mountinfo := `25 30 0:22 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
33 25 0:28 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:14 - cgroup cgroup rw,cpu,cpuacct
40 25 0:35 / /sys/fs/cgroup/memory rw shared:18 - cgroup cgroup rw,memory
`
	v2, v1 := parseCgroupMounts(mountinfo)
	if v2 != "/sys/fs/cgroup/unified" || v1 != "/sys/fs/cgroup/memory" {
		t.Errorf("parseCgroupMounts = %q, %q; want the unified and the memory mounts", v2, v1)
	}
	own, ok := parseOwnCgroupV1("5:devices:/\n4:memory:/process_api/abc\n0::/\n", "memory")
	if !ok || own != "/process_api/abc" {
		t.Errorf("parseOwnCgroupV1 = %q, %v; want /process_api/abc", own, ok)
	}
	if _, ok := parseOwnCgroupV1("0::/user.slice\n", "memory"); ok {
		t.Error("parseOwnCgroupV1 found a memory cgroup on a v2-only host")
	}
	if n := parseOOMKills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"); n != 2 {
		t.Errorf("parseOOMKills(v1 memory.oom_control) = %d, want 2", n)
	}
	if n := parseOOMKills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"); n != 1 {
		t.Errorf("parseOOMKills(v2 memory.events) = %d, want 1", n)
	}
	if n := parseOOMKills("under_oom 0\n"); n != -1 {
		t.Errorf("parseOOMKills without the line = %d, want -1 (unknown)", n)
	}
	if n, ok := parseAnonBytes("cache 4096\nrss 1048576\nrss_huge 0\ntotal_cache 8192\ntotal_rss 2097152\n", true); !ok || n != 2<<20 {
		t.Errorf("parseAnonBytes(v1 memory.stat) = %d, %v; want total_rss, 2 MiB", n, ok)
	}
	if n, ok := parseAnonBytes("anon 3145728\nfile 4096\nkernel 0\n", false); !ok || n != 3<<20 {
		t.Errorf("parseAnonBytes(v2 memory.stat) = %d, %v; want anon, 3 MiB", n, ok)
	}
	if _, ok := parseAnonBytes("file 4096\n", false); ok {
		t.Error("parseAnonBytes found anonymous memory in a memory.stat without it")
	}
}

func TestEvictFromPageCacheGoesThroughEveryFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "member", "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	for path, size := range map[string]int{"member/wal/0.wal": 5000, "member/db": 3000, "top": 1} {
		if err := os.WriteFile(filepath.Join(dir, path), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	total, err := evictFromPageCache(dir)
	if err != nil || total != 8001 {
		t.Errorf("evictFromPageCache = %d, %v; want the 8001 bytes of the three files", total, err)
	}
	if _, err := evictFromPageCache(filepath.Join(dir, "absent")); err == nil {
		t.Error("evictFromPageCache of a missing dir gave no error")
	}
}
