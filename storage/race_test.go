//go:build race

package storage

// raceEnabled lets the slowest exhaustive tests thin their sampling under -race.
const raceEnabled = true
