package server

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"raftkv/kv"
)

// manualClock is a clock tests move by hand.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeProposer records what the lessor proposes and applies it to a kv store, handing
// the results back to the lessor as the apply loop would.
type fakeProposer struct {
	t       *testing.T
	store   *kv.Store
	lessor  *lessor
	mu      sync.Mutex
	leader  bool
	term    uint64
	applied []*kv.Command
	fail    error
}

func (p *fakeProposer) isLeader(term uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leader && p.term == term
}

func (p *fakeProposer) proposeLease(_ context.Context, cmd *kv.Command) (kv.Result, error) {
	p.mu.Lock()
	if err := p.fail; err != nil {
		p.mu.Unlock()
		return kv.Result{}, err
	}
	p.applied = append(p.applied, cmd)
	p.mu.Unlock()
	return p.apply(cmd), nil
}

// failWith makes proposals fail with err, or succeed again if err is nil.
func (p *fakeProposer) failWith(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

func (p *fakeProposer) apply(cmd *kv.Command) kv.Result {
	p.t.Helper()
	res := p.store.ApplyCommand(p.store.AppliedIndex()+1, cmd)
	p.lessor.applied(&res, func(id int64) bool { _, ok := p.store.Lease(id); return ok })
	return res
}

func (p *fakeProposer) proposed() []*kv.Command {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.applied
	p.applied = nil
	return out
}

const (
	testExtend             = time.Second
	testCheckpointInterval = 10 * time.Second
	testRevokeRetry        = 3 * time.Second
)

// newTestLessor returns a lessor on a fake clock whose member leads in term 1, not yet
// promoted.
func newTestLessor(t *testing.T) (*lessor, *manualClock, *fakeProposer) {
	store, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clk := &manualClock{now: time.Unix(1_000_000, 0)}
	p := &fakeProposer{t: t, store: store, leader: true, term: 1}
	l := newLessor(lessorConfig{extend: testExtend, checkpointInterval: testCheckpointInterval, revokeRetry: testRevokeRetry},
		clk, p, slog.New(slog.DiscardHandler))
	p.lessor = l
	return l, clk, p
}

func (p *fakeProposer) grant(id, ttl int64) {
	p.t.Helper()
	if res := p.apply(&kv.Command{LeaseGrant: &kv.LeaseGrantRequest{ID: id, TTL: ttl}}); res.Err != nil {
		p.t.Fatal(res.Err)
	}
}

// renewAsync renews lease id in the background; its error comes on the channel.
func renewAsync(l *lessor, id int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := l.renew(context.Background(), id)
		done <- err
	}()
	return done
}

