package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"raftkv/kv"
)

// Alarms, as etcd's: a set of (member, alarm) pairs that is replicated state. An
// alarm is raised or cleared by a kindAlarm entry, so every member applies the same
// alarms at the same index and refuses the same commands from there on, whichever
// member raised it; the set is in the state machine's snapshot. Two alarms change
// what applies:
//
//   - NOSPACE (the space quota, checkQuota): commands that need space are refused
//     with "etcdserver: mvcc: database space exceeded": Put, a Txn with a put in
//     either branch, LeaseGrant. Reads, deletes and compaction go on, so an operator
//     can make room, then disarm (etcdctl alarm disarm).
//   - CORRUPT (corrupt.go): every write is refused with "etcdserver: corrupt
//     cluster": Put, DeleteRange, a Txn, Compact, LeaseGrant, LeaseRevoke. Reads
//     go on, as in etcd, so the data can be inspected and saved.
//
// A refused command is decided at apply time from the replicated set, never from a
// member's local view, so the members stay identical.

// Alarm types are encoded as their int32's 32 bits (uint32), so that NOSPACE and
// CORRUPT keep the encoding they always had and every other type a client may
// raise, negative ones too, is kept: etcd keeps an alarm of any type, NOSPACE and
// CORRUPT being the two it acts on. A build before this one skipped types above
// CORRUPT as malformed and refuses a snapshot holding one (README: upgrading).
func alarmTypeBits(t pb.AlarmType) uint64 { return uint64(uint32(t)) }

func alarmTypeOfBits(v uint64) (pb.AlarmType, bool) {
	if v > math.MaxUint32 {
		return 0, false
	}
	return pb.AlarmType(int32(uint32(v))), true
}

// kindAlarm carries an alarm change: action(1) memberID(uvarint) alarm(uvarint).
// Its number is far from the kinds other work may add.
const kindAlarm byte = 9

type alarmKey struct {
	member uint64
	alarm  pb.AlarmType
}

// alarmTable is the set of raised alarms.
type alarmTable struct {
	mu  sync.RWMutex
	set map[alarmKey]struct{}
	// nospace and corrupt say whether any member has that alarm raised, read on
	// every applied command without the lock.
	nospace, corrupt atomic.Bool
}

// apply raises or clears one alarm and reports whether the set changed.
func (t *alarmTable) apply(action pb.AlarmRequest_AlarmAction, k alarmKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.set == nil {
		t.set = map[alarmKey]struct{}{}
	}
	_, had := t.set[k]
	switch action {
	case pb.AlarmRequest_ACTIVATE:
		t.set[k] = struct{}{}
	case pb.AlarmRequest_DEACTIVATE:
		delete(t.set, k)
	}
	t.refreshLocked()
	_, has := t.set[k]
	return had != has
}

func (t *alarmTable) refreshLocked() {
	var nospace, corrupt bool
	for k := range t.set {
		nospace = nospace || k.alarm == pb.AlarmType_NOSPACE
		corrupt = corrupt || k.alarm == pb.AlarmType_CORRUPT
	}
	t.nospace.Store(nospace)
	t.corrupt.Store(corrupt)
}

// list returns the raised alarms, by member then alarm.
func (t *alarmTable) list() []*pb.AlarmMember {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*pb.AlarmMember, 0, len(t.set))
	for k := range t.set {
		out = append(out, &pb.AlarmMember{MemberID: k.member, Alarm: k.alarm})
	}
	slices.SortFunc(out, func(a, b *pb.AlarmMember) int {
		if a.MemberID != b.MemberID {
			if a.MemberID < b.MemberID {
				return -1
			}
			return 1
		}
		return int(a.Alarm) - int(b.Alarm)
	})
	return out
}

func (t *alarmTable) has(k alarmKey) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.set[k]
	return ok
}

// encode appends the set, for the state machine's snapshot: count, then
// (member, alarm) pairs in list order.
func (t *alarmTable) encode(b []byte) []byte {
	alarms := t.list()
	b = binary.AppendUvarint(b, uint64(len(alarms)))
	for _, a := range alarms {
		b = binary.AppendUvarint(b, a.MemberID)
		b = binary.AppendUvarint(b, alarmTypeBits(a.Alarm))
	}
	return b
}

