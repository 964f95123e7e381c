package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"raftkv/internal/durable"
	"raftkv/kv"
	"raftkv/raft"
	"raftkv/storage"
	"raftkv/transport"
	"raftkv/watch"
)

// Server is one raftkv member: a raft.Node over durable storage and the peer
// transport, the state machine it applies to, and the etcd v3 gRPC API.
// maxInflightBytes bounds the bytes of entries in flight to one follower
// (raft.Config.MaxInflightBytes), unless four of the largest requests need more.
const maxInflightBytes = 16 << 20

type Server struct {
	cfg       Config
	id        uint64
	clusterID uint64
	peers     map[uint64]member
	// forcedVoters are the voters --force-new-cluster left (membership.go), nil if
	// it was never used; MemberList lists only them.
	forcedVoters []uint64
	logger       *slog.Logger
	ahead        dialledAhead // members dialled before their addition applies (pending_member.go)

	storage   *storage.Storage
	transport *transport.Transport
	node      *raft.Node
	sm        *stateMachine
	waits     *waitRegistry
	// deadlines bounds each proposal's wait by RequestTimeout (deadline.go).
	deadlines *requestDeadlines
	applied   *appliedNotifier
	// snapshotting is set while the log is compacted in the background, and
	// snapshotFailed tells the apply loop the last compaction failed.
	snapshotting   atomic.Bool
	snapshotFailed atomic.Bool
	// snapshotsOut holds the log back for the snapshots this member sends
	// (snapshot.go).
	snapshotsOut outboundSnapshots
	// backupSpools bounds the Maintenance.Snapshot copies on disk
	// (maintenance_snapshot.go).
	backupSpools spoolSlots
	// durableSnap is the snapshot a leader sends: at the store's durable applied
	// index, past the log's truncation point (sendingStorage).
	durableSnap atomic.Pointer[raft.Snapshot]
	// startApplied is the store's applied index the node starts from
	// (reconcileStore).
	startApplied uint64
	reads        *readBatcher
	// watches serves the Watch streams from the store's history (server/watch.go).
	watches *watch.Hub
	// lessor expires leases on the leader; leaseFwd reaches the leader's from
	// the other members (lease.go).
	lessor   *lessor
	leaseFwd *leaseForwarder
	// clusterSvc is the Cluster service, one for every listener: the leader makes
	// one membership change at a time under its mutex (cluster.go), and answers the
	// changes other members forward to it (cluster_forward.go).
	clusterSvc  atomic.Pointer[clusterService]
	minLeaseTTL int64
	// corrupt is this member's part in the corruption checks (corrupt.go).
	corrupt corruptChecks
	// readRounds counts the ReadIndex rounds started, for the benchmarks.
	readRounds atomic.Uint64
	// proposer is this process's id among the cluster's proposers (kv.ProposalID):
	// random, drawn at start, so no two processes share one.
	proposer uint64
	// terms tells forwarded proposals that a newer term's entry has applied.
	terms *appliedTerm
	// group is the apply loop's open group of put entries (apply_group.go); only
	// the apply loop touches it.
	group applyGroup
	// Authentication (auth.go): this member's simple tokens, its count of wrong
	// passwords per client address, and the slots for bcrypt work.
	tokens     *simpleTokens
	authLimits *authLimiter
	bcrypt     chan struct{}

	grpc  *grpc.Server
	local *localConn // the services in process, for Lock and Election (local_client.go)
	// leaderStreams are the client streams that require a leader (requireleader.go).
	leaderStreams leaderStreams
	tls           tlsConfigs
	clientListens []net.Listener
	peerListens   []net.Listener

	// Observability (metrics.go, health.go, http.go).
	metrics        *serverMetrics
	health         *healthEndpoints
	httpServers    []*http.Server
	gateway        *gateway // etcd's JSON gateway on the client URLs, nil if off (gateway.go)
	metricsListens []net.Listener

	// removal stops the member once it was removed from the cluster (members.go);
	// done is closed when it stops on its own, removed or failed.
	removal removal
	done    chan struct{}
	// fatal is the error that stopped the member, if stopOnFatal did (fatal.go).
	fatal fatalStop
	// learner says this member is a learner in its applied member list: it then
	// serves only what etcd's learners serve (servedByLearner).
	learner atomic.Bool

	stopOnce sync.Once
	stopc    chan struct{}
	wg       sync.WaitGroup
}

