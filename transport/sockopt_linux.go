package transport

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setAckTimeout returns a net.Dialer Control function that sets TCP_USER_TIMEOUT on
// the socket: the kernel closes the connection once written data has gone
// unacknowledged for d (Config.AckTimeout), so a peer that silently vanished is
// redialled in seconds instead of after the send buffer fills.
func setAckTimeout(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var sockErr error
		err := c.Control(func(fd uintptr) {
			sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
		})
		if err == nil && sockErr != nil {
			err = fmt.Errorf("setting TCP_USER_TIMEOUT to %v on the socket to %s: %w", d, address, sockErr)
		}
		return err
	}
}
