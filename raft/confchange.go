package raft

import (
	"fmt"
	"slices"
)

// Configuration changes: one server at a time (thesis §4.1), each configuration used
// from the moment it is appended, with the fix Ongaro published in 2015.
//
// # The choice
//
// A change adds a voter, adds a learner, promotes a learner or removes a member: the
// set of voters changes by at most one server. Joint consensus (§4.3) handles
// arbitrary changes, at the price of a second entry per change, a joint quorum rule
// in every majority count and a state to leave. Every operation an operator performs
// on a cluster (etcd's member add, remove, promote; a replacement is a remove and an
// add) is a single-server change, so the simpler algorithm is enough, and its rules
// are few enough to check by reading the code below.
//
// # Why it is safe
//
// Raft's safety rests on any two majorities that decide (an election, a commitment)
// sharing a server. With one configuration that is arithmetic. Across a change from
// C_old to C_new that adds or removes one voter, every majority of C_old shares a
// server with every majority of C_new (§4.1, Figure 4.3): with n voters in C_old, a
// majority of C_old has more than n/2 of them, a majority of C_new more than (n±1)/2,
// and there are only n+1 servers in the union (n when one was removed), so the two
// majorities cannot be disjoint. Learners are in no majority, so adding, promoting
// or removing them changes no majority beyond that one voter.
//
// The rules that make every decision use one of two adjacent configurations:
//
//  1. A server uses the latest configuration in its log, committed or not, from the
//     moment it appends it (§4.1). So a leader counts votes and acknowledgements of
//     C_new as soon as C_new is in its log, and C_new commits by a majority of C_new.
//     The alternative, using a configuration once it is committed (etcd-io/raft),
//     lets a lagging server count by a configuration several changes old; that is
//     safe only with extra rules (a node with unapplied changes must not campaign).
//  2. The price of rule 1 is that an uncommitted configuration entry can be removed
//     from a follower's log by a new leader (§5.3). The server then goes back to the
//     latest configuration left in its log: confHistory keeps every configuration
//     entry after the snapshot, and confReplaced drops those a truncation removes.
//     Configurations are never taken from anywhere but the log and the snapshot, so
//     "the latest in the log" stays true.
//  3. A leader appends a change only once the previous one is committed: at most one
//     uncommitted configuration entry in its log (§4.1).
//  4. The fix (raft-dev, "bug in single-server membership changes", 2015): a leader
//     appends a change only once it has committed an entry of its own term. Without
//     it, two leaders of different terms can each append a change to the same
//     C_old, C1 = C_old+a and C2 = C_old-b, whose configurations differ by two
//     servers: a majority of C1 and one of C2 can be disjoint, and each commits a
//     different entry at the same index (TestConfChangeOwnTermRule replays the
//     scenario). Committing an entry of its term first means a majority of C_old
//     already holds the new leader's term, so no server whose log ends with the
//     older leader's C1 can win an election against it: C1 is dead before C2 is
//     appended. A new leader's no-op (becomeLeader) is that entry.
//
// A server's snapshot records the configuration as of its index (§7), and restart
// recovers the latest one from the snapshot and the configuration entries after it
// (loadConf): every server always holds the configuration rule 1 asks for, across
// crashes too.
//
// # Removal and non-voters
//
// Learners never campaign, and a server removed by a change it knows committed never
// campaigns and ignores MsgTimeoutNow: it is silent. One removed by a change it holds
// but does not know committed does campaign, counting the votes of the configuration
// that removed it (not its own): it may hold the longest log of the servers up, a
// leader that appended its own removal and lost leadership before it committed, and
// then no other server can win an election without its vote, which the election
// restriction (§5.4.1) makes it refuse. Winning, it commits the change with a majority
// of C_new and steps down as below (TestRemovedLeaderWithTheLongestLogFinishesItsRemoval).
// Its votes are C_new's, so this is an election like any other.
//
// One removed before it learned of it at all (cut off while the change committed)
// still holds C_old and campaigns: PreVote keeps it from raising anyone's term (its
// log lacks C_new, which a majority of C_new holds, so a majority of C_old will never
// find it up to date), and CheckQuorum's lease makes members ignore its vote requests
// while they hear from the leader (thesis §4.2.3). With both turned off it can force
// elections.
//
// A leader that removes itself stays leader until the change commits, replicating but
// not counting its own copy (§4.2.2); then it steps down, first telling the removed
// members and the rest that the change committed, and hands leadership to the most
// up-to-date voter with MsgTimeoutNow if one has its whole log.

