package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's run if a test left a goroutine behind: every member
// a test starts is stopped, and Stop must end everything the member started (its
// servers, streams, background work and the engine's).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
