package kv

import (
	"bytes"
	"slices"
)

// This file holds the replicated half of etcd's leases: which leases exist, the TTL
// each was granted, the remaining TTL last checkpointed, and which keys are attached
// to each. Everything here changes only through commands in the log, so every
// replica holds the same leases. What depends on the clock (when a lease expires,
// renewals by keep-alives) is not here: the server's lessor keeps it on the leader
// and proposes a LeaseRevoke when a lease expires, as etcd's primary lessor does.

// MaxLeaseTTL is the largest TTL, in seconds, a lease may be granted: etcd's.
const MaxLeaseTTL = 9_000_000_000

// maxLeaseCheckpoints bounds the checkpoints of one LeaseCheckpointRequest, so that
// one command stays far below the entry size limit (each takes at most 20 bytes).
// The server's lessor sends at most 1,000 per command, as etcd does.
const maxLeaseCheckpoints = 10_000

// LeaseGrantRequest mirrors etcdserverpb.LeaseGrantRequest. ID must not be 0: the
// server picks one for a client that asks it to before proposing. TTL is stored as
// given; the server raises a TTL below its minimum (which depends on its election
// timeout, and so cannot be part of the state machine) before proposing.
type LeaseGrantRequest struct {
	ID  int64
	TTL int64
}

// LeaseGrantResponse mirrors etcdserverpb.LeaseGrantResponse.
type LeaseGrantResponse struct {
	Header ResponseHeader
	ID     int64
	TTL    int64
}

// LeaseRevokeRequest mirrors etcdserverpb.LeaseRevokeRequest.
type LeaseRevokeRequest struct {
	ID int64
}

// LeaseRevokeResponse mirrors etcdserverpb.LeaseRevokeResponse. ID, which etcd's
// response lacks, names the lease revoked, for the server's lessor.
type LeaseRevokeResponse struct {
	Header ResponseHeader
	ID     int64
}

// LeaseCheckpoint mirrors etcdserverpb.LeaseCheckpoint: the remaining TTL of one
// lease in seconds, as the leader saw it; 0 clears the checkpoint, so that the lease
// counts from its full TTL again.
type LeaseCheckpoint struct {
	ID           int64
	RemainingTTL int64
}

// LeaseCheckpointRequest mirrors etcdserverpb.LeaseCheckpointRequest.
type LeaseCheckpointRequest struct {
	Checkpoints []LeaseCheckpoint
}

// LeaseCheckpointResponse mirrors etcdserverpb.LeaseCheckpointResponse. Checkpoints,
// which etcd's response lacks, are those that applied (a checkpoint of a lease that
// is gone is skipped), for the server's lessor.
type LeaseCheckpointResponse struct {
	Header      ResponseHeader
	Checkpoints []LeaseCheckpoint
}

// LeaseInfo is what the state machine knows of one lease.
type LeaseInfo struct {
	ID int64
	// TTL is the TTL granted, in seconds.
	TTL int64
	// RemainingTTL is the last checkpoint of the remaining TTL in seconds, 0 if
	// none: a new leader counts the lease down from it instead of from TTL.
	RemainingTTL int64
}

// grantTable holds the leases granted and not yet revoked.
//
// Invariant: a key is in grant g's keys exactly when the key is live and its live
// revision carries g's id. (A key whose revision names a lease that does not exist
// is attached to nothing; only a snapshot written before this build granted leases
// can hold one, as the server then stored any lease id a put gave.)
type grantTable struct {
	byID map[int64]*grant
}

// grant is one lease. Its keys are held by their keyIndex: a live key keeps its
// keyIndex for as long as it lives (compaction drops only keys with no history left,
// and Restore builds a new table).
type grant struct {
	LeaseInfo
	keys map[*keyIndex]struct{}
}

func (t *grantTable) get(id int64) *grant {
	if id == 0 {
		return nil
	}
	return t.byID[id]
}

func (t *grantTable) add(info LeaseInfo) *grant {
	if t.byID == nil {
		t.byID = map[int64]*grant{}
	}
	g := &grant{LeaseInfo: info}
	t.byID[info.ID] = g
	return g
}

// attach records that ki's live revision carries lease id; detach that it no longer
// does. Either is a no-op for id 0 or a lease that does not exist.
func (t *grantTable) attach(id int64, ki *keyIndex) {
	if g := t.get(id); g != nil {
		if g.keys == nil {
			g.keys = map[*keyIndex]struct{}{}
		}
		g.keys[ki] = struct{}{}
	}
}

func (t *grantTable) detach(id int64, ki *keyIndex) {
	if g := t.get(id); g != nil {
		delete(g.keys, ki)
	}
}

