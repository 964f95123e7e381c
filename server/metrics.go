package server

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"raftkv/version"
)

// This file is the member's Prometheus metrics. Names, types, labels and buckets are
// etcd's wherever raftkv measures the same thing (server/etcdserver/metrics.go,
// server/storage/wal/metrics.go, rafthttp/metrics.go and mvcc/metrics.go in etcd), so
// that etcd's dashboards and alerts work unchanged; what raftkv alone has is named
// raftkv_*.
//
// Nothing here costs the request path more than an atomic add. Gauges and counters
// that the member keeps anyway (the leader, the commitIndex, the store's size, the
// bytes sent to each peer) are read when Prometheus scrapes, by metricsCollector; the
// histograms are observed by hooks in storage and transport, and a histogram's
// Observe is lock-free. raft/ stays free of Prometheus: the server reads it through
// raft.Node.Observe, which never waits for the run loop, so a scrape answers even
// while the run loop is stuck on a slow disk.

// MetricsBasic and MetricsExtensive are the values of Config.Metrics (etcd's
// --metrics): extensive adds the gRPC handling-time histograms.
const (
	MetricsBasic     = "basic"
	MetricsExtensive = "extensive"
)

// Buckets, as etcd's.
var (
	// diskBuckets: 1 ms to 8.192 s, doubling (etcd's WAL fsync and write, and snapshot
	// save).
	diskBuckets = prometheus.ExponentialBuckets(0.001, 2, 14)
	// rttBuckets: 0.1 ms to 3.2768 s, doubling (etcd's peer round trip).
	rttBuckets = prometheus.ExponentialBuckets(0.0001, 2, 16)
)

// serverMetrics holds a member's registry and the metrics observed as things happen.
// Each member has its own registry, not Prometheus's global one, so that several
// members in one process (the tests) each export their own.
type serverMetrics struct {
	registry *prometheus.Registry

	walFsync      prometheus.Histogram
	walWrite      prometheus.Histogram
	walWriteBytes prometheus.Gauge
	snapshotSave  prometheus.Histogram
	// applyGroup is raftkv_apply_group_entries: the put entries each engine batch
	// of the apply loop held (apply_group.go).
	applyGroup prometheus.Histogram
	// peerRTT is etcd_network_peer_round_trip_time_seconds; observers holds its
	// child for each peer (uint64 → prometheus.Observer), made for the initial peers
	// before the transport starts and for a member added later on its first
	// observation, so that an observation needs no lock and, but the first, no
	// allocation.
	peerRTT   *prometheus.HistogramVec
	observers sync.Map

	grpc *grpcMetrics

	// proposalsPending counts the proposals of this member waiting to apply;
	// proposalsFailed counts those that ended in an error (timeout, no leader,
	// leader changed, stopped, cancelled), as etcd counts them.
	proposalsPending atomic.Int64
	proposalsFailed  atomic.Uint64
}

