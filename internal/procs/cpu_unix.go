//go:build unix

package procs

import (
	"syscall"
	"time"
)

const supported = true

// processCPU is the CPU time, user and system, that every thread of the process
// has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
