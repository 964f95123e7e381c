package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The corruption check (etcd's --corrupt-check-time and InitialCorruptCheck): the
// members compare HashKV at one revision, and a member whose hash differs from the
// majority's gets the CORRUPT alarm, which stops writes (alarm.go).
//
// The hashes travel through the Raft log rather than a member-to-member call: a
// check is an entry naming a revision (kindHashCheck); each member that applies it
// hashes its history up to that revision in the background (HashKV is stable
// under later writes, so when does not matter, as long as compaction has not passed
// it) and proposes its answer (kindHashReport). The member that started the check
// gathers the answers as they apply and raises the alarm through the log. etcd asks
// its peers over their peer HTTP port instead; ours carries only Raft's one-way
// messages, and the client port needs credentials under auth that members do not
// have, whereas every member can propose. The price is 1 + members entries per
// check, which every member applies: nothing at one check a minute. The reports are
// not state: applying one only hands it to the member waiting for it, if any.

const (
	// kindHashCheck asks every member for its HashKV: checkID(uvarint) rev(varint).
	kindHashCheck byte = 10
	// kindHashReport is a member's answer: checkID(uvarint) member(uvarint)
	// rev(varint) compactRev(varint) hash(uvarint) ok(1).
	kindHashReport byte = 11
	// maxPendingChecks bounds the checks a member waits on at once.
	maxPendingChecks = 4
)

type hashReport struct {
	checkID, member uint64
	rev, compactRev int64
	hash            uint32
	ok              bool // false: the member could not hash rev (compacted)
}

func (r hashReport) encode() []byte {
	b := binary.AppendUvarint(nil, r.checkID)
	b = binary.AppendUvarint(b, r.member)
	b = binary.AppendVarint(b, r.rev)
	b = binary.AppendVarint(b, r.compactRev)
	b = binary.AppendUvarint(b, uint64(r.hash))
	if r.ok {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeHashReport(p []byte) (hashReport, bool) {
	var r hashReport
	var ok bool
	var hash uint64
	if r.checkID, p, ok = readUvarint(p); !ok {
		return r, false
	}
	if r.member, p, ok = readUvarint(p); !ok {
		return r, false
	}
	var n int
	if r.rev, n = binary.Varint(p); n <= 0 {
		return r, false
	}
	p = p[n:]
	if r.compactRev, n = binary.Varint(p); n <= 0 {
		return r, false
	}
	p = p[n:]
	if hash, p, ok = readUvarint(p); !ok || len(p) != 1 {
		return r, false
	}
	r.hash, r.ok = uint32(hash), p[0] == 1
	return r, true
}

// corruptChecks is a member's part in the checks: the hash it computes (one at a
// time), and the checks it started and waits on.
type corruptChecks struct {
	mu      sync.Mutex
	hashing bool
	pending map[uint64]chan hashReport
}

// applyHashCheck is the apply loop's part of a kindHashCheck entry: start hashing
// in the background, unless a hash is being computed already (its report answers
// an older check; the checker waits for a later one).
func (s *Server) applyHashCheck(payload []byte) {
	checkID, rest, ok := readUvarint(payload)
	rev, n := binary.Varint(rest)
	if !ok || n <= 0 {
		return
	}
	c := &s.corrupt
	c.mu.Lock()
	if c.hashing {
		c.mu.Unlock()
		return
	}
	c.hashing = true
	c.mu.Unlock()
	s.goTracked(func() {
		defer func() { c.mu.Lock(); c.hashing = false; c.mu.Unlock() }()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		defer cancel()
		go func() { // the hash and the report end when the server stops
			select {
			case <-s.stopc:
				cancel()
			case <-ctx.Done():
			}
		}()
		h, err := s.hashKV(ctx, rev)
		r := hashReport{checkID: checkID, member: s.id, rev: rev, compactRev: h.compactRevision, hash: h.hash, ok: err == nil}
		if _, err := s.propose(ctx, kindHashReport, r.encode()); err != nil {
			s.logger.Debug("corruption check: could not report this member's hash", "rev", rev, "err", err)
		}
	})
}

// applyHashReport hands a report to the check waiting for it on this member.
func (s *Server) applyHashReport(payload []byte) {
	r, ok := decodeHashReport(payload)
	if !ok {
		return
	}
	c := &s.corrupt
	c.mu.Lock()
	ch := c.pending[r.checkID]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- r:
		default: // a duplicate beyond the voters: the check has what it needs
		}
	}
}

// checkCorruption runs one check: it proposes a check at this member's revision,
// gathers the voters' reports until all came or ctx ends, and raises CORRUPT for
// every member whose hash differs from the one most members report (for every
// member if no hash has a majority of the reports). Members that could not hash
// the revision (compacted meanwhile) are left out. It returns the members alarmed.
func (s *Server) checkCorruption(ctx context.Context) ([]uint64, error) {
	voters := s.node.MembershipStatus().Voters
	checkID := newProposerID()
	ch := make(chan hashReport, 2*len(voters))
	c := &s.corrupt
	c.mu.Lock()
	if len(c.pending) >= maxPendingChecks {
		c.mu.Unlock()
		return nil, fmt.Errorf("%d corruption checks in flight already", len(c.pending))
	}
	if c.pending == nil {
		c.pending = map[uint64]chan hashReport{}
	}
	c.pending[checkID] = ch
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.pending, checkID); c.mu.Unlock() }()

	rev := s.sm.store.Revision()
	payload := binary.AppendVarint(binary.AppendUvarint(nil, checkID), rev)
	if _, err := s.propose(ctx, kindHashCheck, payload); err != nil {
		return nil, err
	}
	reports := map[uint64]hashReport{}
