package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"raftkv/kv"
	"raftkv/raft"
)

// This file is the write path: a request becomes a proposal, the proposal an entry
// in the log, and the entry a result the request waits for.
//
// On the leader a proposal follows the seed's rule: the run loop gives the index it
// will take (to the wait registry, raft.Node.ProposeAsync), and the request completes
// only if the entry applied at that index is its own; if another one is, leadership
// was lost and the client hears "leader changed".
//
// A follower forwards the proposal to the leader, which gives no index back. If the
// leader dies with it, nothing would ever tell the follower, and the request would
// wait for its whole timeout even with a new leader elected within a second. So a
// forwarded proposal is sent again, to the new leader (or proposed by this member, if
// it is the new leader), as soon as an entry of a newer term than the one it was sent
// in applies here: by then the new leader has committed every entry of the old terms
// it kept (Raft §5.4.2), so a proposal not applied yet was lost, or is about to be
// applied anyway. It is sent again, too, if no answer comes within
// resendAfterElections election timeouts, for a forwarded message the network lost.
// Every copy carries the same kv.ProposalID, and the state machine applies only the
// first to commit (kv.Store.ApplyOnce): a copy that commits too returns the first's
// result, so a write never applies twice, and its waiter gets the first application's
// result.

// resendAfterElections is how many election timeouts a forwarded proposal waits for
// its answer, with no change of term, before it is sent again. A commit normally takes
// one round trip; two election timeouts is far past what a live leader needs.
const resendAfterElections = 2

// errProposalExpired: a forwarded request was dropped by the state machine's
// deduplication bound (kv.ErrProposalExpired) and not applied.
var errProposalExpired = errors.New("raftkv: the forwarded request was not applied: too many of this member's later " +
	"requests were applied while it waited (kv.Config.MaxProposalResults); send it again")

// newProposerID draws this process's random, non-zero proposer id.
func newProposerID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// propose replicates a kind/payload through Raft and waits until it applies here,
// returning the state machine's result. On the leader it uses Start and the seed's
// rule; on a follower it forwards the proposal and sends it again as needed (see the
// top of this file).
func (s *Server) propose(ctx context.Context, kind byte, payload []byte) (kv.Result, error) {
	s.metrics.proposalsPending.Add(1)
	defer s.metrics.proposalsPending.Add(-1)
	now := time.Now()
	res, err := s.proposeWaiting(proposalContext{req: ctx, deadline: s.deadlines.get(now), start: now}, kind, payload)
	if err != nil {
		s.metrics.proposalsFailed.Add(1)
	}
	return res, err
}

// proposalContext is what ends a proposal's wait: its request's context (the client
// went away, or its own deadline passed) or the RequestTimeout deadline it shares
// with the proposals that started with it (deadline.go). start is when the request
// began, for the error a timeout gives (proposeCtxError).
type proposalContext struct {
	req      context.Context
	deadline context.Context
	start    time.Time
}

// requestContext is the proposalContext of a wait that ctx alone bounds.
func requestContext(ctx context.Context) proposalContext {
	return proposalContext{req: ctx, deadline: ctx, start: time.Now()}
}

// err is the error of whichever of pc's contexts ended, nil if neither did.
func (pc proposalContext) err() error {
	if err := pc.req.Err(); err != nil {
		return err
	}
	return pc.deadline.Err()
}

// proposeWaiting is propose, counted.
func (s *Server) proposeWaiting(pc proposalContext, kind byte, payload []byte) (kv.Result, error) {
	if err := pc.req.Err(); err != nil {
		return kv.Result{}, err // the client has gone: propose nothing (etcd's raft.Node.Propose says ctx.Err())
	}
	seq, wt := s.waits.register()
	defer s.waits.cancel(seq)

	data := encodeEnvelope(envelope{kind: kind, proposer: s.proposer, seq: seq, payload: payload})
	// The run loop tells the registry the index it gives the entry (or why it
	// refused it), before the entry can apply: the request waits once, for its
	// result, not first for its index (raft.Node.ProposeAsync).
	err := s.node.ProposeAsync(pc.req, pc.deadline.Done(), data, func(index, _ uint64, err error) {
		s.waits.proposed(seq, index, err)
	})
	if err == nil {
		res, werr := s.wait(pc, wt, nil)
		var refused notProposedError
		if !errors.As(werr, &refused) {
			return res, werr
		}
		err = refused.err
	}
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrProposalDropped):
		// ErrProposalDropped: this leader is handing leadership off (thesis §3.10) and
		// takes no proposal until it is done; forwarding waits for the new leader.
		return s.proposeResending(pc, wt, kind, seq, payload)
	}
	return kv.Result{}, s.raftError(err)
}

