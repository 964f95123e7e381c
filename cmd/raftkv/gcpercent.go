package main

import "runtime/debug"

// defaultGCPercent is the garbage collector's GOGC a member runs with unless the
// environment sets GOGC: the heap grows to 2.5 times what is live before the
// collector runs, not twice. A member's allocation is mostly gRPC's, per request
// (its headers, contexts and frames: 56% of the bytes a leader allocates under
// bench's get-ser-100c), and the collector's CPU goes with the allocation rate
// over the heap's headroom, so more headroom is less collection for the same
// work: its mark workers and assists were 12% of a leader's CPU under
// get-ser-100c. Measured on this 2-CPU machine, 3 runs each, alternated:
// server's BenchmarkRangeSerializable 40.7 -> 36.5 µs of CPU per request and
// BenchmarkPut 103.7 -> 98.8 (client and members in one process); bench's
// largest member peaked at 112.5-117.9 MiB instead of 100-106 (etcd's:
// 131-166), put-1c at 56.7-56.9 instead of 53.1-53.9 (etcd's: 60-61). 200 cost
// 25-30 MiB on put-1000c for 5% more requests per second there.
// Under a cgroup memory limit the soft limit (memlimit.go) still bounds the heap.
const defaultGCPercent = 150

// applyGCPercent sets GOGC to defaultGCPercent unless environ sets GOGC, and
// returns what it set (0 if nothing).
func applyGCPercent(environ []string) int {
	if _, set := lookupEnv(environ, "GOGC"); set {
		return 0
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}
