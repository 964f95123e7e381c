//go:build !cgo

package main

// engineOffHeap: without cgo pebble's block cache and memtables are Go slices,
// inside the Go heap and so inside the Go soft memory limit (memlimit.go).
const engineOffHeap = false

// mallocArenas is 0: without cgo nothing is allocated with malloc.
func mallocArenas() int { return 0 }
