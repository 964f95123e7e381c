package raft

import (
	"fmt"
	"log/slog"
	"math/rand"
	"slices"
)

type stepFunc func(r *raft, m Message) error

// raft is the consensus state machine of one node: a pure function of Tick, Step and
// Propose calls. Its outputs (messages, entries to persist, read states) accumulate
// until the RawNode hands them out in a Ready.
type raft struct {
	id uint64

	// term and vote are Figure 2's currentTerm and votedFor; they reach stable storage
	// (through Ready.HardState) before any message that depends on them is sent.
	term uint64
	vote uint64

	log *raftLog

	// conf is the configuration in effect: the latest in the log, committed or not
	// (thesis §4.1; confchange.go argues why that is safe). confs is every
	// configuration the log holds, for truncations and snapshots; bootstrap is
	// Config.Peers as a configuration, what a Snapshot's empty Membership means.
	conf      Membership
	confs     confHistory
	bootstrap Membership
	// progressIDs lists, ascending, the nodes the leader tracks: every member of conf,
	// this node, and while the change that removed them is uncommitted, the members
	// it removed (so that they hear of it). Every loop over the cluster runs over a
	// sorted list, in the same order on every run (design rule 2).
	progressIDs []uint64
	progress    map[uint64]*progress
	votes       map[uint64]bool
	// matchBuf is maybeCommit's scratch space, reused on every acknowledgement.
	matchBuf []uint64

	state StateType
	lead  uint64
	step  stepFunc
	tick  func()

	msgs       []Message
	readStates []ReadState
	reads      readQueue
	// readPeers are the followers whose answers completed the last ReadIndex
	// round's quorum: the next round's heartbeats go to them alone (readHeartbeat).
	readPeers []uint64
	// readAsked are the followers the newest round's heartbeats went to when they
	// went to readPeers alone; empty when every follower was asked (hedgeRead).
	readAsked []uint64

	// electionElapsed counts ticks since the last reset: since the leader was last
	// heard from (follower), since the election began (candidate), or since the last
	// CheckQuorum (leader).
	electionElapsed  int
	heartbeatElapsed int
	// randomizedElectionTimeout is drawn from [electionTicks, 2*electionTicks) on
	// every reset of the election timer (design rule 3).
	randomizedElectionTimeout int
	electionTicks             int
	heartbeatTicks            int

	preVote        bool
	checkQuorum    bool
	readIndexToAll bool
	// appendToAll: Config.AppendToAll. writePeers are the followers whose
	// acknowledgements completed the last commit's quorum: new entries go to them
	// at once, and to the others with the next SendCommit (appendsDeferred set).
	appendToAll     bool
	writePeers      []uint64
	appendsDeferred bool
	// deferredFrom is the leader's last index when appendsDeferred was last set;
	// holdingAppends is set while a SendCommit holds the deferred entries back
	// (see holdDeferred).
	deferredFrom   uint64
	holdingAppends bool

	maxMsgSize         uint64
	maxInflight        int
	maxInflightBytes   uint64
	maxUncommittedSize uint64
	// uncommittedSize is the weight of entries appended by this leader and not yet
	// applied; proposals past maxUncommittedSize are refused.
	uncommittedSize uint64
	// needBroadcast is set by proposals; appends go out once, at the next Ready, so a
	// burst of proposals travels in one message per follower.
	needBroadcast bool
	// commitUnsent is set when the commit index advanced and some follower was
	// not told (see bcastCommit); SendCommit clears it.
	commitUnsent bool

	// leadTransferee is the voter this leader is handing leadership to (thesis
	// §3.10), or None; transferElapsed counts the ticks since the transfer began,
	// and past an election timeout it is abandoned.
	leadTransferee  uint64
	transferElapsed int

	// skipOwnTermRule, set only by tests, lets a leader propose a configuration
	// change before it has committed an entry of its term: the single-server
	// algorithm without the fix of Ongaro's 2015 post, to show the bug it fixes.
	skipOwnTermRule bool

	rand   *rand.Rand
	logger *slog.Logger
}

