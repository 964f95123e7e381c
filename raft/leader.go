package raft

import (
	"bytes"
	"errors"
	"slices"
)

// appendEntries appends new entries of this leader's term to its own log. It fails
// when the uncommitted entries would exceed MaxUncommittedEntriesBytes.
func (r *raft) appendEntries(ents []Entry) error {
	var size uint64
	for i := range ents {
		size += ents[i].size()
	}
	// An empty no-op always goes through: a new leader needs it to commit anything.
	if r.uncommittedSize > 0 && r.uncommittedSize+size > r.maxUncommittedSize {
		return ErrTooManyUncommitted
	}
	r.uncommittedSize += size
	last := r.log.lastIndex()
	for i := range ents {
		ents[i].Term = r.term
		ents[i].Index = last + 1 + uint64(i)
	}
	r.log.append(ents...)
	r.confAppended(ents)
	r.needBroadcast = true
	return nil
}

// reduceUncommittedSize releases the weight of entries that have been applied.
func (r *raft) reduceUncommittedSize(ents []Entry) {
	if r.state != StateLeader {
		return
	}
	var size uint64
	for i := range ents {
		size += ents[i].size()
	}
	r.uncommittedSize -= min(size, r.uncommittedSize)
}

// flushBroadcast sends the appends that proposals since the last Ready asked for.
func (r *raft) flushBroadcast() {
	if r.needBroadcast {
		r.needBroadcast = false
		if r.state == StateLeader {
			r.bcastAppend()
		}
	}
}

// bcastCommit tells followers that the commit index advanced. Followers learn
// commitIndex from the next AppendEntries (§5.3), and sending one at once to every
// follower, empty if need be, doubled the messages (and the wake-ups of three
// processes) per write at low load. So a follower hears of the commit now only if
// entries are ready for it, which then carry it, or if it forwarded a proposal that
// is now committed, since its client waits for that. The others hear in the next
// append, or at the latest when the Node calls SendCommit, a moment later
// (commitUnsent), or in the next heartbeat.
func (r *raft) bcastCommit() {
	deferring := r.deferringAppends()
	for _, id := range r.progressIDs {
		if id == r.id {
			continue
		}
		if deferring && !slices.Contains(r.writePeers, id) {
			pr := r.progress[id]
			if pr.awaitsCommit != 0 && pr.awaitsCommit <= r.log.committed && !pr.isPaused() {
				r.sendAppend(id) // it forwarded a proposal now committed: its client waits
				continue
			}
			r.deferAppend(id)
			continue
		}
		if r.maybeSendAppend(id, false) {
			continue
		}
		pr := r.progress[id]
		if pr.sentCommit >= r.log.committed {
			continue
		}
		if pr.isPaused() {
			continue // it gets the commit with the appends that resume it
		}
		if pr.awaitsCommit != 0 && pr.awaitsCommit <= r.log.committed {
			r.sendAppend(id)
			continue
		}
		r.commitUnsent = true
	}
}

// sendCommit sends the commit index to every follower not yet told it: an empty
// append, if flow control allows one. The entries deferred for the followers
// outside writePeers go with it, unless it holds them back once (holdDeferred).
func (r *raft) sendCommit() {
	r.commitUnsent = false
	if r.state != StateLeader {
		return
	}
	deferred := r.appendsDeferred
	hold := deferred && r.holdDeferred()
	if hold {
		r.holdingAppends = true
		r.commitUnsent = true // the Node calls again, SendCommitAfter later
	} else {
		r.appendsDeferred = false
		r.holdingAppends = false
	}
	for _, id := range r.progressIDs {
		if id == r.id {
			continue
		}
		pr := r.progress[id]
		if hold && !r.catchingUp(pr) && !slices.Contains(r.writePeers, id) {
			continue // its commit index goes with its entries
		}
		if pr.sentCommit < r.log.committed {
			r.sendAppend(id)
		} else if deferred {
			r.maybeSendAppend(id, false)
		}
	}
}

