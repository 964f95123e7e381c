package kv

import (
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults and hard caps for Config. The caps exist because the codec must bound
// what it will decode before it knows the config (see maxTxnDepth).
const (
	// DefaultMaxTxnOps is etcd's default --max-txn-ops.
	DefaultMaxTxnOps = 128
	// DefaultMaxSessions bounds the exactly-once session table.
	DefaultMaxSessions = 10000
	// DefaultMaxProposers bounds the proposers the proposal table keeps (a server
	// process is one proposer; see proposalTable).
	DefaultMaxProposers = 256
	// DefaultMaxProposalResults bounds the results the proposal table keeps per
	// proposer: about the requests one member may forward at once.
	DefaultMaxProposalResults = 16384
	// DefaultMaxCommandBytes sits above etcd's default --max-request-bytes
	// (1.5 MiB) so that any request etcd accepts fits, with room for our framing.
	DefaultMaxCommandBytes = 2 << 20

	// maxTxnOpsCap is no real cap, as etcd has none: a txn is bounded by the
	// request's size, and one nested more than maxTxnDepth deep is refused whatever
	// the limit (checkTxnRequest).
	maxTxnOpsCap          = math.MaxInt32
	maxSessionsCap        = 1 << 22
	maxProposersCap       = 1 << 16
	maxProposalResultsCap = 1 << 22
	maxCommandBytesCap    = 64 << 20
)

// The engine's sizes as a caller may check them before opening a store (the
// server's flags): Config.CacheBytes and Config.MemTableBytes are 0 (the default)
// or between MinEngineBytes and their maximum; Config.SeparateValueBytes is 0 (the
// default), -1 (none) or a size in bytes.
const (
	MinEngineBytes            = minEngineBytes
	MaxCacheBytes             = maxEngineCacheBytes
	MaxMemTableBytes          = maxEngineMemTableBytes
	DefaultCacheBytes         = defaultEngineCacheBytes
	DefaultMemTableBytes      = defaultEngineMemTableBytes
	DefaultSeparateValueBytes = defaultSeparateValueBytes
)

// Config holds the limits of the state machine. A zero field takes its default.
// Every replica must use the same Config: the limits decide which commands fail
// and which sessions are evicted, so they are part of the replicated state.
type Config struct {
	// MaxTxnOps bounds the compares, success ops and failure ops of one txn, each
	// counted separately, exactly as etcd's --max-txn-ops does (a nested txn gets
	// what its parent left). Default 128. Whatever the limit, a txn nests at most
	// 1024 deep.
	MaxTxnOps int
	// MaxSessions bounds the exactly-once session table. When a new client would
	// exceed it, the session used least recently (in log order) is dropped; a
	// retry from that client is then applied again. Size it above the number of
	// clients that can have a request in flight at once. Default 10000.
	MaxSessions int
	// MaxProposers bounds the proposers whose proposals ApplyOnce deduplicates;
	// the least recently used is dropped beyond it (see proposalTable for the
	// price). Default 256.
	MaxProposers int
	// MaxProposalResults bounds the results ApplyOnce keeps per proposer; beyond
	// it the oldest is dropped and a copy of that proposal, or of any pending one
	// below it, is refused (see proposalTable). Default 16384.
	MaxProposalResults int
	// MaxCommandBytes bounds the size of one encoded command in Apply. The server
	// should enforce etcd's request-size limit before proposing; this is the
	// state machine's own backstop. Default 2 MiB, at most 64 MiB.
	MaxCommandBytes int

	// CacheBytes and MemTableBytes size the storage engine (pebble): its block
	// cache (default 64 MiB, 1 MiB to 1 TiB) and one memtable (default 32 MiB,
	// 1 MiB to 1 GiB). The engine's memory is at most CacheBytes plus two
	// memtables, whatever the data. Unlike the limits above, they change no
	// answer, so replicas may differ in them (flags --backend-cache-bytes and
	// --backend-memtable-bytes).
	CacheBytes    int64
	MemTableBytes int64
	// SeparateValueBytes is the value size from which a put's value is kept in
	// a record of its own, apart from the key's version record, so that walks
	// over keys (a paged read's count, a compaction) do not read values
	// (default 128 bytes; -1 keeps every value with its version). It changes no
	// answer to a request; the bytes in use (Sizes, so the quota) count about 15
	// more per separated value, its record's key and length (flag
	// --backend-separate-value-bytes).
	SeparateValueBytes int
}

// engineConfig returns the engine's part of c, on fs (nil for the operating
// system's).
func (c Config) engineConfig(fs vfs.FS) engineConfig {
	return engineConfig{CacheBytes: c.CacheBytes, MemTableBytes: c.MemTableBytes, SeparateValueBytes: c.SeparateValueBytes, FS: fs}
}

// withDefaults returns c with zero fields set to their defaults, or an error
// naming the first field that is out of range.
func (c Config) withDefaults() (Config, error) {
	fields := []struct {
		name     string
		value    *int
		def, max int
	}{
		{"MaxTxnOps", &c.MaxTxnOps, DefaultMaxTxnOps, maxTxnOpsCap},
		{"MaxSessions", &c.MaxSessions, DefaultMaxSessions, maxSessionsCap},
		{"MaxCommandBytes", &c.MaxCommandBytes, DefaultMaxCommandBytes, maxCommandBytesCap},
		{"MaxProposers", &c.MaxProposers, DefaultMaxProposers, maxProposersCap},
		{"MaxProposalResults", &c.MaxProposalResults, DefaultMaxProposalResults, maxProposalResultsCap},
	}
	for _, f := range fields {
		if *f.value == 0 {
			*f.value = f.def
		}
		if *f.value < 1 || *f.value > f.max {
			return Config{}, fmt.Errorf("%w: %s is %d; it must be between 1 and %d (0 selects the default %d)",
				ErrInvalidConfig, f.name, *f.value, f.max, f.def)
		}
	}
	ec, err := c.engineConfig(nil).withDefaults()
	if err != nil {
		return Config{}, err
	}
	c.CacheBytes, c.MemTableBytes = ec.CacheBytes, ec.MemTableBytes
	return c, nil
}

// Validate reports whether c (with defaults filled in) is usable.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}
