// Package kv is raftkv's replicated state machine: an MVCC key/value store with
// etcd v3 semantics plus exactly-once client sessions, deterministic and free of I/O
// but for one file that may hold the values' bytes (NewFileBackedStore).
//
// Writes reach the store only through the replicated log: the server encodes a
// Command, raft commits it, and every replica calls Store.Apply with the same
// (index, bytes) in the same order, so every replica reaches the same state. Apply
// must therefore be a pure function of the store's state and its input: nothing in
// this package reads a clock, draws a random number, iterates a map in an order that
// matters, or touches the network; the disk only as a place to keep values out of
// memory (values.go), which changes no answer. Reads (Store.Range and read-only
// Store.Txn) do not go through the log; the server makes them linearizable with
// raft's ReadIndex and waits until AppliedIndex has caught up before calling them.
//
// The request and response types mirror the fields of etcd's etcdserverpb messages
// that the KV service needs, and the behaviour mirrors etcd's (v3.5+) down to its
// quirks, because raftkv is tested differentially against a real etcd. Where this
// package deliberately differs from etcd, the difference is documented beside the
// code that makes it.
//
// All replicas must run with the same Config: its limits decide which commands are
// rejected and which sessions and proposals are evicted, and so are part of the
// state machine.
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
// History (history.go): every put and delete is noted, in order, by the one function
// all writes go through (writeTxn.record in write.go), and Store.Events reads the
// history back as etcd's watch events, from any revision since the last compaction.
// Events is all a watcher needs of the store: the server learns what an applied
// entry changed by reading the history from the revision before it, so another
// storage engine serves watchers by implementing Events alone.
//
// Leases (lease.go) are replicated state like keys: a grant, a revoke and a
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
// Snapshots (snapshot.go) carry the whole retained history, the leases and the auth
// state. Store.SnapshotView freezes the store at its applied index in time
// proportional to its key count, and the view is then written out while Apply goes
// on; the format copies the value log whole, so writing one costs sequential reads
// rather than a read per value.
//
// The store is moving onto an embedded engine, pebble (engine*.go, issue 13): an
// MVCC key space with the history, leases, txns, range reads and snapshots as a
// stream of chunks, each checked against this package's in-memory store by
// randomized tests. The Store does not use it yet; ARCHITECTURE.md says what
// remains.
package kv
