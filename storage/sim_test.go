package storage

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"raftkv/raft"
	"raftkv/sim"
)

var simSeeds = flag.Int("sim.seeds", 0, "seeds of the simulator over this storage (default 12, 4 with -short or -race)")

// crashingStorage gives every simulated node a Storage over its own crashable
// in-memory file system. Now and then it arms a power loss that hits in the middle of
// one of the node's next writes (a write may be torn); at every crash the file system
// keeps a random prefix of what was not synced.
type crashingStorage struct {
	rng    *rand.Rand
	disks  map[uint64]*MemFS
	faults map[uint64]*FaultFS
	// armed counts the power losses armed per node; a few each, so that every run
	// also ends in a stable stretch the liveness checker can judge.
	armed map[uint64]int
	// crashesArmed and recoveries count what the run exercised.
	crashesArmed, recoveries int
}

func newCrashingStorage(seed int64) *crashingStorage {
	return &crashingStorage{
		rng:    rand.New(rand.NewPCG(uint64(seed), 0x5704a6e)),
		disks:  map[uint64]*MemFS{},
		faults: map[uint64]*FaultFS{},
		armed:  map[uint64]int{},
	}
}

func (f *crashingStorage) Open(id uint64) (raft.Storage, error) {
	disk := f.disks[id]
	if disk == nil {
		disk = NewMemFS()
		f.disks[id] = disk
	} else {
		f.recoveries++
	}
	fault := NewFaultFS(disk)
	f.faults[id] = fault
	st, err := Open(fault, "/data", Options{ClusterID: 0x51, SegmentSize: 64 << 10})
	if err != nil {
		return nil, err
	}
	if f.armed[id] < 3 && f.rng.IntN(3) == 0 {
		f.armed[id]++
		// Power fails within the next few hundred file system calls.
		f.crashesArmed++
		fault.CrashAfter(1+f.rng.IntN(300), f.rng.IntN(2)*(1+f.rng.IntN(512)))
	}
	return &crashReporting{Storage: st, fault: fault}, nil
}

var _ raft.AsyncStorage = (*crashReporting)(nil)

func (f *crashingStorage) Crash(id uint64) { f.disks[id].CrashRandom(f.rng) }

// crashReporting tells the simulator that a write failed because the power did. It is
// a raft.AsyncStorage, so that seeds in the simulator's AsyncWrites mode queue their
// writes with SaveAsync and wait for them, at each simulated flush, with WaitDurable.
type crashReporting struct {
	*Storage
	fault *FaultFS
}

func (s *crashReporting) crashed(err error) error {
	if err != nil && s.fault.Crashed() {
		return fmt.Errorf("%w: %w", sim.ErrStorageCrash, err)
	}
	return err
}

func (s *crashReporting) Save(hs raft.HardState, ents []raft.Entry) error {
	return s.crashed(s.Storage.Save(hs, ents))
}

func (s *crashReporting) SaveAsync(hs raft.HardState, ents []raft.Entry) (Ticket, error) {
	t, err := s.Storage.SaveAsync(hs, ents)
	return t, s.crashed(err)
}

func (s *crashReporting) WaitDurable(t Ticket) error { return s.crashed(s.Storage.WaitDurable(t)) }

// LoadSnapshot reads the snapshot in place, as Snapshot does: the simulator's clock
// stands still while a real goroutine loads a file, so seconds of simulated time
// (and the liveness checker's patience) could pass before the load is scheduled,
// and a seed's outcome would depend on the Go scheduler.
func (s *crashReporting) LoadSnapshot() (raft.Snapshot, error) { return s.Storage.Snapshot() }

func (s *crashReporting) ApplySnapshot(snap raft.Snapshot) error {
	return s.crashed(s.Storage.ApplySnapshot(snap))
}

func (s *crashReporting) CreateSnapshot(index uint64, membership raft.Membership, data []byte) (raft.Snapshot, error) {
	snap, err := s.Storage.CreateSnapshot(index, membership, data)
	return snap, s.crashed(err)
}

// The simulator's safety and liveness checkers stay green with this package as every
// node's storage, over a file system that loses what was not synced at each crash and
// power failures injected in the middle of writes. Each seed runs in the persistence
// mode sim.RandomOptions draws for it: synchronous Saves, or the AsyncWrites pipeline
// over SaveAsync and WaitDurable.
func TestSimulatorOverCrashingStorage(t *testing.T) {
	seeds := *simSeeds
	if seeds == 0 {
		seeds = 12
		if testing.Short() || raceEnabled {
			seeds = 4
		}
	}
	var armed, recovered, storageCrashes, crashes, asyncSeeds, writesLost int
	for seed := int64(1); seed <= int64(seeds); seed++ {
		factory := newCrashingStorage(seed)
		isAsync := false
		c, err := sim.Simulate(seed, 60*time.Second, func(o *sim.Options) {
			o.Storage = factory
			isAsync = o.AsyncWrites
		})
		if err != nil {
			var v *sim.Violation
			if errors.As(err, &v) {
				t.Fatalf("seed %d: %v\nreplay: go test ./storage -run TestSimulatorOverCrashingStorage -sim.seeds=%d", seed, err, seed)
			}
			t.Fatalf("seed %d: %v", seed, err)
		}
		counters := c.Counters()
		armed += factory.crashesArmed
		recovered += factory.recoveries
		storageCrashes += counters.CrashesInStorage
		crashes += counters.Crashes
		if isAsync {
			asyncSeeds++
			writesLost += counters.WritesLost
		}
	}
	t.Logf("%d seeds (%d with AsyncWrites): %d crashes (%d inside a storage write, %d armed), %d recoveries, %d queued writes lost",
		seeds, asyncSeeds, crashes, storageCrashes, armed, recovered, writesLost)
	if recovered == 0 || storageCrashes == 0 || asyncSeeds == 0 || asyncSeeds == seeds {
		t.Fatalf("the run exercised too little: %d recoveries, %d crashes inside a write, %d of %d seeds with AsyncWrites",
			recovered, storageCrashes, asyncSeeds, seeds)
	}
}
