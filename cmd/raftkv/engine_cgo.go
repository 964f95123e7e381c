//go:build cgo

package main

// engineOffHeap: in a cgo build pebble allocates its block cache and memtables with
// malloc, outside the Go heap, so the Go soft memory limit must leave room for them
// (memlimit.go).
const engineOffHeap = true
