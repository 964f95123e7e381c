package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"raftkv/kv"
	"raftkv/raft"
)

// The member list at run time (the Cluster service that changes it is cluster.go).
//
// Raft's configuration (who votes, who learns) lives in the log and the snapshots
// (raft/confchange.go). What the server adds is each member's attributes: its peer
// URLs, carried in the Context of the configuration change that adds it, its name and
// client URLs, which it publishes itself once it runs (kindMember), and new peer URLs
// (MemberUpdate, an ordinary entry, kindMemberUpdate). All of it is state of the
// state machine (stateMachine.mu.members), applied in log order and written in its
// snapshots, so every member lists the same members after the same index, and a
// restart rebuilds the list from the snapshot and the log. A removed member stays in
// the list as removed (not listed), as etcd keeps removed ids: its id is never reused
// and its streams stay refused.
//
// Each change applied is also a change of the transport's peers: an added member is
// dialled at its first peer URL, an updated one redialled, a removed one dropped and
// refused (transport.RemovePeer). A member that applies its own removal, or whose
// streams a peer refuses as removed (a removal it was cut off from), stops
// (removedFromCluster), and cmd/raftkv exits with its own code so that a supervisor
// does not restart it.

// ErrRemoved is Server.Err once the member stopped because it was removed from the
// cluster.
var ErrRemoved = errors.New("this member was removed from the cluster; it stops here. " +
	"Do not restart it on its data dir: to bring the machine back, add it again with " +
	"`raftkv member add` (etcdctl member add) and start it on an empty data dir with --initial-cluster-state existing")

// applyConfChange applies a committed configuration change to the member list and the
// transport, and wakes the request that proposed it, if it is this member's.
func (s *Server) applyConfChange(msg raft.ApplyMsg) {
	cc := msg.ConfChange
	env, err := decodeEnvelope(cc.Context)
	var rec member
	if err == nil && env.kind == kindConf {
		if rec, _, err = decodeMember(env.payload); err != nil {
			s.logger.Error("configuration change with an undecodable member record", "index", msg.Index, "err", err)
			rec = member{}
		}
	} else {
		env = envelope{}
	}
	rec.ID = cc.NodeID
	switch cc.Type {
	case raft.ConfChangeAddVoter, raft.ConfChangeAddLearner:
		rec.IsLearner = cc.Type == raft.ConfChangeAddLearner
		rec.Name, rec.ClientURLs = "", nil // the member publishes them once it runs
		s.sm.addMember(rec)
		s.peerUpdated(rec)
	case raft.ConfChangePromote:
		s.sm.promoteMember(cc.NodeID)
	case raft.ConfChangeRemove:
		s.sm.removeMember(cc.NodeID)
		if cc.NodeID != s.id {
			s.transport.RemovePeer(cc.NodeID)
		}
	}
	if cc.NodeID == s.id {
		s.noteOwnRole()
	}
	s.applyServerState(msg.Index, kv.Result{})
	s.waits.applied(msg.Index, env.proposer != 0 && env.proposer == s.proposer, env.seq, kv.Result{})
	if cc.Type == raft.ConfChangeRemove && cc.NodeID == s.id {
		// After the proposer's wait is answered: the stop that follows would
		// otherwise race it, and a removed leader would answer the change it made
		// with "server stopped" (its caller then retries, and hears "member not
		// found").
		s.removedFromCluster(fmt.Sprintf("it applied its own removal at index %d", msg.Index))
	}
	s.logger.Info("membership changed", "change", cc.Type.String(), "member", hexID(cc.NodeID), "index", msg.Index,
		"voters", hexIDs(msg.Membership.Voters), "learners", hexIDs(msg.Membership.Learners))
}

// applyMemberUpdate applies a MemberUpdate entry: the member's new peer URLs.
func (s *Server) applyMemberUpdate(payload []byte) kv.Result {
	m, _, err := decodeMember(payload)
	if err != nil {
		return kv.Result{Err: err}
	}
	if !s.sm.updatePeerURLs(m.ID, m.PeerURLs) {
		return kv.Result{Err: errMemberNotFound}
	}
	s.peerUpdated(m)
	s.logger.Info("member peer URLs updated", "member", hexID(m.ID), "peer_urls", m.PeerURLs)
	return kv.Result{}
}

// peerUpdated points the transport at member m's first peer URL.
func (s *Server) peerUpdated(m member) {
	if m.ID == s.id || len(m.PeerURLs) == 0 {
		return
	}
	addr, err := peerAddr(m.PeerURLs[0])
	if err == nil {
		err = s.transport.UpdatePeer(m.ID, addr)
	}
	if err != nil {
		s.logger.Warn("cannot dial a member at its peer URL", "member", hexID(m.ID), "peer_urls", m.PeerURLs, "err", err)
	}
}

