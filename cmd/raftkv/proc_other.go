//go:build unix && !linux

package main

import "syscall"

// memberProcAttr puts a member in its own process group, so that a Ctrl-C in the
// terminal reaches the supervisor only. Without Linux's parent-death signal, a member
// learns of the supervisor's death from the pipe it watches (watchSupervisor).
func memberProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// watchGoRunParent is Linux-only (it reads /proc): elsewhere, stop "go run ... cluster"
// with Ctrl-C, or send SIGTERM to the raftkv process itself.
func watchGoRunParent(done <-chan struct{}) (gone <-chan struct{}, parentPID int) {
	return nil, 0
}
