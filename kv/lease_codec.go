package kv

// The wire form of the lease commands and their results, in codec.go's conventions:
//
//	grant            = id:varint ttl:varint
//	revoke           = id:varint
//	checkpoint       = n:uvarint (id:varint remainingTTL:varint)*n
//	grant result     = header id:varint ttl:varint
//	revoke result    = header id:varint
//	checkpoint result = header checkpoint

// minCheckpointBytes is the smallest checkpoint encoding: two one-byte varints.
const minCheckpointBytes = 2

func (e *encoder) leaseCommand(c *Command) {
	switch {
	case c.LeaseGrant != nil:
		e.varint(c.LeaseGrant.ID)
		e.varint(c.LeaseGrant.TTL)
	case c.LeaseRevoke != nil:
		e.varint(c.LeaseRevoke.ID)
	case c.LeaseCheckpoint != nil:
		e.checkpoints(c.LeaseCheckpoint.Checkpoints)
	}
}

func (e *encoder) checkpoints(cps []LeaseCheckpoint) {
	e.uvarint(uint64(len(cps)))
	for _, cp := range cps {
		e.varint(cp.ID)
		e.varint(cp.RemainingTTL)
	}
}

func (d *decoder) leaseCommand(kind opKind, c *Command) {
	switch kind {
	case opLeaseGrant:
		c.LeaseGrant = &LeaseGrantRequest{ID: d.varint(), TTL: d.varint()}
	case opLeaseRevoke:
		c.LeaseRevoke = &LeaseRevokeRequest{ID: d.varint()}
	case opLeaseCheckpoint:
		c.LeaseCheckpoint = &LeaseCheckpointRequest{Checkpoints: d.checkpoints()}
	}
}

func (d *decoder) checkpoints() []LeaseCheckpoint {
	n := d.count(minCheckpointBytes, maxLeaseCheckpoints)
	if n == 0 {
		return nil
	}
	cps := make([]LeaseCheckpoint, n)
	for i := range cps {
		cps[i] = LeaseCheckpoint{ID: d.varint(), RemainingTTL: d.varint()}
	}
	return cps
}

// leaseResult encodes the lease response r holds, if any, and reports whether it
// held one.
func (e *encoder) leaseResult(r *Result) bool {
	switch {
	case r.LeaseGrant != nil:
		e.byte(byte(opLeaseGrant))
		e.varint(r.LeaseGrant.Header.Revision)
		e.varint(r.LeaseGrant.ID)
		e.varint(r.LeaseGrant.TTL)
	case r.LeaseRevoke != nil:
		e.byte(byte(opLeaseRevoke))
		e.varint(r.LeaseRevoke.Header.Revision)
		e.varint(r.LeaseRevoke.ID)
	case r.LeaseCheckpoint != nil:
		e.byte(byte(opLeaseCheckpoint))
		e.varint(r.LeaseCheckpoint.Header.Revision)
		e.checkpoints(r.LeaseCheckpoint.Checkpoints)
	default:
		return false
	}
	return true
}

func (d *decoder) leaseResult(kind opKind, r *Result) {
	switch kind {
	case opLeaseGrant:
		r.LeaseGrant = &LeaseGrantResponse{Header: ResponseHeader{Revision: d.varint()}, ID: d.varint(), TTL: d.varint()}
	case opLeaseRevoke:
		r.LeaseRevoke = &LeaseRevokeResponse{Header: ResponseHeader{Revision: d.varint()}, ID: d.varint()}
	case opLeaseCheckpoint:
		r.LeaseCheckpoint = &LeaseCheckpointResponse{Header: ResponseHeader{Revision: d.varint()}, Checkpoints: d.checkpoints()}
	}
}