// renewClears renews lease id and requires the renewal to propose one clearing of
// its checkpoint, kv to hold none after, and the next renewal to propose nothing.
func renewClears(t *testing.T, l *lessor, p *fakeProposer, id int64) {
	t.Helper()
	if _, err := l.renew(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	got := p.proposed()
	if len(got) != 1 || got[0].LeaseCheckpoint == nil ||
		!reflect.DeepEqual(got[0].LeaseCheckpoint.Checkpoints, []kv.LeaseCheckpoint{{ID: id}}) {
		t.Fatalf("renewal proposed %+v, want one checkpoint clearing lease %d", got, id)
	}
	if info, _ := p.store.Lease(id); info.RemainingTTL != 0 {
		t.Fatalf("kv holds %+v after the renewal", info)
	}
	if _, err := l.renew(context.Background(), id); err != nil || len(p.proposed()) != 0 {
		t.Fatalf("second renewal: %v, proposed something", err)
	}
}

// renewEndsAtDemotion renews lease id, which must wait, demotes the lessor, and
// requires the renewal to end with errNotPrimary.
func renewEndsAtDemotion(t *testing.T, l *lessor, id int64) {
	t.Helper()
	renewed := renewAsync(l, id)
	time.Sleep(10 * time.Millisecond)
	l.demote()
	if err := <-renewed; !errors.Is(err, errNotPrimary) {
		t.Fatalf("renewal across demotion ended with %v, want errNotPrimary", err)
	}
}

func expiredAfter(t *testing.T, l *lessor) []int64 {
	t.Helper()
	expired, _ := l.tick()
	slices.Sort(expired)
	return expired
}

func TestLessorExpiresLeasesOnlyWhenPrimary(t *testing.T) {
	l, clk, p := newTestLessor(t)
	p.grant(1, 5)
	clk.advance(time.Hour)
	if got := expiredAfter(t, l); got != nil {
		t.Fatalf("a lessor that was never promoted expired %v", got)
	}
	if _, err := l.renew(context.Background(), 1); !errors.Is(err, errNotPrimary) {
		t.Fatalf("renew on a follower's lessor: %v, want errNotPrimary", err)
	}
	l.promote(1, p.store.Leases())
	p.grant(2, 3)
	clk.advance(3*time.Second - time.Millisecond)
	if got := expiredAfter(t, l); got != nil {
		t.Fatalf("expired %v before any TTL passed", got)
	}
	clk.advance(time.Millisecond)
	if got := expiredAfter(t, l); !slices.Equal(got, []int64{2}) {
		t.Fatalf("at its TTL expired %v, want [2]", got)
	}
	p.apply(&kv.Command{LeaseRevoke: &kv.LeaseRevokeRequest{ID: 2}})
	// Lease 1 got a fresh TTL (5s) plus the extension at promotion.
	clk.advance(5*time.Second + testExtend - 3*time.Second - time.Millisecond)
	if got := expiredAfter(t, l); got != nil {
		t.Fatalf("expired %v before lease 1's fresh TTL passed", got)
	}
	clk.advance(time.Millisecond)
	if got := expiredAfter(t, l); !slices.Equal(got, []int64{1}) {
		t.Fatalf("expired %v, want [1]", got)
	}
}

func TestLessorRenewPostponesExpiry(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(7, 10)
	for range 5 {
		clk.advance(9 * time.Second)
		ttl, err := l.renew(context.Background(), 7)
		if err != nil || ttl != 10 {
			t.Fatalf("renew: %d, %v", ttl, err)
		}
		if got := expiredAfter(t, l); got != nil {
			t.Fatalf("a lease renewed every 9s of its 10 expired: %v", got)
		}
	}
	remaining, ttl, err := l.remaining(7)
	if err != nil || remaining != 10*time.Second || ttl != 10 {
		t.Fatalf("remaining after renewal: %v of %d, %v", remaining, ttl, err)
	}
	if _, err := l.renew(context.Background(), 8); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("renew of an unknown lease: %v", err)
	}
}

// An expired lease is offered for revoke again after revokeRetry if the revoke did
// not happen, and never after it did; a renewal of an expired lease waits for the
// revoke.
func TestLessorRevokeRetryAndOrdering(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	for id := int64(1); id <= 3; id++ {
		p.grant(id, 10*id)
	}
	clk.advance(30 * time.Second)
	// Earliest expiry first.
	if expired, _ := l.tick(); !slices.Equal(expired, []int64{1, 2, 3}) {
		t.Fatalf("expired %v, want [1 2 3] in expiry order", expired)
	}
	if got := expiredAfter(t, l); got != nil {
		t.Fatalf("offered %v again before revokeRetry", got)
	}
	renewed := renewAsync(l, 2)
	p.apply(&kv.Command{LeaseRevoke: &kv.LeaseRevokeRequest{ID: 2}})
	if err := <-renewed; !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("renew of an expired lease, then revoked: %v", err)
	}
	clk.advance(testRevokeRetry)
	if got := expiredAfter(t, l); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("after revokeRetry offered %v, want the two not revoked", got)
	}
}

func TestLessorRevokeRate(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	for id := int64(1); id <= 3*int64(revokesPerTick); id++ {
		p.grant(id, 5)
	}
	clk.advance(5 * time.Second)
	total := 0
	for range 3 {
		expired, _ := l.tick()
		if len(expired) != revokesPerTick {
			t.Fatalf("a tick offered %d leases for revoke, want the limit %d", len(expired), revokesPerTick)
		}
		total += len(expired)
	}
	if total != 3*revokesPerTick || len(expiredAfter(t, l)) != 0 {
		t.Fatalf("offered %d in three ticks and more after", total)
	}
}

