package sim

// Counters count what happened in a run, to show which paths a seed exercised.
type Counters struct {
	// Crashes counts crashes, CrashesMidReady those that hit inside a Ready.
	Crashes, CrashesMidReady int
	// CrashesInStorage counts crashes injected by a StorageFactory inside a write.
	CrashesInStorage int
	// Restarts counts nodes brought back from their storage.
	Restarts int
	// Elections counts terms that got a leader.
	Elections int
	// SnapshotsInstalled counts snapshots from a leader applied by a follower;
	// Compactions counts snapshots taken by applications.
	SnapshotsInstalled, Compactions int
	// LivenessChecks counts AwaitLiveness checks passed.
	LivenessChecks int
	// In AsyncWrites mode: WritesQueued counts writes queued, WritesLost those a
	// crash lost before they were durable, GroupCommits flushes that made several
	// writes durable at once, MessagesHeld messages that waited for a write.
	WritesQueued, WritesLost, GroupCommits, MessagesHeld int
	// With ConfChanges: ConfChangesProposed counts changes a leader took,
	// ConfChangesCommitted those applied, by raft.ConfChangeType; NodesAdded the
	// nodes started to join, SnapshotsToJoined the snapshots they installed;
	// LeaderRemovals the leaders that proposed their own removal; Transfers the
	// leadership transfers started.
	ConfChangesProposed  int
	ConfChangesCommitted [5]int
	NodesAdded           int
	SnapshotsToJoined    int
	LeaderRemovals       int
	Transfers            int
}

// Counters returns what the run has done so far.
func (c *Cluster) Counters() Counters { return c.counters }
