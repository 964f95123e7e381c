package raft

import "fmt"

// None is the node id that means "no node": no vote cast, no leader known.
const None uint64 = 0

// EntryType says what a log entry carries.
type EntryType uint8

const (
	// EntryCommand carries an application command given to Propose or Start.
	EntryCommand EntryType = iota
	// EntryNoOp is the empty entry a new leader appends at the start of its term
	// (§5.4.2, §8): committing it commits everything before it. It is delivered to
	// the application marked as not a command.
	EntryNoOp
	// EntryConfChange carries a configuration change: its Data is an encoded
	// ConfEntry. Every node uses the latest configuration in its log from the moment
	// it appends the entry, committed or not (thesis §4.1; see confchange.go).
	EntryConfChange
)

func (t EntryType) String() string {
	switch t {
	case EntryCommand:
		return "Command"
	case EntryNoOp:
		return "NoOp"
	case EntryConfChange:
		return "ConfChange"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is one slot of the replicated log.
type Entry struct {
	Term  uint64
	Index uint64
	Type  EntryType
	Data  []byte
}

// size is the entry's weight for the byte limits in Config: its payload plus a fixed
// overhead, so that empty entries still count.
func (e *Entry) size() uint64 { return uint64(len(e.Data)) + entryOverheadBytes }

const entryOverheadBytes = 24

// HardState is the state a node must persist before it sends any message that depends
// on it (Figure 2: currentTerm, votedFor), plus the commit index so that a restart does
// not re-deliver entries it already knows are committed.
type HardState struct {
	Term   uint64
	Vote   uint64
	Commit uint64
}

// IsEmpty reports whether hs is the zero HardState.
func (hs HardState) IsEmpty() bool { return hs == HardState{} }

// Snapshot is the application's state up to and including Index, whose entry had Term
// (§7: lastIncludedIndex, lastIncludedTerm), and the configuration as of Index (§7:
// "the latest configuration as of lastIncludedIndex"), so that a node restored from it
// knows the members. An empty Membership means the bootstrap one (Config.Peers).
type Snapshot struct {
	Index      uint64
	Term       uint64
	Membership Membership
	Data       []byte
}

// IsEmpty reports whether s holds no snapshot.
func (s Snapshot) IsEmpty() bool { return s.Index == 0 }

// MessageType names the kind of a Message.
type MessageType uint8

const (
	// MsgHup is local: start an election now (campaign), as if the timer fired.
	MsgHup MessageType = iota
	// MsgBeat is local: the leader sends heartbeats now.
	MsgBeat
	// MsgProp carries proposed entries to the leader.
	MsgProp
	// MsgApp is AppendEntries (§5.3): Index/LogTerm are prevLogIndex/prevLogTerm.
	MsgApp
	// MsgAppResp answers MsgApp. On success Index is the follower's last matching index.
	// On rejection Index is the rejected prevLogIndex, LogTerm the conflicting term and
	// RejectHint the first index the follower holds of that term (the fast back-up).
	MsgAppResp
	// MsgVote is RequestVote (§5.2); Index/LogTerm are lastLogIndex/lastLogTerm.
	MsgVote
	// MsgVoteResp answers MsgVote.
	MsgVoteResp
	// MsgPreVote asks whether a vote would be granted at Term, without anyone changing
	// term (thesis §9.6).
	MsgPreVote
	// MsgPreVoteResp answers MsgPreVote.
	MsgPreVoteResp
	// MsgSnap is InstallSnapshot (§7).
	MsgSnap
	// MsgHeartbeat is an empty AppendEntries that carries only the commit index.
	MsgHeartbeat
	// MsgHeartbeatResp answers MsgHeartbeat.
	MsgHeartbeatResp
	// MsgReadIndex asks for a linearizable read point (thesis §6.4); a follower forwards
	// it to the leader. Context identifies the request.
	MsgReadIndex
	// MsgReadIndexResp carries the read point in Index back to the follower that asked.
	MsgReadIndexResp
	// MsgUnreachable is local: the transport could not deliver to From.
	MsgUnreachable
	// MsgSnapStatus is local: a snapshot sent to From finished (Reject means it failed).
	MsgSnapStatus
	// MsgTimeoutNow tells a follower whose log matches the leader's to campaign at
	// once (thesis §3.10, leadership transfer): it skips PreVote and sends vote
	// requests with LeaderTransfer set.
	MsgTimeoutNow

	numMessageTypes
)

var messageTypeNames = [...]string{
	MsgHup: "MsgHup", MsgBeat: "MsgBeat", MsgProp: "MsgProp", MsgApp: "MsgApp",
	MsgAppResp: "MsgAppResp", MsgVote: "MsgVote", MsgVoteResp: "MsgVoteResp",
	MsgPreVote: "MsgPreVote", MsgPreVoteResp: "MsgPreVoteResp", MsgSnap: "MsgSnap",
	MsgHeartbeat: "MsgHeartbeat", MsgHeartbeatResp: "MsgHeartbeatResp",
	MsgReadIndex: "MsgReadIndex", MsgReadIndexResp: "MsgReadIndexResp",
	MsgUnreachable: "MsgUnreachable",
	MsgSnapStatus:  "MsgSnapStatus",
	MsgTimeoutNow:  "MsgTimeoutNow",
}

func (t MessageType) String() string {
	if t < numMessageTypes {
		return messageTypeNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// IsLocal reports whether messages of this type never cross the network.
func (t MessageType) IsLocal() bool {
	return t == MsgHup || t == MsgBeat || t == MsgUnreachable || t == MsgSnapStatus
}

// Message is what nodes send each other. One struct serves every type; the comments on
// MessageType say which fields each uses.
type Message struct {
	Type       MessageType
	To         uint64
	From       uint64
	Term       uint64
	LogTerm    uint64
	Index      uint64
	Commit     uint64
	Reject     bool
	RejectHint uint64
	Entries    []Entry
	Snapshot   *Snapshot
	// Context is opaque to the receiver and echoed in the answer (ReadIndex ids).
	Context []byte
	// LeaderTransfer marks the vote requests of a campaign that MsgTimeoutNow
	// started: the leader itself asked for it, so voters answer it even within the
	// lease that CheckQuorum gives a live leader (thesis §3.10, §4.2.3).
	LeaderTransfer bool
}

func (m Message) String() string {
	return fmt.Sprintf("%s %d->%d term=%d logterm=%d index=%d commit=%d reject=%v hint=%d entries=%d",
		m.Type, m.From, m.To, m.Term, m.LogTerm, m.Index, m.Commit, m.Reject, m.RejectHint, len(m.Entries))
}

// ReadState is a confirmed linearizable read point: once the application has applied
// Index, a read of its state is linearizable for the request named by RequestCtx.
// Index 0 means the leader refused the request (it has not yet committed an entry of
// its term); retry.
type ReadState struct {
	Index      uint64
	RequestCtx []byte
}

// StateType is the role a node plays (§5.1), plus the pre-candidate of PreVote.
type StateType uint8

const (
	StateFollower StateType = iota
	StatePreCandidate
	StateCandidate
	StateLeader
)

func (s StateType) String() string {
	switch s {
	case StateFollower:
		return "Follower"
	case StatePreCandidate:
		return "PreCandidate"
	case StateCandidate:
		return "Candidate"
	case StateLeader:
		return "Leader"
	}
	return fmt.Sprintf("StateType(%d)", uint8(s))
}

// SoftState is volatile state that is useful to observe but never persisted.
type SoftState struct {
	Lead  uint64
	State StateType
}