// New opens the member's data dir and starts it: the Raft node, the peer listeners and
// the client API. Stop it with Stop.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, peers: map[uint64]member{}, waits: newWaitRegistry(), deadlines: newRequestDeadlines(cfg.RequestTimeout), reads: newReadBatcher(), stopc: make(chan struct{}),
		done: make(chan struct{})}
	s.removal.c = make(chan struct{})
	s.fatal.c = make(chan struct{})
	var ids []uint64
	for name, urls := range cfg.InitialCluster {
		id := memberID(urls, cfg.InitialClusterToken)
		if other, dup := s.peers[id]; dup {
			return nil, fmt.Errorf("--initial-cluster: members %q and %q have the same peer URLs %v", name, other.Name, urls)
		}
		s.peers[id] = member{ID: id, Name: name, PeerURLs: slices.Clone(urls)}
		ids = append(ids, id)
	}
	s.id = memberID(cfg.InitialCluster[cfg.Name], cfg.InitialClusterToken)
	s.clusterID = clusterID(ids, cfg.InitialClusterToken)
	s.logger = cfg.Logger.With("member", fmt.Sprintf("%x", s.id), "name", cfg.Name)
	s.metrics = newServerMetrics(cfg.Metrics, ids)

	var err error
	if s.tls, err = cfg.buildTLS(true); err != nil {
		return nil, err
	}
	for _, w := range s.tls.warnings {
		s.logger.Warn(w)
	}
	if err := checkDataDirs(cfg); err != nil {
		return nil, err
	}
	// The ports first: a port in use is the likeliest mistake, and must be reported
	// before anything is written to the data dir.
	err = s.listen()
	if err == nil {
		err = s.listenMetrics()
	}
	if err != nil {
		s.closeAll()
		return nil, err
	}
	created := missingDirs(cfg.DataDir)
	if cfg.WALDir != "" {
		created = append(created, missingDirs(cfg.WALDir)...)
	}
	if err := s.open(ids); err != nil {
		s.closeAll()
		// Leave nothing behind: a data dir this call created holds nothing of value.
		for _, dir := range created {
			_ = os.RemoveAll(dir)
		}
		return nil, s.describeFatal(err)
	}
	return s, nil
}

// testHookAfterStorageOpen, if set, runs in open right after storage.Open: a test
// fails the start there to leave the data dir as a crash would.
var testHookAfterStorageOpen func() error

// open opens the storage and starts the member, with the membership forced by
// --force-new-cluster if one is recorded or asked for (membership.go).
func (s *Server) open(ids []uint64) error {
	cfg := s.cfg
	// The data dir's own entry, synced at every start: a start killed between
	// making it and syncing its parent left it not durable, and this start finds
	// it (durable.MkdirAll). member/ is synced the same way by writeBootstrap.
	if err := durable.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	boot, err := readBootstrap(cfg.DataDir)
	if err != nil {
		return err
	}
	joining := false
	switch {
	case boot != nil:
		// A member with data ignores --initial-cluster (join.go).
		if ids, err = s.useBootstrap(boot); err != nil {
			return err
		}
	case cfg.InitialClusterState == "existing" && !hasState(cfg):
		if boot, err = s.join(); err != nil {
			return err
		}
		// The record before the log: storage.Open makes a WAL of the joined
		// cluster durable, and a restart that found it without the record would
		// skip the join (hasState), take the cluster id from the flags, and refuse
		// that WAL until the data dir was wiped. The record claims only what the
		// join established (the cluster, this member's id, the members, and
		// Joined: no bootstrap configuration): a restart that finds it with no
		// log starts with an empty one, as this start does.
		if err := writeBootstrap(cfg.DataDir, boot); err != nil {
			return err
		}
		ids, joining = nil, true
	}
	forced, err := readMembership(cfg.DataDir)
	if err != nil {
		return err
	}
	if forced != nil {
		if ids, err = s.useMembership(forced); err != nil {
			return err
		}
	}
	s.storage, err = storage.Open(cfg.logFS(), filepath.Join(cfg.DataDir, "member"),
		storage.Options{ClusterID: s.clusterID, MemberID: s.id, Logger: s.logger, WALDir: cfg.WALDir, OnWALFlush: s.metrics.observeWALFlush})
	if err != nil {
		return err
	}
	if testHookAfterStorageOpen != nil {
		if err := testHookAfterStorageOpen(); err != nil {
			return err
		}
	}
	if boot == nil {
		boot = s.recordOf(false)
	}
	if err := writeBootstrap(cfg.DataDir, boot); err != nil {
		return err
	}
	initial := make([]member, 0, len(s.peers))
	for _, m := range s.peers {
		initial = append(initial, m)
	}
	s.sm, err = s.openStateMachine(kv.Config{MaxTxnOps: cfg.MaxTxnOps, MaxCommandBytes: cfg.MaxRequestBytes + 4096,
		CacheBytes: cfg.BackendCacheBytes, MemTableBytes: cfg.BackendMemTableBytes, SeparateValueBytes: cfg.BackendSeparateValueBytes},
		filepath.Join(cfg.DataDir, "member"), initial, cfg.storeFS())
	if err != nil {
		return err
	}
	// Before --force-new-cluster appends to the log: the log must first restart
	// after a store that is ahead of it.
	if s.startApplied, err = s.reconcileStore(); err != nil {
		return err
	}
	if joining {
		s.logger.Info("joined a running cluster: starting with an empty log; the leader sends the log or a snapshot",
			"cluster", hexID(s.clusterID))
	}
	if cfg.ForceNewCluster {
		if err := s.forceSingleVoter(ids); err != nil {
			return err
		}
		s.logger.Warn("--force-new-cluster: this member is now the only member of its cluster; "+
			"never restart the other members on their old data dirs", "cluster", fmt.Sprintf("%x", s.clusterID))
	}
	return s.start(ids)
}