// decodeAlarms reads what encode wrote and returns the rest of data.
func decodeAlarms(data []byte) (map[alarmKey]struct{}, []byte, error) {
	n, data, ok := readUvarint(data)
	if !ok || n > 1<<16 {
		return nil, nil, fmt.Errorf("server: snapshot alarm count is corrupt")
	}
	set := map[alarmKey]struct{}{}
	for range n {
		var member, bits uint64
		if member, data, ok = readUvarint(data); ok {
			bits, data, ok = readUvarint(data)
		}
		alarm, typeOK := alarmTypeOfBits(bits)
		if !ok || !typeOK {
			return nil, nil, fmt.Errorf("server: snapshot alarm record is corrupt")
		}
		set[alarmKey{member, alarm}] = struct{}{}
	}
	return set, data, nil
}

// replace installs a decoded set (a restored snapshot).
func (t *alarmTable) replace(set map[alarmKey]struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.set = set
	t.refreshLocked()
}

func encodeAlarmChange(action pb.AlarmRequest_AlarmAction, k alarmKey) []byte {
	b := []byte{byte(action)}
	b = binary.AppendUvarint(b, k.member)
	return binary.AppendUvarint(b, alarmTypeBits(k.alarm))
}

// applyAlarmChange applies a kindAlarm entry's payload.
func (s *Server) applyAlarmChange(index uint64, payload []byte) {
	if len(payload) < 1 {
		s.logger.Error("skipping malformed alarm entry", "index", index)
		return
	}
	action := pb.AlarmRequest_AlarmAction(payload[0])
	member, rest, ok := readUvarint(payload[1:])
	var bits uint64
	if ok {
		bits, _, ok = readUvarint(rest)
	}
	alarm, typeOK := alarmTypeOfBits(bits)
	if !ok || !typeOK || (action != pb.AlarmRequest_ACTIVATE && action != pb.AlarmRequest_DEACTIVATE) {
		s.logger.Error("skipping malformed alarm entry", "index", index)
		return
	}
	k := alarmKey{member, alarm}
	if s.sm.alarms.apply(action, k) {
		s.logger.Warn("alarm "+map[bool]string{true: "raised", false: "cleared"}[action == pb.AlarmRequest_ACTIVATE],
			"alarm", k.alarm.String(), "alarm_member", fmt.Sprintf("%x", k.member), "index", index)
	}
}

// refusedByAlarm returns the error an alarm answers the kv command in payload
// with, or nil if it may apply. It decodes the command only while an alarm that
// refuses commands is raised.
func (t *alarmTable) refusedByAlarm(payload []byte) error {
	nospace, corrupt := t.nospace.Load(), t.corrupt.Load()
	if !nospace && !corrupt {
		return nil
	}
	cmd, err := kv.DecodeCommand(payload)
	if err != nil {
		return nil // the store refuses it on its own
	}
	if corrupt && (cmd.Put != nil || cmd.DeleteRange != nil || cmd.Txn != nil || cmd.Compact != nil ||
		cmd.LeaseGrant != nil || cmd.LeaseRevoke != nil) {
		return kv.ErrRefusedCorrupt
	}
	if nospace && needsSpace(cmd) {
		return kv.ErrRefusedNoSpace
	}
	return nil
}

// needsSpace says whether cmd may grow the store: etcd's quota cost is above 0.
func needsSpace(cmd *kv.Command) bool {
	return cmd.Put != nil || cmd.LeaseGrant != nil || (cmd.Txn != nil && txnPuts(cmd.Txn) > 0)
}

// txnPuts returns the bytes the puts of t (both branches, nested txns included)
// would add.
func txnPuts(t *kv.TxnRequest) int64 {
	var n int64
	for _, ops := range [2][]kv.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch {
			case op.Put != nil:
				n += putCost(op.Put)
			case op.Txn != nil:
				n += txnPuts(op.Txn)
			}
		}
	}
	return n
}

// putCostOverhead is what a revision costs beyond its key and value: etcd's quota
// counts 256 bytes per key for bbolt's pages; ours is the index's revision entry and
// the key's, rounded up.
const putCostOverhead = 64

func putCost(p *kv.PutRequest) int64 { return int64(len(p.Key)+len(p.Value)) + putCostOverhead }

