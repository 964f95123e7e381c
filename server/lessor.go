package server

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"raftkv/kv"
)

// lessor is the clock-driven half of leases, etcd's "primary lessor": on the leader
// it keeps the time each lease expires, renews leases on keep-alives, proposes the
// revoke of a lease that expired and checkpoints of long leases' remaining TTLs. Which
// leases exist is replicated state in package kv; the lessor follows it through the
// apply loop (applied, promote, restored) and holds nothing on other members.
//
// Leadership. A leader promotes its lessor when it applies the first entry of its
// term (the no-op of Raft §5.4.2 / thesis §6.4): everything committed before is then
// applied, so it knows every lease. Promotion gives each lease a fresh TTL, from its
// last checkpoint if it has one, plus the election timeout (etcd's Promote(extend)):
// a keep-alive that went to the old leader in its last moments is covered, so a
// leader change never expires a lease early. It demotes as soon as it sees it is no
// longer the leader of its term (tick). A demoted lessor's last proposals are
// harmless: they are proposed on the leader only, never forwarded, so each carries
// the old term and, if it commits at all, it comes before the new leader's no-op in
// the log (Log Matching, Raft §5.3), that is, before the new leader promotes.
//
// Limits. Expired leases are revoked at most revokesPerSecond, by revokeWorkers
// proposals in flight, each a few bytes whatever the lease's keys (kv revokes them
// all in one entry). Checkpoints go at most maxCheckpointsPerEntry to an entry, one
// batch of entries in flight at a time. The number of leases is not bounded, as in
// etcd: each is created by a log entry, like a key.
type lessor struct {
	cfg     lessorConfig
	clock   lessorClock
	propose leaseProposer
	logger  *slog.Logger

	// revokeq carries expired lease ids to the revoke workers.
	revokeq chan int64
	// checkpointing holds a token while a checkpoint batch is being proposed.
	checkpointing chan struct{}

	mu struct {
		sync.Mutex
		// primary is set between promote and demote; term is the term promoted in.
		primary bool
		term    uint64
		// demoted is closed at demotion, waking renewals waiting on an expired lease.
		demoted chan struct{}
		leases  map[int64]*leaseTimer
		// expiries holds one entry per lease, at or before its expiry (an entry that
		// is not at its lease's filedAt is stale, and dropped when it comes up): a
		// renewal only moves the lease's expiry, and tick re-files an entry it finds
		// early. checkpoints holds the leases due for a checkpoint.
		expiries    timeHeap
		checkpoints timeHeap
	}
}

// lessorConfig holds the lessor's timings.
type lessorConfig struct {
	// extend is added to every lease's TTL at promotion: the election timeout.
	extend time.Duration
	// checkpointInterval is how often a lease whose remaining TTL is longer is
	// checkpointed.
	checkpointInterval time.Duration
	// revokeRetry is how long an expired lease waits before its revoke is proposed
	// again, if the first did not take.
	revokeRetry time.Duration
}

// Rates and sizes, etcd's where it has them (lessor.go: leaseRevokeRate,
// maxLeaseCheckpointBatchSize).
const (
	// lessorTick is how often the lessor looks for expired leases and due checkpoints.
	lessorTick = 100 * time.Millisecond
	// revokesPerSecond bounds the revokes of expired leases; promote spreads expiries
	// so that at most three quarters of it fall in any second.
	revokesPerSecond = 1000
	revokesPerTick   = int(revokesPerSecond * lessorTick / time.Second)
	revokeWorkers    = 4
	// maxCheckpointsPerEntry and maxCheckpointEntriesPerTick bound checkpoints to
	// 20,000 per second: six million leases checkpointed every 5 minutes.
	maxCheckpointsPerEntry      = 1000
	maxCheckpointEntriesPerTick = 2
	// DefaultLeaseCheckpointInterval is etcd's default.
	DefaultLeaseCheckpointInterval = 5 * time.Minute
)

