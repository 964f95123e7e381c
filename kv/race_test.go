//go:build race

package kv

// raceEnabled says the tests run under -race, where pebble checks its invariants
// and copies what it reads, so allocation counts mean nothing.
const raceEnabled = true
