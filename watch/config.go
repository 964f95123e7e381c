package watch

import (
	"fmt"
	"log/slog"
	"time"
)

// Config sets a Hub's limits. Zero fields take the defaults below.
type Config struct {
	// MaxQueuedResponses and MaxQueuedBytes bound the event responses queued for one
	// stream's client, and their events' memory (kv.Event.Size). A watcher whose
	// next response does not fit becomes unsynced and later catches up from the
	// history, so a client that stops reading holds at most this much of the
	// member's memory per stream, plus one revision's events: a response always fits
	// an empty queue, and a read of the history never splits a revision.
	MaxQueuedResponses int
	MaxQueuedBytes     int
	// MaxWatchesPerStream bounds the watches of one stream; a create beyond it is
	// answered canceled, with the reason.
	MaxWatchesPerStream int
	// ProgressNotifyInterval is how often a watch created with progress_notify hears
	// the revision it has reached when no event came in the meantime (etcd's
	// --watch-progress-notify-interval), plus up to a tenth of it at
	// random so that streams do not all fire together.
	ProgressNotifyInterval time.Duration
	Logger                 *slog.Logger
}

// Defaults.
const (
	// DefaultMaxQueuedResponses is etcd's per-stream channel length.
	DefaultMaxQueuedResponses = 128
	// DefaultMaxQueuedBytes allows 128 responses of 32 KiB each.
	DefaultMaxQueuedBytes = 4 << 20
	// DefaultMaxWatchesPerStream: etcd has no limit; clientv3 puts every watch of
	// one context on one stream, and 10,000 of them take about 4 MiB.
	DefaultMaxWatchesPerStream = 10000
	// DefaultProgressNotifyInterval is etcd's.
	DefaultProgressNotifyInterval = 10 * time.Minute
	// MinProgressNotifyInterval is etcd's floor; a shorter interval is raised to it.
	MinProgressNotifyInterval = 100 * time.Millisecond
)

// Fixed limits.
const (
	// maxQueuedControl bounds the Created and Canceled responses queued for one
	// stream (etcd's ctrlStreamBufLen): a client that sends creates without reading
	// the answers is made to wait.
	maxQueuedControl = 16
	// maxEventsPerRead bounds one read of the history, and so how long the hub holds
	// its lock and the store's read lock at a time. A revision with more events is
	// still read whole.
	maxEventsPerRead = 1000
	// maxCatchUpWatchers bounds the unsynced watchers served by one history read
	// (etcd's maxWatchersPerSync).
	maxCatchUpWatchers = 512
	// retryInterval is how often unsynced watchers and deferred progress requests
	// are retried when nothing else wakes the hub (etcd's watchResyncPeriod).
	retryInterval = 100 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.MaxQueuedResponses <= 0 {
		c.MaxQueuedResponses = DefaultMaxQueuedResponses
	}
	if c.MaxQueuedBytes <= 0 {
		c.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if c.MaxWatchesPerStream <= 0 {
		c.MaxWatchesPerStream = DefaultMaxWatchesPerStream
	}
	if c.ProgressNotifyInterval == 0 {
		c.ProgressNotifyInterval = DefaultProgressNotifyInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ProgressNotifyInterval < MinProgressNotifyInterval {
		c.Logger.Warn("raising the watch progress notify interval to the minimum",
			"interval", c.ProgressNotifyInterval, "minimum", MinProgressNotifyInterval)
		c.ProgressNotifyInterval = MinProgressNotifyInterval
	}
	return c
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.ProgressNotifyInterval < 0 {
		return fmt.Errorf("watch progress notify interval %v is negative; give 0 for the default %v or a positive duration",
			c.ProgressNotifyInterval, DefaultProgressNotifyInterval)
	}
	return nil
}