// appendHoldDelays is how many CommitDelays a SendCommit that holds the deferred
// entries back (holdDeferred) lets pass before the next: the followers outside
// writePeers then get them CommitDelay*(1+appendHoldDelays) after the first was
// deferred, 10 ms at the default tick; the hold skips a follower that lacks
// deferLagEntries.
const appendHoldDelays = 4

// holdDeferred reports whether SendCommit may keep the entries deferred for the
// followers outside writePeers back once more, for appendHoldDelays: while the
// write peers keep up, those followers need the entries only to apply them (and
// as a spare copy), and each append costs them, and the leader, a message, an
// acknowledgement and a disk write and fsync, however few entries it carries. At
// one client with the 2 ms of CommitDelay that was an append every third write,
// and the Node's timer woke the leader every 2 ms for it. The write peers keep up
// if they have committed the entry whose deferral began the wait, a CommitDelay
// ago; else the entries go now, and their acknowledgements complete the quorum.
// An entry appended during the hold waits CommitDelay*(1+appendHoldDelays) at
// most for that, should the write peers go silent then.
func (r *raft) holdDeferred() bool {
	return !r.holdingAppends && r.log.committed >= r.deferredFrom && r.deferringAppends()
}

// bcastAppend sends new entries to the followers: to all of them, or, when
// deferringAppends, to writePeers now and to the others with the next SendCommit.
func (r *raft) bcastAppend() {
	deferring := r.deferringAppends()
	for _, id := range r.progressIDs {
		if id == r.id {
			continue
		}
		if deferring && !slices.Contains(r.writePeers, id) {
			r.deferAppend(id)
			continue
		}
		r.sendAppend(id)
	}
}

// deferringAppends reports whether new entries go to writePeers first (see
// Config.AppendToAll): they must still be voters that, with the leader, make a
// quorum, each replicating, with room in flight, and heard from lately; else every
// follower gets them at once.
func (r *raft) deferringAppends() bool {
	if r.appendToAll || len(r.writePeers) == 0 || len(r.writePeers)+1 >= len(r.progressIDs) ||
		!slices.Contains(r.conf.Voters, r.id) {
		return false
	}
	for _, id := range r.writePeers {
		pr := r.progress[id]
		if pr == nil || !slices.Contains(r.conf.Voters, id) ||
			pr.state != progressReplicate || pr.isPaused() || !pr.recentActive {
			return false
		}
	}
	return 1+len(r.writePeers) >= r.quorum()
}

// deferLagEntries: a follower outside writePeers that lacks this many entries or
// more (one restarted, or a learner catching up) gets them as its acknowledgements
// come, flow control allowing, rather than a message per CommitDelay.
const deferLagEntries = 64

// catchingUp reports whether a follower lacks deferLagEntries entries or more:
// neither deferred nor held, it gets them as flow control allows.
func (r *raft) catchingUp(pr *progress) bool { return pr.next+deferLagEntries <= r.log.lastIndex() }

// deferAppend leaves a follower outside writePeers for the next SendCommit, which
// the Node calls CommitDelay after HasUnsentCommit turns true.
func (r *raft) deferAppend(id uint64) {
	pr := r.progress[id]
	if pr.next <= r.log.lastIndex() || pr.sentCommit < r.log.committed {
		if !r.appendsDeferred {
			r.appendsDeferred = true
			r.deferredFrom = r.log.lastIndex()
		}
		r.commitUnsent = true
	}
}

// noteWritePeers records, when an acknowledgement from from has just advanced the
// commit index, the followers that hold it: the quorum that completed this commit,
// to which the next entries go first. from is among them.
func (r *raft) noteWritePeers(from uint64) {
	r.writePeers = r.writePeers[:0]
	for _, id := range r.conf.Voters {
		if pr := r.progress[id]; id != r.id && pr != nil && (id == from || pr.match >= r.log.committed) {
			r.writePeers = append(r.writePeers, id)
		}
	}
}

