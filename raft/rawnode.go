package raft

import (
	"errors"
	"fmt"
	"time"
)

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
	// CommittedEntries are committed and ready to apply, in index order. They are
	// also durable in this node's own log (written by an earlier Ready, and reported
	// by Advance or AckDurable), so the application may apply them while this
	// Ready's write runs, and a state it makes durable never gets ahead of the log.
	CommittedEntries []Entry
	// Messages go out only after HardState, Entries and Snapshot are durable.
	Messages []Message

	// epoch is the log's epoch when the Ready was made (raftLog.epoch).
	epoch uint64
}

// DurableMark names a Ready's write of its Entries for AckDurable: their last entry,
// and which version of the log they were written for. Take it from the Ready
// (Ready.DurableMark); a mark made otherwise is never taken as durable.
type DurableMark struct {
	Index, Term uint64
	epoch       uint64
}

// DurableMark is the mark of rd's write of its Entries; zero if it has none.
func (rd *Ready) DurableMark() DurableMark {
	n := len(rd.Entries)
	if n == 0 {
		return DurableMark{}
	}
	return DurableMark{Index: rd.Entries[n-1].Index, Term: rd.Entries[n-1].Term, epoch: rd.epoch}
}

// Status is a snapshot of a core's state for observers and tests. (MembershipStatus
// has the configuration and, at a leader, each follower's progress.)
type Status struct {
	ID        uint64
	Term      uint64
	Vote      uint64
	Commit    uint64
	Applied   uint64
	LastIndex uint64
	Lead      uint64
	State     StateType
	// LeadTransferee is the voter a leader is handing leadership to, or None.
	LeadTransferee uint64
}

// RawNode drives one core: the caller feeds it ticks, messages and proposals, and
// carries out each Ready it hands back. It is not safe for concurrent use; Node wraps it
// with a goroutine, a clock, Storage and a Transport.
type RawNode struct {
	raft       *raft
	prevSoft   SoftState
	prevHard   HardState
	maxEntSize uint64
	// holdCommitted keeps committed entries out of Ready while the Node's apply queue
	// is full.
	holdCommitted bool
}

// NewRawNode returns a core that resumes from what cfg.Storage holds.
func NewRawNode(cfg Config) (*RawNode, error) {
	r, err := newRaft(cfg)
	if err != nil {
		return nil, err
	}
	return &RawNode{raft: r, prevSoft: r.softState(), prevHard: r.hardState(), maxEntSize: r.maxMsgSize}, nil
}

// Tick advances the logical clock by one tick.
func (rn *RawNode) Tick() { rn.raft.tick() }

// Campaign starts an election now, as if the election timer had fired.
func (rn *RawNode) Campaign() error {
	return rn.raft.Step(Message{Type: MsgHup, From: rn.raft.id})
}

// Propose appends a command to the leader's log and returns the index and term it will
// have if it commits. A non-leader returns ErrNotLeader; a leader handing leadership
// over, ErrProposalDropped; the limits of Config, ErrEntryTooLarge or
// ErrTooManyUncommitted.
func (rn *RawNode) Propose(data []byte) (index, term uint64, err error) {
	r := rn.raft
	if r.state != StateLeader {
		return 0, 0, ErrNotLeader
	}
	if r.leadTransferee != None {
		return 0, 0, ErrProposalDropped
	}
	e := Entry{Type: EntryCommand, Data: data}
	if e.size() > rn.maxEntSize {
		return 0, 0, ErrEntryTooLarge
	}
	ents := []Entry{e}
	if err := r.appendEntries(ents); err != nil {
		return 0, 0, err
	}
	return ents[0].Index, ents[0].Term, nil
}