func newRaft(c Config) (*raft, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	log, err := newLog(c.Storage, c.MaxCommittedBytesPerReady)
	if err != nil {
		return nil, fmt.Errorf("raft: reading storage: %w", err)
	}
	hs, err := c.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: reading HardState: %w", err)
	}
	r := &raft{
		id:                 c.ID,
		log:                log,
		bootstrap:          Membership{Voters: slices.Sorted(slices.Values(c.Peers))},
		progress:           make(map[uint64]*progress, len(c.Peers)),
		votes:              make(map[uint64]bool, len(c.Peers)),
		electionTicks:      c.ElectionTicks,
		heartbeatTicks:     c.HeartbeatTicks,
		preVote:            !c.DisablePreVote,
		checkQuorum:        !c.DisableCheckQuorum,
		readIndexToAll:     c.ReadIndexToAll,
		appendToAll:        c.AppendToAll,
		maxMsgSize:         c.MaxSizePerMsg,
		maxInflight:        c.MaxInflightMsgs,
		maxInflightBytes:   c.MaxInflightBytes,
		maxUncommittedSize: c.MaxUncommittedEntriesBytes,
		rand:               rand.New(rand.NewSource(c.RandSeed)),
		logger:             c.Logger.With("raft_id", fmt.Sprintf("%x", c.ID)),
	}
	r.reads.limit = c.MaxPendingProposals
	if err := r.loadConf(c.MaxSizePerMsg); err != nil {
		return nil, err
	}
	if !hs.IsEmpty() {
		if hs.Commit > log.lastIndex() {
			return nil, fmt.Errorf("raft: stored commit index %d is past the stored log's last index %d; the storage is corrupt",
				hs.Commit, log.lastIndex())
		}
		r.term, r.vote = hs.Term, hs.Vote
		// The commit index is persisted lazily (Node skips a write that would change
		// only it), so it may lag the snapshot, which is committed by definition.
		log.committed = max(hs.Commit, log.committed)
	}
	if c.Applied > 0 {
		if c.Applied > log.lastIndex() {
			return nil, fmt.Errorf("raft: Config.Applied %d is past the stored log's last index %d; the application's state is newer than the log",
				c.Applied, log.lastIndex())
		}
		// What the application applied was committed, even if the lazily written
		// commit index had not caught up when the node stopped.
		log.committed = max(log.committed, c.Applied)
		if c.Applied > log.applied {
			log.applied, log.applying = c.Applied, c.Applied
		}
	}
	r.becomeFollower(r.term, None)
	r.logger.Info("raft: node starting", "term", r.term, "commit", log.committed,
		"applied", log.applied, "last_index", log.lastIndex(), "voters", r.conf.Voters, "learners", r.conf.Learners)
	return r, nil
}

// quorum is the size of a majority of the voters.
func (r *raft) quorum() int { return len(r.conf.Voters)/2 + 1 }

func (r *raft) softState() SoftState { return SoftState{Lead: r.lead, State: r.state} }

func (r *raft) hardState() HardState {
	return HardState{Term: r.term, Vote: r.vote, Commit: r.log.committed}
}

// isVoter reports whether id is a voter in the configuration in effect: only voters
// campaign, and only their votes and acknowledgements count.
func (r *raft) isVoter(id uint64) bool { return r.conf.IsVoter(id) }

// send queues m, stamping it with our id and, for messages of a term, our term.
func (r *raft) send(m Message) {
	m.From = r.id
	if m.Term == 0 && m.Type != MsgProp && m.Type != MsgReadIndex {
		// Vote requests carry the term they campaign for and votes carry the
		// requester's term; every other message carries our own.
		m.Term = r.term
	}
	r.msgs = append(r.msgs, m)
}

// resetElectionTimer restarts the election timer and draws a fresh randomized timeout,
// so that split votes do not repeat in lockstep (§5.2).
func (r *raft) resetElectionTimer() {
	r.electionElapsed = 0
	r.randomizedElectionTimeout = r.electionTicks + r.rand.Intn(r.electionTicks)
}

func (r *raft) reset(term uint64) {
	if r.term != term {
		r.term = term
		r.vote = None
	}
	r.lead = None
	r.resetElectionTimer()
	r.heartbeatElapsed = 0
	clear(r.votes)
	r.reads.reset()
	r.readPeers = r.readPeers[:0]
	r.readAsked = r.readAsked[:0]
	r.writePeers = r.writePeers[:0]
	r.appendsDeferred = false
	r.deferredFrom, r.holdingAppends = 0, false
	r.uncommittedSize = 0
	r.needBroadcast = false
	r.commitUnsent = false
	r.leadTransferee, r.transferElapsed = None, 0
	for _, id := range r.progressIDs {
		pr := r.progress[id]
		pr.resetState(progressProbe)
		pr.match = 0
		pr.sentCommit, pr.awaitsCommit = 0, 0
		pr.next = r.log.lastIndex() + 1
		pr.recentActive = false
	}
}