// loadConf rebuilds the configuration history from the storage: the snapshot's
// configuration (the bootstrap one if it has none) and every configuration entry in
// the log after it. It reads just those entries from a ConfEntryIndexer, else the
// whole log in batches of maxBytes.
func (r *raft) loadConf(maxBytes uint64) error {
	meta, err := r.log.storage.SnapshotMeta()
	if err != nil {
		return fmt.Errorf("raft: reading the snapshot's metadata: %w", err)
	}
	r.confs.reset(meta.Index, meta.Membership)
	add := func(ents []Entry) error {
		for i := range ents {
			if ents[i].Type != EntryConfChange {
				continue
			}
			ce, err := decodeConfEntry(&ents[i])
			if err != nil {
				return fmt.Errorf("raft: configuration entry %d in the stored log: %w", ents[i].Index, err)
			}
			r.confs.add(ents[i].Index, ce.Membership)
		}
		return nil
	}
	first, last := r.log.firstIndex(), r.log.lastIndex()
	if indexer, ok := r.log.storage.(ConfEntryIndexer); ok {
		indexes, err := indexer.ConfEntryIndexes()
		if err != nil {
			return fmt.Errorf("raft: reading where the configuration entries are: %w", err)
		}
		for _, i := range indexes {
			if i < first || i > last {
				return fmt.Errorf("raft: storage names configuration entry %d outside its log [%d, %d]", i, first, last)
			}
			ents, err := r.log.slice(i, i+1, maxBytes)
			if err == nil && (len(ents) != 1 || ents[0].Type != EntryConfChange) {
				err = fmt.Errorf("it holds %d entries, not one of type %v", len(ents), EntryConfChange)
			}
			if err != nil {
				return fmt.Errorf("raft: reading configuration entry %d: %w", i, err)
			}
			if err := add(ents); err != nil {
				return err
			}
		}
		r.switchConf()
		return nil
	}
	for lo := first; lo <= last; {
		ents, err := r.log.slice(lo, last+1, maxBytes)
		if err != nil {
			return fmt.Errorf("raft: reading the log [%d, %d] for configuration entries: %w", lo, last, err)
		}
		if err := add(ents); err != nil {
			return err
		}
		lo += uint64(len(ents))
	}
	r.switchConf()
	return nil
}

// promotable reports whether this node may campaign: it is a voter of the
// configuration in effect, or it was one of the configuration before and the change
// that removed it is not known committed (see "Removal and non-voters").
func (r *raft) promotable() bool {
	if r.isVoter(r.id) {
		return true
	}
	index := r.confs.latestIndex()
	return index > r.log.committed && r.resolve(r.confs.at(index-1)).IsVoter(r.id)
}

// resolve turns a Membership of the history or a snapshot into the configuration it
// stands for: the bootstrap one if it is empty. The history keeps the empty one, so
// that snapshots record it as such: until the first change, the configuration is
// whatever Config.Peers says at start, which --force-new-cluster relies on.
func (r *raft) resolve(m Membership) Membership {
	if m.IsEmpty() {
		return r.bootstrap
	}
	return m
}

func decodeConfEntry(e *Entry) (ConfEntry, error) {
	var ce ConfEntry
	if err := ce.Unmarshal(e.Data); err != nil {
		return ConfEntry{}, err
	}
	return ce, nil
}

// mustDecodeConfEntry decodes a configuration entry already in the log, which was
// checked when it arrived.
func mustDecodeConfEntry(e *Entry) ConfEntry {
	ce, err := decodeConfEntry(e)
	if err != nil {
		panic(fmt.Sprintf("raft: configuration entry %d (term %d) in the log does not decode: %v", e.Index, e.Term, err))
	}
	return ce
}

// confAppended takes the configurations of ents, just appended after the log's end
// (rule 1).
func (r *raft) confAppended(ents []Entry) {
	changed := false
	for i := range ents {
		if ents[i].Type == EntryConfChange {
			r.confs.add(ents[i].Index, mustDecodeConfEntry(&ents[i]).Membership)
			changed = true
		}
	}
	if changed {
		r.switchConf()
	}
}

// confReplaced follows a follower's log writing ents from index from on, replacing
// whatever it held there: the configurations of the replaced entries are gone, those
// of ents are in (rules 1 and 2).
func (r *raft) confReplaced(from uint64, ents []Entry) {
	before := r.confs.latestIndex()
	r.confs.truncateFrom(from)
	changed := r.confs.latestIndex() != before
	for i := range ents {
		if ents[i].Type == EntryConfChange {
			r.confs.add(ents[i].Index, mustDecodeConfEntry(&ents[i]).Membership)
			changed = true
		}
	}
	if changed {
		r.switchConf()
	}
}

// confRestored follows the log's replacement by a snapshot.
func (r *raft) confRestored(s Snapshot) {
	r.confs.reset(s.Index, s.Membership)
	r.switchConf()
}