func (s *Server) start(ids []uint64) error {
	cfg := s.cfg
	var err error
	s.applied = newAppliedNotifier(s.startApplied, s.stopc)
	s.proposer, s.terms = newProposerID(), newAppliedTerm()
	s.tokens, s.authLimits, s.bcrypt = newSimpleTokens(cfg.AuthTokenTTL, maxSimpleTokens), newAuthLimiter(), make(chan struct{}, bcryptSlots)
	s.watches = watch.NewHub(s.sm.store, watch.Config{ProgressNotifyInterval: cfg.WatchProgressNotifyInterval, Logger: s.logger})
	s.initLeases()
	s.noteOwnRole()

	peerAddrs, removed, err := s.startingPeers()
	if err != nil {
		return err
	}
	nodeCfg := s.raftConfig(ids)
	maxSizePerMsg := nodeCfg.MaxSizePerMsg
	// The node makes its transport once it can take messages, so the transport has
	// the node from the start.
	s.node, err = raft.NewNode(nodeCfg, func(h raft.Handler) (raft.Transport, error) {
		t, err := transport.New(transport.Config{ID: s.id, ClusterID: s.clusterID, Peers: peerAddrs, TLS: s.tls.peerDial, Logger: s.logger,
			MaxFrameBytes: peerFrameBytes(maxSizePerMsg), OnRoundTrip: s.metrics.observeRoundTrip,
			ClusterInfo: s.clusterInfo, OnRequest: s.answerMemberRequest,
			SnapshotStream: s.snapshotStream, SnapshotReceiver: s.receiveSnapshot,
			OnRemoved: func(by uint64) {
				s.removedFromCluster(fmt.Sprintf("member %x refuses its streams as those of a removed member", by))
			}}, h)
		if err != nil {
			return nil, err
		}
		for _, id := range removed {
			t.RemovePeer(id)
		}
		s.transport = t
		return t, nil
	})
	if err != nil {
		return err
	}
	for _, l := range s.peerListens {
		s.goTracked(func() { _ = s.transport.Serve(l) })
	}
	s.goTracked(s.applyLoop)
	s.goTracked(s.watchDone)
	s.goTracked(s.readLoop)
	s.goTracked(s.runLessor)
	s.goTracked(s.monitorLeader)
	s.goTracked(s.dialUnappliedAdds)
	unknown := &unserved{}
	s.grpc = newGRPCServer(cfg, unknown.handle, listenerTLS{logger: s.logger}, append(s.metrics.grpcOptions(),
		grpc.ChainUnaryInterceptor(s.requireLeaderUnary), grpc.ChainStreamInterceptor(s.requireLeaderStream))...)
	unknown.g = s.grpc
	s.local = newLocalConn()
	registerServices(s.grpc, s)
	s.registerLeaseForward()
	s.metrics.registerServer(s)
	s.health = newHealthEndpoints(s, s.metrics.registry)
	if !cfg.DisableGRPCGateway {
		if err := s.startGateway(); err != nil {
			return err
		}
	}
	s.serveClients()
	s.goTracked(s.publishMember)
	s.startCompactor()
	s.goTracked(s.runCorruptChecks)
	s.logger.Info("raftkv member started", "cluster", fmt.Sprintf("%x", s.clusterID),
		"client_urls", cfg.AdvertiseClientURLs, "peer_urls", s.peers[s.id].PeerURLs)
	return nil
}