gather:
	for len(reports) < len(voters) {
		select {
		case r := <-ch:
			reports[r.member] = r
		case <-ctx.Done():
			break gather
		case <-s.stopc:
			return nil, errStopped
		}
	}
	counts := map[[2]int64]int{} // (compactRev, hash) → members
	usable := 0
	for _, r := range reports {
		if r.ok {
			counts[[2]int64{r.compactRev, int64(r.hash)}]++
			usable++
		}
	}
	var majority [2]int64
	found := false
	for k, n := range counts {
		if 2*n > usable {
			majority, found = k, true
		}
	}
	if len(counts) <= 1 {
		s.logger.Debug("corruption check passed", "rev", rev, "members", usable)
		return nil, nil
	}
	var alarmed []uint64
	for id, r := range reports {
		if !r.ok || (found && [2]int64{r.compactRev, int64(r.hash)} == majority) {
			continue
		}
		s.logger.Error("corruption check: a member's key-value history differs; raising the CORRUPT alarm",
			"rev", rev, "alarm_member", fmt.Sprintf("%x", id), "hash", r.hash, "compact_rev", r.compactRev,
			"majority_hash", majority[1], "majority_compact_rev", majority[0], "has_majority", found)
		k := alarmKey{id, pb.AlarmType_CORRUPT}
		if _, err := s.propose(ctx, kindAlarm, encodeAlarmChange(pb.AlarmRequest_ACTIVATE, k)); err != nil {
			return alarmed, err
		}
		alarmed = append(alarmed, id)
	}
	return alarmed, nil
}

// runCorruptChecks runs the start-up check, if asked, once this member has caught
// up (a linearizable read succeeded), and then, every CorruptCheckTime while this
// member leads, the periodic one. It returns when the server stops.
func (s *Server) runCorruptChecks() {
	if s.cfg.InitialCorruptCheck {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
			err := s.linearizableRead(ctx)
			if err == nil {
				var alarmed []uint64
				alarmed, err = s.checkCorruption(ctx)
				if err == nil {
					s.logger.Info("initial corruption check done", "members_alarmed", len(alarmed))
				}
			}
			cancel()
			if err == nil {
				break
			}
			select {
			case <-s.stopc:
				return
			case <-time.After(s.cfg.ElectionTimeout):
			}
		}
	}
	if s.cfg.CorruptCheckTime <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.CorruptCheckTime)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		}
		if _, isLeader := s.node.State(); !isLeader {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		if _, err := s.checkCorruption(ctx); err != nil {
			s.logger.Warn("corruption check failed", "err", err)
		}
		cancel()
	}
}
