//go:build cgo

package main

/*
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

// raftkv_malloc_arenas is the arena cap set at load, 0 if none was set.
static int raftkv_malloc_arenas;

// Runs when the program is loaded, before the Go runtime starts its threads: glibc
// fixes a thread's arena at the thread's first malloc, so a cap set later leaves
// the arenas made by then in use. An operator's MALLOC_ARENA_MAX or
// GLIBC_TUNABLES=glibc.malloc.arena_max wins.
__attribute__((constructor)) static void raftkv_limit_malloc_arenas(void) {
#ifdef M_ARENA_MAX
	const char *tunables = getenv("GLIBC_TUNABLES");
	if (getenv("MALLOC_ARENA_MAX") != NULL || (tunables != NULL && strstr(tunables, "arena_max") != NULL)) {
		return;
	}
	if (mallopt(M_ARENA_MAX, 1) == 1) {
		raftkv_malloc_arenas = 1;
	}
#endif
}

static int raftkv_get_malloc_arenas(void) { return raftkv_malloc_arenas; }
*/
import "C"

// engineOffHeap: in a cgo build pebble allocates its block cache and memtables with
// malloc, outside the Go heap, so the Go soft memory limit must leave room for them
// (memlimit.go).
const engineOffHeap = true

// mallocArenas is the cap on the C allocator's arenas this program set as it was
// loaded, 0 if it set none (the operator set one, or the C library is not glibc).
//
// glibc gives threads that malloc arenas of their own, up to 8 per CPU, and a Go
// program calls C from many threads: the engine's blocks, freed in one arena and
// wanted in another, then took nearly twice the engine's configured memory.
// Measured under a 96 MiB cgroup with a 24 MiB engine (a 12 MiB cache, two 6 MiB
// memtables) after reading 20,000 keys of 1 KiB back twice, the process's anonymous
// memory beside the Go runtime's: 40-46 MiB with glibc's default, 30-31 MiB with
// MALLOC_ARENA_MAX=2, 20-22 MiB with 1 (and with this cap). Pebble mallocs a block
// per read from disk, not per request, so one arena's lock costs little.
func mallocArenas() int { return int(C.raftkv_get_malloc_arenas()) }
