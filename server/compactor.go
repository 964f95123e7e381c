package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"raftkv/kv"
)

// Auto-compaction (--auto-compaction-mode, --auto-compaction-retention) keeps the
// history from growing without bound, with etcd's semantics (v3.7, package
// v3compactor): every member runs a compactor, and only the leader's proposes
// compactions, through the log like a client's Compact.
//
// Periodic, retention P: the compactor notes the store's revision every
// min(P, 1h)/10 and keeps the last P/that+1 notes; once P has passed since it
// started, and then every min(P, 1h), it compacts to the oldest note, the revision of
// about P ago. So with P = 1h the store keeps the last hour of history, compacted
// hourly; with P = 24h, the last day, compacted hourly.
//
// Revision, retention N: every 5 minutes the compactor compacts to the current
// revision minus N, if that is positive and has changed.
//
// A compaction that fails (no leader, a lost proposal) is tried again at the next
// step; one that finds the revision already compacted counts as done, as in etcd.

// Auto-compaction modes.
const (
	CompactionPeriodic = "periodic"
	CompactionRevision = "revision"
)

// revisionCompactionInterval is how often revision mode compacts (etcd's revInterval);
// a variable so that tests can shorten it.
var revisionCompactionInterval = 5 * time.Minute

// autoCompaction is a parsed AutoCompactionMode/AutoCompactionRetention.
type autoCompaction struct {
	mode      string
	period    time.Duration // periodic
	revisions int64         // revision
}

func (a autoCompaction) enabled() bool { return a.period > 0 || a.revisions > 0 }

// parseAutoCompaction reads the two settings as etcd does, except that it refuses a
// duration in revision mode (etcd takes "1h" there as 3.6e12 revisions). An empty
// mode is periodic, etcd's default; an empty or "0" retention turns it off.
func parseAutoCompaction(mode, retention string) (autoCompaction, error) {
	if mode == "" {
		mode = CompactionPeriodic
	}
	a := autoCompaction{mode: mode}
	if mode != CompactionPeriodic && mode != CompactionRevision {
		return a, fmt.Errorf("--auto-compaction-mode is %q; use %q or %q", mode, CompactionPeriodic, CompactionRevision)
	}
	if retention == "" {
		return a, nil
	}
	n, err := strconv.ParseInt(retention, 10, 64)
	switch {
	case err == nil && n < 0:
		return a, fmt.Errorf("--auto-compaction-retention %s is negative; use 0 to turn auto-compaction off", retention)
	case err == nil && mode == CompactionRevision:
		a.revisions = n
	case err == nil:
		// A bare number is hours in periodic mode, as in etcd.
		if n > int64(1<<63-1)/int64(time.Hour) {
			return a, fmt.Errorf("--auto-compaction-retention %s hours is too long; give at most %d hours", retention, int64(1<<63-1)/int64(time.Hour))
		}
		a.period = time.Duration(n) * time.Hour
	case mode == CompactionRevision:
		return a, fmt.Errorf("--auto-compaction-retention %q: revision mode keeps a number of revisions, like 1000", retention)
	default:
		d, err := time.ParseDuration(retention)
		if err != nil || d < 0 {
			return a, fmt.Errorf("--auto-compaction-retention %q is neither a number of hours nor a duration like 30m or 1h", retention)
		}
		if d > 0 && d < 10*time.Millisecond {
			return a, fmt.Errorf("--auto-compaction-retention %v is too short; use at least 10ms", d)
		}
		a.period = d
	}
	return a, nil
}

// clock is the compactor's time, faked in tests.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// compactor runs one auto-compaction policy until stop is closed.
type compactor struct {
	policy   autoCompaction
	clock    clock
	revision func() int64
	isLeader func() bool
	// compact proposes a compaction to rev and waits for it; kv.ErrCompacted counts
	// as done.
	compact func(rev int64) error
	logger  *slog.Logger
	stop    <-chan struct{}
}

func (c *compactor) run() {
	if c.policy.mode == CompactionRevision {
		c.runRevision()
	} else {
		c.runPeriodic()
	}
}

// compactOnce compacts to rev and reports whether it is done (or was already).
func (c *compactor) compactOnce(rev int64, attrs ...any) bool {
	started := c.clock.Now()
	err := c.compact(rev)
	if err == nil || errors.Is(err, kv.ErrCompacted) {
		c.logger.Info("auto-compaction done", append(attrs, "revision", rev, "took", c.clock.Now().Sub(started))...)
		return true
	}
	c.logger.Warn("auto-compaction failed; trying again later", append(attrs, "revision", rev, "err", err)...)
	return false
}

func (c *compactor) runPeriodic() {
	period := c.policy.period
	compactInterval := min(period, time.Hour)
	retryInterval := compactInterval / 10
	keep := int(period/retryInterval) + 1
	revs := make([]int64, 0, keep+1)
	var lastRevision int64
	lastSuccess := c.clock.Now()
	// The first compaction waits a whole period; the later ones compactInterval.
	wait := period
	for {
		// revs[0] is always the revision of about one period ago.
		revs = append(revs, c.revision())
		if len(revs) > keep {
			revs = revs[1:]
		}
		select {
		case <-c.stop:
			return
		case <-c.clock.After(retryInterval):
		}
		if !c.isLeader() {
			continue
		}
		rev := revs[0]
		if c.clock.Now().Sub(lastSuccess) < wait || rev == lastRevision {
			continue
		}
		wait = compactInterval
		if c.compactOnce(rev, "mode", CompactionPeriodic, "retention", period) {
			lastRevision, lastSuccess = rev, c.clock.Now()
		}
	}
}

func (c *compactor) runRevision() {
	var prev int64
	for {
		select {
		case <-c.stop:
			return
		case <-c.clock.After(revisionCompactionInterval):
		}
		if !c.isLeader() {
			continue
		}
		rev := c.revision() - c.policy.revisions
		if rev <= 0 || rev == prev {
			continue
		}
		if c.compactOnce(rev, "mode", CompactionRevision, "retention", c.policy.revisions) {
			prev = rev
		}
	}
}

// startCompactor starts the auto-compaction policy of the config, if any.
func (s *Server) startCompactor() {
	policy, _ := parseAutoCompaction(s.cfg.AutoCompactionMode, s.cfg.AutoCompactionRetention) // Validate checked it
	if !policy.enabled() {
		return
	}
	c := &compactor{
		policy:   policy,
		clock:    realClock{},
		revision: s.sm.store.Revision,
		isLeader: func() bool { _, isLeader := s.node.State(); return isLeader },
		compact:  s.proposeCompaction,
		logger:   s.logger,
		stop:     s.stopc,
	}
	s.goTracked(c.run)
}

// proposeCompaction compacts the store to rev through the log.
func (s *Server) proposeCompaction(rev int64) error {
	payload, err := (&kv.Command{Sender: kv.AuthInfo{Member: true}, Compact: &kv.CompactionRequest{Revision: rev}}).Encode()
	if err != nil {
		return err
	}
	res, err := s.propose(context.Background(), kindKV, payload)
	if err != nil {
		return err
	}
	return res.Err
}
