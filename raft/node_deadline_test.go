package raft

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedStorage is an AsyncStorage over a MemoryStorage whose writes stop becoming
// durable while it is held: WaitDurable then blocks until release.
type gatedStorage struct {
	*MemoryStorage
	mu      sync.Mutex
	n       uint64
	gate    chan struct{} // non-nil while held
	waiting chan struct{} // closed once a WaitDurable blocks on the gate
	waits   atomic.Int64  // WaitDurable calls
}

func (s *gatedStorage) SaveAsync(hs HardState, ents []Entry) (uint64, error) {
	if err := s.MemoryStorage.Save(hs, ents); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return s.n, nil
}

func (s *gatedStorage) WaitDurable(uint64) error {
	s.waits.Add(1)
	s.mu.Lock()
	gate, waiting := s.gate, s.waiting
	if gate != nil && waiting != nil {
		close(waiting)
		s.waiting = nil
	}
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return nil
}

// hold makes the next writes wait; the returned channel closes once one does.
func (s *gatedStorage) hold() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate, s.waiting = make(chan struct{}), make(chan struct{})
	return s.waiting
}

func (s *gatedStorage) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate, s.waiting = nil, nil
	}
}

// While the run loop waits for a write to be durable it takes no proposal, so a
// Propose or Forward waits too: ProposeUntil and ForwardUntil give up when their
// deadline closes, with context.DeadlineExceeded, or when their context is
// canceled, with its error, and do not wait for the write.
func TestProposeUntilGivesUpWhileTheRunLoopIsBusy(t *testing.T) {
	checkNoGoroutineLeak(t)
	st := &gatedStorage{MemoryStorage: NewMemoryStorage()}
	node, err := NewNode(Config{ID: 1, Peers: []uint64{1}, Storage: st, TickInterval: 5 * time.Millisecond}, NewLocalNetwork().Transport(1))
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for range node.Apply() {
		}
	}()
	defer func() {
		st.release()
		node.Stop()
		<-applied
	}()
	waitFor(t, 10*time.Second, "the single node did not become leader", func() bool {
		_, lead := node.State()
		return lead
	})
	if _, _, err := node.Propose(context.Background(), []byte("first")); err != nil {
		t.Fatal(err)
	}

	waiting := st.hold()
	held := make(chan error, 1)
	go func() {
		_, _, err := node.Propose(context.Background(), []byte("held"))
		held <- err
	}()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the held proposal's write never waited on the storage")
	}

	const giveUp = 50 * time.Millisecond
	for _, c := range []struct {
		name    string
		call    func(ctx context.Context, deadline <-chan struct{}) error
		cancel  bool // cancel the context instead of closing the deadline
		wantErr error
	}{
		{"ProposeUntil, deadline", func(ctx context.Context, d <-chan struct{}) error {
			_, _, err := node.ProposeUntil(ctx, d, []byte("late"))
			return err
		}, false, context.DeadlineExceeded},
		{"ProposeUntil, canceled", func(ctx context.Context, d <-chan struct{}) error {
			_, _, err := node.ProposeUntil(ctx, d, []byte("late"))
			return err
		}, true, context.Canceled},
		{"ForwardUntil, deadline", func(ctx context.Context, d <-chan struct{}) error {
			return node.ForwardUntil(ctx, d, []byte("late"))
		}, false, context.DeadlineExceeded},
		{"ForwardUntil, canceled", func(ctx context.Context, d <-chan struct{}) error {
			return node.ForwardUntil(ctx, d, []byte("late"))
		}, true, context.Canceled},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		deadline := make(chan struct{})
		stop := func() { close(deadline) }
		if c.cancel {
			stop = cancel
		}
		timer := time.AfterFunc(giveUp, stop)
		done := make(chan error, 1)
		go func() { done <- c.call(ctx, deadline) }()
		select {
		case err := <-done:
			if !errors.Is(err, c.wantErr) {
				t.Errorf("%s while the run loop waits for a write: %v, want %v", c.name, err, c.wantErr)
			}
		case <-time.After(5 * time.Second):
			// It returns once the write is released, at the end of the test.
			t.Errorf("%s still waited 5s after its give-up at %v", c.name, giveUp)
		}
		timer.Stop()
		cancel()
	}
	st.release()
	if err := <-held; err != nil {
		t.Fatalf("the held proposal: %v", err)
	}
	// The run loop takes proposals again.
	if _, _, err := node.ProposeUntil(context.Background(), nil, []byte("after")); err != nil {
		t.Fatalf("ProposeUntil once the write is durable: %v", err)
	}
}

// Once Stop is called, the persist goroutine waits for no further write: what is
// still queued when the write it waits for ends is left (nothing waits for its
// acknowledgements, and the storage keeps or drops it as a crash would), so Stop
// returns after at most the one wait under way, not after one per queued write.
// The goroutine is driven directly here: through a Node, whether a write goes to it
// or is waited for by the run loop itself depends on what input is waiting.
func TestPersistWaitsForNoQueuedWriteAfterStop(t *testing.T) {
	checkNoGoroutineLeak(t)
	st := &gatedStorage{MemoryStorage: NewMemoryStorage()}
	n := &Node{
		async:         st,
		persistq:      make(chan persistItem, 4),
		stopc:         make(chan struct{}),
		durablec:      make(chan struct{}, 1),
		persistFailed: make(chan struct{}),
	}
	waiting := st.hold()
	n.wg.Add(1)
	go n.persist()
	for ticket := uint64(1); ticket <= 3; ticket++ {
		n.persistPending.Add(1)
		n.persistq <- persistItem{ticket: ticket, mark: DurableMark{Index: ticket, Term: 1}}
		if ticket == 1 {
			select {
			case <-waiting:
			case <-time.After(10 * time.Second):
				close(n.stopc)
				st.release()
				t.Fatal("the persist goroutine did not wait for the first write within 10s")
			}
		}
	}
	close(n.stopc)
	st.release()
	n.wg.Wait()
	if got := st.waits.Load(); got != 1 {
		t.Fatalf("the persist goroutine waited %d times, with 2 writes queued behind the first when Stop came; want only the 1 wait under way", got)
	}
	if n.durable.ticket != 1 {
		t.Fatalf("durable ticket %d, want 1: the write under way ends as it would without Stop", n.durable.ticket)
	}
}
