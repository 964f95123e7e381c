package server

import (
	"fmt"
	"math"
	"slices"

	"raftkv/raft"
)

// forceSingleVoter is --force-new-cluster on a log that may hold configuration
// changes: it reads the configuration in effect (the latest configuration entry's,
// else the snapshot's, else the bootstrap voters), and appends after the log's last
// entry one configuration entry per other member removing it, the last leaving this
// member the only voter, then commits them all (the hard state's commit index), as
// etcd's --force-new-cluster appends and commits its removals. The node then starts
// on a log whose configuration is this member alone, and the server applies the
// removals like any others (member list, transport). The entries take the current
// term: the old cluster's other members must never run again (see membership.go),
// so no leader of this term elsewhere can hold other entries at those indexes.
func (s *Server) forceSingleVoter(bootstrap []uint64) error {
	st := s.storage
	conf, err := latestConf(st, bootstrap)
	if err != nil {
		return fmt.Errorf("--force-new-cluster: reading the configuration in the log: %w", err)
	}
	if len(conf.Voters) == 1 && conf.Voters[0] == s.id && len(conf.Learners) == 0 {
		return nil
	}
	if !conf.IsVoter(s.id) {
		return fmt.Errorf("--force-new-cluster: this member (%x) is not a voter of its cluster's latest configuration (%v); "+
			"force the cluster on a member that is", s.id, conf)
	}
	hs, err := st.InitialState()
	if err != nil {
		return err
	}
	last, err := st.LastIndex()
	if err != nil {
		return err
	}
	if lastTerm, err := st.Term(last); err == nil && lastTerm > hs.Term {
		hs.Term = lastTerm
	}
	var others []uint64
	others = append(others, conf.Learners...)
	for _, id := range conf.Voters {
		if id != s.id {
			others = append(others, id)
		}
	}
	var ents []raft.Entry
	cur := conf
	for _, id := range others {
		rec := member{ID: id}
		cc := raft.ConfChange{Type: raft.ConfChangeRemove, NodeID: id,
			Context: encodeEnvelope(envelope{kind: kindConf, payload: rec.encode()})}
		next, err := cur.Apply(cc)
		if err != nil {
			return fmt.Errorf("--force-new-cluster: %w", err)
		}
		ce := raft.ConfEntry{Change: cc, Membership: next}
		ents = append(ents, raft.Entry{Index: last + 1 + uint64(len(ents)), Term: hs.Term, Type: raft.EntryConfChange, Data: ce.MarshalTo(nil)})
		cur = next
	}
	hs.Commit = ents[len(ents)-1].Index
	if err := st.Save(hs, ents); err != nil {
		return fmt.Errorf("--force-new-cluster: appending the removals of %s: %w", hexIDs(others), err)
	}
	s.logger.Warn("--force-new-cluster: appended and committed the removal of every other member; this member is now the only voter",
		"removed", hexIDs(others), "from_index", last+1, "term", hs.Term)
	return nil
}

// confStorage is what latestConf reads.
type confStorage interface {
	raft.LogReader
	ConfEntryIndexes() ([]uint64, error)
}

// latestConf returns the configuration in effect in st's log.
func latestConf(st confStorage, bootstrap []uint64) (raft.Membership, error) {
	snap, err := st.SnapshotMeta()
	if err != nil {
		return raft.Membership{}, err
	}
	conf := snap.Membership
	if conf.IsEmpty() {
		conf = raft.Membership{Voters: slices.Sorted(slices.Values(bootstrap))}
	}
	idxs, err := st.ConfEntryIndexes()
	if err != nil {
		return raft.Membership{}, err
	}
	if n := len(idxs); n > 0 && idxs[n-1] > snap.Index {
		ents, err := st.Entries(idxs[n-1], idxs[n-1]+1, math.MaxUint64)
		if err != nil {
			return raft.Membership{}, err
		}
		var ce raft.ConfEntry
		if err := ce.Unmarshal(ents[0].Data); err != nil {
			return raft.Membership{}, err
		}
		conf = ce.Membership
	}
	return conf, nil
}
