//go:build !linux

package chaos

import "syscall"

// setUserTimeout is Linux's alone; elsewhere dead connections take longer to notice.
func setUserTimeout(network, address string, conn syscall.RawConn) error { return nil }
