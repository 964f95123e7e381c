package kv

import "fmt"

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
// Leases are records in the engine (engine_lease.go): a grant per lease and an
// attachment per key a live version carries the lease of.

// Lease returns the lease with the given id, if it exists. A read the engine
// fails stops the store (Failed) and returns none.
func (s *Store) Lease(id int64) (LeaseInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	info, ok, err := s.mu.st.e.lease(id)
	if err != nil {
		_ = s.mu.st.e.readFailed(engineReadFailed(fmt.Sprintf("lease %d", id), err))
		return LeaseInfo{}, false
	}
	return info, ok
}

// LeaseKeys returns the keys attached to the lease, in key order; nil if it has
// none or does not exist. A read the engine fails stops the store (Failed) and
// returns none.
func (s *Store) LeaseKeys(id int64) [][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys, err := s.mu.st.e.leaseKeys(id)
	if err != nil {
		_ = s.mu.st.e.readFailed(engineReadFailed(fmt.Sprintf("the keys of lease %d", id), err))
		return nil
	}
	return keys
}

// Leases returns every lease, in id order. A read the engine fails stops the
// store (Failed) and returns none.
func (s *Store) Leases() []LeaseInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	leases, err := s.mu.st.e.leases()
	if err != nil {
		_ = s.mu.st.e.readFailed(engineReadFailed("the leases", err))
		return nil
	}
	return leases
}
