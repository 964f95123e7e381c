package main

import (
	"runtime/debug"
	"testing"
)

// A member runs with defaultGCPercent unless GOGC is in its environment, which then
// holds.
func TestApplyGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	if got := applyGCPercent([]string{"GOGC=300"}); got != 0 {
		t.Errorf("with GOGC set, applyGCPercent set %d", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("with GOGC set, the GC percent became %d, want it left at 100", now)
	}
	if got := applyGCPercent([]string{"PATH=/bin"}); got != defaultGCPercent {
		t.Errorf("without GOGC, applyGCPercent set %d, want %d", got, defaultGCPercent)
	}
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Errorf("without GOGC, the GC percent is %d, want %d", now, defaultGCPercent)
	}
}