// checkQuota is etcd's quota check before a write is proposed: a command that needs
// space and would take the store past --quota-backend-bytes raises the NOSPACE
// alarm for this member and is refused. The store's size here is the bytes in use
// (kv.Sizes.InUseBytes: the records the store holds, counted as they are written
// and as MVCC compaction drops them), not the engine's files, which keep what
// compaction dropped until pebble's own compactions or a Defragment reclaim it; so
// compaction alone makes room again, as etcd's in-use bytes fall at compaction.
func (s *Server) checkQuota(ctx context.Context, cmd *kv.Command) error {
	var cost int64
	switch {
	case cmd.Put != nil:
		cost = putCost(cmd.Put)
	case cmd.Txn != nil:
		cost = txnPuts(cmd.Txn)
	case cmd.LeaseGrant != nil:
		cost = putCostOverhead
	}
	if cost == 0 || s.cfg.QuotaBackendBytes < 0 {
		return nil
	}
	if s.sm.store.InUseBytes()+cost <= s.cfg.QuotaBackendBytes {
		return nil
	}
	k := alarmKey{s.id, pb.AlarmType_NOSPACE}
	if !s.sm.alarms.has(k) {
		s.logger.Warn("space quota exceeded: raising the NOSPACE alarm", "quota_bytes", s.cfg.QuotaBackendBytes,
			"in_use_bytes", s.sm.store.InUseBytes())
		_, _ = s.propose(ctx, kindAlarm, encodeAlarmChange(pb.AlarmRequest_ACTIVATE, k))
	}
	return rpctypes.ErrGRPCNoSpace
}

// activeAlarms returns the alarms raised on the cluster.
func (s *Server) activeAlarms() []*pb.AlarmMember { return s.sm.alarms.list() }

// Alarm lists, raises or clears alarms, as etcd's: reading them needs a user under
// auth, changing them root. A change goes through the log and answers once applied
// here, with the alarm if the change did something.
func (m *maintenanceService) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	s := m.s
	if r.Action == pb.AlarmRequest_GET {
		if err := s.requireUser(ctx); err != nil {
			return nil, err
		}
		resp := &pb.AlarmResponse{Header: s.header().pb(s.sm.store.Revision())}
		for _, a := range s.activeAlarms() { // as etcd: NONE lists them all, a type only its own
			if r.Alarm == pb.AlarmType_NONE || a.Alarm == r.Alarm {
				resp.Alarms = append(resp.Alarms, a)
			}
		}
		return resp, nil
	}
	if err := s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if (r.Action != pb.AlarmRequest_ACTIVATE && r.Action != pb.AlarmRequest_DEACTIVATE) ||
		(r.Action == pb.AlarmRequest_ACTIVATE && r.Alarm == pb.AlarmType_NONE) {
		// etcd applies these as nothing and answers an empty response.
		return &pb.AlarmResponse{Header: s.header().pb(s.sm.store.Revision())}, nil
	}
	k := alarmKey{r.MemberID, r.Alarm}
	had := s.sm.alarms.has(k)
	if _, err := s.propose(ctx, kindAlarm, encodeAlarmChange(r.Action, k)); err != nil {
		return nil, toGRPC(err)
	}
	resp := &pb.AlarmResponse{Header: s.header().pb(s.sm.store.Revision())}
	// As etcd's: an activation answers the alarm, raised now or before; a
	// deactivation answers it only if it was raised.
	if r.Action == pb.AlarmRequest_ACTIVATE || had {
		resp.Alarms = []*pb.AlarmMember{{MemberID: r.MemberID, Alarm: r.Alarm}}
	}
	return resp, nil
}

// Defragment returns the space compaction freed to the file system at once
// (kv.Store.Defragment: pebble compacts its whole key space), root only under auth
// as etcd's. Like etcd's, it holds up applying while it runs. It shrinks the
// engine's files (kv.Sizes.TotalBytes), which else shrink when pebble's own
// compactions reach what MVCC compaction dropped; the space quota counts the bytes
// in use, which fell at the compaction already.
func (m *maintenanceService) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := m.s.requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := m.s.sm.store.Defragment(); err != nil {
		return nil, toGRPC(err)
	}
	return &pb.DefragmentResponse{}, nil // no header, as etcd's
}
