package raft

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkNoGoroutineLeak fails the test if goroutines started during it outlive it.
func checkNoGoroutineLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:n])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// testCluster is a cluster of Nodes on a LocalNetwork, each with an application that
// records what it applied.
type testCluster struct {
	t        *testing.T
	net      *LocalNetwork
	peers    []uint64
	nodes    map[uint64]*Node
	storages map[uint64]*MemoryStorage
	apps     map[uint64]*testApp
	// wrap, if set, wraps each node's transport (to watch or drop its messages).
	wrap func(id uint64, t Transport) Transport
	// async, if set, gives each node an AsyncStorage over its MemoryStorage, whose
	// writes take asyncDelay (1ms if 0) to become durable.
	async      map[uint64]*asyncTestStorage
	asyncDelay time.Duration
	// tick is the nodes' TickInterval; 5ms unless set.
	tick time.Duration
	// config, if set, changes each node's Config before it starts.
	config func(*Config)
	// joined are nodes started with no Peers, to join the running cluster.
	joined map[uint64]bool
}

// testApp is a state machine that is the list of commands applied, checking that
// indices arrive in order, each exactly once.
type testApp struct {
	done     chan struct{}
	mu       chan struct{} // a one-slot lock usable in select
	applied  map[uint64][]byte
	lastIdx  uint64
	problems []string
	// confs are the ApplyConfChange messages applied; membership is the
	// configuration as of lastIdx, from them and the snapshots.
	confs      []ApplyMsg
	membership Membership
}

func newTestCluster(t *testing.T, n int) *testCluster {
	return newWrappedTestCluster(t, n, nil)
}