// leaseTimer is what the primary lessor knows of one lease.
type leaseTimer struct {
	id  int64
	ttl int64 // seconds
	// expiry is when the lease expires unless renewed.
	expiry time.Time
	// filedAt is the time of the lease's entry in the expiries heap.
	filedAt time.Time
	// checkpointed says kv holds a remaining TTL for the lease, which a renewal
	// clears so that a new leader counts from the full TTL again.
	checkpointed bool
	// checkpointPending says a checkpoint of the lease's remaining TTL, taken by tick,
	// is on its way through Raft. A renewal waits for it (renew): restarting the TTL
	// before it applies would let it land after and undo the renewal for a later
	// leader. checkpointSettled, made on demand by a waiting renewal, is closed when
	// the checkpoint applied or was given up (settleCheckpoints).
	checkpointPending bool
	checkpointSettled chan struct{}
	// revoked is closed when the lease's revoke applies; made on demand by a renewal
	// that found the lease expired and waits for it.
	revoked chan struct{}
}

// lessorClock is the lessor's time source (realClock, compactor.go); tests use a
// fake one.
type lessorClock interface {
	Now() time.Time
}

// leaseProposer proposes lease commands through Raft on the leader, never forwarding
// them, and waits until they apply.
type leaseProposer interface {
	proposeLease(ctx context.Context, cmd *kv.Command) (kv.Result, error)
	// isLeader reports whether this member leads in term.
	isLeader(term uint64) bool
}

// Errors of the lessor.
var (
	// errNotPrimary: this member's lessor is not the primary; the leader's is.
	errNotPrimary = errors.New("raftkv: this member does not manage lease expiry; its leader does")
)

func newLessor(cfg lessorConfig, c lessorClock, p leaseProposer, logger *slog.Logger) *lessor {
	l := &lessor{cfg: cfg, clock: c, propose: p, logger: logger,
		revokeq: make(chan int64, 2*revokesPerTick), checkpointing: make(chan struct{}, 1)}
	l.mu.leases = map[int64]*leaseTimer{}
	return l
}

// run ticks the lessor and runs its revoke workers until stop is closed.
func (l *lessor) run(stop <-chan struct{}) {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		wg.Wait()
	}()
	for range revokeWorkers {
		wg.Go(func() { l.revokeWorker(ctx) })
	}
	ticker := time.NewTicker(lessorTick)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			expired, checkpoints := l.tick()
			l.dispatch(ctx, &wg, expired, checkpoints)
		case <-stop:
			return
		}
	}
}

// dispatch hands expired leases to the revoke workers and proposes the checkpoints
// in the background, one batch at a time.
func (l *lessor) dispatch(ctx context.Context, wg *sync.WaitGroup, expired []int64, checkpoints [][]kv.LeaseCheckpoint) {
	for i, id := range expired {
		select {
		case l.revokeq <- id:
			continue
		default:
		}
		// The workers are behind: try the rest at the next tick.
		l.retryRevokes(expired[i:])
		break
	}
	if len(checkpoints) == 0 {
		return
	}
	// tick takes checkpoints only while no batch is in flight, and only this
	// goroutine starts one, so the token is free.
	l.checkpointing <- struct{}{}
	wg.Go(func() {
		defer func() { <-l.checkpointing }()
		l.proposeCheckpoints(ctx, checkpoints)
	})
}

// proposeCheckpoints proposes a batch of checkpoints taken by tick, one entry at a
// time, and settles each entry's leases once it applied or was given up.
func (l *lessor) proposeCheckpoints(ctx context.Context, entries [][]kv.LeaseCheckpoint) {
	for i, cps := range entries {
		if _, err := l.propose.proposeLease(ctx, &kv.Command{LeaseCheckpoint: &kv.LeaseCheckpointRequest{Checkpoints: cps}}); err != nil {
			l.logger.Debug("lease checkpoint not proposed", "leases", len(cps), "err", err)
			for _, rest := range entries[i:] {
				l.settleCheckpoints(rest, true)
			}
			return
		}
		l.settleCheckpoints(cps, false)
	}
}

// settleCheckpoints ends the wait of renewals on the leases of cps. uncertain says
// the entry's proposal failed: it may have been queued and still apply (a proposal
// that failed after queueing is appended later), so the leases count as
// checkpointed and their next renewal proposes a clearing, which the proposal queue
// orders after it. (Entries after a failed one were never proposed: for their leases
// this costs one clearing.)
func (l *lessor) settleCheckpoints(cps []kv.LeaseCheckpoint, uncertain bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, cp := range cps {
		lt := l.mu.leases[cp.ID]
		if lt == nil || !lt.checkpointPending {
			continue
		}
		lt.checkpointPending = false
		if uncertain {
			lt.checkpointed = true
		}
		if lt.checkpointSettled != nil {
			close(lt.checkpointSettled)
			lt.checkpointSettled = nil
		}
	}
}