// newServerMetrics makes the registry and the metrics the storage and transport
// hooks observe; registerServer adds what is read from the running member.
func newServerMetrics(metricsLevel string, peers []uint64) *serverMetrics {
	m := &serverMetrics{
		registry: prometheus.NewRegistry(),
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_disk_wal_fsync_duration_seconds",
			Help:    "The latency distributions of fsync called by WAL.",
			Buckets: diskBuckets,
		}),
		walWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_disk_wal_write_duration_seconds",
			Help:    "The latency distributions of write called by WAL.",
			Buckets: diskBuckets,
		}),
		// A gauge, as in etcd, though it only grows.
		walWriteBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_disk_wal_write_bytes_total",
			Help: "Total number of bytes written in WAL.",
		}),
		snapshotSave: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_debugging_snap_save_total_duration_seconds",
			Help:    "The total latency distributions of save called by snapshot.",
			Buckets: diskBuckets,
		}),
		applyGroup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "raftkv_apply_group_entries",
			Help:    "Put entries applied in one storage engine batch, which commits once for all of them.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 7), // 1 to maxApplyGroup
		}),
		peerRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_network_peer_round_trip_time_seconds",
			Help:    "Round-Trip-Time histogram between peers",
			Buckets: rttBuckets,
		}, []string{"To"}),
		grpc: newGRPCMetrics(metricsLevel == MetricsExtensive),
	}
	for _, id := range peers {
		m.observers.Store(id, m.peerRTT.WithLabelValues(hexID(id)))
	}
	m.registry.MustRegister(m.walFsync, m.walWrite, m.walWriteBytes, m.snapshotSave, m.applyGroup, m.peerRTT, m.grpc,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observeWALFlush is storage.Options.OnWALFlush.
func (m *serverMetrics) observeWALFlush(written int, write, fsync time.Duration) {
	m.walWrite.Observe(write.Seconds())
	m.walFsync.Observe(fsync.Seconds())
	m.walWriteBytes.Add(float64(written))
}

// observeRoundTrip is transport.Config.OnRoundTrip.
func (m *serverMetrics) observeRoundTrip(peer uint64, rtt time.Duration) {
	o, ok := m.observers.Load(peer)
	if !ok {
		o, _ = m.observers.LoadOrStore(peer, m.peerRTT.WithLabelValues(hexID(peer)))
	}
	o.(prometheus.Observer).Observe(rtt.Seconds())
}

// registerServer registers the metrics read from s when scraped. s's node, transport
// and state machine must exist.
func (m *serverMetrics) registerServer(s *Server) {
	m.grpc.registerMethods(s.grpc)
	m.registry.MustRegister(newMetricsCollector(s))
}

func hexID(id uint64) string { return fmt.Sprintf("%x", id) }

// metricsCollector reads, at each scrape, what the member keeps anyway.
type metricsCollector struct {
	s *Server

	hasLeader, isLeader, isLearner, leaderChanges, quotaBackendBytes        *prometheus.Desc
	proposalsCommitted, proposalsApplied, proposalsPending, proposalsFailed *prometheus.Desc
	serverID, serverVersion, goVersion, buildInfo                           *prometheus.Desc
	dbTotalSize, dbTotalSizeInUse, keys, currentRevision, compactRevision   *prometheus.Desc
	peerSentBytes, peerReceivedBytes, activePeers                           *prometheus.Desc
}

func newMetricsCollector(s *Server) *metricsCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &metricsCollector{
		s:                  s,
		hasLeader:          desc("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."),
		isLeader:           desc("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."),
		isLearner:          desc("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise."),
		quotaBackendBytes:  desc("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes."),
		leaderChanges:      desc("etcd_server_leader_changes_seen_total", "The number of leader changes seen."),
		proposalsCommitted: desc("etcd_server_proposals_committed_total", "The total number of consensus proposals committed."),
		proposalsApplied:   desc("etcd_server_proposals_applied_total", "The total number of consensus proposals applied."),
		proposalsPending:   desc("etcd_server_proposals_pending", "The current number of pending proposals to commit."),
		proposalsFailed:    desc("etcd_server_proposals_failed_total", "The total number of failed proposals seen."),
		serverID:           desc("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", "server_id"),
		serverVersion: desc("etcd_server_version",
			"Which version is running. 1 for 'server_version' label with current version (the etcd API version raftkv speaks, as Maintenance.Status reports it).",
			"server_version"),
		goVersion: desc("etcd_server_go_version", "Which Go version server is running with. 1 for 'server_go_version' label with current version.",
			"server_go_version"),
		buildInfo: desc("raftkv_build_info", "raftkv's own version, the etcd API version it speaks and the git commit it was built from; always 1.",
			"version", "etcd_api_version", "git_sha"),
		dbTotalSize: desc("etcd_mvcc_db_total_size_in_bytes",
			"Total size of the underlying database physically allocated in bytes (raftkv: the storage engine's tables and its memtables' unflushed writes)."),
		dbTotalSizeInUse: desc("etcd_mvcc_db_total_size_in_use_in_bytes",
			"Total size of the underlying database logically in use in bytes (raftkv: without compaction's garbage)."),
		keys:              desc("etcd_debugging_mvcc_keys_total", "Total number of keys."),
		currentRevision:   desc("etcd_debugging_mvcc_current_revision", "The current revision of store."),
		compactRevision:   desc("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store."),
		peerSentBytes:     desc("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", "To"),
		peerReceivedBytes: desc("etcd_network_peer_received_bytes_total", "The total number of bytes received from peers.", "From"),
		activePeers:       desc("etcd_network_active_peers", "The current number of active peer connections.", "Local", "Remote"),
	}
}

func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hasLeader, c.isLeader, c.isLearner, c.leaderChanges, c.quotaBackendBytes,
		c.proposalsCommitted, c.proposalsApplied, c.proposalsPending, c.proposalsFailed,
		c.serverID, c.serverVersion, c.goVersion, c.buildInfo,
		c.dbTotalSize, c.dbTotalSizeInUse, c.keys, c.currentRevision, c.compactRevision,
		c.peerSentBytes, c.peerReceivedBytes, c.activePeers} {
		ch <- d
	}
}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	o := s.node.Observe()
	gauge(c.hasLeader, boolFloat(o.Lead != 0))
	gauge(c.isLeader, boolFloat(o.IsLeader))
	gauge(c.isLearner, boolFloat(s.learner.Load()))
	gauge(c.quotaBackendBytes, float64(s.cfg.QuotaBackendBytes))
	counter(c.leaderChanges, float64(o.LeaderChanges))
	// etcd exports these two as gauges set to the commit and applied indices.
	gauge(c.proposalsCommitted, float64(o.Commit))
	gauge(c.proposalsApplied, float64(s.applied.get()))
	gauge(c.proposalsPending, float64(s.metrics.proposalsPending.Load()))
	counter(c.proposalsFailed, float64(s.metrics.proposalsFailed.Load()))
	gauge(c.serverID, 1, hexID(s.id))
	gauge(c.serverVersion, 1, version.APIVersion)
	gauge(c.goVersion, 1, runtime.Version())
	gauge(c.buildInfo, 1, version.Version, version.APIVersion, version.GitSHA())

	sizes := s.sm.store.Sizes()
	gauge(c.dbTotalSize, float64(sizes.TotalBytes))
	gauge(c.dbTotalSizeInUse, float64(sizes.InUseBytes))
	gauge(c.keys, float64(sizes.Keys))
	gauge(c.currentRevision, float64(s.sm.store.Revision()))
	gauge(c.compactRevision, float64(max(s.sm.store.CompactRevision(), 0)))

	for id, p := range s.transport.Stats().Peers {
		peer := hexID(id)
		counter(c.peerSentBytes, float64(p.SentBytes), peer)
		counter(c.peerReceivedBytes, float64(p.ReceivedBytes), peer)
		gauge(c.activePeers, boolFloat(p.IsConnected), hexID(s.id), peer)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// grpcOptions are the gRPC server options that count the client API's calls.
func (m *serverMetrics) grpcOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.unaryInterceptor),
		grpc.ChainStreamInterceptor(m.grpc.streamInterceptor),
	}
}