func (r *raft) becomeFollower(term, lead uint64) {
	r.step = stepFollower
	r.reset(term)
	r.tick = r.tickElection
	r.lead = lead
	r.state = StateFollower
}

func (r *raft) becomePreCandidate() {
	if r.state == StateLeader {
		panic("raft: leader cannot become pre-candidate")
	}
	// A pre-candidate changes neither term nor vote (thesis §9.6): that is the point.
	r.step = stepCandidate
	clear(r.votes)
	r.tick = r.tickElection
	r.lead = None
	r.state = StatePreCandidate
	r.logger.Info("raft: became pre-candidate", "term", r.term)
}

func (r *raft) becomeCandidate() {
	if r.state == StateLeader {
		panic("raft: leader cannot become candidate")
	}
	r.step = stepCandidate
	r.reset(r.term + 1)
	r.tick = r.tickElection
	r.vote = r.id
	r.state = StateCandidate
	r.logger.Info("raft: became candidate", "term", r.term)
}

func (r *raft) becomeLeader() {
	if r.state == StateFollower {
		panic("raft: follower cannot become leader without an election")
	}
	r.step = stepLeader
	r.syncProgress()
	r.reset(r.term)
	r.tick = r.tickHeartbeat
	r.lead = r.id
	r.state = StateLeader
	// Followers in probe are found by the first append; the leader itself replicates.
	r.progress[r.id].becomeReplicate()
	r.progress[r.id].recentActive = true
	// A no-op entry of the new term: once it commits, so has every entry before it
	// (§5.4.2), and ReadIndex may name a read point (thesis §6.4).
	r.appendEntries([]Entry{{Type: EntryNoOp}})
	r.logger.Info("raft: became leader", "term", r.term, "last_index", r.log.lastIndex())
}

// tickElection is the tick of followers and candidates.
func (r *raft) tickElection() {
	r.electionElapsed++
	if r.electionElapsed >= r.randomizedElectionTimeout && r.promotable() {
		r.resetElectionTimer()
		_ = r.Step(Message{From: r.id, Type: MsgHup})
	}
}

// tickHeartbeat is the leader's tick.
func (r *raft) tickHeartbeat() {
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.electionElapsed >= r.electionTicks {
		r.electionElapsed = 0
		if r.checkQuorum && !r.quorumActive() {
			// A leader that has not heard from a majority for an election timeout
			// steps down rather than serve stale reads or pile up proposals.
			r.logger.Warn("raft: stepping down, no quorum heard from in an election timeout", "term", r.term)
			r.becomeFollower(r.term, None)
			return
		}
		for _, pr := range r.progress {
			pr.recentActive = false
		}
		r.progress[r.id].recentActive = true
	}
	if r.state != StateLeader {
		return
	}
	r.tickTransfer()
	if r.heartbeatElapsed >= r.heartbeatTicks {
		r.heartbeatElapsed = 0
		r.readAsked = r.readAsked[:0] // the pending round, if any, goes to everyone
		r.bcastHeartbeat(r.reads.lastContext())
	}
}

// quorumActive reports whether a majority of the voters has been heard from since
// the last check (this node counts if it is a voter).
func (r *raft) quorumActive() bool {
	active := 0
	for _, id := range r.conf.Voters {
		if r.progress[id].recentActive {
			active++
		}
	}
	return active >= r.quorum()
}