// sendAppend sends AppendEntries to a follower if flow control allows, with whatever
// entries it lacks, even none (the message then carries the commit index).
func (r *raft) sendAppend(to uint64) { r.maybeSendAppend(to, true) }

// maybeSendAppend sends entries the follower lacks, or a snapshot if they are
// compacted. With sendIfEmpty false it sends nothing when there are no new entries.
// It reports whether a message went out.
func (r *raft) maybeSendAppend(to uint64, sendIfEmpty bool) bool {
	pr := r.progress[to]
	if pr.isPaused() {
		return false
	}
	prevIndex := pr.next - 1
	prevTerm, errTerm := r.log.term(prevIndex)
	ents, errEnts := r.log.entries(pr.next, r.maxMsgSize)
	if len(ents) == 0 && !sendIfEmpty {
		return false
	}
	if errTerm != nil || errEnts != nil {
		return r.sendSnapshot(to, pr)
	}
	r.send(Message{
		To:      to,
		Type:    MsgApp,
		Index:   prevIndex,
		LogTerm: prevTerm,
		Entries: ents,
		Commit:  r.log.committed,
	})
	pr.sentCommit = r.log.committed
	if pr.awaitsCommit <= r.log.committed {
		pr.awaitsCommit = 0
	}
	var last, bytes uint64
	if n := len(ents); n > 0 {
		last = ents[n-1].Index
	}
	for i := range ents {
		bytes += ents[i].size()
	}
	pr.sentEntries(last, len(ents), bytes)
	return true
}

// sendSnapshot sends InstallSnapshot (§7) to a follower whose next entries are
// compacted. If the storage is still loading the snapshot's data
// (ErrSnapshotTemporarilyUnavailable, see SnapshotLoader) nothing is sent and the
// follower stays in probe: its next heartbeat answer asks again, so the run loop
// never waits for the snapshot to be read.
func (r *raft) sendSnapshot(to uint64, pr *progress) bool {
	if !pr.recentActive {
		// Do not ship a snapshot to a node we have not heard from lately.
		return false
	}
	snap, err := r.log.snapshot()
	if errors.Is(err, ErrSnapshotTemporarilyUnavailable) {
		r.logger.Debug("raft: snapshot for follower not loaded yet; retrying on its next heartbeat answer",
			"term", r.term, "to", to, "match", pr.match, "next", pr.next)
		return false
	}
	if err != nil {
		panic("raft: snapshot unavailable while the log is compacted: " + err.Error())
	}
	if snap.IsEmpty() {
		panic("raft: log compacted but storage holds no snapshot")
	}
	r.logger.Info("raft: sending snapshot", "term", r.term, "to", to, "snapshot_index", snap.Index,
		"match", pr.match, "next", pr.next)
	pr.becomeSnapshot(snap.Index)
	r.send(Message{To: to, Type: MsgSnap, Snapshot: &snap})
	return true
}

// bcastHeartbeat sends heartbeats carrying ctx, the newest pending ReadIndex request.
func (r *raft) bcastHeartbeat(ctx []byte) {
	for _, id := range r.progressIDs {
		if id != r.id {
			r.sendHeartbeat(id, ctx)
		}
	}
}

func (r *raft) sendHeartbeat(id uint64, ctx []byte) {
	// A follower may not commit past what it is known to hold: send
	// min(matchIndex, commitIndex).
	pr := r.progress[id]
	commit := min(pr.match, r.log.committed)
	r.send(Message{To: id, Type: MsgHeartbeat, Commit: commit, Context: ctx})
	pr.sentCommit = max(pr.sentCommit, commit)
}