// grpcOverheadBytes is the room gRPC's own message limit leaves above
// MaxRequestBytes, as etcd does, so an oversized request reaches our check and gets
// etcd's "request is too large" rather than a transport error.
const grpcOverheadBytes = 512 * 1024

// raftConfig is the Raft node's configuration for a member of the voters ids.
func (s *Server) raftConfig(ids []uint64) raft.Config {
	cfg := s.cfg
	tickInterval := cfg.HeartbeatInterval
	electionTicks := int(cfg.ElectionTimeout / tickInterval)
	maxSizePerMsg := max(raft.DefaultMaxSizePerMsg, uint64(cfg.MaxRequestBytes)+grpcOverheadBytes)
	return raft.Config{
		ID: s.id, Peers: ids, Storage: &sendingStorage{Storage: s.storage, s: s}, Applied: s.startApplied,
		TickInterval: tickInterval, HeartbeatTicks: 1, ElectionTicks: electionTicks,
		RandSeed: time.Now().UnixNano(), Logger: s.logger,
		// One append must be able to carry the largest request a client may send.
		MaxSizePerMsg: maxSizePerMsg,
		// The leader reads the entries it sends from the WAL on its run loop: bound
		// what it reads for one follower before it acknowledges (a learner catching
		// up after a snapshot had it read ~400 MB at once, past the election timeout).
		MaxInflightBytes: max(maxInflightBytes, 4*(uint64(cfg.MaxRequestBytes)+grpcOverheadBytes)),
		AppendToAll:      cfg.AppendToAll,
		ReadIndexToAll:   cfg.ReadIndexToAll,
	}
}

// peerFrameBytes is the peer transport's frame limit for appends of up to
// maxSizePerMsg bytes of entries: room for their encoding (Raft counts 24 bytes of
// overhead an entry; an append of many small ones may take more), at least the
// transport's default. A message over it would be dropped at every resend, and
// the follower would never get the entry: --max-request-bytes above 16 MiB less
// 512 KiB stalled every write after such a request. The peers' limits must agree
// (each refuses a larger frame), hence the same --max-request-bytes on every member.
func peerFrameBytes(maxSizePerMsg uint64) int {
	return max(transport.DefaultMaxFrameBytes, int(2*maxSizePerMsg))
}

