package raft

import (
	"errors"
	"fmt"
	"slices"
)

// Membership is a configuration of the cluster (thesis §4): the voters, a majority of
// whom elects a leader and commits an entry, and the learners, which receive the log
// and snapshots but never vote, campaign or count towards a majority. Both lists are
// ascending and disjoint, and hold no id 0.
//
// The zero Membership, in a Snapshot or at an index, means the bootstrap
// configuration: the one Config.Peers gives every initial member, in effect until the
// first configuration entry. (A node that joined later has no Peers; until it learns a
// configuration from the leader it is no member in its own eyes, and stays passive.)
type Membership struct {
	Voters   []uint64
	Learners []uint64
}

// IsVoter reports whether id is a voter.
func (m Membership) IsVoter(id uint64) bool {
	_, ok := slices.BinarySearch(m.Voters, id)
	return ok
}

// IsLearner reports whether id is a learner.
func (m Membership) IsLearner(id uint64) bool {
	_, ok := slices.BinarySearch(m.Learners, id)
	return ok
}

// IsMember reports whether id is a voter or a learner.
func (m Membership) IsMember(id uint64) bool { return m.IsVoter(id) || m.IsLearner(id) }

// IsEmpty reports whether m lists nobody (in a Snapshot: the bootstrap configuration).
func (m Membership) IsEmpty() bool { return len(m.Voters) == 0 && len(m.Learners) == 0 }

// Equal reports whether m and o list the same voters and learners.
func (m Membership) Equal(o Membership) bool {
	return slices.Equal(m.Voters, o.Voters) && slices.Equal(m.Learners, o.Learners)
}

// Clone returns a copy of m that shares no memory with it.
func (m Membership) Clone() Membership {
	return Membership{Voters: slices.Clone(m.Voters), Learners: slices.Clone(m.Learners)}
}

func (m Membership) String() string {
	return fmt.Sprintf("voters=%v learners=%v", m.Voters, m.Learners)
}

// members returns every voter and learner, ascending.
func (m Membership) members() []uint64 {
	all := make([]uint64, 0, len(m.Voters)+len(m.Learners))
	all = append(append(all, m.Voters...), m.Learners...)
	slices.Sort(all)
	return all
}

// Validate reports what makes m not a configuration: unsorted or repeated ids, id 0,
// an id both voter and learner.
func (m Membership) Validate() error {
	for _, list := range [][]uint64{m.Voters, m.Learners} {
		for i, id := range list {
			if id == None {
				return fmt.Errorf("membership %v lists id 0", m)
			}
			if i > 0 && list[i-1] >= id {
				return fmt.Errorf("membership %v is not in ascending order without repeats", m)
			}
		}
	}
	for _, id := range m.Learners {
		if m.IsVoter(id) {
			return fmt.Errorf("membership %v lists %d as both voter and learner", m, id)
		}
	}
	return nil
}

// ConfChangeType names a single-server configuration change (thesis §4.1). Each
// changes the set of voters by at most one server, which is what keeps every majority
// of the old configuration overlapping every majority of the new.
type ConfChangeType uint8

const (
	// ConfChangeAddVoter adds a new server as a voter. It counts towards majorities
	// at once, even before it has caught up; adding it as a learner first and
	// promoting it once caught up avoids that gap in availability (thesis §4.2.1).
	ConfChangeAddVoter ConfChangeType = iota + 1
	// ConfChangeAddLearner adds a new server as a learner.
	ConfChangeAddLearner
	// ConfChangePromote makes a learner a voter.
	ConfChangePromote
	// ConfChangeRemove removes a voter or a learner, the leader included: a leader
	// that removes itself steps down once the change commits (thesis §4.2.2).
	ConfChangeRemove
)

func (t ConfChangeType) String() string {
	switch t {
	case ConfChangeAddVoter:
		return "AddVoter"
	case ConfChangeAddLearner:
		return "AddLearner"
	case ConfChangePromote:
		return "Promote"
	case ConfChangeRemove:
		return "Remove"
	}
	return fmt.Sprintf("ConfChangeType(%d)", uint8(t))
}

// ConfChange is a configuration change to propose (RawNode.ProposeConfChange,
// Node.ProposeConfChange).
type ConfChange struct {
	Type   ConfChangeType
	NodeID uint64
	// Context is the application's, carried in the log with the change and handed
	// back with it on Apply (say, the new member's name and address).
	Context []byte
}

func (cc ConfChange) String() string {
	return fmt.Sprintf("%s %d", cc.Type, cc.NodeID)
}

// ConfEntry is what the Data of an EntryConfChange entry holds: the change, and the
// configuration it leads to. The whole configuration is in the entry so that a node
// reading the log from any configuration entry on, a new member most of all, knows
// the membership without the entries before it.
type ConfEntry struct {
	Change     ConfChange
	Membership Membership
}

// ErrInvalidConfChange is wrapped by the error for a change that does not fit the
// configuration it would apply to: adding a member twice, promoting a voter,
// removing a stranger or the last voter. The text says which.
var ErrInvalidConfChange = errors.New("raft: invalid configuration change")