func (l *lessor) revokeWorker(ctx context.Context) {
	for {
		select {
		case id := <-l.revokeq:
			_, err := l.propose.proposeLease(ctx, &kv.Command{LeaseRevoke: &kv.LeaseRevokeRequest{ID: id}})
			switch {
			case err == nil:
				l.logger.Debug("revoked expired lease", "lease", id)
			case ctx.Err() != nil:
			default:
				// Retried after revokeRetry while this member leads.
				l.logger.Info("revoking expired lease failed; will retry", "lease", id, "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// tick demotes the lessor if its member no longer leads, and returns the leases that
// expired (at most revokesPerTick) and the checkpoints due, in entries.
func (l *lessor) tick() (expired []int64, checkpoints [][]kv.LeaseCheckpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.primary {
		return nil, nil
	}
	if !l.propose.isLeader(l.mu.term) {
		l.demoteLocked()
		return nil, nil
	}
	now := l.clock.Now()
	for len(expired) < revokesPerTick && len(l.mu.expiries) > 0 && !l.mu.expiries[0].at.After(now) {
		item := heap.Pop(&l.mu.expiries).(timedLease)
		lt := l.mu.leases[item.id]
		switch {
		case lt == nil || !item.at.Equal(lt.filedAt):
			// Revoked, or a stale entry: dropped.
		case lt.expiry.After(now):
			l.fileExpiryLocked(lt, lt.expiry)
		default:
			expired = append(expired, lt.id)
			l.fileExpiryLocked(lt, now.Add(l.cfg.revokeRetry))
		}
	}
	if len(l.checkpointing) == 0 {
		checkpoints = l.dueCheckpointsLocked(now)
	}
	return expired, checkpoints
}

// retryRevokes files the leases again for the next tick.
func (l *lessor) retryRevokes(ids []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	for _, id := range ids {
		if lt := l.mu.leases[id]; lt != nil {
			l.fileExpiryLocked(lt, now)
		}
	}
}

// fileExpiryLocked files lt in the expiries heap at at, making any entry it had
// stale.
func (l *lessor) fileExpiryLocked(lt *leaseTimer, at time.Time) {
	lt.filedAt = at
	heap.Push(&l.mu.expiries, timedLease{id: lt.id, at: at})
}

// dueCheckpointsLocked mirrors etcd's findDueScheduledCheckpoints: a lease due gets
// a checkpoint of its remaining TTL in whole seconds, rounded up, unless it has its
// full TTL left (a checkpoint would say nothing), and is scheduled again.
func (l *lessor) dueCheckpointsLocked(now time.Time) [][]kv.LeaseCheckpoint {
	var entries [][]kv.LeaseCheckpoint
	var cps []kv.LeaseCheckpoint
	for len(l.mu.checkpoints) > 0 && !l.mu.checkpoints[0].at.After(now) {
		if len(cps) == maxCheckpointsPerEntry {
			entries = append(entries, cps)
			cps = nil
			if len(entries) == maxCheckpointEntriesPerTick {
				return entries
			}
		}
		item := heap.Pop(&l.mu.checkpoints).(timedLease)
		lt := l.mu.leases[item.id]
		if lt == nil || !now.Before(lt.expiry) {
			continue
		}
		remaining := int64(math.Ceil(lt.expiry.Sub(now).Seconds()))
		l.scheduleCheckpointLocked(lt, now)
		if remaining >= lt.ttl {
			continue
		}
		lt.checkpointPending = true
		cps = append(cps, kv.LeaseCheckpoint{ID: lt.id, RemainingTTL: remaining})
	}
	if len(cps) > 0 {
		entries = append(entries, cps)
	}
	return entries
}

// scheduleCheckpointLocked files lt for a checkpoint an interval from now if it will
// still be alive then.
func (l *lessor) scheduleCheckpointLocked(lt *leaseTimer, now time.Time) {
	if lt.expiry.Sub(now) > l.cfg.checkpointInterval {
		heap.Push(&l.mu.checkpoints, timedLease{id: lt.id, at: now.Add(l.cfg.checkpointInterval)})
	}
}

// promote makes the lessor primary for term with the given leases (kv's, as of the
// term's first entry), each expiring after its remaining TTL plus cfg.extend. It does
// nothing if it is primary for term already.
func (l *lessor) promote(term uint64, leases []kv.LeaseInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.primary && l.mu.term == term {
		return
	}
	if l.mu.primary {
		l.demoteLocked()
	}
	l.mu.primary, l.mu.term = true, term
	l.mu.demoted = make(chan struct{})
	now := l.clock.Now()
	timers := make([]*leaseTimer, 0, len(leases))
	for _, info := range leases {
		remaining := info.TTL
		if info.RemainingTTL > 0 {
			remaining = info.RemainingTTL
		}
		lt := &leaseTimer{id: info.ID, ttl: info.TTL, checkpointed: info.RemainingTTL > 0,
			expiry: now.Add(l.cfg.extend + time.Duration(remaining)*time.Second)}
		l.mu.leases[lt.id] = lt
		timers = append(timers, lt)
	}
	spreadExpiries(timers)
	for _, lt := range timers {
		lt.filedAt = lt.expiry
		l.mu.expiries = append(l.mu.expiries, timedLease{id: lt.id, at: lt.expiry})
		l.scheduleCheckpointLocked(lt, now)
	}
	heap.Init(&l.mu.expiries)
	l.logger.Info("lessor promoted: this member now expires leases", "term", term, "leases", len(leases))
}

// spreadExpiries mirrors the second half of etcd's Promote: when many leases would
// expire in the same second after a promotion (a cluster of long-lived leases whose
// leader died), later ones are pushed back so that no second holds more than three
// quarters of revokesPerSecond, leaving room for leases expiring on their own.
func spreadExpiries(timers []*leaseTimer) {
	if len(timers) < revokesPerSecond {
		return
	}
	slices.SortFunc(timers, func(a, b *leaseTimer) int { return a.expiry.Compare(b.expiry) })
	const target = 3 * revokesPerSecond / 4
	base := timers[0].expiry
	windowEnd := base.Add(time.Second)
	inWindow := 0
	for _, lt := range timers {
		if lt.expiry.After(windowEnd) {
			base, windowEnd, inWindow = lt.expiry, lt.expiry.Add(time.Second), 1
			continue
		}
		inWindow++
		if inWindow <= target {
			continue
		}
		// The n-th lease of a crowded window goes n/target seconds after the window's
		// start, less how far after the start it was already.
		delay := time.Duration(float64(time.Second)*float64(inWindow)/target) - lt.expiry.Sub(base)
		lt.expiry = lt.expiry.Add(delay)
		windowEnd = base.Add(time.Duration(float64(time.Second) * float64(inWindow) / target))
	}
}

// demote drops everything the primary lessor held.
func (l *lessor) demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.demoteLocked()
}

func (l *lessor) demoteLocked() {
	if !l.mu.primary {
		return
	}
	l.logger.Info("lessor demoted", "term", l.mu.term)
	l.mu.primary = false
	close(l.mu.demoted)
	clear(l.mu.leases)
	l.mu.expiries, l.mu.checkpoints = nil, nil
}

// isPrimary reports whether the lessor is primary, and for which term.
func (l *lessor) isPrimary() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.term, l.mu.primary
}

// applied follows an applied command's effect on the leases. exists reports whether
// kv holds a lease (a grant answered from the session table may name a lease
// revoked since, a revoke so answered one granted again since).
func (l *lessor) applied(res *kv.Result, exists func(id int64) bool) {
	if res.LeaseGrant == nil && res.LeaseRevoke == nil && res.LeaseCheckpoint == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.primary {
		return
	}
	switch {
	case res.LeaseGrant != nil:
		g := res.LeaseGrant
		if _, ok := l.mu.leases[g.ID]; ok || !exists(g.ID) {
			return
		}
		now := l.clock.Now()
		lt := &leaseTimer{id: g.ID, ttl: g.TTL, expiry: now.Add(time.Duration(g.TTL) * time.Second)}
		l.mu.leases[lt.id] = lt
		l.fileExpiryLocked(lt, lt.expiry)
		l.scheduleCheckpointLocked(lt, now)
	case res.LeaseRevoke != nil:
		// A revoke answered from the session table (a retry) may name a lease
		// granted again since: that one lives on.
		if lt := l.mu.leases[res.LeaseRevoke.ID]; lt != nil && !exists(lt.id) {
			l.dropLocked(lt)
		}
	case res.LeaseCheckpoint != nil:
		for _, cp := range res.LeaseCheckpoint.Checkpoints {
			if lt := l.mu.leases[cp.ID]; lt != nil {
				lt.checkpointed = cp.RemainingTTL > 0
			}
		}
	}
}

// restored follows a snapshot installed on this member: a primary lessor keeps the
// expiry of the leases it knows, adopts new ones as promote would, and drops those
// gone. (A leader never installs a snapshot; this keeps the lessor right if it did.)
func (l *lessor) restored(leases []kv.LeaseInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.primary {
		return
	}
	now := l.clock.Now()
	kept := make(map[int64]*leaseTimer, len(leases))
	for _, info := range leases {
		lt := l.mu.leases[info.ID]
		if lt == nil {
			lt = &leaseTimer{id: info.ID, ttl: info.TTL,
				expiry: now.Add(l.cfg.extend + time.Duration(info.TTL)*time.Second)}
			l.fileExpiryLocked(lt, lt.expiry)
			l.scheduleCheckpointLocked(lt, now)
		}
		lt.checkpointed = info.RemainingTTL > 0
		kept[info.ID] = lt
	}
	for id, lt := range l.mu.leases {
		if kept[id] == nil {
			l.dropLocked(lt)
		}
	}
	l.mu.leases = kept
}

// dropLocked forgets a lease that is gone, waking the renewals waiting on it.
func (l *lessor) dropLocked(lt *leaseTimer) {
	delete(l.mu.leases, lt.id)
	if lt.revoked != nil {
		close(lt.revoked)
		lt.revoked = nil
	}
	if lt.checkpointSettled != nil {
		close(lt.checkpointSettled)
		lt.checkpointSettled = nil
	}
}

// renew mirrors etcd's lessor.Renew: it restarts the lease's TTL and returns it. A
// lease that expired is being revoked: renew waits for the revoke and answers
// kv.ErrLeaseNotFound, or errNotPrimary if the lessor is demoted first (the revoke may
// not happen then; the caller asks the new leader), or errTimeout after two revoke
// attempts.
//
// A later leader counts a lease from its last checkpoint in kv (promote), so renew
// answers only once no checkpoint from before the renewal is left to apply: a lease
// with a checkpoint in kv has it cleared through Raft, and one whose checkpoint is
// still on its way waits for it to apply, then clears it. The TTL restarts in memory
// at once, as in etcd, so the wait never lets the lease expire, and a checkpoint
// taken meanwhile holds the renewed TTL. (etcd answers at once, while a checkpoint
// may still be in flight; when it applies after the renewal, a later leader expires
// the lease up to a checkpoint interval early.)
func (l *lessor) renew(ctx context.Context, id int64) (int64, error) {
	l.mu.Lock()
	lt, err := l.lookupLocked(id)
	if err != nil {
		l.mu.Unlock()
		return 0, err
	}
	now := l.clock.Now()
	if !now.Before(lt.expiry) {
		if lt.revoked == nil {
			lt.revoked = make(chan struct{})
		}
		revoked, demoted := lt.revoked, l.mu.demoted
		l.mu.Unlock()
		return 0, l.awaitRevoke(ctx, revoked, demoted)
	}
	lt.expiry = now.Add(time.Duration(lt.ttl) * time.Second)
	if !lt.checkpointPending && !lt.checkpointed {
		// The common case, in one critical section.
		l.mu.Unlock()
		return lt.ttl, nil
	}
	l.mu.Unlock()
	return l.clearCheckpoint(ctx, id)
}

// clearCheckpoint waits for a checkpoint of the lease still on its way through Raft,
// if any, then clears the lease's checkpoint in kv through Raft, and returns the
// lease's TTL. Each checkpoint entry's proposal ends within the request timeout
// (settleCheckpoints); the timer is a bound of the wait's own.
func (l *lessor) clearCheckpoint(ctx context.Context, id int64) (int64, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		lt, err := l.lookupLocked(id)
		if err != nil {
			l.mu.Unlock()
			return 0, err
		}
		switch {
		case lt.checkpointPending:
			if lt.checkpointSettled == nil {
				lt.checkpointSettled = make(chan struct{})
			}
			settled, demoted := lt.checkpointSettled, l.mu.demoted
			l.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(2 * maxCheckpointEntriesPerTick * l.cfg.revokeRetry)
			}
			select {
			case <-settled:
			case <-demoted:
				return 0, errNotPrimary
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-timer.C:
				return 0, errTimeout
			}
		case lt.checkpointed:
			l.mu.Unlock()
			clearing := &kv.LeaseCheckpointRequest{Checkpoints: []kv.LeaseCheckpoint{{ID: id}}}
			if _, err := l.propose.proposeLease(ctx, &kv.Command{LeaseCheckpoint: clearing}); err != nil {
				return 0, err
			}
			// Applied, the clearing reset checkpointed (applied); the next round
			// answers unless another checkpoint was taken meanwhile.
		default:
			l.mu.Unlock()
			return lt.ttl, nil
		}
	}
}

// awaitRevoke waits for the revoke of an expired lease, which is retried every
// revokeRetry while this lessor is primary.
func (l *lessor) awaitRevoke(ctx context.Context, revoked, demoted <-chan struct{}) error {
	wait := time.NewTimer(2 * l.cfg.revokeRetry)
	defer wait.Stop()
	select {
	case <-revoked:
		return kv.ErrLeaseNotFound
	case <-demoted:
		return errNotPrimary
	case <-ctx.Done():
		return ctx.Err()
	case <-wait.C:
		return errTimeout
	}
}

func (l *lessor) lookupLocked(id int64) (*leaseTimer, error) {
	if !l.mu.primary {
		return nil, errNotPrimary
	}
	lt := l.mu.leases[id]
	if lt == nil {
		return nil, kv.ErrLeaseNotFound
	}
	return lt, nil
}

// remaining returns how long the lease has left and the TTL it was granted.
func (l *lessor) remaining(id int64) (time.Duration, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lt, err := l.lookupLocked(id)
	if err != nil {
		return 0, 0, err
	}
	return lt.expiry.Sub(l.clock.Now()), lt.ttl, nil
}

// orderByExpiry sorts leases, given in id order, as etcd's lessor lists them
// (lessor.Leases): the soonest to expire first. Leases that expire together stay in
// id order (etcd's order among them is unspecified), and one the lessor does not know
// yet goes last (etcd's unset expiry counts as never). Only the primary knows when
// leases expire: on any other member, where etcd counts every lease as never expiring
// and lists them in no particular order, the order stays by id. The lessor's mutex,
// which keep-alives and the apply loop take, is held only to read the expiries, as
// etcd's copies its leases under its lock and sorts them after.
func (l *lessor) orderByExpiry(leases []kv.LeaseInfo) {
	type expiring struct {
		at    time.Time
		known bool // false for a lease the lessor does not know yet
		info  kv.LeaseInfo
	}
	l.mu.Lock()
	if !l.mu.primary {
		l.mu.Unlock()
		return
	}
	byExpiry := make([]expiring, len(leases))
	for i, info := range leases {
		byExpiry[i].info = info
		if lt := l.mu.leases[info.ID]; lt != nil {
			byExpiry[i].at, byExpiry[i].known = lt.expiry, true
		}
	}
	l.mu.Unlock()
	slices.SortFunc(byExpiry, func(a, b expiring) int {
		switch {
		case a.known != b.known:
			if a.known {
				return -1
			}
			return 1
		case a.known:
			if c := a.at.Compare(b.at); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.info.ID, b.info.ID)
	})
	for i := range byExpiry {
		leases[i] = byExpiry[i].info
	}
}

// timedLease is a lease id filed at a time.
type timedLease struct {
	id int64
	at time.Time
}

// timeHeap is a min-heap of timedLeases by time.
type timeHeap []timedLease

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(timedLease)) }
func (h *timeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
