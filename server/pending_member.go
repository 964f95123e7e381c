package server

import (
	"math"
	"sync"
	"time"

	"raftkv/raft"
)

// A member's configuration is the latest in its log, applied or not (thesis §4.1),
// but its member list and its transport's peers follow what has applied. Between
// the two, a member added by an entry not yet committed is a voter this member may
// need for a quorum and cannot reach, and that cannot join through it. Only the
// leader that proposed the addition would know better (it dials the address at
// once). If that leader fails before the entry commits, the next leader
// needs the new member's vote (a quorum of the configuration with it) and neither
// knows its address nor tells it who it is. So every member reads the added
// member's record from the entry in its own log: its transport dials it, and a
// joining member hears of it.

// unappliedAdd returns the member that the latest configuration entry in this
// member's log adds, if that entry has not applied here yet.
func (s *Server) unappliedAdd() (member, bool) {
	st := s.node.MembershipStatus()
	if st.Index == 0 || st.Index <= s.applied.get() {
		return member{}, false
	}
	return s.addedAt(st.Index)
}

// unappliedAdds returns the members that the configuration entries in this
// member's log past its applied index add: the latest one's, and those of
// earlier ones committed and not yet applied here (one change at a time means
// each commits before the next is proposed, but applying may lag).
func (s *Server) unappliedAdds() []member {
	indexes, err := s.storage.ConfEntryIndexes()
	if err != nil {
		return nil
	}
	applied := s.applied.get()
	var adds []member
	for _, i := range indexes {
		if i <= applied {
			continue
		}
		if m, ok := s.addedAt(i); ok {
			adds = append(adds, m)
		}
	}
	return adds
}

// addedAt returns the member the configuration entry at index adds, if it is an
// addition.
func (s *Server) addedAt(index uint64) (member, bool) {
	ents, err := s.storage.Entries(index, index+1, math.MaxUint64)
	if err != nil || len(ents) != 1 || ents[0].Type != raft.EntryConfChange {
		return member{}, false
	}
	var ce raft.ConfEntry
	if err := ce.Unmarshal(ents[0].Data); err != nil {
		return member{}, false
	}
	cc := ce.Change
	if (cc.Type != raft.ConfChangeAddVoter && cc.Type != raft.ConfChangeAddLearner) || !ce.Membership.IsMember(cc.NodeID) {
		return member{}, false
	}
	env, err := decodeEnvelope(cc.Context)
	if err != nil || env.kind != kindConf {
		return member{}, false
	}
	m, _, err := decodeMember(env.payload)
	if err != nil {
		return member{}, false
	}
	m.ID, m.IsLearner = cc.NodeID, cc.Type == raft.ConfChangeAddLearner
	m.Name, m.ClientURLs = "", nil // published once it runs
	return m, true
}

// dialledAhead is the set of members the transport dials before their addition
// has applied here: the one the latest unapplied configuration entry adds, and the
// one a leader's MemberAdd is about to propose. An addition that never commits (a
// new leader cuts the entry from this member's log) leaves such a peer dialled; the
// set is how dialUnappliedAdds finds and forgets it.
type dialledAhead struct {
	mu  sync.Mutex
	ids map[uint64]time.Time // when first dialled ahead
}

// dialAhead points the transport at member m before its addition applies here.
func (s *Server) dialAhead(m member) {
	s.ahead.mu.Lock()
	if s.ahead.ids == nil {
		s.ahead.ids = map[uint64]time.Time{}
	}
	if _, ok := s.ahead.ids[m.ID]; !ok {
		s.ahead.ids[m.ID] = time.Now()
	}
	s.ahead.mu.Unlock()
	s.peerUpdated(m)
}

// dialUnappliedAdds points the transport at the member an unapplied configuration
// entry adds, checked every election timeout: within one of this member appending
// the entry (from a leader, or found in its log at start). A leader that fails
// first is noticed only after an election timeout too.
func (s *Server) dialUnappliedAdds() {
	ticker := time.NewTicker(s.cfg.ElectionTimeout)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
		case <-s.stopc:
			return
		}
		pending := map[uint64]bool{}
		for _, m := range s.unappliedAdds() {
			pending[m.ID] = true
			s.dialAhead(m)
			// The addition and a removal of the member may both have applied since
			// unappliedAdds read the log: UpdatePeer took it off the removed set, so
			// put it back (a removal applied after this point refuses it itself).
			if r, ok := s.sm.anyMember(m.ID); ok && r.isRemoved {
				s.transport.RemovePeer(m.ID)
			}
		}
		s.forgetAbandonedAdds(pending, time.Now().Add(-2*s.cfg.ElectionTimeout))
	}
}

// forgetAbandonedAdds stops dialling the members dialled ahead before cutoff whose
// addition neither applied here nor is in the log unapplied (pending): their entry
// was cut from the log, or the leader's proposal never made it there. An addition
// that applies is the apply loop's from then on (it dials or refuses the member).
func (s *Server) forgetAbandonedAdds(pending map[uint64]bool, cutoff time.Time) {
	s.ahead.mu.Lock()
	defer s.ahead.mu.Unlock()
	for id, since := range s.ahead.ids {
		if _, applied := s.sm.anyMember(id); applied {
			delete(s.ahead.ids, id)
			continue
		}
		if pending[id] || since.After(cutoff) {
			continue
		}
		delete(s.ahead.ids, id)
		s.transport.ForgetPeer(id)
		// The addition may have committed behind a later configuration entry and
		// applied since the check above; the apply loop dialled it before or after
		// ForgetPeer, so dial it again in case it was before.
		if r, ok := s.sm.anyMember(id); ok && !r.isRemoved {
			s.peerUpdated(r)
			continue
		}
		s.logger.Info("no longer dialling a member whose addition did not take effect", "member", hexID(id))
	}
}