// readHeartbeat starts the heartbeat round of a ReadIndex request. Thesis §6.4 needs
// answers from a majority, not from every follower, so when the last round's quorum
// is known (readPeers: the followers that completed it) and still makes a quorum of
// the voters, only they are asked; a 3-voter leader then sends one heartbeat a round
// instead of two, and the slower follower no longer wakes to answer a round that
// was already over. If one of them does not answer, the next regular heartbeat,
// which carries the newest pending request to every follower (tickHeartbeat), lets
// any quorum complete the round, and its answerers become the new readPeers: a lost
// follower delays one round by at most a heartbeat interval, and by less where the
// Node hedges (hedgeRead).
func (r *raft) readHeartbeat(ctx []byte) {
	if r.readIndexToAll || !r.readPeersQuorum() {
		r.readAsked = r.readAsked[:0]
		r.bcastHeartbeat(ctx)
		return
	}
	r.readAsked = append(r.readAsked[:0], r.readPeers...)
	for _, id := range r.readPeers {
		r.sendHeartbeat(id, ctx)
	}
}

// readToHedge returns the context of the oldest ReadIndex request this leader waits
// on if a hedge could complete it sooner, that is if the newest round asked readPeers
// alone; nil otherwise. An answer to the newest round releases every older request.
func (r *raft) readToHedge() []byte {
	if r.state != StateLeader || len(r.readAsked) == 0 || len(r.reads.pending) == 0 {
		return nil
	}
	return r.reads.pending[0].req.Context
}

// hedgeRead asks the followers that the newest pending ReadIndex round skipped
// (readHeartbeat asked readPeers alone), so that any quorum can complete it: a
// slow or lost follower of the last quorum then holds reads up only until the
// Node's hedge, not until the next heartbeat.
func (r *raft) hedgeRead() {
	ctx := r.reads.lastContext()
	if r.state != StateLeader || ctx == nil || len(r.readAsked) == 0 {
		return
	}
	for _, id := range r.progressIDs {
		if id != r.id && !slices.Contains(r.readAsked, id) {
			r.sendHeartbeat(id, ctx)
		}
	}
	r.readAsked = r.readAsked[:0]
}

// readPeersQuorum reports whether readPeers are all still voters and, with the
// leader, a quorum of them: a configuration change since may have removed one, or
// need more.
func (r *raft) readPeersQuorum() bool {
	if len(r.readPeers) == 0 || !slices.Contains(r.conf.Voters, r.id) {
		return false
	}
	for _, id := range r.readPeers {
		if id == r.id || !slices.Contains(r.conf.Voters, id) || r.progress[id] == nil {
			return false
		}
	}
	return 1+len(r.readPeers) >= r.quorum()
}

// maybeCommit sets commitIndex to the highest index replicated on a majority of the
// voters, if that entry is of the current term (§5.4.2, Figure 8). Learners'
// acknowledgements never count, nor does the leader's own copy if it is not a voter
// (a leader removing itself, thesis §4.2.2).
func (r *raft) maybeCommit() bool {
	matches := r.matchBuf[:0]
	for _, id := range r.conf.Voters {
		matches = append(matches, r.progress[id].match)
	}
	r.matchBuf = matches
	if len(matches) == 0 {
		return false
	}
	slices.Sort(matches)
	// With n sorted ascending, the entry at n-quorum is held by a quorum.
	majorityMatch := matches[len(matches)-r.quorum()]
	return r.log.maybeCommit(majorityMatch, r.term)
}

func (r *raft) committedEntryInCurrentTerm() bool {
	return zeroTermOnOutOfRange(r.log.term(r.log.committed)) == r.term
}