// sorted returns every lease's info in id order.
func (t *grantTable) sorted() []LeaseInfo {
	out := make([]LeaseInfo, 0, len(t.byID))
	for _, g := range t.byID {
		out = append(out, g.LeaseInfo)
	}
	slices.SortFunc(out, func(a, b LeaseInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// sortedKeys returns g's keys in key order, the order etcd deletes them in.
func (g *grant) sortedKeys() []*keyIndex {
	keys := make([]*keyIndex, 0, len(g.keys))
	for ki := range g.keys {
		keys = append(keys, ki)
	}
	slices.SortFunc(keys, func(a, b *keyIndex) int { return bytes.Compare(a.key, b.key) })
	return keys
}

// liveLease returns the lease id the key's live revision carries, 0 if the key is
// not live or has none.
func (ki *keyIndex) liveLease(leases *leaseTable) int64 {
	if !ki.isLive() {
		return 0
	}
	g := &ki.gens[len(ki.gens)-1]
	return leaseID(leases.ids, g.revs[len(g.revs)-1].lease)
}

// checkLeaseGrant runs the checks of a grant that need no state, those etcd's
// lessor makes first.
func checkLeaseGrant(r *LeaseGrantRequest) error {
	switch {
	case r.ID == 0:
		// The server picks an id for a client that asks it to; etcd's lessor answers
		// this for a grant that reaches it without one.
		return ErrLeaseNotFound
	case r.TTL > MaxLeaseTTL:
		return ErrLeaseTTLTooLarge
	}
	return nil
}

func checkLeaseCheckpoint(r *LeaseCheckpointRequest) error {
	if len(r.Checkpoints) > maxLeaseCheckpoints {
		return ErrTooManyCheckpoints
	}
	return nil
}

// leaseGrant mirrors etcd's lessor.Grant.
func (st *state) leaseGrant(r *LeaseGrantRequest) (*LeaseGrantResponse, error) {
	if st.grants.get(r.ID) != nil {
		return nil, ErrLeaseExists
	}
	st.grants.add(LeaseInfo{ID: r.ID, TTL: r.TTL})
	return &LeaseGrantResponse{Header: ResponseHeader{Revision: st.rev}, ID: r.ID, TTL: r.TTL}, nil
}

// leaseRevoke mirrors etcd's lessor.Revoke: every key attached to the lease is
// deleted in key order by one write, so that all the deletes share one revision,
// and through the same delete DeleteRange uses, so that they look like any other
// delete to whoever follows the store's changes. The command is a few bytes however
// many keys it deletes: its cost is in applying, which is at most what the puts that
// attached the keys cost.
func (st *state) leaseRevoke(r *LeaseRevokeRequest) (*LeaseRevokeResponse, error) {
	g := st.grants.get(r.ID)
	if g == nil {
		return nil, ErrLeaseNotFound
	}
	if len(g.keys) > 0 {
		w := st.beginWrite()
		for _, ki := range g.sortedKeys() {
			w.deleteRange(&DeleteRangeRequest{Key: ki.key})
		}
		w.end()
	}
	delete(st.grants.byID, r.ID)
	return &LeaseRevokeResponse{Header: ResponseHeader{Revision: st.rev}, ID: r.ID}, nil
}

// leaseCheckpoint mirrors etcd's lessor.Checkpoint for each checkpoint in turn; a
// lease that is gone is skipped.
func (st *state) leaseCheckpoint(r *LeaseCheckpointRequest) *LeaseCheckpointResponse {
	resp := &LeaseCheckpointResponse{Header: ResponseHeader{Revision: st.rev}}
	for _, cp := range r.Checkpoints {
		if g := st.grants.get(cp.ID); g != nil {
			g.RemainingTTL = max(cp.RemainingTTL, 0)
			resp.Checkpoints = append(resp.Checkpoints, LeaseCheckpoint{ID: cp.ID, RemainingTTL: g.RemainingTTL})
		}
	}
	return resp
}

// checkPutLease is etcd's checkLease: a put may name only a lease that exists.
func (st *state) checkPutLease(p *PutRequest) error {
	if p.Lease != 0 && st.grants.get(p.Lease) == nil {
		return ErrLeaseNotFound
	}
	return nil
}

// Lease returns the lease with the given id, if it exists.
func (s *Store) Lease(id int64) (LeaseInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if g := s.mu.st.grants.get(id); g != nil {
		return g.LeaseInfo, true
	}
	return LeaseInfo{}, false
}

// LeaseKeys returns the keys attached to the lease, in key order; nil if it has
// none or does not exist. The slices are shared with the store: treat them as
// read-only.
func (s *Store) LeaseKeys(id int64) [][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.grants.get(id).keyBytes()
}

// keyBytes returns g's keys in key order; nil if g is nil or has none.
func (g *grant) keyBytes() [][]byte {
	if g == nil || len(g.keys) == 0 {
		return nil
	}
	sorted := g.sortedKeys()
	keys := make([][]byte, len(sorted))
	for i, ki := range sorted {
		keys[i] = ki.key
	}
	return keys
}

// Leases returns every lease, in id order.
func (s *Store) Leases() []LeaseInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.grants.sorted()
}

// minLeaseIDGarbage is the least number of ids no revision names for which
// collectLeaseIDs rebuilds the lease table (a variable so that tests can make it
// small).
var minLeaseIDGarbage = 4096

// collectLeaseIDs rebuilds the lease table with only the ids that retained revisions
// name, once the others outnumber them (and minLeaseIDGarbage): a workload of short
// sessions grants a lease per session, and each would otherwise keep its entry for
// the store's life. The rebuild rewrites every revision's lease index, in a pass over
// the revisions that comes after at least as many ids were dropped, so it costs a
// constant per id; a SnapshotView reads the indexes, so it waits for the view, as
// collectValues does.
func (st *state) collectLeaseIDs() {
	ids := st.leases.ids
	if len(ids) < minLeaseIDGarbage {
		return
	}
	used := make([]bool, len(ids))
	named := 0
	st.eachRev(func(r *keyRev, _ bool) {
		if !used[r.lease] {
			used[r.lease] = true
			named++
		}
	})
	if garbage := len(ids) - named; garbage < named || garbage < minLeaseIDGarbage {
		return
	}
	if st.snapMu != nil {
		st.snapMu.Lock()
		defer st.snapMu.Unlock()
	}
	var t leaseTable
	remap := make([]uint32, len(ids))
	for i := 1; i < len(ids); i++ {
		if used[i] {
			remap[i] = t.intern(ids[i])
		}
	}
	st.eachRev(func(r *keyRev, _ bool) { r.lease = remap[r.lease] })
	st.leases = t
}
