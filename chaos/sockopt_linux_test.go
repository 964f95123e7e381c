package chaos

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setUserTimeout makes the kernel drop a client connection whose sent data goes
// unacknowledged for 2 seconds. A killed member's address vanishes without a reset,
// and gRPC would otherwise keep routing requests into the dead connection until TCP
// gave up (minutes); gRPC keepalives cannot be that short (the server's default
// policy allows a ping every 5 minutes).
func setUserTimeout(network, address string, conn syscall.RawConn) error {
	var sockErr error
	err := conn.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 2000)
	})
	if err != nil {
		return err
	}
	return sockErr
}