// Forward proposes data from any node: the leader appends it as Propose does, and a
// follower sends it to the leader it knows. No index is known until the entry
// commits, so the caller recognises its command in the committed entries by content.
// It returns ErrProposalDropped when no leader is known. A forwarded proposal can be
// lost on the way like any message: the caller retries after a timeout, and
// deduplicates if retries must not apply twice.
func (rn *RawNode) Forward(data []byte) error {
	r := rn.raft
	if r.state == StateLeader {
		_, _, err := rn.Propose(data)
		return err
	}
	if r.lead == None {
		return ErrProposalDropped
	}
	if e := (Entry{Data: data}); e.size() > rn.maxEntSize {
		return ErrEntryTooLarge
	}
	r.send(Message{To: r.lead, Type: MsgProp, Entries: []Entry{{Type: EntryCommand, Data: data}}})
	return nil
}

// Step delivers a message from a peer. Local message types are refused: use Tick and
// Campaign instead.
func (rn *RawNode) Step(m Message) error {
	if m.Type.IsLocal() {
		return fmt.Errorf("raft: Step given local message type %s; use Tick, Campaign or the Report methods", m.Type)
	}
	if m.Type >= numMessageTypes {
		return fmt.Errorf("raft: Step given unknown message type %d", m.Type)
	}
	if m.To != rn.raft.id {
		return nil // misaddressed: not ours to act on
	}
	// A message from a node outside this node's configuration is stepped all the
	// same: the configuration may be the one that is behind (a new member hears
	// from a leader before it learns the membership, a voter from a candidate it
	// has not yet learned was added). A removed node's vote requests are kept from
	// disrupting by PreVote and CheckQuorum (thesis §4.2.3), its own campaigning by
	// never campaigning outside the configuration.
	if err := checkNetworkMessage(&m); err != nil {
		return err
	}
	return rn.raft.Step(m)
}

// ErrMalformedMessage: a message from the network breaks the protocol's rules (a
// term of 0, entries not numbered in sequence). It is dropped; a correct peer never
// sends one.
var ErrMalformedMessage = errors.New("raft: malformed message")

// checkNetworkMessage rejects messages no correct peer sends, before they reach the
// core, which trusts the shape of what it is given.
func checkNetworkMessage(m *Message) error {
	if m.From == None {
		return fmt.Errorf("%w: %s from node 0", ErrMalformedMessage, m.Type)
	}
	if m.Term == 0 && m.Type != MsgProp && m.Type != MsgReadIndex {
		// Only proposals and read requests travel without a term; anything else with
		// term 0 would be taken for a local message and could move the term back.
		return fmt.Errorf("%w: %s from %d has term 0", ErrMalformedMessage, m.Type, m.From)
	}
	if m.Type == MsgApp {
		prevTerm := m.LogTerm
		for i, e := range m.Entries {
			if e.Index != m.Index+1+uint64(i) || e.Term < prevTerm || e.Term > m.Term || e.Term == 0 {
				return fmt.Errorf("%w: MsgApp from %d after (%d, %d) holds entry %d (%d, %d) out of sequence",
					ErrMalformedMessage, m.From, m.Index, m.LogTerm, i, e.Index, e.Term)
			}
			if e.Type == EntryConfChange {
				// The core takes a configuration from the entry the moment it
				// appends it, so it must be one.
				var ce ConfEntry
				if err := ce.Unmarshal(e.Data); err != nil {
					return fmt.Errorf("%w: MsgApp from %d holds configuration entry %d that does not decode: %v",
						ErrMalformedMessage, m.From, e.Index, err)
				}
			}
			prevTerm = e.Term
		}
	}
	if m.Type == MsgSnap && m.Snapshot != nil && (m.Snapshot.Index == 0 || m.Snapshot.Term == 0 || m.Snapshot.Term > m.Term) {
		return fmt.Errorf("%w: MsgSnap from %d with snapshot (%d, %d) in term %d",
			ErrMalformedMessage, m.From, m.Snapshot.Index, m.Snapshot.Term, m.Term)
	}
	if m.Type == MsgSnap && m.Snapshot != nil {
		if err := m.Snapshot.Membership.Validate(); err != nil {
			return fmt.Errorf("%w: MsgSnap from %d: %v", ErrMalformedMessage, m.From, err)
		}
	}
	return nil
}