// Step advances the state machine by one message.
func (r *raft) Step(m Message) error {
	switch {
	case m.Term == 0:
		// Local message, or one that carries no term (MsgProp, MsgReadIndex).
	case m.Term > r.term:
		if m.Type == MsgVote || m.Type == MsgPreVote {
			// While we hear from a live leader, a vote request is most likely from a
			// node that was cut off; ignoring it keeps it from deposing the leader
			// (thesis §4.2.3). A campaign the leader itself asked for (MsgTimeoutNow,
			// §3.10) is the exception.
			if r.checkQuorum && r.lead != None && r.electionElapsed < r.electionTicks && !m.LeaderTransfer {
				r.logger.Debug("raft: ignoring vote request within leader lease",
					"from", m.From, "msg_term", m.Term, "term", r.term)
				return nil
			}
		}
		switch {
		case m.Type == MsgPreVote:
			// A pre-vote never changes our term.
		case m.Type == MsgPreVoteResp && !m.Reject:
			// A granted pre-vote carries the term we would campaign for; the term
			// changes only when the real election starts.
		default:
			r.logger.Info("raft: newer term seen", "from", m.From, "type", m.Type.String(),
				"msg_term", m.Term, "term", r.term)
			if m.Type == MsgApp || m.Type == MsgHeartbeat || m.Type == MsgSnap {
				r.becomeFollower(m.Term, m.From)
			} else {
				r.becomeFollower(m.Term, None)
			}
		}
	case m.Term < r.term:
		if (r.checkQuorum || r.preVote) && (m.Type == MsgHeartbeat || m.Type == MsgApp) {
			// A leader of an older term, cut off from us and unaware: tell it our term
			// so it steps down. Without this, a node that campaigned in vain while
			// partitioned could never be reached (its vote requests are ignored
			// within the lease, and the old leader's appends are ignored here).
			r.send(Message{To: m.From, Type: MsgAppResp})
		} else if m.Type == MsgPreVote {
			r.send(Message{To: m.From, Type: MsgPreVoteResp, Reject: true})
		} else if m.Type == MsgVote {
			// Refused with our term, for the candidate to update itself (Figure 2).
			// Without it, a candidate whose term is behind that of a voter it needs
			// may never learn it: the voter's own vote requests go to the voters of
			// its configuration, which may be stale and not name the candidate.
			r.send(Message{To: m.From, Type: MsgVoteResp, Reject: true})
		}
		return nil
	}

	switch m.Type {
	case MsgHup:
		r.hup()
	case MsgVote, MsgPreVote:
		r.handleVoteRequest(m)
	default:
		return r.step(r, m)
	}
	return nil
}

func (r *raft) hup() {
	if r.state == StateLeader {
		return
	}
	if !r.promotable() {
		return
	}
	if r.preVote {
		r.campaign(MsgPreVote, false)
	} else {
		r.campaign(MsgVote, false)
	}
}

// campaign starts a pre-election (voteType MsgPreVote) or an election (MsgVote). A
// transfer campaign (MsgTimeoutNow) marks its vote requests so that voters answer them
// within a leader's lease.
func (r *raft) campaign(voteType MessageType, transfer bool) {
	var term uint64
	if voteType == MsgPreVote {
		r.becomePreCandidate()
		term = r.term + 1
	} else {
		r.becomeCandidate()
		term = r.term
	}
	if r.poll(r.id, true) {
		r.wonElection()
		return
	}
	lastIndex, lastTerm := r.log.lastIndex(), r.log.lastTerm()
	for _, id := range r.conf.Voters {
		if id == r.id {
			continue
		}
		r.send(Message{To: id, Type: voteType, Term: term, Index: lastIndex, LogTerm: lastTerm, LeaderTransfer: transfer})
	}
}

// poll records a vote and reports whether the election is won; a lost election turns
// the node back into a follower. Only the votes of voters in this node's configuration
// count (a learner answers vote requests, since it may have been promoted without
// knowing yet, but its vote is counted only by a candidate that knows it is a voter).
func (r *raft) poll(id uint64, granted bool) (won bool) {
	if _, ok := r.votes[id]; !ok {
		r.votes[id] = granted
	}
	yes, no := 0, 0
	for voter, v := range r.votes {
		if !r.isVoter(voter) {
			continue
		}
		if v {
			yes++
		} else {
			no++
		}
	}
	if no >= r.quorum() {
		r.becomeFollower(r.term, None)
	}
	return yes >= r.quorum()
}

func (r *raft) wonElection() {
	if r.state == StatePreCandidate {
		r.campaign(MsgVote, false)
		return
	}
	// The no-op appended by becomeLeader goes out at the next Ready.
	r.becomeLeader()
}

// handleVoteRequest answers RequestVote and PreVote (§5.2, §5.4.1, thesis §9.6).
func (r *raft) handleVoteRequest(m Message) {
	respType := MsgVoteResp
	if m.Type == MsgPreVote {
		respType = MsgPreVoteResp
	}
	// We may vote for m.From if we already did in this term, or have voted for no one
	// and know no leader; a pre-vote for a later term binds nothing.
	canVote := r.vote == m.From ||
		(r.vote == None && r.lead == None) ||
		(m.Type == MsgPreVote && m.Term > r.term)
	if canVote && r.log.isUpToDate(m.Index, m.LogTerm) {
		// The answer carries the term asked for, so a pre-candidate counts it.
		r.send(Message{To: m.From, Type: respType, Term: m.Term})
		if m.Type == MsgVote {
			r.resetElectionTimer()
			r.vote = m.From
		}
		return
	}
	r.send(Message{To: m.From, Type: respType, Term: r.term, Reject: true})
}