// startingPeers is whom the transport dials at start, and which members it refuses
// as removed. member/cluster.json names the members the data dir was made with and
// is never rewritten, so it alone would leave out every member added since, and
// refuse no member removed since: a cluster whose members were replaced one by one
// would, once all restarted, not reach the members that now make its quorum. The
// store's member list holds every change applied up to its applied index, so it is
// laid over the file's; the changes the log holds past that index are applied again
// by the apply loop, which updates the transport as each applies.
func (s *Server) startingPeers() (addrs map[uint64]string, removed []uint64, err error) {
	addrs = map[uint64]string{}
	for id, m := range s.peers {
		if m.isRemoved || id == s.id || len(m.PeerURLs) == 0 {
			continue
		}
		if addrs[id], err = peerAddr(m.PeerURLs[0]); err != nil {
			return nil, nil, err
		}
	}
	for _, m := range s.sm.allMembers() {
		switch {
		case m.ID == s.id:
		case m.isRemoved:
			delete(addrs, m.ID)
			removed = append(removed, m.ID)
		case len(m.PeerURLs) > 0:
			addr, err := peerAddr(m.PeerURLs[0])
			if err != nil {
				s.logger.Warn("cannot dial a member at its peer URL", "member", hexID(m.ID), "peer_urls", m.PeerURLs, "err", err)
				continue
			}
			addrs[m.ID] = addr
		}
	}
	return addrs, removed, nil
}

// syncPeers points the transport at the member list a snapshot installed: members
// dialled at their peer URLs, removed ones refused. A peer the list does not name is
// left alone: it may be a member added after the snapshot, whose addition the log
// replays next, and refusing it as removed would stop it.
func (s *Server) syncPeers() {
	for _, m := range s.sm.allMembers() {
		switch {
		case m.ID == s.id:
			// A snapshot never stops this member: its own removal entry, or a
			// peer's refusal, does.
		case m.isRemoved:
			s.transport.RemovePeer(m.ID)
		default:
			s.peerUpdated(m)
		}
	}
}

// removal is the member's stop on removal: once.
type removal struct {
	once   sync.Once
	c      chan struct{}
	reason string
}

// removedFromCluster stops the member: it logs why, once, and closes the channel
// Done waits on. It must not block: the apply loop and the transport call it.
func (s *Server) removedFromCluster(why string) {
	s.removal.once.Do(func() {
		s.removal.reason = why
		s.logger.Error("this member was removed from the cluster; stopping. Do not restart it on its data dir: add it again "+
			"(raftkv member add, etcdctl member add) and start it on an empty data dir with --initial-cluster-state existing",
			"why", why)
		close(s.removal.c)
	})
}

// clusterInfo is what a joining member hears from this one (transport.FetchCluster):
// every member record, the removed ones too.
func (s *Server) clusterInfo() []byte {
	members := s.sm.allMembers()
	// Added by an entry not applied yet: the member may be joining to make it
	// commit (pending_member.go).
	if m, ok := s.unappliedAdd(); ok && !slices.ContainsFunc(members, func(r member) bool { return r.ID == m.ID }) {
		members = append(members, m)
	}
	return encodeMembers(members)
}

// encodeMembers encodes records as a count and length-prefixed records, as the
// snapshot's member section.
func encodeMembers(members []member) []byte {
	b := binary.AppendUvarint(nil, uint64(len(members)))
	for i := range members {
		rec := members[i].encode()
		b = binary.AppendUvarint(b, uint64(len(rec)))
		b = append(b, rec...)
	}
	return b
}

// maxMembers bounds a member list read from a snapshot or a peer.
const maxMembers = 1 << 16

// decodeMembers reverses encodeMembers and returns what follows the records.
func decodeMembers(data []byte) ([]member, []byte, error) {
	n, data, ok := readUvarint(data)
	if !ok || n > maxMembers {
		return nil, nil, fmt.Errorf("server: member count is corrupt")
	}
	members := make([]member, 0, n)
	for range n {
		var size uint64
		if size, data, ok = readUvarint(data); !ok || size > uint64(len(data)) {
			return nil, nil, fmt.Errorf("server: member record is corrupt")
		}
		m, _, err := decodeMember(data[:size])
		if err != nil {
			return nil, nil, err
		}
		members = append(members, m)
		data = data[size:]
	}
	return members, data, nil
}

func hexIDs(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = hexID(id)
	}
	return strings.Join(parts, ",")
}

// samePeerURLs reports whether a and b hold the same URLs in any order.
func samePeerURLs(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