func (s *Server) goTracked(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// ID returns this member's id.
func (s *Server) ID() uint64 { return s.id }

// ClusterID returns the cluster's id.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// Done is closed when the member stopped on its own: after a fatal error, or because
// it was removed from the cluster (Err then is ErrRemoved). The caller then calls
// Stop.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns what stopped the member on its own, if anything: ErrRemoved, or the
// fatal error. A full disk's is a *storage.NoSpaceError, which wraps syscall.ENOSPC
// and says on one line what is full, how much was needed and is free, and what to do.
func (s *Server) Err() error {
	select {
	case <-s.removal.c:
		return fmt.Errorf("%w (%s)", ErrRemoved, s.removal.reason)
	default:
	}
	if err := s.fatalErr(); err != nil {
		return err
	}
	return s.describeFatal(s.node.Err())
}

// watchDone closes done once the node stops or the member is removed, or stops the
// member once its store's engine failed (a read as well as a write: kv.Store.Failed).
func (s *Server) watchDone() {
	defer close(s.done)
	select {
	case <-s.node.Done():
	case <-s.removal.c:
	case <-s.fatal.c:
	case <-s.sm.store.Failed():
		s.stopOnFatal(fmt.Errorf("server: %w", s.sm.store.Failure()))
	case <-s.stopc:
	}
}

// Stop shuts the member down: the client API (requests in flight get up to 2s to
// finish, as in etcd), then the member's own goroutines (stopc), a leader's
// hand-off (handOffLeadership), the Raft node, transport, storage.
func (s *Server) Stop() {
	s.stopOnce.Do(s.closeAll)
}

func (s *Server) closeAll() {
	if s.watches != nil {
		// Ends the watch streams, which would otherwise hold up GracefulStop,
		// and the gateway's /v3/watch requests, which would hold up stopHTTP.
		s.watches.Close()
	}
	s.stopHTTP()
	if s.gateway != nil {
		// No HTTP request is left to call through it.
		s.gateway.close()
	}
	if s.grpc != nil {
		// Let in-flight requests finish for a moment, then cut them off.
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			s.grpc.Stop()
			<-done
		}
	}
	for _, l := range s.clientListens {
		_ = l.Close()
	}
	// Only now: a write or read in flight waits on stopc, and would fail with
	// "server stopped" rather than finish.
	close(s.stopc)
	// After the client API, as etcd: requests in flight have finished through this
	// leader, and clients have moved to other members when the transfer starts.
	s.handOffLeadership()
	if s.node != nil {
		s.node.Stop()
	}
	if s.transport != nil {
		_ = s.transport.Close()
	}
	for _, l := range s.peerListens {
		_ = l.Close()
	}
	s.wg.Wait()
	s.deadlines.stop()
	if s.sm != nil {
		// The apply loop and the client API are done with the store. What it
		// applied goes to disk now, as etcd's backend commits on close, so that
		// a restart replays none of the log (the engine writes without a WAL).
		// Not after a fatal error, the server's or the node's (a full disk,
		// say, which Err reports once), nor on a store that failed already; a
		// flush that fails here is said here.
		nodeFailed := s.node != nil && s.node.Err() != nil
		if s.fatalErr() == nil && !nodeFailed && s.sm.store.Failure() == nil {
			if _, err := s.sm.store.Flush(); err != nil {
				s.logger.Error("flushing the kv store", "err", err)
			}
		}
		// A full disk is said once, by Err (stopOnFatal): not again here.
		if err := s.sm.store.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
			s.logger.Error("closing the kv store", "err", err)
		}
	}
	if s.storage != nil {
		// A failed storage's Close returns the failure, which stopped the node
		// and is what Err reports: not a second time here.
		if err := s.storage.Close(); err != nil && !errors.Is(err, storage.ErrFailed) {
			s.logger.Error("closing storage", "err", err)
		}
	}
}