// proposeResending forwards a proposal and waits for it, sending it again whenever a
// newer term's entry applies first, or no answer comes for a while.
func (s *Server) proposeResending(pc proposalContext, wt *waiter, kind byte, seq uint64, payload []byte) (kv.Result, error) {
	resendAfter := resendAfterElections * s.cfg.ElectionTimeout
	for sends := 1; ; sends++ {
		data := encodeEnvelope(envelope{kind: kind, proposer: s.proposer, seq: seq, payload: payload,
			resendable: true, lowestPending: s.waits.lowestPending()})
		sentTerm, err := s.forward(pc, data)
		if err != nil {
			if sends > 1 && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				// An earlier copy went to a leader: as in etcd, the request ended
				// waiting for a proposal raft took.
				return kv.Result{}, s.proposeCtxError(err, pc.start)
			}
			return kv.Result{}, err
		}
		resend := &resendTrigger{s: s, sentTerm: sentTerm, timer: time.NewTimer(resendAfter)}
		res, err := s.wait(pc, wt, resend)
		resend.timer.Stop()
		if !errors.Is(err, errResend) {
			return res, err
		}
		s.logger.Debug("sending a forwarded proposal again", "seq", seq, "sends", sends+1, "sent_in_term", sentTerm,
			"why", resend.why)
	}
}

// notProposedError: wait stopped because the run loop refused the proposal (err),
// which is then not in the log.
type notProposedError struct{ err error }

func (e notProposedError) Error() string { return "server: not proposed: " + e.err.Error() }

// errResend: wait stopped because the proposal should be sent again.
var errResend = errors.New("server: send the proposal again")

// resendTrigger says when a forwarded proposal waiting for its result is to be sent
// again: an entry of a term after sentTerm has applied, or the timer fired.
type resendTrigger struct {
	s        *Server
	sentTerm uint64
	timer    *time.Timer
	why      string
}

// wait waits for the request's result. With a resend trigger, it returns errResend
// when the trigger fires first.
func (s *Server) wait(pc proposalContext, wt *waiter, resend *resendTrigger) (kv.Result, error) {
	var termChanged <-chan struct{}
	var timerFired <-chan time.Time
	for {
		if resend != nil {
			var term uint64
			term, termChanged = s.terms.get()
			if term > resend.sentTerm {
				resend.why = fmt.Sprintf("an entry of term %d applied", term)
				return kv.Result{}, errResend
			}
			timerFired = resend.timer.C
		}
		select {
		case res := <-wt.ch:
			switch {
			case res.notProposed != nil:
				return kv.Result{}, notProposedError{res.notProposed}
			case res.lost:
				return kv.Result{}, errLostEntry
			case errors.Is(res.result.Err, kv.ErrProposalExpired):
				return kv.Result{}, errProposalExpired
			}
			return res.result, nil
		case <-termChanged:
		case <-timerFired:
			resend.why = "no answer in " + (resendAfterElections * s.cfg.ElectionTimeout).String()
			return kv.Result{}, errResend
		case <-pc.req.Done():
			return kv.Result{}, s.proposeCtxError(pc.req.Err(), pc.start)
		case <-pc.deadline.Done():
			return kv.Result{}, s.proposeCtxError(pc.deadline.Err(), pc.start)
		case <-s.stopc:
			return kv.Result{}, errStopped
		}
	}
}