func stepLeader(r *raft, m Message) error {
	switch m.Type {
	case MsgBeat:
		r.bcastHeartbeat(r.reads.lastContext())
		return nil
	case MsgProp:
		// Proposals forwarded by followers: each must be a command within the
		// message size limit; the leader assigns term and index.
		if r.leadTransferee != None {
			return ErrProposalDropped
		}
		ents := make([]Entry, 0, len(m.Entries))
		for _, e := range m.Entries {
			if e.size() <= r.maxMsgSize {
				ents = append(ents, Entry{Type: EntryCommand, Data: e.Data})
			}
		}
		if len(ents) == 0 {
			return nil
		}
		if err := r.appendEntries(ents); err != nil {
			return err
		}
		if pr := r.progress[m.From]; pr != nil {
			pr.awaitsCommit = r.log.lastIndex()
		}
		return nil
	case MsgReadIndex:
		return r.handleReadIndex(m)
	}

	pr := r.progress[m.From]
	if pr == nil {
		return nil
	}
	switch m.Type {
	case MsgAppResp:
		pr.recentActive = true
		if m.Reject {
			if pr.maybeDecrTo(m.Index, r.fastBackupNext(m)) {
				r.sendAppend(m.From)
			}
			return nil
		}
		wasPaused := pr.isPaused()
		if !pr.maybeUpdate(m.Index) {
			return nil
		}
		switch pr.state {
		case progressProbe:
			pr.becomeReplicate()
		case progressSnapshot:
			if pr.match >= pr.pendingSnapshot {
				pr.becomeProbe()
				pr.becomeReplicate()
			}
		case progressReplicate:
			pr.inflights.freeLE(m.Index)
		}
		if r.maybeCommit() {
			r.noteWritePeers(m.From)
			r.commitAdvanced()
			if r.state != StateLeader {
				return nil // it committed its own removal and stepped down
			}
		} else if wasPaused {
			r.sendAppend(m.From)
		}
		if r.deferringAppends() && !slices.Contains(r.writePeers, m.From) && !r.catchingUp(pr) {
			// Its next entries go with the next SendCommit, gathered.
			r.deferAppend(m.From)
		} else {
			// Keep the pipe full while the follower lags and flow control allows.
			for r.maybeSendAppend(m.From, false) {
			}
		}
		r.maybeSendTimeoutNow(m.From)
	case MsgHeartbeatResp:
		pr.recentActive = true
		pr.probeSent = false
		if pr.state == progressReplicate && pr.inflights.full() {
			// The follower is alive but acknowledged nothing in flight: the appends
			// were probably lost. Free one slot so an append goes out; if it leaves
			// a gap the follower rejects it and we fall back to probing.
			pr.inflights.freeFirst()
		}
		if pr.state == progressSnapshot {
			pr.snapshotWaitTicks += r.heartbeatTicks
			if pr.snapshotWaitTicks >= r.electionTicks {
				// No answer to the snapshot for an election timeout: presume it lost.
				pr.becomeProbe()
			}
		}
		if pr.match < r.log.lastIndex() {
			r.sendAppend(m.From)
		}
		// A MsgTimeoutNow can be lost like any message: repeat it while the
		// transfer lasts.
		r.maybeSendTimeoutNow(m.From)
		if len(m.Context) > 0 {
			r.ackRead(m.From, m.Context)
		}
	case MsgSnapStatus:
		if pr.state != progressSnapshot {
			return nil
		}
		if m.Reject {
			pr.pendingSnapshot = 0
		}
		pr.becomeProbe()
		// Wait for a heartbeat answer before probing again.
		pr.probeSent = true
	case MsgUnreachable:
		if pr.state == progressReplicate {
			pr.becomeProbe()
		}
	}
	return nil
}

// fastBackupNext is the leader's half of the fast back-up: given a rejection that names
// the follower's conflicting term and the first index it holds of that term, the next
// index to try is just past our last entry of that term if we have it, else the
// follower's first index of the term.
func (r *raft) fastBackupNext(m Message) uint64 {
	if m.LogTerm == 0 {
		return max(m.RejectHint, 1)
	}
	if i := r.log.lastIndexOfTerm(min(m.Index, r.log.lastIndex()), m.LogTerm); i > 0 {
		return i + 1
	}
	return max(m.RejectHint, 1)
}