// switchConf puts the latest configuration of the history in effect.
func (r *raft) switchConf() {
	latest, index := r.confs.latest()
	conf := r.resolve(latest)
	changed := !conf.Equal(r.conf)
	r.conf = conf
	// Even with the same configuration, which removed members wait to hear of it
	// may have changed (a truncation can take a change back and put an equal one in).
	r.syncProgress()
	if !changed {
		return
	}
	if r.leadTransferee != None && !r.isVoter(r.leadTransferee) {
		r.logger.Info("raft: leadership transfer abandoned: the target is no longer a voter", "term", r.term, "to", r.leadTransferee)
		r.leadTransferee, r.transferElapsed = None, 0
	}
	r.logger.Info("raft: configuration in effect", "term", r.term, "index", index, "committed", index <= r.log.committed,
		"voters", conf.Voters, "learners", conf.Learners)
}

// trackedIDs returns, ascending, the nodes a leader keeps a progress for: the members,
// itself, and the members the latest change removed while it is uncommitted.
func (r *raft) trackedIDs() []uint64 {
	ids := r.conf.members()
	if i, ok := slices.BinarySearch(ids, r.id); !ok {
		ids = slices.Insert(ids, i, r.id)
	}
	if index := r.confs.latestIndex(); index > r.log.committed {
		for _, id := range r.resolve(r.confs.at(index - 1)).members() {
			if i, ok := slices.BinarySearch(ids, id); !ok {
				ids = slices.Insert(ids, i, id)
			}
		}
	}
	return ids
}

// syncProgress makes the progress map hold exactly trackedIDs. A node new to it starts
// in probe, as after an election, and a promoted learner keeps its own.
func (r *raft) syncProgress() {
	ids := r.trackedIDs()
	for _, id := range ids {
		if r.progress[id] == nil {
			r.progress[id] = &progress{inflights: newInflights(r.maxInflight, r.maxInflightBytes), next: r.log.lastIndex() + 1}
		}
	}
	if len(r.progress) > len(ids) {
		for id := range r.progress {
			if _, ok := slices.BinarySearch(ids, id); !ok {
				delete(r.progress, id)
			}
		}
	}
	r.progressIDs = ids
}

// membershipAt returns the configuration in effect at index, which must be at or
// after the log's start, as a snapshot there records it: the zero Membership while it
// is the bootstrap one.
func (r *raft) membershipAt(index uint64) Membership {
	r.confs.compactTo(r.log.firstIndex() - 1)
	return r.confs.at(index)
}

// proposeConfChange appends a configuration change to the leader's log, under rules 3
// and 4 above, and puts it in effect at once (rule 1).
func (r *raft) proposeConfChange(cc ConfChange) (index, term uint64, err error) {
	if r.state != StateLeader {
		return 0, 0, ErrNotLeader
	}
	if r.leadTransferee != None {
		return 0, 0, ErrProposalDropped
	}
	if pending := r.confs.latestIndex(); pending > r.log.committed {
		return 0, 0, fmt.Errorf("%w: the change at index %d has not committed yet (commit index %d); one change at a time",
			ErrConfChangePending, pending, r.log.committed)
	}
	if !r.committedEntryInCurrentTerm() && !r.skipOwnTermRule {
		return 0, 0, fmt.Errorf("%w: this leader has not yet committed an entry of its term %d", ErrConfChangePending, r.term)
	}
	next, err := r.conf.Apply(cc)
	if err != nil {
		return 0, 0, err
	}
	ce := ConfEntry{Change: cc, Membership: next}
	ents := []Entry{{Type: EntryConfChange, Data: ce.MarshalTo(make([]byte, 0, ce.Size()))}}
	if ents[0].size() > r.maxMsgSize {
		return 0, 0, ErrEntryTooLarge
	}
	if err := r.appendEntries(ents); err != nil {
		return 0, 0, err
	}
	r.logger.Info("raft: proposed configuration change", "term", r.term, "index", ents[0].Index, "change", cc.String(),
		"voters", next.Voters, "learners", next.Learners)
	return ents[0].Index, ents[0].Term, nil
}

// commitAdvanced runs at the leader when its commit index has moved: it tells the
// followers, and once the latest configuration entry is committed it stops tracking
// the members it removed (telling them first) and, if it removed this leader, steps
// down (thesis §4.2.2).
func (r *raft) commitAdvanced() {
	r.bcastCommit()
	if r.confs.latestIndex() > r.log.committed {
		return
	}
	removed := false
	for _, id := range r.progressIDs {
		if id != r.id && !r.conf.IsMember(id) {
			r.sendAppend(id) // the last it hears: the change that removed it committed
			removed = true
		}
	}
	if removed {
		r.syncProgress()
	}
	if r.isVoter(r.id) {
		return
	}
	r.logger.Info("raft: stepping down, the configuration that removed this leader committed",
		"term", r.term, "index", r.confs.latestIndex())
	r.sendCommit() // what it knows committed, the change included, goes out now
	if to := r.bestTransferTarget(); to != None && r.progress[to].match == r.log.lastIndex() {
		r.sendTimeoutNow(to)
	}
	r.becomeFollower(r.term, None)
}