// ReadIndex asks for a linearizable read point; rctx identifies the request and comes
// back in the Ready.ReadStates entry that answers it.
func (rn *RawNode) ReadIndex(rctx []byte) error {
	return rn.raft.Step(Message{Type: MsgReadIndex, From: rn.raft.id, Context: rctx})
}

// HasReady reports whether Ready would return anything to do.
func (rn *RawNode) HasReady() bool {
	r := rn.raft
	if r.needBroadcast || len(r.msgs) > 0 || len(r.readStates) > 0 ||
		len(r.log.unstable.entries) > 0 || r.log.unstable.snapshot != nil ||
		(!rn.holdCommitted && r.log.hasNextCommittedEnts()) {
		return true
	}
	if r.softState() != rn.prevSoft {
		return true
	}
	hs := r.hardState()
	return !hs.IsEmpty() && hs != rn.prevHard
}

// Ready returns what the caller must persist, send and apply, and hands it over:
// the next Ready holds only what is new. Call Advance once it is done.
func (rn *RawNode) Ready() Ready {
	r := rn.raft
	r.flushBroadcast()
	rd := Ready{
		Entries:    r.log.unstable.entries,
		Messages:   r.msgs,
		ReadStates: r.readStates,
		epoch:      r.log.epoch,
	}
	if !rn.holdCommitted {
		rd.CommittedEntries = r.log.nextCommittedEnts()
	}
	if r.log.unstable.snapshot != nil {
		rd.Snapshot = *r.log.unstable.snapshot
	}
	if ss := r.softState(); ss != rn.prevSoft {
		rd.SoftState = &ss
		rn.prevSoft = ss
	}
	if hs := r.hardState(); hs != rn.prevHard {
		rd.HardState = hs
		rn.prevHard = hs
	}
	r.msgs = nil
	r.readStates = nil
	if n := len(rd.CommittedEntries); n > 0 {
		r.log.acceptApplying(rd.CommittedEntries[n-1].Index)
	}
	return rd
}

// Advance tells the core that rd has been carried out: its entries and snapshot are
// durable and its committed entries applied.
func (rn *RawNode) Advance(rd Ready) {
	rn.AdvanceQueued(rd)
	if len(rd.Entries) > 0 {
		rn.AckDurable(rd.DurableMark())
	}
}

// AdvanceQueued is Advance for a caller whose storage writes are asynchronous
// (AsyncStorage): rd's entries and HardState are queued and readable from Storage, but
// may not be durable yet. Until they are, the caller holds back every message of rd
// and of later Readies except a leader's appends, heartbeats and snapshots of a term
// already durable (a leader elected by its own vote, the only voter, speaks in the
// Ready that first writes its term), and then reports the last entry written with
// AckDurable.
func (rn *RawNode) AdvanceQueued(rd Ready) {
	r := rn.raft
	if !rd.Snapshot.IsEmpty() {
		r.log.unstable.stableSnapTo(rd.Snapshot.Index)
		r.log.appliedTo(rd.Snapshot.Index)
	}
	if n := len(rd.Entries); n > 0 {
		last := rd.Entries[n-1]
		r.log.unstable.stableTo(last.Index, last.Term)
	}
	if n := len(rd.CommittedEntries); n > 0 {
		r.log.appliedTo(rd.CommittedEntries[n-1].Index)
		r.reduceUncommittedSize(rd.CommittedEntries)
	}
}