// Promotion counts a checkpointed lease from its checkpoint, not its TTL, and a
// demoted lessor forgets everything.
func TestLessorPromotionUsesCheckpoint(t *testing.T) {
	l, clk, p := newTestLessor(t)
	p.grant(1, 100)
	p.grant(2, 100)
	p.apply(&kv.Command{LeaseCheckpoint: &kv.LeaseCheckpointRequest{Checkpoints: []kv.LeaseCheckpoint{{ID: 1, RemainingTTL: 4}}}})
	l.promote(1, p.store.Leases())
	clk.advance(4*time.Second + testExtend)
	if got := expiredAfter(t, l); !slices.Equal(got, []int64{1}) {
		t.Fatalf("expired %v at the checkpoint plus the extension, want [1]", got)
	}
	p.mu.Lock()
	p.leader = false
	p.mu.Unlock()
	if got := expiredAfter(t, l); got != nil {
		t.Fatalf("a lessor whose member lost leadership expired %v", got)
	}
	if _, primary := l.isPrimary(); primary {
		t.Fatal("still primary after the member lost leadership")
	}
	if _, err := l.renew(context.Background(), 2); !errors.Is(err, errNotPrimary) {
		t.Fatalf("renew after demotion: %v", err)
	}
	// A new term: everything starts afresh from kv.
	p.mu.Lock()
	p.leader, p.term = true, 2
	p.mu.Unlock()
	l.promote(2, p.store.Leases())
	clk.advance(100*time.Second + testExtend - time.Millisecond)
	if got := expiredAfter(t, l); !slices.Equal(got, []int64{1}) {
		t.Fatalf("in term 2 expired %v before lease 2's fresh TTL, want only [1] (checkpointed at 4s)", got)
	}
}

// A renewal waiting on an expired lease gives up with errNotPrimary when the lessor
// is demoted, since the revoke may then never come.
func TestLessorRenewOfExpiredLeaseWhenDemoted(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(1, 5)
	clk.advance(5 * time.Second)
	renewEndsAtDemotion(t, l, 1)
}

func TestLessorCheckpoints(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(1, 100) // long: checkpointed
	p.grant(2, 5)   // shorter than the interval: never
	clk.advance(testCheckpointInterval - time.Millisecond)
	if _, cps := l.tick(); cps != nil {
		t.Fatalf("checkpoints %v before the interval", cps)
	}
	clk.advance(time.Millisecond)
	_, cps := l.tick()
	want := [][]kv.LeaseCheckpoint{{{ID: 1, RemainingTTL: 90}}}
	if !reflect.DeepEqual(cps, want) {
		t.Fatalf("checkpoints %v, want %v", cps, want)
	}
	l.proposeCheckpoints(context.Background(), cps)
	p.proposed()
	if info, _ := p.store.Lease(1); info.RemainingTTL != 90 {
		t.Fatalf("kv holds %+v after the checkpoint", info)
	}
	// A renewal clears the checkpoint through Raft before it restarts the TTL.
	clk.advance(time.Second)
	renewClears(t, l, p, 1)
	// It is checkpointed again an interval after the last one.
	clk.advance(testCheckpointInterval - time.Second)
	if _, cps := l.tick(); !reflect.DeepEqual(cps, [][]kv.LeaseCheckpoint{{{ID: 1, RemainingTTL: 91}}}) {
		t.Fatalf("second checkpoint %v", cps)
	}
}