// forward hands data to the leader, or proposes it if this member leads, waiting for
// a leader to be known. It returns the term this member was in just before the
// attempt that went through: the term of the leader it went to, or an older one (a
// term read too early costs at most one needless copy; one read too late could miss
// a change of leader).
//
// If pc ends before the data is handed over it returns pc's context error, as etcd's
// raft.Node.Propose does while no leader is known (the gRPC status is then
// DeadlineExceeded or Canceled, on which clientv3 sends the request again); the
// caller turns it into a timeout if an earlier copy went to a leader. If pc ends
// while the data waits in the node's queue, ForwardUntil withdraws it, and it ends
// with the context's error too. If the run loop handed it to the leader just as pc
// ended (raft.ErrProposalPending), it may still commit: that is a timeout
// (Unavailable, which clientv3 does not resend for a write), never the context's
// error, or a client could apply one write twice.
func (s *Server) forward(pc proposalContext, data []byte) (term uint64, err error) {
	for {
		term, _ = s.node.State()
		err := s.node.ForwardUntil(pc.req, pc.deadline.Done(), data)
		if errors.Is(err, raft.ErrProposalPending) {
			return 0, s.proposeCtxError(pc.err(), pc.start)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return 0, pc.err()
		}
		if !errors.Is(err, raft.ErrProposalDropped) {
			return term, s.raftError(err)
		}
		select {
		case <-time.After(s.cfg.HeartbeatInterval):
		case <-pc.req.Done():
			return 0, pc.err()
		case <-pc.deadline.Done():
			return 0, pc.err()
		case <-s.stopc:
			return 0, errStopped
		}
	}
}

// applyCommand applies one command entry and wakes the request waiting for it, if it
// is this member's.
func (s *Server) applyCommand(index uint64, data []byte) {
	env, res := s.execute(index, data)
	if errors.Is(res.Err, kv.ErrEngineFailed) {
		s.storeFailed(index, res.Err)
	}
	s.authApplied(index, &res)
	s.leaseApplied(&res)
	s.waits.applied(index, env.proposer == s.proposer, env.seq, res)
}

// execute applies one command entry and returns its envelope and result.
func (s *Server) execute(index uint64, data []byte) (envelope, kv.Result) {
	env, err := decodeEnvelope(data)
	var res kv.Result
	var refused error // by a raised alarm (alarm.go)
	if err == nil && env.kind == kindKV {
		refused = s.sm.alarms.refusedByAlarm(env.payload)
	}
	switch {
	case err != nil:
		s.logger.Error("skipping undecodable log entry", "index", index, "err", err)
		env = envelope{}
	case refused != nil && env.resendable:
		// Recorded as applied, with no effect, so that a copy of it that applies
		// after the alarm is cleared does not write what its client was told failed.
		// A copy that applied before this one (on a member that installed a
		// snapshot past it, and so waits for this one) keeps its answer; else
		// every copy gets the refusal.
		id := kv.ProposalID{Proposer: env.proposer, Seq: env.seq, LowestPending: env.lowestPending}
		r := s.sm.store.RefuseOnce(index, id, refused)
		if errors.Is(r.Err, kv.ErrEngineFailed) {
			s.storeFailed(index, r.Err)
		}
		return env, r
	case refused != nil:
		res = kv.Result{Err: refused}
	case env.kind == kindAlarm:
		s.applyAlarmChange(index, env.payload)
		return env, s.applyServerState(index, res)
	case env.kind == kindHashCheck:
		s.applyHashCheck(env.payload)
	case env.kind == kindHashReport:
		s.applyHashReport(env.payload)
	case env.kind == kindKV && env.resendable:
		id := kv.ProposalID{Proposer: env.proposer, Seq: env.seq, LowestPending: env.lowestPending}
		return env, s.sm.store.ApplyOnce(index, id, env.payload)
	case env.kind == kindKV:
		return env, s.sm.store.Apply(index, env.payload)
	case env.kind == kindMemberUpdate:
		return env, s.applyServerState(index, s.applyMemberUpdate(env.payload))
	case env.kind == kindMember:
		// Setting a member's attributes twice is the same as once: no deduplication.
		if m, _, err := decodeMember(env.payload); err == nil {
			s.sm.setMember(m)
		}
		return env, s.applyServerState(index, res)
	default:
		res = kv.Result{Err: fmt.Errorf("server: unknown entry kind %d", env.kind)}
	}
	// An entry that is not a kv command still moves the store's applied index.
	if r := s.sm.store.Apply(index, nil); r.Err != nil && !errors.Is(r.Err, kv.ErrAlreadyApplied) {
		s.storeFailed(index, r.Err)
	}
	return env, res
}

// applyServerState records the member list and alarms in the store as entry index
// (stateMachine.applyServerState) and returns res.
func (s *Server) applyServerState(index uint64, res kv.Result) kv.Result {
	if err := s.sm.applyServerState(index); err != nil {
		s.storeFailed(index, err)
	}
	return res
}