// newWrappedTestCluster is newTestCluster with each transport wrapped by wrap (if not
// nil), and opts applied to the cluster before any node starts.
func newWrappedTestCluster(t *testing.T, n int, wrap func(uint64, Transport) Transport, opts ...func(*testCluster)) *testCluster {
	c := &testCluster{t: t, net: NewLocalNetwork(), nodes: map[uint64]*Node{},
		storages: map[uint64]*MemoryStorage{}, apps: map[uint64]*testApp{}, wrap: wrap}
	for _, o := range opts {
		o(c)
	}
	for i := 1; i <= n; i++ {
		c.peers = append(c.peers, uint64(i))
	}
	for _, id := range c.peers {
		c.storages[id] = NewMemoryStorage()
		if c.async != nil {
			c.async[id] = &asyncTestStorage{MemoryStorage: c.storages[id], delay: cmp.Or(c.asyncDelay, time.Millisecond)}
		}
	}
	for _, id := range c.peers {
		c.start(id, 0)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *testCluster) start(id, applied uint64) {
	newTransport := c.net.Transport(id)
	if c.wrap != nil {
		newTransport = func(h Handler) (Transport, error) {
			tr, err := c.net.Transport(id)(h)
			if err != nil {
				return nil, err
			}
			return c.wrap(id, tr), nil
		}
	}
	var st Storage = c.storages[id]
	if c.async != nil {
		st = c.async[id]
	}
	tick := c.tick
	if tick == 0 {
		tick = 5 * time.Millisecond
	}
	peers := c.peers
	if c.joined[id] {
		peers = nil
	}
	cfg := Config{ID: id, Peers: peers, Storage: st, Applied: applied,
		TickInterval: tick, RandSeed: int64(id)*7919 + time.Now().UnixNano()}
	if c.config != nil {
		c.config(&cfg)
	}
	node, err := NewNode(cfg, newTransport)
	if err != nil {
		c.t.Fatal(err)
	}
	app := &testApp{done: make(chan struct{}), mu: make(chan struct{}, 1), applied: map[uint64][]byte{}}
	go func() {
		defer close(app.done)
		for msg := range node.Apply() {
			app.mu <- struct{}{}
			switch {
			case msg.Type == ApplySnapshot:
				// The snapshot holds nothing but its index for this app.
				app.lastIdx = msg.Index
				app.membership = msg.Membership
			case msg.Index != app.lastIdx+1:
				app.problems = append(app.problems, fmt.Sprintf("applied index %d after %d", msg.Index, app.lastIdx))
				app.lastIdx = msg.Index
			default:
				app.lastIdx = msg.Index
				if msg.Type == ApplyCommand {
					app.applied[msg.Index] = msg.Command
				}
				if msg.Type == ApplyConfChange {
					app.confs = append(app.confs, msg)
					app.membership = msg.Membership
				}
			}
			<-app.mu
		}
	}()
	c.nodes[id] = node
	c.apps[id] = app
}

func (c *testCluster) stop(id uint64) {
	c.net.Detach(id)
	c.nodes[id].Stop()
	<-c.apps[id].done
	if p := c.apps[id].problems; len(p) > 0 {
		c.t.Errorf("node %d apply order: %v", id, p)
	}
	delete(c.nodes, id)
}

func (c *testCluster) stopAll() {
	for id := range c.nodes {
		c.stop(id)
	}
}

func (c *testCluster) appliedAt(id, index uint64) ([]byte, bool) {
	app := c.apps[id]
	app.mu <- struct{}{}
	defer func() { <-app.mu }()
	cmd, ok := app.applied[index]
	return cmd, ok
}

func (c *testCluster) lastApplied(id uint64) uint64 {
	app := c.apps[id]
	app.mu <- struct{}{}
	defer func() { <-app.mu }()
	return app.lastIdx
}

// others returns the cluster's members other than id.
func (c *testCluster) others(id uint64) []uint64 {
	var rest []uint64
	for _, p := range c.peers {
		if p != id {
			rest = append(rest, p)
		}
	}
	return rest
}

// propose starts cmd on whichever node leads, retrying for a while.
func (c *testCluster) propose(cmd []byte) (leader, index uint64) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for id, node := range c.nodes {
			if i, _, isLeader := node.Start(cmd); isLeader {
				return id, i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no leader accepted %q within 10s", cmd)
	return 0, 0
}

// waitApplied waits until every node in ids has applied cmd at index.
func (c *testCluster) waitApplied(index uint64, cmd []byte, ids ...uint64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			got, ok := c.appliedAt(id, index)
			if ok {
				if !bytes.Equal(got, cmd) {
					c.t.Fatalf("node %d applied %q at %d, want %q", id, got, index, cmd)
				}
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %d did not apply %q at index %d within 10s (last applied %d)", id, cmd, index, c.lastApplied(id))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func TestNodeCommitAndFailover(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newTestCluster(t, 3)
	lead, index := c.propose([]byte("one"))
	c.waitApplied(index, []byte("one"), c.peers...)

	c.net.Isolate(lead)
	c.stop(lead)
	rest := c.others(lead)
	newLead, index := c.propose([]byte("two"))
	if newLead == lead {
		t.Fatalf("stopped node %d still leads", lead)
	}
	c.waitApplied(index, []byte("two"), rest...)
}

// Apply delivers every index exactly once across a restart after a snapshot: the
// snapshot first, then the entries after it, none twice and none skipped.
func TestNodeRestartAfterSnapshotAppliesOnce(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newTestCluster(t, 1)
	var last uint64
	for i := range 20 {
		cmd := fmt.Appendf(nil, "c%d", i)
		_, index := c.propose(cmd)
		c.waitApplied(index, cmd, 1)
		last = index
		if i == 9 {
			c.nodes[1].Snapshot(index, []byte("state"))
		}
	}
	snapDeadline := time.Now().Add(5 * time.Second)
	for {
		snap, _ := c.storages[1].Snapshot()
		if !snap.IsEmpty() {
			break
		}
		if time.Now().After(snapDeadline) {
			t.Fatal("snapshot was not taken")
		}
		time.Sleep(time.Millisecond)
	}
	c.stop(1)
	c.start(1, 0)
	snap, _ := c.storages[1].Snapshot()
	// After the restart the app sees the snapshot, then last-snap.Index entries.
	deadline := time.Now().Add(10 * time.Second)
	for c.lastApplied(1) < last {
		if time.Now().After(deadline) {
			t.Fatalf("restarted node applied up to %d, want %d", c.lastApplied(1), last)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i := snap.Index + 1; i <= last; i++ {
		if _, ok := c.appliedAt(1, i); !ok {
			if cmd, _ := c.storages[1].Entries(i, i+1, 1<<20); len(cmd) == 1 && cmd[0].Type == EntryCommand {
				t.Errorf("index %d not applied after restart", i)
			}
		}
	}
}

func TestNodeReadIndex(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newTestCluster(t, 3)
	lead, index := c.propose([]byte("w"))
	c.waitApplied(index, []byte("w"), lead)
	for _, id := range c.peers {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var read uint64
		var err error
		for {
			read, err = c.nodes[id].ReadIndex(ctx)
			// A follower that knows no leader for the moment (an election, which a
			// loaded machine's late ticks can set off) says ErrNotLeader: retry too.
			if !errors.Is(err, ErrReadIndexNotReady) && !errors.Is(err, ErrLeadershipLost) && !errors.Is(err, ErrNotLeader) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		if err != nil {
			t.Fatalf("ReadIndex on node %d: %v", id, err)
		}
		if read < index {
			t.Fatalf("ReadIndex on node %d = %d, below the acknowledged write at %d", id, read, index)
		}
	}
}

func TestNodeStopIsIdempotentAndRefusesWork(t *testing.T) {
	checkNoGoroutineLeak(t)
	node, err := NewNode(Config{ID: 1, Peers: []uint64{1}, Storage: NewMemoryStorage()}, NewLocalNetwork().Transport(1))
	if err != nil {
		t.Fatal(err)
	}
	node.Stop()
	node.Stop()
	if _, err := node.ReadIndex(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("ReadIndex after Stop: %v, want ErrStopped", err)
	}
	if _, ok := <-node.Apply(); ok {
		t.Fatal("Apply channel still open after Stop")
	}
}

func TestConfigValidate(t *testing.T) {
	st := NewMemoryStorage()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ID: 0, Peers: []uint64{1}, Storage: st}, "ID is 0"},
		{Config{ID: 4, Peers: []uint64{1, 2, 3}, Storage: st}, "not in Peers"},
		{Config{ID: 1, Peers: []uint64{1, 1}, Storage: st}, "twice"},
		{Config{ID: 1, Peers: []uint64{1}, Storage: st, ElectionTicks: 2, HeartbeatTicks: 2}, "must be greater than HeartbeatTicks"},
		{Config{ID: 1, Peers: []uint64{1}}, "Storage is nil"},
		{Config{ID: 1, Peers: []uint64{1}, Storage: st, CommitDelay: time.Second}, "CommitDelay 1s must be between"},
		{Config{ID: 1, Peers: []uint64{1}, Storage: st, CommitDelay: -time.Millisecond}, "CommitDelay -1ms must be between"},
		{Config{ID: 1, Peers: []uint64{1}, Storage: st, ReadIndexHedgeDelay: time.Second}, "ReadIndexHedgeDelay 1s must be between 0 (the default, 5ms)"},
		{Config{ID: 1, Peers: []uint64{1}, Storage: st, ReadIndexHedgeDelay: -time.Millisecond}, "ReadIndexHedgeDelay -1ms must be between"},
		{Config{ID: 1, Peers: []uint64{1}, Storage: st, MaxSizePerMsg: 10 << 20, MaxUncommittedEntriesBytes: 1 << 20}, "below MaxSizePerMsg"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{ID: 1, Peers: []uint64{1}, Storage: st}).Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

// A follower's Forward reaches the leader through Raft and commits everywhere.
func TestNodeForwardFromFollower(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newTestCluster(t, 3)
	lead, index := c.propose([]byte("first"))
	c.waitApplied(index, []byte("first"), c.peers...)
	follower := c.others(lead)[0]
	if err := c.nodes[follower].Forward(context.Background(), []byte("forwarded")); err != nil {
		t.Fatalf("Forward from follower %d: %v", follower, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		found := false
		for i := index + 1; i <= index+3; i++ {
			if cmd, ok := c.appliedAt(follower, i); ok && string(cmd) == "forwarded" {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("forwarded command never applied on the follower")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A Forward whose wait ends while its command is still queued withdraws it: it
// ends with its context's error alone, and the run loop, once free, skips the
// command, which never commits (as etcd's Propose, whose channel is unbuffered,
// never takes a proposal whose context ended). Before, the run loop took and
// forwarded it later, and the caller had to report an unknown outcome. One
// refused before it was queued ends the same way.
func TestNodeForwardUntilQueuedIsWithdrawn(t *testing.T) {
	checkNoGoroutineLeak(t)
	c := newTestCluster(t, 3)
	lead, index := c.propose([]byte("first"))
	c.waitApplied(index, []byte("first"), c.peers...)
	follower := c.nodes[c.others(lead)[0]]

	release := make(chan struct{})
	busy := make(chan struct{})
	go follower.onLoop(func() { close(busy); <-release })
	<-busy // the run loop runs the function and takes nothing else meanwhile
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := follower.ForwardUntil(ctx, nil, []byte("queued"))
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrProposalPending) {
		t.Fatalf("ForwardUntil queued behind a busy run loop: %v, want context.DeadlineExceeded alone", err)
	}
	// The run loop is free again: a command the follower forwards after the
	// withdrawn one commits, and the withdrawn one, queued before it on the same
	// node, is not among the entries before it.
	if err := follower.ForwardUntil(context.Background(), nil, []byte("after")); err != nil {
		t.Fatalf("forward after the withdrawal: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	afterIndex := uint64(0)
	for afterIndex == 0 {
		for i := index + 1; i <= index+5; i++ {
			if cmd, ok := c.appliedAt(lead, i); ok && string(cmd) == "after" {
				afterIndex = i
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the command forwarded after the withdrawal never applied")
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i := index + 1; i < afterIndex; i++ {
		if cmd, ok := c.appliedAt(lead, i); ok && string(cmd) == "queued" {
			t.Fatalf("the withdrawn command applied at index %d", i)
		}
	}

	// With the run loop busy again and its queue full, a cancelled Forward is
	// refused before it is queued.
	release = make(chan struct{})
	busy = make(chan struct{})
	go follower.onLoop(func() { close(busy); <-release })
	<-busy
	defer close(release)
	for len(follower.propc) < cap(follower.propc) {
		follower.propc <- proposal{data: []byte("filler"), forward: true, reply: make(chan proposalResult, 1)}
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := follower.ForwardUntil(done, nil, []byte("refused")); !errors.Is(err, context.Canceled) || errors.Is(err, ErrProposalPending) {
		t.Fatalf("ForwardUntil refused before it queued: %v, want context.Canceled alone", err)
	}
}

func TestSplitLeaderMessagesKeepsOrder(t *testing.T) {
	msgs := []Message{
		{Type: MsgApp, To: 2}, {Type: MsgVoteResp, To: 3}, {Type: MsgHeartbeat, To: 3},
		{Type: MsgAppResp, To: 2}, {Type: MsgSnap, To: 2},
	}
	early, late := splitLeaderMessages(msgs, 0)
	want := func(ms []Message, types ...MessageType) {
		t.Helper()
		if len(ms) != len(types) {
			t.Fatalf("got %d messages, want %v", len(ms), types)
		}
		for i := range ms {
			if ms[i].Type != types[i] {
				t.Fatalf("message %d is %s, want %s", i, ms[i].Type, types[i])
			}
		}
	}
	want(early, MsgApp, MsgHeartbeat, MsgSnap)
	want(late, MsgVoteResp, MsgAppResp)
	// A leader's messages of a term not yet durable wait, all of them, also when
	// the first is of a durable term.
	msgs[0].Term, msgs[2].Term, msgs[4].Term = 5, 6, 6
	early, late = splitLeaderMessages(msgs, 5)
	want(early)
	want(late, MsgApp, MsgVoteResp, MsgHeartbeat, MsgAppResp, MsgSnap)
	early, late = splitLeaderMessages(msgs, 6)
	want(early, MsgApp, MsgHeartbeat, MsgSnap)
	want(late, MsgVoteResp, MsgAppResp)
}

// A commit that no append carries reaches the followers after CommitDelay, not at
// the next heartbeat: with heartbeats every 100ms, and none at all while the write is
// in flight, followers apply a lone write well before one is due.
func TestNodeSendsHeldCommitAfterCommitDelay(t *testing.T) {
	checkNoGoroutineLeak(t)
	var quiet atomic.Bool // drop heartbeats
	c := newWrappedTestCluster(t, 3, func(_ uint64, next Transport) Transport {
		return filterTransport{next: next, drop: func(m Message) bool { return quiet.Load() && m.Type == MsgHeartbeat }}
	}, func(c *testCluster) { c.tick = 100 * time.Millisecond })
	lead, index := c.propose([]byte("warm-up"))
	c.waitApplied(index, []byte("warm-up"), c.peers...)
	term, _ := c.nodes[lead].State()

	// With heartbeats dropped, a follower learns the commit only from the held
	// commit being sent; it would otherwise campaign after an election timeout
	// (1-2s), which the term check below would see.
	quiet.Store(true)
	index, _, isLeader := c.nodes[lead].Start([]byte("lone"))
	if !isLeader {
		t.Skip("leadership moved during the warm-up")
	}
	start := time.Now()
	c.waitApplied(index, []byte("lone"), c.others(lead)...)
	took := time.Since(start)
	quiet.Store(false)
	for _, id := range c.peers {
		if got, _ := c.nodes[id].State(); got != term {
			t.Fatalf("node %d at term %d, want %d: the followers campaigned instead of learning the commit", id, got, term)
		}
	}
	t.Logf("followers applied a lone write %v after Start", took)
}

// filterTransport passes messages on unless drop says otherwise, and counts the
// heartbeats that carry a ReadIndex context.
type filterTransport struct {
	next       Transport
	drop       func(Message) bool
	readRounds *sync.Map // distinct heartbeat contexts seen
	// delayResp holds heartbeat responses back this long, as a slower network would.
	delayResp time.Duration
}

func (f filterTransport) Send(msgs []Message) {
	kept := msgs[:0:0]
	for _, m := range msgs {
		if m.Type == MsgHeartbeat && len(m.Context) > 0 && f.readRounds != nil {
			f.readRounds.Store(string(m.Context), true)
		}
		switch {
		case f.drop != nil && f.drop(m):
		case f.delayResp > 0 && m.Type == MsgHeartbeatResp:
			time.AfterFunc(f.delayResp, func() { f.next.Send([]Message{m}) })
		default:
			kept = append(kept, m)
		}
	}
	f.next.Send(kept)
}

// Concurrent reads share heartbeat rounds (thesis §6.4): with one round in flight at
// a time, reads that arrive during a round share the next, so many reads cost a few
// rounds, not one each. Heartbeat responses are delayed by 2ms so that a round lasts
// longer than the reads take to arrive.
func TestNodeReadIndexBatchesRounds(t *testing.T) {
	checkNoGoroutineLeak(t)
	var rounds sync.Map
	c := newWrappedTestCluster(t, 3, func(_ uint64, tr Transport) Transport {
		return filterTransport{next: tr, readRounds: &rounds, delayResp: 2 * time.Millisecond}
	})
	lead, index := c.propose([]byte("w"))
	c.waitApplied(index, []byte("w"), lead)
	// The first read waits for the leader's no-op to be known committed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := c.nodes[lead].ReadIndex(ctx); err == nil {
			break
		} else if !errors.Is(err, ErrReadIndexNotReady) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	rounds.Clear()

	const reads = 1000
	start := make(chan struct{})
	errs := make(chan error, reads)
	for range reads {
		go func() {
			<-start
			read, err := c.nodes[lead].ReadIndex(ctx)
			if err == nil && read < index {
				err = fmt.Errorf("read index %d below the applied write at %d", read, index)
			}
			errs <- err
		}()
	}
	close(start)
	for range reads {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	rounds.Range(func(_, _ any) bool { n++; return true })
	if n == 0 || n > reads/4 {
		t.Fatalf("%d reads used %d heartbeat rounds, want between 1 and %d", reads, n, reads/4)
	}
	t.Logf("%d reads, %d heartbeat rounds", reads, n)
}

// A read round whose request is lost does not hold later reads: it fails with
// ErrLeadershipLost after an election timeout, and the next round is answered.
func TestNodeReadIndexLostRoundFails(t *testing.T) {
	checkNoGoroutineLeak(t)
	var dropReads atomic.Bool
	c := newWrappedTestCluster(t, 3, func(_ uint64, tr Transport) Transport {
		return filterTransport{next: tr, drop: func(m Message) bool {
			return dropReads.Load() && m.Type == MsgReadIndex
		}}
	})
	lead, index := c.propose([]byte("w"))
	c.waitApplied(index, []byte("w"), c.peers...)
	follower := c.others(lead)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dropReads.Store(true)
	began := time.Now()
	if _, err := c.nodes[follower].ReadIndex(ctx); !errors.Is(err, ErrLeadershipLost) {
		t.Fatalf("read whose request was dropped: %v after %v, want ErrLeadershipLost", err, time.Since(began))
	}
	dropReads.Store(false)
	for {
		read, err := c.nodes[follower].ReadIndex(ctx)
		if err == nil {
			if read < index {
				t.Fatalf("read index %d below the applied write at %d", read, index)
			}
			return
		}
		if !errors.Is(err, ErrReadIndexNotReady) && !errors.Is(err, ErrLeadershipLost) {
			t.Fatalf("read after the drop ended: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// asyncTestStorage is an AsyncStorage over a MemoryStorage whose writes become
// "durable" only when WaitDurable is called a delay after they were queued. It records
// how far the log and the HardState are durable, for checking what a node says.
type asyncTestStorage struct {
	*MemoryStorage
	delay time.Duration
	mu    sync.Mutex
	// queued[i] is write i+1: when it was queued and what it wrote.
	queued []asyncWrite
	// durableN writes are durable; lastIndex and hs are as of the last of them.
	durableN  int
	lastIndex uint64
	hs        HardState
}

type asyncWrite struct {
	at        time.Time
	lastIndex uint64
	hs        HardState
}

func (s *asyncTestStorage) SaveAsync(st HardState, ents []Entry) (uint64, error) {
	if err := s.MemoryStorage.Save(st, ents); err != nil {
		return 0, err
	}
	last, _ := s.MemoryStorage.LastIndex()
	hs, _ := s.MemoryStorage.InitialState()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queued = append(s.queued, asyncWrite{at: time.Now(), lastIndex: last, hs: hs})
	return uint64(len(s.queued)), nil
}

func (s *asyncTestStorage) WaitDurable(ticket uint64) error {
	s.mu.Lock()
	at := s.queued[ticket-1].at
	s.mu.Unlock()
	time.Sleep(time.Until(at.Add(s.delay)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(ticket) > s.durableN {
		w := s.queued[ticket-1]
		s.durableN, s.lastIndex, s.hs = int(ticket), w.lastIndex, w.hs
	}
	return nil
}

func (s *asyncTestStorage) durable() (lastIndex uint64, hs HardState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastIndex, s.hs
}

// With asynchronous storage writes, a node acknowledges only what is durable: no
// append is acknowledged past the durable log, no vote granted before it is durable,
// and the cluster still commits, fails over and applies every index once.
func TestNodeAsyncStorageAcknowledgesOnlyDurableWrites(t *testing.T) {
	checkNoGoroutineLeak(t)
	var mu sync.Mutex
	var problems []string
	async := map[uint64]*asyncTestStorage{} // filled before any node starts, then only read
	c := newWrappedTestCluster(t, 3, func(id uint64, tr Transport) Transport {
		return checkTransport{next: tr, check: func(m Message) {
			durableLast, hs := async[id].durable()
			var p string
			switch {
			case m.Type == MsgAppResp && !m.Reject && m.Index > durableLast:
				p = fmt.Sprintf("node %d acknowledged index %d with only %d durable", id, m.Index, durableLast)
			case m.Type == MsgVoteResp && !m.Reject && (hs.Term != m.Term || hs.Vote != m.To):
				p = fmt.Sprintf("node %d granted its vote to %d in term %d with durable %+v", id, m.To, m.Term, hs)
			}
			if p != "" {
				mu.Lock()
				problems = append(problems, p)
				mu.Unlock()
			}
		}}
	}, func(c *testCluster) { c.async = async })
	var lastLead uint64
	for round := range 3 {
		var index uint64
		for i := range 50 {
			cmd := fmt.Appendf(nil, "r%d-%d", round, i)
			lastLead, index = c.propose(cmd)
			if i == 49 {
				c.waitApplied(index, cmd, c.peers...)
			}
		}
		// Fail over: stop the leader, then bring it back.
		c.net.Isolate(lastLead)
		c.stop(lastLead)
		c.net.Heal()
		c.start(lastLead, 0)
	}
	cmd := []byte("last")
	_, index := c.propose(cmd)
	c.waitApplied(index, cmd, c.peers...)
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("%d acknowledgements ahead of durable state, first: %s", len(problems), problems[0])
	}
}

// checkTransport calls check on each message before passing it on.
type checkTransport struct {
	next  Transport
	check func(Message)
}

func (ct checkTransport) Send(msgs []Message) {
	for _, m := range msgs {
		ct.check(m)
	}
	ct.next.Send(msgs)
}

func TestAppendCoalescingAcks(t *testing.T) {
	ack := func(to, term, index uint64) Message {
		return Message{Type: MsgAppResp, To: to, Term: term, Index: index}
	}
	reject := Message{Type: MsgAppResp, To: 1, Term: 2, Index: 4, Reject: true}
	vote := Message{Type: MsgVoteResp, To: 3, Term: 2}
	got := appendCoalescingAcks(nil, []Message{ack(1, 2, 5), ack(1, 2, 7)})
	got = appendCoalescingAcks(got, []Message{ack(1, 2, 9), ack(2, 2, 9), ack(2, 3, 10), reject, ack(1, 2, 11), vote, ack(1, 2, 12)})
	want := []Message{ack(1, 2, 9), ack(2, 2, 9), ack(2, 3, 10), reject, ack(1, 2, 11), vote, ack(1, 2, 12)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("coalesced\n got %v\nwant %v", got, want)
	}
}

// failingStorage is a MemoryStorage that fails as a whole once failed is set, reads
// included, as storage.Storage does after a write fails.
type failingStorage struct {
	*MemoryStorage
	failed atomic.Pointer[error]
}

func (s *failingStorage) Err() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *failingStorage) LastIndex() (uint64, error) {
	if err := s.Err(); err != nil {
		return 0, err
	}
	return s.MemoryStorage.LastIndex()
}

// startOnFailingStorage starts a single-voter Node on a failingStorage.
func startOnFailingStorage(t *testing.T) (*Node, *failingStorage) {
	t.Helper()
	st := &failingStorage{MemoryStorage: NewMemoryStorage()}
	node, err := NewNode(Config{ID: 1, Peers: []uint64{1}, Storage: st, TickInterval: time.Millisecond, ElectionTicks: 10}, NewLocalNetwork().Transport(1))
	if err != nil {
		t.Fatal(err)
	}
	return node, st
}

// TestNodeStopsWhenItsStorageFailedElsewhere: a Storage can fail from outside the
// Node (the application's snapshot write on a full disk); the Node's next read of the
// log then fails, and the Node stops with the Storage's failure instead of panicking.
func TestNodeStopsWhenItsStorageFailedElsewhere(t *testing.T) {
	checkNoGoroutineLeak(t)
	node, st := startOnFailingStorage(t)
	defer node.Stop()
	for {
		if _, _, isLeader := node.Start([]byte("x")); isLeader {
			break
		}
		time.Sleep(time.Millisecond)
	}
	diskFull := errors.New("no space left on device")
	st.failed.Store(&diskFull)
	node.Start([]byte("y"))
	select {
	case <-node.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not stop after its storage failed")
	}
	if err := node.Err(); !errors.Is(err, diskFull) {
		t.Fatalf("Err() = %v, want the storage's failure", err)
	}
}

// A call the run loop runs for a caller (MembershipAt, MembershipStatus) returns when
// the run loop stops inside it: a read of a failed Storage panics there, and the Node
// stops (seen in server's follower crash test: Stop waited forever for a log
// compaction whose MembershipAt the stopped run loop would never finish).
func TestOnLoopReturnsWhenTheRunLoopStopsInsideIt(t *testing.T) {
	checkNoGoroutineLeak(t)
	node, st := startOnFailingStorage(t)
	defer node.Stop()
	diskFull := errors.New("no space left on device")
	ran := make(chan bool, 1)
	go func() {
		ran <- node.onLoop(func() {
			st.failed.Store(&diskFull)
			panic("raft: storage read failed: no space left on device")
		})
	}()
	select {
	case ok := <-ran:
		if ok {
			t.Fatal("onLoop reported a function done that the stop cut short")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("onLoop still waits for a run loop that stopped inside the function")
	}
	if err := node.Err(); !errors.Is(err, diskFull) {
		t.Fatalf("Err() = %v, want the storage's failure", err)
	}
}
