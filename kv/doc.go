// Package kv is raftkv's replicated state machine: an MVCC key/value store with
// etcd v3 semantics plus exactly-once client sessions, deterministic, on an
// embedded storage engine, pebble (engine*.go): OpenStore opens it in a
// directory, NewStore on pebble's in-memory file system (tests, tools).
//
// Writes reach the store only through the replicated log: the server encodes a
// Command, raft commits it, and every replica calls Store.Apply with the same
// (index, bytes) in the same order, so every replica reaches the same state. Apply
// must therefore be a pure function of the store's state and its input: nothing in
// this package reads a clock, draws a random number, iterates a map in an order that
// matters, or touches the network; the disk only through the engine, which
// changes no answer. Reads (Store.Range and read-only
// Store.Txn) do not go through the log; the server makes them linearizable with
// raft's ReadIndex and waits until AppliedIndex has caught up before calling them.
//
// The request and response types mirror the fields of etcd's etcdserverpb messages
// that the KV service needs, and the behaviour mirrors etcd's (v3.5+) down to its
// quirks, because raftkv is tested differentially against a real etcd. Where this
// package deliberately differs from etcd, the difference is documented beside the
// code that makes it.
//
// All replicas must run with the same Config limits: they decide which commands
// are rejected and which sessions and proposals are evicted, and so are part of
// the state machine. The engine's sizes (CacheBytes, MemTableBytes) change no
// answer and may differ.
//
// The engine (engine.go, key layout in engine_keys.go) holds every version of
// every key, the history by revision, leases, sessions, proposals, the auth state,
// the server's records (ApplyMeta, SetMeta), and the applied index, term, revision
// and compaction revision. A value of SeparateValueBytes or more (default 128) is
// kept in a record of its own keyed by revision, apart from its key's version
// record, so that walks over the keys (a paged range's count, a compaction) do not
// read values. Each applied entry is one pebble batch with its applied
// index, or, between BeginGroup and EndGroup, consecutive plain puts share one
// (no answer changes: their one read sees the batch's earlier puts), committed
// without a sync and without pebble's WAL: the raft log is the durability.
// Store.Flush makes what was applied durable and returns the applied index it
// covers (Apply goes on while it writes: it holds the lock only to start the
// flush); after a crash the store opens at its last flush and the log is
// replayed from there, so the log may be truncated only up to a flushed index. An
// engine that fails a write (a full disk) or a read (an I/O error, a corrupt
// block) stops the store: the read fails, Apply returns ErrEngineFailed, wrapping
// the cause, from then on, and Store.Failed is closed so that the member stops.
// Once an Apply has been refused, Range and Txn fail too: the member's applied
// index may pass the refused entry before it stops, and a linearizable read must
// not answer from a state without it.
//
// Memory: the engine's block cache (CacheBytes, default 64 MiB) and two memtables
// (MemTableBytes each, default 32 MiB), newestCache (the newest version of up to
// 65,536 keys, about 10 MiB, so that most puts need no seek), the range cache
// (range_cache.go: versions read lately, with their values, at most 4 MiB, so
// that a point read of a key whose newest version newestCache names needs no
// seek either), the count cache (range_count.go: 64 recent range counts, keys of
// at most 4 KiB each, so that a range read back in pages is walked once, not once
// per page), and the session, proposal and auth tables, each bounded by Config.
// Nothing grows with the number of keys or revisions.
//
// Two tables make repeated commands harmless. Client sessions (session.go) give a
// client that numbers its requests exactly-once writes. The proposal table
// (proposals.go) makes a command its proposer may put in the log more than once (the
// server sends a forwarded write again when leadership changes) apply at most once:
// Store.ApplyOnce applies the first copy and answers later ones with its Result.
// Both are replicated state, in the snapshots, with documented bounds.
//
// Reads can be bounded: Store.RangeLimited and Store.TxnLimited refuse a response
// whose key-values would pass a byte limit (in etcd's encoding), before reading any
// value (budget.go). Store.Sizes says how much the store takes.
//
// History (history.go, engine_events.go): every put and delete is a change record,
// in order, written by the one function all writes go through (engineWrite.record
// in engine.go), and Store.Events reads the history back as etcd's watch events,
// from any revision since the last compaction. Events is all a watcher needs of
// the store: the server learns what an applied entry changed by reading the
// history from the revision before it.
//
// Leases (lease.go, engine_lease.go) are replicated state like keys: a grant, a revoke and a
// checkpoint of remaining TTLs are commands, and a revoke deletes the lease's keys
// at one revision, through the same delete as DeleteRange (so its deletes are in the
// history like any other). When a lease expires is not replicated: that needs a
// clock, so the server's lessor decides it on the leader and proposes the revoke.
//
// Authentication (auth.go, auth_check.go, auth_read.go, auth_codec.go): the users,
// roles, permissions, the enabled flag and the auth revision are replicated state,
// changed only by Command.Auth and carried in the snapshot. Every command names its
// Sender (a user and the auth revision the proposing member was at), and Apply checks
// the sender's permissions against the state at that point of the log, so a
// permission revoked between proposal and apply is honoured on every replica alike;
// a denied command changes nothing. RangeAs and TxnAs check a read under the read's
// own lock. Passwords arrive as bcrypt hashes: this package never hashes.
//
// Snapshots (snapshot.go, engine_snapshot.go) are every record of the engine, read
// from a pebble snapshot taken at an applied index while Apply goes on, written as
// a stream of CRC-checked chunks of about 1 MiB (Store.WriteSnapshot,
// SnapshotView.WriteTo); Store.RestoreFrom reads one a chunk at a time into
// sstables that it ingests (the records come in key order), so neither end holds
// more than a chunk and a table's index. An engine whose restore was cut off is
// refused at OpenStore (ErrRestoreCutOff); OpenStoreToRestoreFS opens it to restore
// into it again. A RestoreRecord given to a restore is written in the batch that
// ends it, so it becomes durable with the restored state. Store.Restore also
// imports the full-state snapshot format of the previous release (formats 1 to 5),
// so old data dirs upgrade. A SnapshotView also serves backups and hashes (EachKey,
// export.go), and Store.Import builds a store from such an export.
//
// The engine's randomized tests (engine_test.go) check it against a small
// test-only reference store (ref_test.go); the semantics tests (store_test.go,
// txn_test.go, range_test.go, ...) check the Store itself.
package kv
