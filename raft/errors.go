package raft

import (
	"errors"
	"fmt"
)

// Expected conditions, testable with errors.Is.
var (
	// ErrNotLeader: the node is not the leader; send the request to the leader.
	ErrNotLeader = errors.New("raft: not the leader")
	// ErrProposalDropped: the proposal was not appended (no leader known, a leadership
	// transfer is under way, or the node is stopping). Retry later or elsewhere.
	ErrProposalDropped = errors.New("raft: proposal dropped")
	// ErrProposalPending: the wait for a forwarded proposal ended (its context or
	// deadline) just as the run loop took it and handed it to the leader, too late
	// to withdraw it: it may still commit, so its outcome is unknown. The error
	// wraps the context's too (Node.ForwardUntil).
	ErrProposalPending = errors.New("raft: proposal forwarded as its wait ended, its outcome unknown")
	// ErrTooManyUncommitted: the leader already holds Config.MaxUncommittedEntriesBytes
	// of entries that have not committed; back off and retry.
	ErrTooManyUncommitted = errors.New("raft: too many uncommitted entries")
	// ErrEntryTooLarge: one proposal is larger than Config.MaxSizePerMsg allows.
	ErrEntryTooLarge = errors.New("raft: entry larger than the message size limit")
	// ErrStopped: the node has been stopped.
	ErrStopped = errors.New("raft: node stopped")
	// ErrReadIndexNotReady: the leader has not yet committed an entry of its term, so
	// it cannot name a safe read point (thesis §6.4); retry shortly.
	ErrReadIndexNotReady = errors.New("raft: leader has not committed an entry in its term yet")
	// ErrLeadershipLost: leadership changed, or could not be confirmed within an
	// election timeout, while the request waited; retry.
	ErrLeadershipLost = errors.New("raft: leadership lost while waiting")

	// ErrCompacted: Storage no longer holds the requested index; it was compacted into
	// a snapshot.
	ErrCompacted = errors.New("raft: requested index is compacted")
	// ErrUnavailable: Storage does not hold the requested index yet.
	ErrUnavailable = errors.New("raft: requested index is unavailable")
	// ErrSnapOutOfDate: the snapshot is older than the one Storage already holds.
	ErrSnapOutOfDate = errors.New("raft: snapshot is older than the current one")
	// ErrSnapshotTemporarilyUnavailable: a SnapshotLoader is still reading the
	// snapshot's data; the leader asks again later.
	ErrSnapshotTemporarilyUnavailable = errors.New("raft: snapshot is temporarily unavailable")
)

// errReadRoundLost fails reads whose ReadIndex round got no answer within an election
// timeout: the request or its answer was lost, so leadership is unconfirmed.
var errReadRoundLost = fmt.Errorf("%w: no answer to the ReadIndex round within an election timeout", ErrLeadershipLost)