// A renewal while a checkpoint is on its way through Raft waits for it and clears
// it: restarted at once, the TTL would be undone for a later leader by the
// checkpoint applying after it (found by TestLeaseDifferential/members=1, where the
// restarted member counted a lease renewed just before from an older checkpoint).
func TestLessorRenewWaitsForCheckpointInFlight(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(1, 100)
	clk.advance(testCheckpointInterval)
	_, cps := l.tick()
	if !reflect.DeepEqual(cps, [][]kv.LeaseCheckpoint{{{ID: 1, RemainingTTL: 90}}}) {
		t.Fatalf("checkpoints %v", cps)
	}
	renewed := renewAsync(l, 1)
	select {
	case err := <-renewed:
		t.Fatalf("renewal answered (%v) before the checkpoint in flight applied", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.proposeCheckpoints(context.Background(), cps)
	if err := <-renewed; err != nil {
		t.Fatal(err)
	}
	var order []int64
	for _, cmd := range p.proposed() {
		for _, cp := range cmd.LeaseCheckpoint.Checkpoints {
			order = append(order, cp.RemainingTTL)
		}
	}
	if !slices.Equal(order, []int64{90, 0}) {
		t.Fatalf("remaining TTLs proposed %v, want the checkpoint (90) then its clearing (0)", order)
	}
	// A later leader counts the lease from its full TTL, as the renewal promised.
	info, _ := p.store.Lease(1)
	if info.RemainingTTL != 0 {
		t.Fatalf("kv holds %+v after the renewal", info)
	}
	next, _, _ := newTestLessor(t)
	next.promote(2, []kv.LeaseInfo{info})
	if left, _, err := next.remaining(1); err != nil || left != testExtend+100*time.Second {
		t.Fatalf("a later leader gives the lease %v (%v), want %v", left, err, testExtend+100*time.Second)
	}
}

// A checkpoint whose proposal failed may still apply later, so its lease's next
// renewal clears it (the clearing comes after it in the log) instead of restarting
// the TTL at once.
func TestLessorRenewAfterFailedCheckpointClearsIt(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(1, 100)
	clk.advance(testCheckpointInterval)
	_, cps := l.tick()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.failWith(context.Canceled)
	l.proposeCheckpoints(ctx, cps)
	p.failWith(nil)
	p.proposed()
	renewClears(t, l, p, 1)
}

// A renewal waiting for a checkpoint ends when the lessor is demoted.
func TestLessorRenewWaitingForCheckpointEndsAtDemotion(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(1, 100)
	clk.advance(testCheckpointInterval)
	if _, cps := l.tick(); len(cps) != 1 {
		t.Fatalf("checkpoints %v", cps)
	}
	renewEndsAtDemotion(t, l, 1)
}

// A renewal restarts the TTL in memory at once, so a lease does not expire while its
// renewal waits for a checkpoint, and one revoked meanwhile ends the wait.
func TestLessorRenewWaitingForCheckpoint(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(1, 100)
	p.grant(2, 100)
	clk.advance(testCheckpointInterval)
	_, cps := l.tick()
	if len(cps) != 1 || len(cps[0]) != 2 {
		t.Fatalf("checkpoints %v, want one entry for both leases", cps)
	}
	renewed1, renewed2 := renewAsync(l, 1), renewAsync(l, 2)
	time.Sleep(20 * time.Millisecond)
	// Past both leases' expiry before the renewals, the renewed one lives on; the
	// batch's token is held, as while dispatch proposes it.
	l.checkpointing <- struct{}{}
	clk.advance(95 * time.Second)
	if expired := expiredAfter(t, l); len(expired) != 0 {
		t.Fatalf("leases %v expired while their renewals waited", expired)
	}
	<-l.checkpointing
	if left, _, err := l.remaining(1); err != nil || left != 5*time.Second {
		t.Fatalf("lease 1 has %v left (%v), want the renewal's 100s less the 95s since", left, err)
	}
	p.apply(&kv.Command{LeaseRevoke: &kv.LeaseRevokeRequest{ID: 2}})
	if err := <-renewed2; !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("renewal of the revoked lease ended with %v, want ErrLeaseNotFound", err)
	}
	select {
	case err := <-renewed1:
		t.Fatalf("renewal of lease 1 answered (%v) before its checkpoint applied", err)
	default:
	}
	l.proposeCheckpoints(context.Background(), cps)
	if err := <-renewed1; err != nil {
		t.Fatal(err)
	}
	if info, _ := p.store.Lease(1); info.RemainingTTL != 0 {
		t.Fatalf("kv holds %+v after the renewal", info)
	}
}

func TestLessorCheckpointBatches(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	n := maxCheckpointsPerEntry*maxCheckpointEntriesPerTick + 10
	for id := 1; id <= n; id++ {
		p.grant(int64(id), 1000)
	}
	clk.advance(testCheckpointInterval)
	_, cps := l.tick()
	if len(cps) != maxCheckpointEntriesPerTick || len(cps[0]) != maxCheckpointsPerEntry {
		t.Fatalf("first tick: %d entries, the first of %d", len(cps), len(cps[0]))
	}
	if _, rest := l.tick(); len(rest) != 1 || len(rest[0]) != 10 {
		t.Fatalf("second tick: %v", rest)
	}
}

// With thousands of leases expiring together after a promotion, no second gets more
// than three quarters of the revoke rate.
func TestLessorPromotionSpreadsExpiries(t *testing.T) {
	l, clk, p := newTestLessor(t)
	const n = 3000
	for id := int64(1); id <= n; id++ {
		p.grant(id, 10)
	}
	start := clk.Now()
	l.promote(1, p.store.Leases())
	perSecond := map[int64]int{}
	l.mu.Lock()
	for _, lt := range l.mu.leases {
		if lt.expiry.Before(start.Add(10*time.Second + testExtend)) {
			t.Fatalf("lease %d expires %v after promotion, before its fresh TTL", lt.id, lt.expiry.Sub(start))
		}
		perSecond[int64(lt.expiry.Sub(start)/time.Second)]++
	}
	l.mu.Unlock()
	for sec, count := range perSecond {
		if count > 3*revokesPerSecond/4+1 {
			t.Fatalf("%d leases expire in second %d after promotion, above %d", count, sec, 3*revokesPerSecond/4)
		}
	}
	if len(perSecond) < 4 {
		t.Fatalf("%d leases spread over %d seconds", n, len(perSecond))
	}
}

// A grant the session table answers again, for a lease revoked since, adds nothing,
// and a second grant result does not restart a lease's TTL.
func TestLessorIgnoresStaleGrantResults(t *testing.T) {
	l, clk, p := newTestLessor(t)
	l.promote(1, nil)
	p.grant(1, 10)
	stale := kv.Result{LeaseGrant: &kv.LeaseGrantResponse{ID: 1, TTL: 10}}
	clk.advance(9 * time.Second)
	l.applied(&stale, func(int64) bool { return true })
	clk.advance(time.Second)
	if got := expiredAfter(t, l); !slices.Equal(got, []int64{1}) {
		t.Fatalf("expired %v; a repeated grant result restarted the TTL", got)
	}
	gone := kv.Result{LeaseGrant: &kv.LeaseGrantResponse{ID: 5, TTL: 10}}
	l.applied(&gone, func(int64) bool { return false })
	if _, _, err := l.remaining(5); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("a grant result for a lease kv lacks was adopted: %v", err)
	}
}

func TestMinLeaseTTL(t *testing.T) {
	for _, tc := range []struct {
		heartbeat, election time.Duration
		want                int64
	}{
		{100 * time.Millisecond, time.Second, 2}, // etcd's defaults: 15 heartbeats, 1.5s
		{10 * time.Millisecond, 100 * time.Millisecond, 1},
		{100 * time.Millisecond, 5 * time.Second, 8},         // 75 heartbeats, 7.5s
		{300 * time.Millisecond, 1600 * time.Millisecond, 3}, // 5 ticks: 7 heartbeats, 2.1s
	} {
		if got := minLeaseTTL(tc.heartbeat, tc.election); got != tc.want {
			t.Errorf("minLeaseTTL(%v, %v) = %d, want %d", tc.heartbeat, tc.election, got, tc.want)
		}
	}
}
