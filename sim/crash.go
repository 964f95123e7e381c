package sim

import (
	"errors"
	"time"
)

// Crashes and restarts: what a node loses, what it keeps, and the points inside Ready
// handling where a crash can hit.

// Crash stops node id at once: the core and the application are lost, and every
// message to or from it in flight but for those Options.StaleRate keeps (network.go);
// its storage, which holds exactly what it made durable, stays (in AsyncWrites mode,
// writes still queued are lost with the rest).
func (c *Cluster) Crash(id uint64) {
	n := c.node(id)
	if n.rn == nil {
		return
	}
	c.crash(n)
}

// CrashBeforeRelease, in AsyncWrites mode, makes node id crash at its next flush, once
// the writes are durable but before the messages waiting for them leave. If no flush
// comes within a second it crashes then.
func (c *Cluster) CrashBeforeRelease(id uint64) { c.crashLater(id, crashBeforeRelease) }

// CrashDuringReady makes node id crash in the middle of handling its next Ready: after
// persisting but before sending (afterSend false), or after sending but before applying
// and Advance (afterSend true). If no Ready comes within a second it crashes then.
func (c *Cluster) CrashDuringReady(id uint64, afterSend bool) {
	point := crashAfterPersist
	if afterSend {
		point = crashAfterSend
	}
	c.crashLater(id, point)
}

func (c *Cluster) crashLater(id uint64, point crashPoint) {
	n := c.node(id)
	if n.rn == nil {
		return
	}
	n.crashAt = point
	inc := n.incarnation
	c.after(time.Second, func() {
		if n.incarnation == inc && n.rn != nil && n.crashAt != noCrash {
			c.crash(n)
		}
	})
}

func (c *Cluster) crash(n *node) {
	c.tracef("n%d crash (hs=%+v applied=%d)", n.id, n.durable, n.app.applied)
	c.counters.Crashes++
	n.rn = nil
	n.incarnation++
	n.crashAt = noCrash
	n.app = appState{}
	c.abandonAll(n, "crash")
	n.pendingProposals = nil
	n.pendingReads = nil
	c.loseQueued(n)
	if c.opts.Storage != nil {
		// The storage loses what it had not made durable and recovers what it had,
		// as after a power loss; a node that cannot recover violates durability.
		c.opts.Storage.Crash(n.id)
		st, err := c.opts.Storage.Open(n.id)
		if err != nil {
			c.violate("storage", "node %d: reopening its storage after a crash: %v", n.id, err)
			return
		}
		c.checkRecovered(n, n.durable, st)
		n.storage = st
	}
}

// Restart brings a crashed node id back up from its storage.
func (c *Cluster) Restart(id uint64) {
	n := c.node(id)
	if n.rn != nil {
		return
	}
	c.counters.Restarts++
	c.start(n)
}

// crashedInStorage crashes n if err is an injected crash of its storage.
func (c *Cluster) crashedInStorage(n *node, err error) bool {
	if !errors.Is(err, ErrStorageCrash) {
		return false
	}
	c.tracef("n%d storage crashed mid-write: %v", n.id, err)
	c.counters.CrashesInStorage++
	c.crash(n)
	// The machine comes back after a power loss; nothing else knows it went down.
	inc := n.incarnation
	c.after(time.Second, func() {
		if n.incarnation == inc && n.rn == nil {
			c.Restart(n.id)
		}
	})
	return true
}
