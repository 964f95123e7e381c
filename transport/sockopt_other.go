//go:build !linux

package transport

import (
	"syscall"
	"time"
)

// setAckTimeout sets nothing where TCP_USER_TIMEOUT is not available: a peer that
// silently vanished is then noticed when a write stalls for Config.IOTimeout.
func setAckTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
