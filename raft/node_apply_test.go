package raft

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// The tests in this file hold the Node to its promise about the apply goroutine: the
// application may call the Node from the goroutine that reads Apply, and a slow or
// stalled application never stops the run loop.

// recordingTransport keeps every message sent, so a test can play the peer.
type recordingTransport struct {
	mu   sync.Mutex
	sent []Message
}

func (rt *recordingTransport) Send(msgs []Message) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.sent = append(rt.sent, msgs...)
}

// count returns how many messages of type typ were sent.
func (rt *recordingTransport) count(typ MessageType) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	for _, m := range rt.sent {
		if m.Type == typ {
			n++
		}
	}
	return n
}

// sendingTo returns a NewTransport that hands every node tr.
func sendingTo(tr Transport) NewTransport {
	return func(Handler) (Transport, error) { return tr, nil }
}

// waitFor polls cond until it holds, failing the test with what after the deadline.
func waitFor(t *testing.T, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("after %v: %s", deadline, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// statusWithin calls Status, failing the test if it does not return within deadline:
// the run loop is the one that answers.
func statusWithin(t *testing.T, n *Node, deadline time.Duration) Status {
	t.Helper()
	c := make(chan Status, 1)
	go func() { c <- n.Status() }()
	select {
	case st := <-c:
		return st
	case <-time.After(deadline):
		t.Fatalf("Status did not return within %v: the run loop is blocked\n%s", deadline, allStacks())
		return Status{}
	}
}

func allStacks() []byte {
	buf := make([]byte, 1<<20)
	return buf[:runtime.Stack(buf, true)]
}

// entriesFrom returns n command entries of term 1 from index first on.
func entriesFrom(first uint64, n int) []Entry {
	ents := make([]Entry, n)
	for i := range ents {
		ents[i] = Entry{Term: 1, Index: first + uint64(i), Type: EntryCommand, Data: []byte{byte(i)}}
	}
	return ents
}

// fillApplyQueue starts node 2 of a two-node cluster whose node 1 the test plays,
// with room for one batch in the apply queue, and fills the queue while nothing reads
// Apply: a batch of 600 entries of which the delivery goroutine has handed the Apply
// channel all it holds, then a batch of 10 entries queued behind it. Node 2 never
// campaigns unless tick is short.
func fillApplyQueue(t *testing.T, tick time.Duration) (*Node, *recordingTransport) {
	t.Helper()
	tr := &recordingTransport{}
	node, err := NewNode(Config{ID: 2, Peers: []uint64{1, 2}, Storage: NewMemoryStorage(),
		MaxApplyBatches: 1, TickInterval: tick}, sendingTo(tr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Stop)
	ctx := context.Background()
	step := func(m Message) {
		t.Helper()
		if err := node.Step(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	step(Message{Type: MsgApp, From: 1, To: 2, Term: 1, Entries: entriesFrom(1, 600), Commit: 600})
	waitFor(t, 10*time.Second, "the Apply channel never filled", func() bool {
		return len(node.Apply()) == cap(node.Apply())
	})
	step(Message{Type: MsgApp, From: 1, To: 2, Term: 1, LogTerm: 1, Index: 600, Entries: entriesFrom(601, 10), Commit: 610})
	waitFor(t, 10*time.Second, "the second batch was never queued", func() bool {
		return statusWithin(t, node, 10*time.Second).Applied == 610
	})
	return node, tr
}

// TestNodeSnapshotFromApplyGoroutineWhileQueueFull is issue 10's deadlock: the
// application snapshots on every entry it applies, from the goroutine that reads
// Apply, and the leader's snapshot arrives while the apply queue is full. The run
// loop used to block handing the snapshot to the full queue, the delivery goroutine
// on the Apply channel, and the application in its second Snapshot call (the first
// filled the one-slot request channel that only the run loop drained): nothing moved
// again.
func TestNodeSnapshotFromApplyGoroutineWhileQueueFull(t *testing.T) {
	checkNoGoroutineLeak(t)
	node, _ := fillApplyQueue(t, time.Hour)
	// The leader has compacted past what node 2 holds and sends a snapshot.
	if err := node.Step(context.Background(), Message{Type: MsgSnap, From: 1, To: 2, Term: 1,
		Snapshot: &Snapshot{Index: 1000, Term: 1, Data: []byte("state at 1000")}}); err != nil {
		t.Fatal(err)
	}

	type applied struct {
		index    uint64
		snapshot bool
	}
	got := make(chan applied, 1024)
	go func() {
		defer close(got)
		for msg := range node.Apply() {
			got <- applied{msg.Index, msg.Type == ApplySnapshot}
			if msg.Type == ApplyCommand {
				node.Snapshot(msg.Index, fmt.Appendf(nil, "state at %d", msg.Index))
			}
		}
	}()
	var last applied
	deadline := time.After(20 * time.Second)
	for !last.snapshot {
		select {
		case a, ok := <-got:
			if !ok {
				t.Fatalf("Apply closed after index %d", last.index)
			}
			if !a.snapshot && a.index != last.index+1 {
				t.Fatalf("applied index %d after %d", a.index, last.index)
			}
			last = a
		case <-deadline:
			t.Fatalf("deadlock: the application stopped at index %d, the snapshot at 1000 never came\n%s", last.index, allStacks())
		}
	}
	if last.index != 1000 {
		t.Fatalf("snapshot delivered at index %d, want 1000", last.index)
	}
	if st := statusWithin(t, node, 10*time.Second); st.Applied != 1000 || st.Commit != 1000 {
		t.Fatalf("after the snapshot: applied %d, commit %d, want 1000 and 1000", st.Applied, st.Commit)
	}
}

// TestNodeRunLoopIgnoresStalledApplication: an application that stops reading Apply
// holds back only the delivery of committed entries. With the apply queue full and a
// snapshot from the leader arriving, the run loop still answers Status, steps
// messages and ticks (here: it answers a heartbeat, then campaigns once the leader
// falls silent).
func TestNodeRunLoopIgnoresStalledApplication(t *testing.T) {
	checkNoGoroutineLeak(t)
	node, tr := fillApplyQueue(t, 5*time.Millisecond)
	ctx := context.Background()
	if err := node.Step(ctx, Message{Type: MsgSnap, From: 1, To: 2, Term: 1,
		Snapshot: &Snapshot{Index: 1000, Term: 1, Data: []byte("state at 1000")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the snapshot was never installed", func() bool {
		return statusWithin(t, node, 2*time.Second).Commit == 1000
	})
	acks := tr.count(MsgHeartbeatResp)
	if err := node.Step(ctx, Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 1, Commit: 1000}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "no answer to a heartbeat while the apply queue is full", func() bool {
		return tr.count(MsgHeartbeatResp) > acks
	})
	waitFor(t, 10*time.Second, "no campaign after the leader fell silent: the run loop does not tick", func() bool {
		return tr.count(MsgPreVote) > 0
	})
}

// TestApplyQueueBound: committed batches fill the queue to its limit; a snapshot goes
// in past it, and replaces a snapshot still queued together with what follows it.
// (With no Apply channel to put them on, push always queues.)
func TestApplyQueueBound(t *testing.T) {
	q := newApplyQueue(2)
	ents := func(i uint64) []ApplyMsg { return []ApplyMsg{{Type: ApplyCommand, Index: i}} }
	snap := func(i uint64) []ApplyMsg { return []ApplyMsg{{Type: ApplySnapshot, Index: i}} }
	queued := func() (idx []uint64) {
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, b := range q.mu.batches {
			idx = append(idx, b[0].Index)
		}
		return idx
	}
	check := func(what string, want ...uint64) {
		t.Helper()
		if got := queued(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: queued %v, want %v", what, got, want)
		}
	}
	q.push(ents(1), nil)
	if q.hold() {
		t.Fatal("holds with 1 of 2 batches")
	}
	if _, wake := q.pop(); wake {
		t.Fatal("a pop wakes the run loop, which holds nothing back")
	}
	q.push(ents(1), nil)
	q.push(ents(2), nil)
	if !q.hold() {
		t.Fatal("does not hold with 2 of 2 batches")
	}
	q.push(snap(10), nil)
	check("a snapshot past the limit", 1, 2, 10)
	q.push(snap(20), nil)
	check("a second snapshot", 1, 2, 20)
	if b, wake := q.pop(); b[0].Index != 1 || wake {
		t.Fatalf("popped %d (wake %v), want 1 with the queue still full", b[0].Index, wake)
	}
	if _, wake := q.pop(); !wake {
		t.Fatal("the pop that made room does not wake the run loop holding entries back")
	}
	q.push(ents(21), nil)
	check("entries after the snapshot", 20, 21)
	q.push(snap(30), nil)
	check("a snapshot replacing a queued one and the entries after it", 30)
	if _, wake := q.pop(); wake {
		t.Fatal("woken twice for one hold")
	}
	if b, _ := q.pop(); b != nil {
		t.Fatalf("popped %v from an empty queue", b)
	}
}

// TestApplyQueueHandsOverWhenIdle: push puts a batch on the Apply channel itself only
// while nothing is queued, the delivery goroutine holds no batch, and the channel has
// room for all of it; otherwise it queues it, and the channel sees every entry once,
// in order.
func TestApplyQueueHandsOverWhenIdle(t *testing.T) {
	q := newApplyQueue(4)
	out := make(chan ApplyMsg, 3)
	batch := func(first, n uint64) []ApplyMsg {
		var b []ApplyMsg
		for i := range n {
			b = append(b, ApplyMsg{Type: ApplyCommand, Index: first + i})
		}
		return b
	}
	queuedBatches := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.mu.batches)
	}
	var got []uint64
	drain := func() {
		for len(out) > 0 {
			got = append(got, (<-out).Index)
		}
	}

	q.push(batch(1, 2), out) // idle, room for 2 of 3: handed over
	if len(out) != 2 || queuedBatches() != 0 {
		t.Fatalf("idle push: %d on the channel, %d batches queued; want 2 and 0", len(out), queuedBatches())
	}
	q.push(batch(3, 2), out) // room for 1 only: queued
	if len(out) != 2 || queuedBatches() != 1 {
		t.Fatalf("push with too little room: %d on the channel, %d queued; want 2 and 1", len(out), queuedBatches())
	}
	drain()
	q.push(batch(5, 1), out) // room now, but a batch is queued: queued behind it
	if len(out) != 0 || queuedBatches() != 2 {
		t.Fatalf("push behind a queued batch: %d on the channel, %d queued; want 0 and 2", len(out), queuedBatches())
	}
	// The delivery goroutine takes batch 3-4 and puts it on the channel, then takes
	// batch 5, the last queued, and has not put it on the channel yet: the queue is
	// empty, but a push now must still wait behind batch 5.
	held, _ := q.pop()
	for _, msg := range held {
		out <- msg
	}
	drain()
	held, _ = q.pop()
	q.push(batch(6, 1), out)
	if len(out) != 0 || queuedBatches() != 1 {
		t.Fatalf("push while the delivery goroutine holds a batch: %d on the channel, %d queued; want 0 and 1",
			len(out), queuedBatches())
	}
	for _, msg := range held {
		out <- msg
	}
	drain()
	for b, _ := q.pop(); b != nil; b, _ = q.pop() {
		for _, msg := range b {
			out <- msg
		}
		drain()
	}
	// Delivery idle again (the last pop found nothing): the next push goes straight
	// to the channel.
	q.push(batch(7, 1), out)
	drain()
	if want := []uint64{1, 2, 3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("the Apply channel saw %v, want %v", got, want)
	}
}

// TestNodeCallsFromApplyGoroutine: the application calls every method of the Node
// from its apply goroutine, with an apply queue of one batch that a second proposer
// keeps full, and every command still commits.
func TestNodeCallsFromApplyGoroutine(t *testing.T) {
	checkNoGoroutineLeak(t)
	node, err := NewNode(Config{ID: 1, Peers: []uint64{1}, Storage: NewMemoryStorage(),
		MaxApplyBatches: 1, TickInterval: 5 * time.Millisecond}, sendingTo(&recordingTransport{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Stop)
	waitFor(t, 10*time.Second, "the single node never became leader", func() bool {
		_, isLeader := node.State()
		return isLeader
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The flood fills the apply queue; its proposals may be refused once the
	// uncommitted limit is reached, which is fine.
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		for ctx.Err() == nil {
			_, _, _ = node.Propose(ctx, []byte("flood"))
		}
	}()

	const chain = 200
	var problems []string
	chained := 0
	if _, _, err := node.Propose(ctx, []byte("chain")); err != nil {
		t.Fatal(err)
	}
	for msg := range node.Apply() {
		if msg.Type != ApplyCommand || string(msg.Command) != "chain" {
			continue
		}
		chained++
		if chained == chain {
			break
		}
		// Every call a Node offers, from the apply goroutine.
		node.Snapshot(msg.Index, []byte("state"))
		if st := node.Status(); st.Applied < msg.Index {
			problems = append(problems, fmt.Sprintf("Status().Applied %d below the index %d being applied", st.Applied, msg.Index))
		}
		node.State()
		if _, err := node.ReadIndex(ctx); err != nil {
			problems = append(problems, fmt.Sprintf("ReadIndex: %v", err))
		}
		if err := node.Step(ctx, Message{Type: MsgHeartbeat, From: 1, To: 2, Term: 1}); err != nil { // misaddressed: dropped
			problems = append(problems, fmt.Sprintf("Step: %v", err))
		}
		if chained%2 == 0 {
			if _, _, isLeader := node.Start([]byte("chain")); !isLeader {
				problems = append(problems, "Start: not the leader")
			}
		} else if err := node.Forward(ctx, []byte("chain")); err != nil {
			problems = append(problems, fmt.Sprintf("Forward: %v", err))
		}
		if ctx.Err() != nil {
			t.Fatalf("after %d of %d chained commands: %v\n%s", chained, chain, ctx.Err(), allStacks())
		}
	}
	cancel()
	<-floodDone
	if chained != chain {
		t.Fatalf("Apply closed after %d of %d chained commands", chained, chain)
	}
	if len(problems) > 0 {
		t.Fatalf("%d problems, first: %s", len(problems), problems[0])
	}
}