// AckDurable records that the write m names (Ready.DurableMark), and every write
// before it, is durable. A leader counts its own copy towards a majority only then
// (Figure 2: a server responds only after persisting; thesis §10.2.1 lets the
// leader's write overlap its sends, not the count). Every node hands committed
// entries to the application only up to what is durable (Ready.CommittedEntries). A
// write whose entries were since replaced, or that came before a change of the log
// that replaced entries, says nothing of the log now and raises nothing.
func (rn *RawNode) AckDurable(m DurableMark) {
	r := rn.raft
	index, term := m.Index, m.Term
	r.log.durableTo(index, term, m.epoch)
	if r.state == StateLeader && r.log.matchTerm(index, term) {
		if r.progress[r.id].maybeUpdate(index) && r.maybeCommit() {
			r.commitAdvanced()
		}
	}
}

// HasUnsentCommit reports whether a leader holds back a commit index, or entries,
// from some follower (see SendCommit).
func (rn *RawNode) HasUnsentCommit() bool { return rn.raft.commitUnsent }

// SendCommit sends the commit index to the followers not yet told it, and the
// entries held back from the followers outside the last commit's quorum (see
// Config.AppendToAll). A leader tells followers of a new commit index with the next
// append it sends them, so that a write costs one message per follower rather than
// two, and sends new entries at once only to that quorum; the application calls
// SendCommit a moment after HasUnsentCommit turns true (the Node after
// CommitDelay), so that the other followers get the entries, and all of them apply,
// without waiting for more writes or the next heartbeat (whose answers also
// bring a lagging follower its entries). It may hold those entries back once
// (HoldsAppends).
func (rn *RawNode) SendCommit() { rn.raft.sendCommit() }

// HoldsAppends reports whether the last SendCommit held the entries deferred for
// the followers outside the last commit's quorum back: HasUnsentCommit stays true,
// and the next SendCommit, SendCommitAfter later, sends them. A SendCommit holds
// them while that quorum keeps up, having committed the entry whose deferral began
// the wait.
func (rn *RawNode) HoldsAppends() bool { return rn.raft.holdingAppends }

// SendCommitAfter is how long the application waits, once HasUnsentCommit turns
// true, before it calls SendCommit: commitDelay (the Node's Config.CommitDelay), or
// four times that after a SendCommit that held appends back (HoldsAppends).
func (rn *RawNode) SendCommitAfter(commitDelay time.Duration) time.Duration {
	if rn.raft.holdingAppends {
		return commitDelay * appendHoldDelays
	}
	return commitDelay
}

// HedgeReadIndex asks every follower that the newest pending ReadIndex round did
// not ask (it asks the last round's quorum alone unless Config.ReadIndexToAll), so
// that any quorum of answers completes it. The Node calls it when the request that
// ReadToHedge names has waited Config.ReadIndexHedgeDelay; it does nothing on a
// follower, with no request pending, or if every follower was asked.
func (rn *RawNode) HedgeReadIndex() { rn.raft.hedgeRead() }

// ReadToHedge returns the context of the oldest ReadIndex request that a leader
// waits on, whatever member it came from, if HedgeReadIndex could complete it
// sooner; nil if there is none or every follower was asked. The context is the
// request's own; callers copy it to keep it.
func (rn *RawNode) ReadToHedge() []byte { return rn.raft.readToHedge() }

// Status returns the core's current state.
func (rn *RawNode) Status() Status {
	r := rn.raft
	return Status{
		ID: r.id, Term: r.term, Vote: r.vote, Commit: r.log.committed, Applied: r.log.applied,
		LastIndex: r.log.lastIndex(), Lead: r.lead, State: r.state, LeadTransferee: r.leadTransferee,
	}
}

// ReportUnreachable tells the leader that a message to id could not be delivered, so it
// stops streaming to it optimistically.
func (rn *RawNode) ReportUnreachable(id uint64) {
	_ = rn.raft.Step(Message{Type: MsgUnreachable, From: id})
}

// ReportSnapshot tells the leader how sending a snapshot to id ended.
func (rn *RawNode) ReportSnapshot(id uint64, failed bool) {
	_ = rn.raft.Step(Message{Type: MsgSnapStatus, From: id, Reject: failed})
}
