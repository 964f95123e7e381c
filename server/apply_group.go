package server

import (
	"errors"

	"raftkv/kv"
	"raftkv/raft"
)

// The apply loop groups consecutive put entries into one engine batch
// (kv.Store.BeginGroup): under load the Node hands over committed entries a batch
// at a time, and committing each entry's batch on its own cost pebble's commit
// and a rewrite of the applied index per put. A group holds the entries that are
// waiting in the Apply channel when each is applied, up to maxApplyGroup entries
// and maxApplyGroupBytes of commands, all of one term; it commits before any
// other entry applies (a no-op, a snapshot, a membership change, any command
// but a put) and when the channel is empty, so a lone put still commits at once.
// Every grouped entry's answer (waits.applied, and the lease and auth hooks) waits
// for that commit, until which this member's reads do not see the group: a client
// told of its put reads it back here, as when each entry committed on its own.
const (
	maxApplyGroup      = 64
	maxApplyGroupBytes = 4 << 20
)

// applyGroup is the open group: the entries applied into it, whose answers wait
// for the commit.
type applyGroup struct {
	entries []groupedEntry
	bytes   int
	term    uint64
}

type groupedEntry struct {
	index uint64
	env   envelope
	res   kv.Result
}

// joins says msg may be applied into the open group (or open one): a put's
// entry of the group's term, while the group has room.
func (g *applyGroup) joins(msg raft.ApplyMsg) bool {
	if msg.Type != raft.ApplyCommand {
		return false
	}
	if len(g.entries) > 0 && (msg.Term != g.term || len(g.entries) >= maxApplyGroup || g.bytes+len(msg.Command) > maxApplyGroupBytes) {
		return false
	}
	env, err := decodeEnvelope(msg.Command)
	return err == nil && env.kind == kindKV && kv.IsPut(env.payload)
}

// applyGrouped applies the put entry msg into the open group, opening it if need
// be, and holds back its answer until endApplyGroup.
func (s *Server) applyGrouped(msg raft.ApplyMsg) {
	g := &s.group
	if len(g.entries) == 0 {
		s.sm.store.BeginGroup()
		g.term = msg.Term
	}
	env, res := s.execute(msg.Index, msg.Command)
	if errors.Is(res.Err, kv.ErrEngineFailed) {
		s.storeFailed(msg.Index, res.Err)
	}
	g.entries = append(g.entries, groupedEntry{index: msg.Index, env: env, res: res})
	g.bytes += len(msg.Command)
}

// endApplyGroup commits the open group, if any, and answers its entries in order.
// If the commit fails, none of them applied: each is answered with the failure,
// and the member stops (storeFailed).
func (s *Server) endApplyGroup() {
	g := &s.group
	if len(g.entries) == 0 {
		return
	}
	err := s.sm.store.EndGroup()
	s.metrics.applyGroup.Observe(float64(len(g.entries)))
	if err != nil {
		s.storeFailed(g.entries[0].index, err)
	}
	for i := range g.entries {
		e := &g.entries[i]
		if err != nil {
			e.res = kv.Result{Err: err}
		}
		s.authApplied(e.index, &e.res)
		s.leaseApplied(&e.res)
		s.waits.applied(e.index, e.env.proposer == s.proposer, e.env.seq, e.res)
		*e = groupedEntry{} // no reference to the answers
	}
	g.entries, g.bytes = g.entries[:0], 0
}