// applyLoop applies committed entries to the state machine, wakes the requests
// waiting for them, and starts snapshots (see snapshotDue).
func (s *Server) applyLoop() {
	var (
		lastSnapshot = s.sm.store.AppliedIndex()
		// phase brings this member's first snapshot forward (snapshotPhase).
		phase = snapshotPhase(s.id, s.sm.members(), s.cfg.SnapshotCount)
		// undo and undoPhase put lastSnapshot and phase back if the snapshot in
		// flight fails; no new one starts before retryAt.
		undo, undoPhase uint64
		retryAt         uint64
	)
	applyc := s.node.Apply()
	defer s.endApplyGroup()
	for msg := range applyc {
		if s.cfg.applyHook != nil {
			s.cfg.applyHook(msg.Index) // tests only
		}
		grouped := s.group.joins(msg)
		if !grouped {
			s.endApplyGroup() // before this entry, and before its term is set
		}
		s.terms.set(msg.Term)
		s.sm.store.SetTerm(msg.Term)
		if s.snapshotFailed.Swap(false) {
			// As if it had not been started, but wait a little before the next try.
			lastSnapshot, phase = undo, undoPhase
			retryAt = msg.Index + min(s.cfg.SnapshotCount, 1000)
		}
		switch msg.Type {
		case raft.ApplySnapshot:
			s.watches.Flush() // the watchers take what the restore replaces
			if err := s.sm.restore(msg.Index, msg.Snapshot); err != nil {
				// The snapshot passed the storage's checksum; failing now means a bug
				// or a version mismatch, and applying on top of a wrong state would
				// diverge from the other members.
				panic(fmt.Sprintf("server: restoring snapshot at index %d: %v", msg.Index, err))
			}
			s.tokens.clear() // issued by entries this member may never have applied
			s.waits.snapshotApplied(msg.Index)
			s.leasesRestored()
			s.syncPeers()
			s.noteOwnRole()
			lastSnapshot = msg.Index
		case raft.ApplyNoOp:
			if r := s.sm.store.Apply(msg.Index, nil); errors.Is(r.Err, kv.ErrEngineFailed) {
				s.storeFailed(msg.Index, r.Err)
			}
			s.waits.applied(msg.Index, false, 0, kv.Result{})
			s.leaderApplied(msg.Term)
		case raft.ApplyCommand:
			if grouped {
				s.applyGrouped(msg)
				if len(applyc) > 0 {
					continue // the next entry ends the group or joins it
				}
				s.endApplyGroup()
				break
			}
			s.flushWatchesBeforeCompaction(msg.Command)
			s.applyCommand(msg.Index, msg.Command)
		case raft.ApplyConfChange:
			s.applyConfChange(msg)
		}
		if s.applied.isHalted() {
			// The store refused this entry or one before it, and the member is
			// stopping (storeFailed): the applied index stays where it was (set
			// would ignore it), and there is nothing for watchers or a snapshot.
			continue
		}
		s.applied.set(msg.Index)
		s.watches.Notify()
		if msg.Type == raft.ApplySnapshot {
			continue
		}
		if !s.snapshotting.Load() && msg.Index >= retryAt && snapshotDue(msg.Index-lastSnapshot+phase, s.cfg.SnapshotCount) {
			s.removeStaleInbound(msg.Index)
			if err := s.startSnapshot(msg.Index); err != nil {
				s.logger.Error("snapshot failed", "index", msg.Index, "err", err)
				retryAt = msg.Index + min(s.cfg.SnapshotCount, 1000)
				continue
			}
			undo, undoPhase = lastSnapshot, phase
			lastSnapshot, phase = msg.Index, 0
		}
	}
}

// startSnapshot compacts the log in the background (compactLog): a flush of the
// store's engine, which can take a moment, must not hold up applying. One runs at a
// time (s.snapshotting).
func (s *Server) startSnapshot(index uint64) error {
	s.snapshotting.Store(true)
	s.goTracked(func() {
		defer s.snapshotting.Store(false)
		started := time.Now()
		var err error
		if s.cfg.snapshotHook != nil {
			err = s.cfg.snapshotHook(index) // tests only
		}
		if err == nil {
			err = s.compactLog()
		}
		s.metrics.snapshotSave.Observe(time.Since(started).Seconds())
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, kv.ErrEngineFailed) || errors.Is(err, storage.ErrFailed) {
			s.stopOnFatal(err) // the store or the storage failed: nothing more is durable
			return
		}
		if err != nil {
			// The log is not yet what the snapshot needs (see applyLoop): a later
			// one will do.
			s.logger.Warn("snapshot failed", "index", index, "err", err)
			s.snapshotFailed.Store(true)
		}
	})
	return nil
}

// snapshotDue decides when to compact the log: every SnapshotCount entries. A
// snapshot writes no state (the engine is the state, see snapshot.go): it costs a
// flush of the engine's memtable and the removal of log segments.
func snapshotDue(entriesSince, snapshotCount uint64) bool {
	return entriesSince >= snapshotCount
}

// snapshotPhase is how many entries earlier than SnapshotCount after its start
// member id takes its first snapshot: its rank among the members by id times
// SnapshotCount over their number, so that the members of a cluster started
// together snapshot at indexes spread over the interval, not all at one (every
// later snapshot follows SnapshotCount entries after the one before). A snapshot
// flushes the engine's memtable, and the engine's compactions follow its
// flushes: taken at one index, they ran on every member at once, and requests
// slowed together on all of them; spread, at most one member of three compacts
// at a time and the other two still make a quorum. Measured in bench/'s
// put-1000c before this change: its slow requests came in windows that began
// with the three members' compactions.
func snapshotPhase(id uint64, members []member, snapshotCount uint64) uint64 {
	rank := slices.IndexFunc(members, func(m member) bool { return m.ID == id })
	if rank <= 0 {
		return 0
	}
	return uint64(rank) * snapshotCount / uint64(len(members))
}