func stepFollower(r *raft, m Message) error {
	switch m.Type {
	case MsgProp:
		// A proposal forwarded by a node that thought we led: drop it rather than
		// pass it around; the proposer retries.
		return ErrNotLeader
	case MsgApp:
		r.resetElectionTimer()
		r.lead = m.From
		r.handleAppendEntries(m)
	case MsgHeartbeat:
		r.resetElectionTimer()
		r.lead = m.From
		r.handleHeartbeat(m)
	case MsgSnap:
		r.resetElectionTimer()
		r.lead = m.From
		r.handleSnapshot(m)
	case MsgReadIndex:
		if r.lead == None {
			return ErrProposalDropped
		}
		m.To = r.lead
		r.send(m)
	case MsgReadIndexResp:
		// A refusal (the leader has not committed in its term yet) comes through as
		// index 0, which is never a valid read point.
		index := m.Index
		if m.Reject {
			index = 0
		}
		r.readStates = append(r.readStates, ReadState{Index: index, RequestCtx: m.Context})
	case MsgTimeoutNow:
		r.handleTimeoutNow(m)
	}
	return nil
}

func stepCandidate(r *raft, m Message) error {
	respType := MsgVoteResp
	if r.state == StatePreCandidate {
		respType = MsgPreVoteResp
	}
	switch m.Type {
	case MsgProp:
		return ErrNotLeader
	case MsgReadIndex:
		return ErrProposalDropped
	case MsgApp:
		r.becomeFollower(m.Term, m.From)
		r.handleAppendEntries(m)
	case MsgHeartbeat:
		r.becomeFollower(m.Term, m.From)
		r.handleHeartbeat(m)
	case MsgSnap:
		r.becomeFollower(m.Term, m.From)
		r.handleSnapshot(m)
	case respType:
		if r.poll(m.From, !m.Reject) {
			r.wonElection()
		}
	}
	return nil
}

// handleAppendEntries is the receiver's implementation of AppendEntries (Figure 2,
// §5.3), with the fast back-up of the conflicting term on rejection.
func (r *raft) handleAppendEntries(m Message) {
	if m.Index < r.log.committed {
		// Everything up to our commit index already matches the leader's log (Log
		// Matching): say so, and the leader moves on.
		r.send(Message{To: m.From, Type: MsgAppResp, Index: r.log.committed})
		return
	}
	if lastNew, conflict, ok := r.log.maybeAppend(m.Index, m.LogTerm, m.Commit, m.Entries); ok {
		if conflict != 0 {
			r.confReplaced(conflict, m.Entries[conflict-m.Entries[0].Index:])
		}
		r.send(Message{To: m.From, Type: MsgAppResp, Index: lastNew})
		return
	}
	// Reject, telling the leader where our log can match: the term we hold at the
	// rejected index and the first index of that term, or our log's end if it is
	// shorter. The leader then skips a whole term per round trip.
	resp := Message{To: m.From, Type: MsgAppResp, Index: m.Index, Reject: true}
	if last := r.log.lastIndex(); m.Index > last {
		resp.RejectHint = last + 1
	} else {
		conflictTerm := zeroTermOnOutOfRange(r.log.term(m.Index))
		resp.LogTerm = conflictTerm
		resp.RejectHint = r.log.firstIndexOfTerm(m.Index, conflictTerm)
	}
	r.send(resp)
}

func (r *raft) handleHeartbeat(m Message) {
	// The leader sends min(matchIndex, commitIndex), so this never passes our log end
	// in what the leader knows we hold.
	r.log.commitTo(min(m.Commit, r.log.lastIndex()))
	r.send(Message{To: m.From, Type: MsgHeartbeatResp, Context: m.Context})
}

func (r *raft) handleSnapshot(m Message) {
	if m.Snapshot == nil {
		return
	}
	s := *m.Snapshot
	if r.restore(s) {
		r.logger.Info("raft: restored snapshot", "term", r.term, "snapshot_index", s.Index, "snapshot_term", s.Term)
		r.send(Message{To: m.From, Type: MsgAppResp, Index: r.log.lastIndex()})
		return
	}
	r.send(Message{To: m.From, Type: MsgAppResp, Index: r.log.committed})
}

// restore installs a snapshot (§7) unless the log already holds its last entry, in which
// case the entries after it are kept and only the commit index moves.
func (r *raft) restore(s Snapshot) bool {
	if s.Index <= r.log.committed {
		return false
	}
	if r.log.matchTerm(s.Index, s.Term) {
		r.log.commitTo(s.Index)
		return false
	}
	r.log.restore(s)
	r.confRestored(s)
	return true
}
