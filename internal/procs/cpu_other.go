//go:build !unix

package procs

import "time"

// supported is false where the process's CPU time is not read: the governor
// does not start.
const supported = false

func processCPU() time.Duration { return 0 }