// header is the response header of this member at the current term.
func (s *Server) header() header {
	term, _ := s.node.State()
	return header{clusterID: s.clusterID, memberID: s.id, raftTerm: term}
}

// Errors a write or read can end with besides the state machine's own: etcd's
// (etcdserver/errors), with its texts.
var (
	errNoLeader  = errors.New("etcdserver: no leader")
	errTimeout   = errors.New("etcdserver: request timed out")
	errLostEntry = errors.New("etcdserver: leader changed")
	errStopped   = errors.New("etcdserver: server stopped")
	errCanceled  = errors.New("etcdserver: request cancelled")

	errTimeoutDueToLeaderFail     = errors.New("etcdserver: request timed out, possibly due to previous leader failure")
	errTimeoutDueToConnectionLost = errors.New("etcdserver: request timed out, possibly due to connection lost")
)

func (s *Server) raftError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrStopped):
		return errStopped
	case errors.Is(err, context.DeadlineExceeded):
		return errTimeout
	case errors.Is(err, raft.ErrTooManyUncommitted):
		return errTooManyRequests
	case errors.Is(err, raft.ErrEntryTooLarge):
		return kv.ErrRequestTooLarge
	}
	return err
}

func (s *Server) contextError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if _, lead := s.leader(); lead == 0 {
			return errNoLeader
		}
		return errTimeout
	}
	return ctx.Err()
}

// proposeCtxError is etcd's parseProposeCtxErr: what a proposal that raft took tells
// its client when err (its request's context error, or that of its RequestTimeout)
// ends its wait. start is when the request began. A cancellation is "request
// cancelled"; a deadline is "request timed out", which names its likely cause when
// this member was elected shortly after the request began (the previous leader had
// failed), or when this member's stream to its leader (or, if it leads, to a quorum
// of the members) was not up for the whole wait. With no leader known it is the plain
// timeout, as in etcd.
func (s *Server) proposeCtxError(err error, start time.Time) error {
	switch {
	case errors.Is(err, context.Canceled):
		return errCanceled
	case !errors.Is(err, context.DeadlineExceeded):
		return err
	}
	o := s.node.Observe()
	if elected := o.ElectedAt; start.After(elected.Add(-2*s.cfg.ElectionTimeout)) && start.Before(elected) {
		return errTimeoutDueToLeaderFail
	}
	switch o.Lead {
	case 0:
	case s.id:
		if !s.connectedToQuorumSince(start) {
			return errTimeoutDueToConnectionLost
		}
	default:
		if !connectedSince(s.transport.Stats().Peers[o.Lead], start) {
			return errTimeoutDueToConnectionLost
		}
	}
	return errTimeout
}

// connectedToQuorumSince reports whether this member's streams to a quorum of the
// members, itself counted, have been up since t (etcd's isConnectedToQuorumSince,
// which counts every member, learners too).
func (s *Server) connectedToQuorumSince(t time.Time) bool {
	peers := s.transport.Stats().Peers
	members := s.sm.members()
	connected := 0
	for _, m := range members {
		if m.ID == s.id || connectedSince(peers[m.ID], t) {
			connected++
		}
	}
	return connected >= quorum(len(members))
}

// connectedSince reports whether the stream p describes has been up since before t
// (etcd's isConnectedSince).
func connectedSince(p transport.PeerStats, t time.Time) bool {
	return p.IsConnected && p.ConnectedSince.Before(t)
}

var errTooManyRequests = errors.New("etcdserver: too many requests")

// leader returns the raft term and the leader this member knows of (0 if none).
func (s *Server) leader() (term, lead uint64) {
	// Observe, not Status: an answer about the leader must never wait for the run
	// loop (a health check asks while the member may be stuck).
	o := s.node.Observe()
	return o.Term, o.Lead
}

// publishMember proposes this member's name and client URLs, so MemberList on any
// member shows them. It retries until the entry applies or the server stops.
func (s *Server) publishMember() {
	m := member{ID: s.id, Name: s.cfg.Name, ClientURLs: s.cfg.AdvertiseClientURLs}
	for {
		_, err := s.propose(context.Background(), kindMember, m.encode())
		if err == nil {
			return
		}
		select {
		case <-time.After(s.cfg.HeartbeatInterval):
		case <-s.stopc:
			return
		}
	}
}
