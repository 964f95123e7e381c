package raft

// Storage is the node's stable storage: the log, the HardState and the latest snapshot.
//
// The core only reads from it (the LogReader half); the Node writes to it, and a write
// method returns only once what it wrote is durable, because the Node sends messages
// that depend on it as soon as it returns (rule 1 of the design: persist before you
// speak). A write error is fatal: the Node stops rather than run on state it could not
// persist.
//
// Storage implementations must be safe for use by one writer and concurrent readers.
type Storage interface {
	LogReader

	// Save persists st (if not empty) and appends ents. If ents[0].Index is at or below
	// LastIndex, the entries from there on are replaced: a follower overwriting a
	// conflicting suffix (§5.3).
	Save(st HardState, ents []Entry) error
	// ApplySnapshot replaces the whole log with snap, received from the leader (§7).
	ApplySnapshot(snap Snapshot) error
	// CreateSnapshot records the application's snapshot data up to and including index,
	// which must be at most the applied index, with the configuration as of index
	// (the zero Membership if no change was made up to it), and discards the log up
	// to it.
	CreateSnapshot(index uint64, membership Membership, data []byte) (Snapshot, error)
}

// AsyncStorage is a Storage whose writes can be queued, so that the Node keeps
// stepping messages while a write's fsync is in flight. The Node uses it when its
// Storage implements it.
type AsyncStorage interface {
	Storage
	// SaveAsync is Save without the wait: it queues the write, makes the entries
	// visible to the LogReader methods at once, and returns a ticket for WaitDurable
	// (0 if there was nothing to write). Writes become durable in the order queued.
	SaveAsync(st HardState, ents []Entry) (ticket uint64, err error)
	// WaitDurable returns once the write of ticket, and every write queued before
	// it, is durable; an error is fatal, as for Save.
	WaitDurable(ticket uint64) error
}

// LogReader is the read half of Storage, all the core needs.
type LogReader interface {
	// InitialState returns the persisted HardState.
	InitialState() (HardState, error)
	// Entries returns entries in [lo, hi), at most maxBytes in total but always at least
	// one if any is in range. It returns ErrCompacted if lo is below FirstIndex, and
	// ErrUnavailable if hi-1 is above LastIndex.
	Entries(lo, hi, maxBytes uint64) ([]Entry, error)
	// Term returns the term of entry i, which must be in [FirstIndex-1, LastIndex]
	// (the snapshot's own index answers with its term).
	Term(i uint64) (uint64, error)
	// FirstIndex is the index of the first entry still in the log (snapshot index + 1).
	FirstIndex() (uint64, error)
	// LastIndex is the index of the last entry in the log.
	LastIndex() (uint64, error)
	// Snapshot returns the latest snapshot.
	Snapshot() (Snapshot, error)
	// SnapshotMeta returns the latest snapshot's Index, Term and Membership without
	// its Data, which it need not read.
	SnapshotMeta() (Snapshot, error)
}

// SnapshotLoader is a LogReader whose snapshot data lives on disk, where reading it
// can take longer than an election timeout (hundreds of megabytes). The leader sends
// a snapshot (§7 of the Raft paper, thesis §5) from its run loop, which must not stop
// meanwhile: a leader that misses its heartbeats for an election timeout is deposed,
// and the new leader would stall the same way. With a SnapshotLoader the leader calls
// LoadSnapshot instead of Snapshot; on ErrSnapshotTemporarilyUnavailable it leaves
// the follower in probe and asks again on the follower's next heartbeat answer.
// (etcd-io/raft has the same rule: Storage.Snapshot may return
// ErrSnapshotTemporarilyUnavailable.)
type SnapshotLoader interface {
	// LoadSnapshot returns the latest snapshot if its data is already in memory.
	// Otherwise it starts reading it in the background, if not already under way,
	// and returns ErrSnapshotTemporarilyUnavailable at once. It never waits on I/O.
	LoadSnapshot() (Snapshot, error)
}

// ConfEntryIndexer is a LogReader that knows where the configuration entries of its
// log are. At start the core rebuilds the configuration from the snapshot and every
// configuration entry after it; with a ConfEntryIndexer it reads just those entries,
// without one it reads the whole log. (Package storage's Storage is one: its recovery
// reads the WAL anyway.)
type ConfEntryIndexer interface {
	// ConfEntryIndexes returns the indexes of the log's EntryConfChange entries after
	// the snapshot, ascending.
	ConfEntryIndexes() ([]uint64, error)
}

// FailingStorage is a Storage that can fail as a whole: after a write or sync fails,
// the disk's contents are unknown and every call fails, reads too. A Node whose read
// of the log fails (its core has no way to answer without the log) checks Err: if the
// Storage failed, the Node stops with that error, as it does when its own write
// fails, instead of panicking. A failure can start outside the Node: the
// application's CreateSnapshot on a disk that just filled up.
type FailingStorage interface {
	Err() error
}
