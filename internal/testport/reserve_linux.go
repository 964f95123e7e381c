package testport

import (
	"fmt"
	"net"
)

// reserved holds this process's reservations, by port; they end with the process
// (the kernel closes the sockets however it exits). Guarded by cursor.mu.
var reserved = map[int]net.Listener{}

// reserve claims port p for this process among every process that uses Free, by
// binding a unix socket in the abstract namespace named after it: the name is
// taken while a process holds it and free once that process has exited, SIGKILL
// included, and no file is left behind. It reports false if another process holds
// p; p reserved by this process already is reserved still (the cursor went round).
func reserve(p int) bool {
	if _, ok := reserved[p]; ok {
		return true
	}
	l, err := net.Listen("unix", fmt.Sprintf("@raftkv-testport-%d", p))
	if err != nil {
		return false
	}
	reserved[p] = l
	return true
}

// release ends this process's reservation of p, if it holds one.
func release(p int) {
	if l, ok := reserved[p]; ok {
		l.Close()
		delete(reserved, p)
	}
}