// ErrConfChangePending: the leader cannot take a configuration change yet. Either an
// earlier change is in the log and not committed (one change at a time), or the leader
// has not yet committed an entry of its own term, which the single-server algorithm
// needs to be safe (Ongaro, raft-dev, 2015). Retry shortly.
var ErrConfChangePending = errors.New("raft: a configuration change cannot be proposed yet")

// Apply returns the configuration cc leads to from m, or an error wrapping
// ErrInvalidConfChange.
func (m Membership) Apply(cc ConfChange) (Membership, error) {
	id := cc.NodeID
	bad := func(why string) (Membership, error) {
		return Membership{}, fmt.Errorf("%w: %s of node %d to %v: %s", ErrInvalidConfChange, cc.Type, id, m, why)
	}
	if id == None {
		return bad("node id 0 is not a node")
	}
	out := m.Clone()
	switch cc.Type {
	case ConfChangeAddVoter, ConfChangeAddLearner:
		if m.IsVoter(id) {
			return bad("it is a voter already")
		}
		if m.IsLearner(id) {
			return bad("it is a learner already (promote it instead)")
		}
		if cc.Type == ConfChangeAddVoter {
			out.Voters = insertSorted(out.Voters, id)
		} else {
			out.Learners = insertSorted(out.Learners, id)
		}
	case ConfChangePromote:
		if !m.IsLearner(id) {
			return bad("it is not a learner")
		}
		out.Learners = removeSorted(out.Learners, id)
		out.Voters = insertSorted(out.Voters, id)
	case ConfChangeRemove:
		switch {
		case m.IsVoter(id):
			if len(m.Voters) == 1 {
				return bad("it is the last voter; a cluster needs one")
			}
			out.Voters = removeSorted(out.Voters, id)
		case m.IsLearner(id):
			out.Learners = removeSorted(out.Learners, id)
		default:
			return bad("it is not a member")
		}
	default:
		return bad("unknown change type")
	}
	return out, nil
}

func insertSorted(ids []uint64, id uint64) []uint64 {
	i, _ := slices.BinarySearch(ids, id)
	return slices.Insert(ids, i, id)
}

func removeSorted(ids []uint64, id uint64) []uint64 {
	i, ok := slices.BinarySearch(ids, id)
	if !ok {
		return ids
	}
	return slices.Delete(ids, i, i+1)
}

// confHistory is every configuration a node's log holds: the one in effect at the
// start of the log (the snapshot's, or the bootstrap one) and one per configuration
// entry after it, committed or not. The latest is the one in effect (§4.1: a server
// uses the latest configuration in its log); the others are what truncating the log's
// uncommitted suffix goes back to, and what a snapshot at an earlier index records.
type confHistory struct {
	// baseIndex is the index the log starts after (the snapshot's), whose
	// configuration is base.
	baseIndex uint64
	base      Membership
	// points are the configuration entries after baseIndex, by ascending index.
	points []confPoint
}

type confPoint struct {
	index      uint64
	membership Membership
}

// latest returns the configuration in effect and the index of the entry that holds
// it (0 if it comes from the base).
func (h *confHistory) latest() (Membership, uint64) {
	if n := len(h.points); n > 0 {
		return h.points[n-1].membership, h.points[n-1].index
	}
	return h.base, 0
}

// latestIndex is the index of the last configuration entry, or 0.
func (h *confHistory) latestIndex() uint64 {
	_, i := h.latest()
	return i
}

// at returns the configuration in effect at index: the latest entry at or before it.
func (h *confHistory) at(index uint64) Membership {
	for i := len(h.points) - 1; i >= 0; i-- {
		if h.points[i].index <= index {
			return h.points[i].membership
		}
	}
	return h.base
}

// reset starts the history at a snapshot.
func (h *confHistory) reset(index uint64, m Membership) {
	h.baseIndex, h.base, h.points = index, m, nil
}

// truncateFrom forgets the configuration entries at or after index: the log's
// suffix from there was replaced.
func (h *confHistory) truncateFrom(index uint64) {
	i := len(h.points)
	for i > 0 && h.points[i-1].index >= index {
		i--
	}
	clear(h.points[i:])
	h.points = h.points[:i]
}

// add records the configuration entry at index, which follows every one recorded.
func (h *confHistory) add(index uint64, m Membership) {
	if n := len(h.points); n > 0 && h.points[n-1].index >= index {
		panic(fmt.Sprintf("raft: configuration entry %d recorded after entry %d", index, h.points[n-1].index))
	}
	h.points = append(h.points, confPoint{index: index, membership: m})
}

// compactTo folds the entries at or before index into the base: the log before
// index is gone, so no snapshot can be asked for there.
func (h *confHistory) compactTo(index uint64) {
	if index <= h.baseIndex {
		return
	}
	k := 0
	for k < len(h.points) && h.points[k].index <= index {
		h.base = h.points[k].membership
		k++
	}
	h.baseIndex = index
	h.points = slices.Delete(h.points, 0, k)
}
