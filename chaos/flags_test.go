package chaos

import (
	"flag"
)

// The suite's flags, for long runs: go test -run TestChaos -chaos.duration=10m ...
// (see README.md).
var (
	durationFlag      = flag.Duration("chaos.duration", 0, "how long the nemesis makes faults (default 75s, 30s with -short)")
	seedFlag          = flag.Uint64("chaos.seed", 0, "seed of the nemesis and the clients' choices (default: drawn from the clock, and logged)")
	clientsFlag       = flag.Int("chaos.clients", 6, "concurrent clients on the host")
	faultsFlag        = flag.String("chaos.faults", "", "comma-separated fault kinds to draw from (default "+allFaultKindsText+")")
	holdFlag          = flag.Duration("chaos.hold", 0, "longest a fault is held before it is healed (default 6s); each is held between a third of it and all of it")
	snapshotCountFlag = flag.Int("chaos.snapshot-count", 2000, "the members' --snapshot-count, low so that snapshots are taken and sent during a run")
	jsonFlag          = flag.String("chaos.json", "", "also write the run's figures to this file as JSON")
)
