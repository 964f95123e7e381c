package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"raftkv/raft"
)

// readBatcher serves linearizable reads in batches: one ReadIndex round (and one
// wait for the apply loop) at a time, shared by every read that arrived while the
// previous round was in flight. A read then costs a lock and a wait on a channel that
// its whole batch shares, instead of a heartbeat round, a timer and channels of its
// own; under a hundred concurrent reads most of the leader's CPU went to those rounds.
//
// A batch's round starts only after every read in it arrived, so the read index it
// returns is at least the commit index at each read's arrival: thesis §6.4 holds for
// each of them.
type readBatcher struct {
	// wake has room for one signal: "a batch is waiting". The loop takes it and
	// starts the waiting batch once the round in flight, if any, is done.
	wake chan struct{}
	mu   struct {
		sync.Mutex
		// next is the batch new reads join; nil until a read arrives.
		next *readBatch
	}
}

// readBatch is one ReadIndex round and the reads it serves.
type readBatch struct {
	done chan struct{}
	// err is the round's outcome, written before done is closed.
	err error
}

func newReadBatcher() *readBatcher {
	return &readBatcher{wake: make(chan struct{}, 1)}
}

// join returns the batch that the next round will serve, and makes sure the loop
// knows it is waiting.
func (r *readBatcher) join() *readBatch {
	r.mu.Lock()
	b := r.mu.next
	if b == nil {
		b = &readBatch{done: make(chan struct{})}
		r.mu.next = b
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return b
}

// take hands the loop the waiting batch, if any; later reads join a new one.
func (r *readBatcher) take() *readBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.mu.next
	r.mu.next = nil
	return b
}

// linearizableRead waits until this member has applied everything committed before
// the call (thesis §6.4: ReadIndex, then wait for apply). As etcd's
// LinearizableReadNotify, it returns ctx's own error if ctx ends first (the gRPC
// status is then Canceled or DeadlineExceeded), and the round's error otherwise:
// "request timed out" if RequestTimeout passed first, leader or none.
func (s *Server) linearizableRead(ctx context.Context) error {
	b := s.reads.join()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopc:
		return errStopped
	}
}

// readLoop runs the read rounds, one at a time, until the server stops.
func (s *Server) readLoop() {
	for {
		select {
		case <-s.reads.wake:
		case <-s.stopc:
			// Reads still waiting see stopc too.
			return
		}
		if b := s.reads.take(); b != nil {
			b.err = s.readRound()
			close(b.done)
		}
	}
}

// readRound gets a read index and waits until it is applied, within RequestTimeout,
// or fails with errTimeout (etcd's requestCurrentIndex, whose timer ends a round with
// no answer, a leader known or not, with ErrTimeout).
func (s *Server) readRound() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	for {
		index, err := s.readIndexAttempt(ctx)
		if errors.Is(err, errReadIndexUnanswered) {
			s.logger.Debug("ReadIndex round unanswered; starting another", "after", s.readAttemptTimeout())
			continue
		}
		if err == nil {
			if err := s.applied.wait(ctx, index); errors.Is(err, errStopped) {
				return err
			} else if err != nil {
				return errTimeout
			}
			return nil
		}
		if !errors.Is(err, raft.ErrReadIndexNotReady) && !errors.Is(err, raft.ErrLeadershipLost) &&
			!errors.Is(err, raft.ErrNotLeader) {
			return s.raftError(err)
		}
		// No leader yet, or one that has not committed in its term: wait a beat.
		select {
		case <-time.After(s.cfg.HeartbeatInterval / 2):
		case <-ctx.Done():
			return errTimeout
		case <-s.stopc:
			return errStopped
		}
	}
}

// errReadIndexUnanswered: a ReadIndex round got no answer within readAttemptTimeout.
var errReadIndexUnanswered = errors.New("server: ReadIndex round unanswered")

// readIndexAttempt asks the node for a read index, giving up on this round after
// readAttemptTimeout. A round whose request or answer was lost (a follower forwards
// its request to the leader) would otherwise hold up every read of the batch and of
// the batches behind it until RequestTimeout; another round started later is just as
// valid for them, since it too starts after they arrived.
func (s *Server) readIndexAttempt(ctx context.Context) (uint64, error) {
	attempt, cancel := context.WithTimeout(ctx, s.readAttemptTimeout())
	defer cancel()
	s.readRounds.Add(1)
	index, err := s.node.ReadIndex(attempt)
	if err != nil && attempt.Err() != nil && ctx.Err() == nil {
		return 0, errReadIndexUnanswered
	}
	return index, err
}

// readAttemptTimeout is half an election timeout: a round normally takes one round
// trip to a quorum, far less, and a leader that cannot get one steps down after an
// election timeout anyway (CheckQuorum).
func (s *Server) readAttemptTimeout() time.Duration {
	return max(s.cfg.ElectionTimeout/2, s.cfg.HeartbeatInterval)
}