// handleReadIndex answers a linearizable read request (thesis §6.4): note the commit
// index, confirm leadership with a heartbeat round, then release the read point.
func (r *raft) handleReadIndex(m Message) error {
	if !r.committedEntryInCurrentTerm() {
		// Until the no-op of this term commits, our commit index may lag what an
		// earlier leader committed.
		if m.From != r.id && m.From != None {
			r.send(Message{To: m.From, Type: MsgReadIndexResp, Reject: true, Context: m.Context})
		}
		return ErrReadIndexNotReady
	}
	if len(r.conf.Voters) == 1 && r.conf.Voters[0] == r.id {
		r.releaseRead(m, r.log.committed)
		return nil
	}
	if !r.reads.add(m, r.log.committed, r.id) {
		return ErrProposalDropped
	}
	r.readHeartbeat(m.Context)
	return nil
}

func (r *raft) ackRead(from uint64, ctx []byte) {
	released := r.reads.ack(from, ctx, r.hasQuorum)
	if len(released) > 0 {
		// The followers that made this round's quorum are asked first next time.
		r.readPeers = r.readPeers[:0]
		for _, id := range r.conf.Voters {
			if id != r.id && released[len(released)-1].acks[id] {
				r.readPeers = append(r.readPeers, id)
			}
		}
	}
	for _, rs := range released {
		r.releaseRead(rs.req, rs.index)
	}
}

// hasQuorum reports whether the nodes in acks include a majority of the voters: a
// learner's answer confirms nothing about leadership.
func (r *raft) hasQuorum(acks map[uint64]bool) bool {
	n := 0
	for _, id := range r.conf.Voters {
		if acks[id] {
			n++
		}
	}
	return n >= r.quorum()
}

func (r *raft) releaseRead(req Message, index uint64) {
	if req.From == None || req.From == r.id {
		r.readStates = append(r.readStates, ReadState{Index: index, RequestCtx: req.Context})
		return
	}
	if pr := r.progress[req.From]; pr != nil && pr.sentCommit < index {
		// It serves the read once it has applied index: entries held back from it
		// (sendCommit) would hold the read too.
		r.sendAppend(req.From)
	}
	r.send(Message{To: req.From, Type: MsgReadIndexResp, Index: index, Context: req.Context})
}

// readQueue holds ReadIndex requests waiting for a heartbeat round to confirm that
// the leader is still the leader. Requests are confirmed in order: an acknowledgement
// of one confirms every request queued before it too.
type readQueue struct {
	pending []pendingRead
	limit   int
}

type pendingRead struct {
	req   Message
	index uint64
	acks  map[uint64]bool
}

func (q *readQueue) add(req Message, index, self uint64) bool {
	if q.limit > 0 && len(q.pending) >= q.limit {
		return false
	}
	q.pending = append(q.pending, pendingRead{req: req, index: index, acks: map[uint64]bool{self: true}})
	return true
}

func (q *readQueue) lastContext() []byte {
	if len(q.pending) == 0 {
		return nil
	}
	return q.pending[len(q.pending)-1].req.Context
}

// ack records that from answered the heartbeat carrying ctx and returns the requests
// it releases: those queued up to the one whose acknowledgements hasQuorum accepts.
func (q *readQueue) ack(from uint64, ctx []byte, hasQuorum func(acks map[uint64]bool) bool) []pendingRead {
	i := slices.IndexFunc(q.pending, func(p pendingRead) bool { return bytes.Equal(p.req.Context, ctx) })
	if i < 0 {
		return nil
	}
	q.pending[i].acks[from] = true
	if !hasQuorum(q.pending[i].acks) {
		return nil
	}
	released := slices.Clone(q.pending[:i+1])
	q.pending = slices.Delete(q.pending, 0, i+1)
	return released
}

func (q *readQueue) reset() { q.pending = q.pending[:0] }
