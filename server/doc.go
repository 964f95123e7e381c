// Package server is one raftkv member: a raft.Node over durable storage and the peer
// transport, the kv state machine it applies to, and the etcd v3 gRPC API on top.
//
// It serves KV (Range, RangeStream, Put, DeleteRange, Txn, Compact), Watch, Lease (LeaseGrant,
// LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive, LeaseLeases), Auth, Maintenance
// (Downgrade only checks a request as etcd does and refuses to downgrade,
// downgrade.go), Cluster (cluster.go: membership changes on the leader, with etcd's
// checks; members.go, join.go: applying them, joining, removal), and etcd's Lock and
// Election services
// (lock_service.go: clientv3's concurrency recipes run on an in-process client of
// the member's own handlers, local_client.go). Any other method
// answers Unimplemented with a message that names it, says why, and lists what is
// served (unserved.go).
//
// Writes (propose.go) follow the seed's rule on the leader: the request completes
// only if the entry applied at the index Start returned is its own. A follower
// forwards the write to the leader, and sends it again when an entry of a newer term
// applies first (the leader it went to may have died with it) or no answer comes in
// two election timeouts; the copies share a kv.ProposalID, and the state machine
// applies only the first (kv.Store.ApplyOnce). Linearizable reads (read.go) share
// ReadIndex rounds; a read's response is bounded by Config.MaxResponseBytes.
//
// State and snapshots (state.go, snapshot.go): the state machine, member list and
// alarms included, lives in the kv store's engine (pebble, in member/kv), written
// without fsync; the WAL is the durability. Every SnapshotCount entries (the first
// time sooner by the member's rank, snapshotPhase, so that members do not all
// flush at one index) the store is flushed and the log truncated to the applied index the flush made durable less
// SnapshotCatchUpEntries (kept for slow followers), never further, nor past a
// snapshot being sent or its receiver's log until that has caught up; a snapshot is a marker, and a
// lagging follower is streamed the engine itself (transport's
// SnapshotStream/SnapshotReceiver), which it writes into sstables as it arrives and
// ingests, with a chunk in memory at each end. A member applies only entries its
// own log holds durably, so a restart refuses a store ahead of its log, except the
// body of a received snapshot (recorded with it, metaRestoredFrom) and a store an
// older build left (storage.OlderBuildsWAL); a store that a crash cut off inside
// a restore is restored again from the body the log names (openStateMachine), and
// a body whose receiving a crash cut off is removed (removeCutReceives). A
// restart opens the engine and replays the log after its applied index, once
// reconcileStore has checked that the two are of one history. A full disk or a
// failed engine stops the member with one line (fatal.go).
//
// Operator settings follow etcd's flags (Config): a WAL dir of its own (WALDir),
// auto-compaction in etcd's periodic and revision modes (compactor.go), disaster
// recovery with ForceNewCluster (membership.go), TLS and mutual TLS on the client
// API and between members (Config.ClientTLS, PeerTLS; tls.go), with the verified
// client certificate's common name for the call (ClientCertCommonName). New reads
// the certificate files and opens the listeners before it touches the data dir, so
// that a bad file or a port in use fails with nothing written.
//
// Authentication (auth.go, auth_tokens.go, auth_limit.go): etcd's Auth service over
// the replicated auth state of kv. Every command names its sender (the call's simple
// token, or its certificate's common name with --client-cert-auth) and the state
// machine decides its permission where it applies; reads, watch creates and the
// lease calls that do not go through the log (lease_auth.go) are checked by this
// member after their linearizable read. Simple tokens are issued
// through the log and kept in each member's memory; passwords are bcrypt-hashed here
// before any proposal; repeated wrong passwords from one address are slowed down.
//
// Observability: the client port also serves HTTP/1.1 (http.go): Prometheus metrics
// under etcd's names (metrics.go, metrics_grpc.go), etcd's /health, /livez and
// /readyz (health.go), and pprof with EnablePprof; ListenMetricsURLs adds listeners
// for the metrics and health endpoints alone.
//
// Leases (lease.go) split at the clock: grants, revokes and checkpoints are kv
// commands like any write, while expiry is kept by the leader's lessor (lessor.go),
// which proposes the revoke of a lease that expired. A member that does not lead
// forwards keep-alives and time-to-live requests to the leader's client URL
// (lease_forward.go).
package server
