//go:build race

package sim

// raceEnabled is true under -race, whose slowdown makes the tests run fewer seeds.
const raceEnabled = true
