package raft

// Ready is what the core asks its driver to do, all of it data (the core performs no
// I/O). The driver must, in this order:
//  1. persist Snapshot (Storage.ApplySnapshot) if not empty, then HardState and Entries
//     (Storage.Save), durably;
//  2. send Messages;
//  3. apply Snapshot (if not empty) and then CommittedEntries, in order;
//  4. call Advance(rd).
type Ready struct {
	// SoftState is non-nil when the role or the known leader changed.
	SoftState *SoftState
	// HardState is non-empty when term, vote or commit changed and must be persisted.
	HardState HardState
	// ReadStates are read points confirmed since the last Ready (thesis §6.4).
	ReadStates []ReadState
	// Entries must be persisted before Messages are sent.
	Entries []Entry
	// Snapshot, when not empty, was received from the leader: persist it, then give it
	// to the application before CommittedEntries.
	Snapshot Snapshot
	// CommittedEntries are committed and ready to apply, in index order.
	CommittedEntries []Entry
	// Messages go out only after HardState, Entries and Snapshot are durable.
	Messages []Message
}

// containsUpdates reports whether rd asks the driver to do anything.
func (rd *Ready) containsUpdates() bool {
	return rd.SoftState != nil || !rd.HardState.IsEmpty() || len(rd.ReadStates) > 0 ||
		len(rd.Entries) > 0 || !rd.Snapshot.IsEmpty() || len(rd.CommittedEntries) > 0 ||
		len(rd.Messages) > 0
}

// Status is a snapshot of a core's state for observers and tests.
type Status struct {
	ID        uint64
	Term      uint64
	Vote      uint64
	Commit    uint64
	Applied   uint64
	LastIndex uint64
	Lead      uint64
	State     StateType
}
