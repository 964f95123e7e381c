package raft

import "fmt"

// progressState is how a leader currently replicates to one follower.
type progressState uint8

const (
	// progressProbe: the leader does not know where the follower's log matches its own;
	// it sends one AppendEntries per heartbeat interval and waits for the answer.
	progressProbe progressState = iota
	// progressReplicate: the logs match up to matchIndex; the leader streams entries
	// optimistically, up to MaxInflightMsgs messages ahead of the acknowledgements.
	progressReplicate
	// progressSnapshot: the follower needs entries the leader has compacted; a snapshot
	// is on its way and nothing else is sent until it lands or fails.
	progressSnapshot
)

func (s progressState) String() string {
	return [...]string{"Probe", "Replicate", "Snapshot"}[s]
}

// progress is the leader's view of one follower (Figure 2's nextIndex and matchIndex,
// plus flow control).
type progress struct {
	// match is the highest index known to be replicated on the follower (matchIndex).
	// next is the index of the next entry to send (nextIndex).
	// Invariant: match < next.
	match, next uint64
	state       progressState

	// probeSent pauses a follower in progressProbe until it answers the last probe.
	probeSent bool
	// pendingSnapshot is the index of the snapshot in flight in progressSnapshot.
	pendingSnapshot uint64
	// snapshotWaitTicks counts heartbeat answers received while a snapshot is in
	// flight; past an election timeout the leader presumes it lost and probes again.
	snapshotWaitTicks int
	// recentActive: the follower has been heard from since the last CheckQuorum.
	recentActive bool
	// sentCommit is the highest commitIndex sent to the follower. awaitsCommit is
	// the last entry the follower forwarded a proposal for that it has not been
	// told is committed: it waits for that commit to answer its client.
	sentCommit, awaitsCommit uint64

	inflights *inflights
}

func (pr *progress) String() string {
	return fmt.Sprintf("state=%s match=%d next=%d inflight=%d", pr.state, pr.match, pr.next, pr.inflights.count)
}

func (pr *progress) resetState(state progressState) {
	pr.probeSent = false
	pr.pendingSnapshot = 0
	pr.snapshotWaitTicks = 0
	pr.state = state
	pr.inflights.reset()
}

func (pr *progress) becomeProbe() {
	// After a snapshot, the follower holds at least the snapshot's index.
	if pr.state == progressSnapshot {
		pending := pr.pendingSnapshot
		pr.resetState(progressProbe)
		pr.next = max(pr.match+1, pending+1)
		return
	}
	pr.resetState(progressProbe)
	pr.next = pr.match + 1
}

func (pr *progress) becomeReplicate() {
	pr.resetState(progressReplicate)
	pr.next = pr.match + 1
}

func (pr *progress) becomeSnapshot(snapshotIndex uint64) {
	pr.resetState(progressSnapshot)
	pr.pendingSnapshot = snapshotIndex
}

// maybeUpdate records an acknowledgement up to n; it reports whether match advanced.
func (pr *progress) maybeUpdate(n uint64) bool {
	updated := false
	if pr.match < n {
		pr.match = n
		updated = true
		pr.probeSent = false
	}
	pr.next = max(pr.next, n+1)
	return updated
}

// sentEntries records that an AppendEntries ending at lastIndex went out.
func (pr *progress) sentEntries(lastIndex uint64, numEntries int, bytes uint64) {
	switch pr.state {
	case progressReplicate:
		if numEntries > 0 {
			pr.next = lastIndex + 1
			pr.inflights.add(lastIndex, bytes)
		}
	case progressProbe:
		pr.probeSent = true
	default:
		panic(fmt.Sprintf("raft: sending entries to a follower in state %s", pr.state))
	}
}

// maybeDecrTo handles a rejected AppendEntries whose prevLogIndex was rejected; next is
// the leader's fast back-up estimate of where the logs may match. A follower in
// replicate falls back to probe. It reports false for a stale rejection, which is
// ignored.
func (pr *progress) maybeDecrTo(rejected, next uint64) bool {
	if pr.state == progressReplicate {
		// A rejection at or below match answers an old message: the follower has since
		// acknowledged more.
		if rejected <= pr.match {
			return false
		}
		pr.resetState(progressProbe)
	} else if pr.next-1 != rejected {
		// In probe only the answer to the one outstanding probe counts.
		return false
	}
	// The next probe's prevLogIndex must be strictly below the rejected one, so each
	// round trip makes progress; it never goes at or below what is known to match.
	pr.next = max(min(rejected, next), pr.match+1)
	pr.probeSent = false
	return true
}

// isPaused reports whether the leader should hold back appends to this follower.
func (pr *progress) isPaused() bool {
	switch pr.state {
	case progressProbe:
		return pr.probeSent
	case progressReplicate:
		return pr.inflights.full()
	default:
		return true
	}
}

// inflights is a ring buffer of the last index of each append in flight to a follower,
// with its bytes of entries: full at MaxInflightMsgs appends or, if maxBytes is set,
// at maxBytes (Config.MaxInflightBytes).
type inflights struct {
	start, count int
	buffer       []uint64
	sizes        []uint64
	bytes        uint64 // sum of sizes in flight
	maxBytes     uint64 // 0: no limit
}

func newInflights(size int, maxBytes uint64) *inflights {
	return &inflights{buffer: make([]uint64, size), sizes: make([]uint64, size), maxBytes: maxBytes}
}

func (in *inflights) full() bool {
	return in.count == len(in.buffer) || (in.maxBytes > 0 && in.bytes >= in.maxBytes)
}

func (in *inflights) add(index, bytes uint64) {
	if in.full() {
		panic("raft: add to full inflights")
	}
	i := (in.start + in.count) % len(in.buffer)
	in.buffer[i], in.sizes[i] = index, bytes
	in.bytes += bytes
	in.count++
}

// freeLE frees every in-flight message whose last index is at most index.
func (in *inflights) freeLE(index uint64) {
	for in.count > 0 && in.buffer[in.start] <= index {
		in.bytes -= in.sizes[in.start]
		in.start = (in.start + 1) % len(in.buffer)
		in.count--
	}
	if in.count == 0 {
		in.start, in.bytes = 0, 0
	}
}

func (in *inflights) freeFirst() {
	if in.count > 0 {
		in.freeLE(in.buffer[in.start])
	}
}

func (in *inflights) reset() { in.start, in.count, in.bytes = 0, 0, 0 }
