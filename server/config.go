package server

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"raftkv/kv"
	"raftkv/storage"
	"raftkv/watch"
)

// Config is a member's configuration, validated by New. Its fields follow etcd's flags
// of the same names.
type Config struct {
	// Name is this member's name in InitialCluster.
	Name string
	// DataDir holds the WAL and snapshots.
	DataDir string
	// WALDir, if set, holds the WAL apart from DataDir (etcd's --wal-dir), e.g. on a
	// disk of its own. The data dir records it on first use, and a later start with
	// another WAL dir, or none, is refused (it would find no log).
	WALDir string
	// ForceNewCluster starts this member, with its data, as the only member of the
	// cluster (etcd's --force-new-cluster): disaster recovery after losing quorum.
	// The new configuration is committed in its log (force.go), so later starts keep
	// it with or without the flag; the other members must never run on their old
	// data again (see membership.go).
	ForceNewCluster bool

	// AutoCompactionMode is "periodic" (the default, as in etcd) or "revision"
	// (etcd's --auto-compaction-mode); AutoCompactionRetention is, for periodic, how
	// much history to keep as a duration ("1h", "30m"; a bare number means hours, as
	// in etcd), and for revision, how many revisions to keep. "" or "0" turns
	// auto-compaction off. The semantics are etcd's; see compactor.go.
	AutoCompactionMode      string
	AutoCompactionRetention string

	// ListenClientURLs are where the gRPC client API listens ("http://host:port").
	ListenClientURLs []string
	// AdvertiseClientURLs are the client URLs published to the other members.
	AdvertiseClientURLs []string
	// ListenPeerURLs are where the peer transport listens.
	ListenPeerURLs []string
	// InitialCluster maps each member's name to its advertised peer URLs.
	InitialCluster map[string][]string
	// InitialClusterState is "new" to bootstrap, or "existing" to join a cluster
	// whose members already run (the data dir then holds the member's state).
	InitialClusterState string
	// DisableStrictReconfigCheck turns off etcd's --strict-reconfig-check (on by
	// default): the refusal of a membership change that would leave the cluster
	// without a quorum of started and connected members (cluster.go).
	DisableStrictReconfigCheck bool
	// StrictReconfigHealthInterval is how long a peer's stream from the leader must
	// have been up for the strict check to count the peer as connected: etcd's
	// HealthInterval, fixed at 5 s there, and the default (0) here. No flag sets
	// it; tests and embedders that change the membership right after a start do.
	StrictReconfigHealthInterval time.Duration
	// InitialClusterToken makes the cluster id of two clusters with the same members
	// differ.
	InitialClusterToken string

	// HeartbeatInterval is the leader's heartbeat period; ElectionTimeout the base
	// election timeout, drawn at random from [ElectionTimeout, 2*ElectionTimeout).
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// AppendToAll sends each new entry to every follower at once, as the Raft paper
	// and etcd do (raft.Config.AppendToAll; --raft-append-to-all): a commit then
	// waits for the fastest majority, at a message, a WAL write and an fsync more
	// per write on every other follower. By default the leader sends a new entry at
	// once only to the followers that completed the last commit's quorum, and to
	// the others gathered, up to 10 ms later; a follower of that quorum that slows
	// down then delays commits by up to a CommitDelay (a fiftieth of the heartbeat
	// interval, at most 2 ms) before the others complete the quorum in its place.
	AppendToAll bool
	// ReadIndexToAll has every linearizable read's round of heartbeats ask all the
	// followers, as etcd does (raft.Config.ReadIndexToAll;
	// --raft-read-index-to-all), rather than only those that answered the last
	// round, with the others asked if one of them has not answered within a
	// twentieth of the heartbeat interval (5 ms at its default).
	ReadIndexToAll bool

	// MaxRequestBytes limits a client request. Default 1.5 MiB, as in etcd.
	MaxRequestBytes int
	// MaxTxnOps limits the operations in one Txn. Default 128, as in etcd.
	MaxTxnOps int
	// MaxResponseBytes bounds the key-values of one Range response, or of all the
	// ranges of one read-only Txn, or the keys of one LeaseTimeToLive answer, in
	// bytes of their encoding, so that a range over
	// a large store cannot make the member build a response of any size in memory: a
	// larger one is refused (ResourceExhausted, naming the size, the limit and the
	// remedy) before any value is read. Default DefaultMaxResponseBytes (512 MiB);
	// at least MaxRequestBytes, so any one key can be read, and at most
	// MaxMaxResponseBytes, under gRPC's message limit. A write Txn's ranges are not
	// bounded: they are answered as the txn applies, on every member alike.
	MaxResponseBytes int
	// SnapshotCount is the least number of applied entries between snapshots (a
	// snapshot also waits for the log since the last one to be as large as it; see
	// snapshotDue). Default 10000.
	SnapshotCount uint64
	// SnapshotCatchUpEntries is how many entries a log compaction keeps before the
	// store's durable applied index, so that a follower that is a little behind, or
	// has just installed a snapshot, catches up from the log rather than by another
	// snapshot (etcd's --snapshot-catchup-entries; see compactLog). 0 selects
	// DefaultSnapshotCatchUpEntries, or SnapshotCount if that is smaller.
	SnapshotCatchUpEntries uint64
	// WatchProgressNotifyInterval is how often a watch created with progress_notify
	// hears the revision it has reached when no event came (etcd's
	// --watch-progress-notify-interval). Default 10 minutes; below
	// 100ms it is raised to 100ms, as in etcd.
	WatchProgressNotifyInterval time.Duration
	// RequestTimeout bounds how long a write or a linearizable read waits. Default
	// 5s plus twice the election timeout.
	RequestTimeout time.Duration
	// LeaseCheckpointInterval is how often the leader records, through Raft, the
	// remaining TTL of each lease with more than that left, so that a new leader
	// counts it down from there instead of from its full TTL (etcd's lease
	// checkpointing, which raftkv always does). Default 5 minutes, as in etcd.
	LeaseCheckpointInterval time.Duration

	// QuotaBackendBytes is the space quota (etcd's --quota-backend-bytes): a write
	// that would take the store's bytes in use past it raises the NOSPACE alarm and
	// is refused (alarm.go). 0 means DefaultQuotaBackendBytes; below 0, no quota.
	QuotaBackendBytes int64
	// BackendCacheBytes and BackendMemTableBytes bound the store engine's memory
	// (--backend-cache-bytes, --backend-memtable-bytes; raftkv's own flags, as etcd's
	// bbolt leans on the page cache): its block cache and each of its two memtables.
	// 0 takes kv's defaults.
	BackendCacheBytes    int64
	BackendMemTableBytes int64
	// BackendSeparateValueBytes is the value size from which the store keeps a
	// value apart from its key's version record (--backend-separate-value-bytes,
	// kv.Config.SeparateValueBytes); 0 takes kv's default, -1 separates none.
	BackendSeparateValueBytes int
	// InitialCorruptCheck has the member compare its HashKV with the others' once
	// it has caught up after starting; CorruptCheckTime is how often the leader
	// does, 0 for never (etcd's --feature-gates=InitialCorruptCheck=true and
	// --corrupt-check-time; corrupt.go).
	InitialCorruptCheck bool
	CorruptCheckTime    time.Duration

	// ClientTLS and PeerTLS are the TLS of the client API and of the peer transport
	// (etcd's --cert-file, ... and --peer-cert-file, ...; see TLSInfo and tls.go). A
	// side's https:// URLs use them, its http:// URLs do not; a peer is dialled
	// with TLS when its URL in InitialCluster is https://.
	ClientTLS TLSInfo
	PeerTLS   TLSInfo
	// CipherSuites are the TLS 1.2 cipher suites both sides accept, by Go's names
	// (etcd's --cipher-suites); empty, Go's defaults. TLS 1.3's are not chosen.
	CipherSuites []string
	// TLSMinVersion and TLSMaxVersion bound the TLS versions both sides speak:
	// "TLS1.2" or "TLS1.3"; empty, TLS 1.2 and Go's newest (etcd's
	// --tls-min-version, --tls-max-version).
	TLSMinVersion, TLSMaxVersion string
	// SelfSignedCertValidity is how many years the certificates of AutoTLS are valid.
	// Default 1, as in etcd.
	SelfSignedCertValidity uint

	// ListenMetricsURLs are extra listeners ("http://host:port") that serve /metrics
	// and the health endpoints over HTTP, without the client API (etcd's
	// --listen-metrics-urls). The client URLs serve them too.
	ListenMetricsURLs []string
	// Metrics is MetricsBasic (the default) or MetricsExtensive, which adds the gRPC
	// handling-time histograms (etcd's --metrics).
	Metrics string
	// DisableGRPCGateway turns off etcd's JSON gateway (/v3/… on the client URLs,
	// gateway.go), which is on by default as in etcd (--enable-grpc-gateway).
	DisableGRPCGateway bool
	// EnablePprof serves net/http/pprof under /debug/pprof/ on the client URLs
	// (etcd's --enable-pprof).
	EnablePprof bool

	// AuthToken is etcd's --auth-token: "simple" (the default), tokens each member
	// keeps in memory (auth_tokens.go). AuthTokenTTL is how long a simple token
	// lives unused (--auth-token-ttl, default 300s). BcryptCost is the cost of the
	// password hashes (--bcrypt-cost, 4 to 31, default 10). See auth_config.go.
	AuthToken    string
	AuthTokenTTL time.Duration
	BcryptCost   int

	Logger *slog.Logger

	// files, if set, holds the log's and the store's files in place of the
	// operating system's: crash tests (crash_test.go).
	files *memberFiles
	// snapshotHook, if set, is called as a local snapshot starts at applied index
	// index, before compactLog; an error it returns fails that snapshot as
	// compactLog's would, and compactLog does not run. Tests only
	// (snapshot_retry_test.go): no failure of compactLog that the member survives
	// can be provoked from outside.
	snapshotHook func(index uint64) error
	// applyHook, if set, is called before each entry from the log applies, on the
	// apply loop: a test blocks in it to hold the applied index behind the commit
	// index (cluster_applied_test.go). Tests only.
	applyHook func(index uint64)
}

// MaxElectionTimeoutMs is etcd's bound on --election-timeout (its maxElectionMs):
// a longer one would leave a cluster without a leader for minutes after a crash.
const MaxElectionTimeoutMs = 50000

// Defaults, matching etcd's where etcd has one.
const (
	DefaultName              = "default"
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultElectionTimeout   = 1000 * time.Millisecond
	DefaultMaxRequestBytes   = 1536 * 1024
	DefaultMaxTxnOps         = 128
	DefaultSnapshotCount     = 10000
	// DefaultSnapshotCatchUpEntries is etcd's default for --snapshot-catchup-entries.
	DefaultSnapshotCatchUpEntries = 5000
	DefaultInitialClusterToken    = "raftkv-cluster"
	// DefaultQuotaBackendBytes is etcd's default space quota, 2 GiB.
	DefaultQuotaBackendBytes = 2 << 30

	// DefaultMaxResponseBytes is MaxResponseBytes's default. etcd has no such limit:
	// it sends up to gRPC's 2 GiB message limit, and clientv3 receives as much by
	// default, so any limit refuses some reads etcd answers. 512 MiB sits far above
	// what a workload that runs well on etcd asks in one request (etcd's guidance is
	// to keep responses small and page with limits; Kubernetes pages its lists by
	// 500 keys), and low enough that one request, which holds its response about
	// twice over (the values read, then the encoded message), cannot take a member
	// of an ordinary machine down. Answering the first 512 MiB with more=true
	// instead would change answers silently: a client that does not look at More
	// (etcdctl get --prefix does not) would take part of the keys for all of them.
	DefaultMaxResponseBytes = 512 << 20
	// MaxMaxResponseBytes is the largest MaxResponseBytes: gRPC's message limit,
	// 2 GiB - 1, less room for the response's header.
	MaxMaxResponseBytes = 2047 << 20
	// MaxMaxRequestBytes is the largest MaxRequestBytes: a Raft append carries up to
	// MaxRequestBytes plus 512 KiB of entries, and the peer transport's frames, sized
	// at twice that (peerFrameBytes), stop at 1 GiB.
	MaxMaxRequestBytes = 512<<20 - grpcOverheadBytes
)

func (c Config) withDefaults() Config {
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	if c.SnapshotCatchUpEntries == 0 {
		// etcd keeps 5000 whatever its --snapshot-count. A member told to compact
		// every SnapshotCount entries, fewer than that, is told to keep its log
		// short: the default keeps it at most 2*SnapshotCount long, and a value set
		// explicitly is taken as it is, as etcd does.
		c.SnapshotCatchUpEntries = min(DefaultSnapshotCatchUpEntries, c.SnapshotCount)
	}
	if c.InitialClusterToken == "" {
		c.InitialClusterToken = DefaultInitialClusterToken
	}
	if c.InitialClusterState == "" {
		c.InitialClusterState = "new"
	}
	if c.WatchProgressNotifyInterval == 0 {
		c.WatchProgressNotifyInterval = watch.DefaultProgressNotifyInterval
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5*time.Second + 2*c.ElectionTimeout
	}
	if c.SelfSignedCertValidity == 0 {
		c.SelfSignedCertValidity = 1
	}
	if c.Metrics == "" {
		c.Metrics = MetricsBasic
	}
	if c.LeaseCheckpointInterval == 0 {
		c.LeaseCheckpointInterval = DefaultLeaseCheckpointInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c.authDefaults()
}

// Validate reports the first setting that cannot work, naming the flag.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir is empty; give a directory for the member's data")
	}
	if err := c.validateBackend(); err != nil {
		return err
	}
	if c.CorruptCheckTime < 0 {
		return fmt.Errorf("--corrupt-check-time %v is negative; give a duration, or 0 for no periodic check", c.CorruptCheckTime)
	}
	for _, group := range []struct {
		flag string
		urls []string
		bind bool
	}{
		{"--listen-client-urls", c.ListenClientURLs, true},
		{"--advertise-client-urls", c.AdvertiseClientURLs, false},
		{"--listen-peer-urls", c.ListenPeerURLs, true},
		{"--listen-metrics-urls", c.ListenMetricsURLs, true},
	} {
		if len(group.urls) == 0 && group.flag != "--listen-metrics-urls" {
			return fmt.Errorf("%s is empty; give at least one URL like http://127.0.0.1:2379", group.flag)
		}
		check := urlHostPort
		if group.bind {
			check = bindURLHostPort
		}
		seen := map[string]string{}
		for _, u := range group.urls {
			addr, err := check(u)
			if err != nil {
				return fmt.Errorf("%s: %w", group.flag, err)
			}
			if group.bind {
				if prev, dup := seen[addr]; dup {
					return fmt.Errorf("%s lists %s twice (%s and %s); give each address once", group.flag, addr, prev, u)
				}
				seen[addr] = u
			}
		}
	}
	if len(c.InitialCluster) == 0 {
		return fmt.Errorf("--initial-cluster is empty; list every member as name=http://host:port")
	}
	if err := c.validateAuth(); err != nil {
		return err
	}
	if _, ok := c.InitialCluster[c.Name]; !ok {
		return fmt.Errorf("--initial-cluster has no member named %q (--name); add %s=<peer URL> or fix --name",
			c.Name, c.Name)
	}
	owner := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.InitialCluster)) {
		for _, u := range c.InitialCluster[name] {
			if other, dup := owner[u]; dup && other != name {
				return fmt.Errorf("initial cluster has duplicate url %s (members %q and %q in --initial-cluster); give each member its own peer URL", u, other, name)
			}
			owner[u] = name
		}
	}
	for name, urls := range c.InitialCluster {
		if len(urls) == 0 {
			return fmt.Errorf("--initial-cluster: member %q has no peer URL", name)
		}
		for _, u := range urls {
			if _, err := memberURLHostPort(u); err != nil {
				return fmt.Errorf("--initial-cluster: member %q: %w", name, err)
			}
		}
	}
	if c.InitialClusterState != "new" && c.InitialClusterState != "existing" {
		return fmt.Errorf("--initial-cluster-state is %q; use \"new\" or \"existing\"", c.InitialClusterState)
	}
	if c.ElectionTimeout > MaxElectionTimeoutMs*time.Millisecond {
		return fmt.Errorf("--election-timeout[%dms] is too long, and should be set less than %dms", c.ElectionTimeout.Milliseconds(), MaxElectionTimeoutMs)
	}
	if c.HeartbeatInterval <= 0 || c.ElectionTimeout < 5*c.HeartbeatInterval {
		return fmt.Errorf("--election-timeout %v must be at least 5 times --heartbeat-interval %v (10x is usual)",
			c.ElectionTimeout, c.HeartbeatInterval)
	}
	if c.StrictReconfigHealthInterval < 0 {
		return fmt.Errorf("StrictReconfigHealthInterval %v is negative; use 0 for etcd's 5s", c.StrictReconfigHealthInterval)
	}
	if c.MaxRequestBytes < 1024 {
		return fmt.Errorf("--max-request-bytes %d is too small; use at least 1024", c.MaxRequestBytes)
	}
	if c.MaxRequestBytes > MaxMaxRequestBytes {
		return fmt.Errorf("--max-request-bytes %d is too large: a Raft message must carry one request, and "+
			"peer messages stop at 1 GiB; use at most %d (etcd suggests at most 10 MiB)", c.MaxRequestBytes, MaxMaxRequestBytes)
	}
	if c.WatchProgressNotifyInterval < 0 {
		return fmt.Errorf("--watch-progress-notify-interval %v is negative; give a duration such as 10m",
			c.WatchProgressNotifyInterval)
	}
	if c.Metrics != MetricsBasic && c.Metrics != MetricsExtensive {
		return fmt.Errorf("--metrics %q: use %q or %q", c.Metrics, MetricsBasic, MetricsExtensive)
	}
	if c.MaxTxnOps < 1 || c.MaxTxnOps > math.MaxInt32 {
		return fmt.Errorf("--max-txn-ops %d is out of range; give between 1 and %d (0 for the default, %d)", c.MaxTxnOps, math.MaxInt32, DefaultMaxTxnOps)
	}
	if _, err := parseAutoCompaction(c.AutoCompactionMode, c.AutoCompactionRetention); err != nil {
		return err
	}
	if c.MaxResponseBytes < c.MaxRequestBytes || c.MaxResponseBytes > MaxMaxResponseBytes {
		return fmt.Errorf("--max-response-bytes %d must be between --max-request-bytes (%d), so that any one key can be read, "+
			"and %d (gRPC's message limit less room for the header)", c.MaxResponseBytes, c.MaxRequestBytes, MaxMaxResponseBytes)
	}
	if _, err := c.buildTLS(false); err != nil {
		return err
	}
	if c.LeaseCheckpointInterval < time.Second {
		return fmt.Errorf("--lease-checkpoint-interval %v is too short; use at least 1s (checkpoints are in whole seconds)", c.LeaseCheckpointInterval)
	}
	return nil
}

// validateBackend checks the store engine's sizes here, before the data dir is
// touched: the store checks them only as it opens.
func (c Config) validateBackend() error {
	for _, b := range []struct {
		flag       string
		value, max int64
		def        int64
	}{
		{"--backend-cache-bytes", c.BackendCacheBytes, kv.MaxCacheBytes, kv.DefaultCacheBytes},
		{"--backend-memtable-bytes", c.BackendMemTableBytes, kv.MaxMemTableBytes, kv.DefaultMemTableBytes},
	} {
		if b.value != 0 && (b.value < kv.MinEngineBytes || b.value > b.max) {
			return fmt.Errorf("%s %d is out of range; give between %d (%s) and %d (%s) bytes, or 0 for the default (%s)",
				b.flag, b.value, kv.MinEngineBytes, mib(kv.MinEngineBytes), b.max, mib(b.max), mib(b.def))
		}
	}
	if c.BackendSeparateValueBytes < -1 {
		return fmt.Errorf("--backend-separate-value-bytes %d is out of range; give a size in bytes (1 or more), "+
			"0 for the default (%d) or -1 to keep every value with its version", c.BackendSeparateValueBytes, kv.DefaultSeparateValueBytes)
	}
	return nil
}

// mib writes a size in bytes in MiB, GiB or TiB.
func mib(n int64) string {
	switch {
	case n >= 1<<40 && n%(1<<40) == 0:
		return fmt.Sprintf("%d TiB", n>>40)
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// hostPort returns the host:port of an http:// or https:// URL.
func hostPort(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		return "", fmt.Errorf("URL %q has no scheme; add http:// or https:// (with TLS), e.g. http://%s", raw, strings.TrimPrefix(raw, "//"))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("URL %q does not parse: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("URL %q: scheme %q is not supported; use http:// or https://", raw, u.Scheme)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("URL %q has no port; add one, like http://127.0.0.1:2379", raw)
	}
	if port, err := strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("URL %q: port %s is outside 1-65535; use a port in that range", raw, u.Port())
	}
	return u.Host, nil
}

// peerAddr is a peer URL as the transport dials it: host:port, or https://host:port
// for TLS.
func peerAddr(raw string) (string, error) {
	addr, err := hostPort(raw)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(raw, "https://") {
		return "https://" + addr, nil
	}
	return addr, nil
}

// urlHostPort checks a URL as etcd's types.NewURLs does: http:// or https://, a
// host and a port, and no path.
func urlHostPort(raw string) (string, error) {
	if u, err := url.Parse(raw); err == nil && u.Path != "" {
		return "", fmt.Errorf("URL must not contain a path: %s; give only scheme://host:port", raw)
	}
	return hostPort(raw)
}

// memberURLHostPort checks a member's peer URL: urlHostPort, and (stricter than etcd)
// no query, fragment or user either, since a member's id derives from its peer URLs as
// written: two spellings of one address would give one member two ids, or two
// members one address.
func memberURLHostPort(raw string) (string, error) {
	if u, err := url.Parse(raw); err == nil && (u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.ForceQuery) {
		return "", fmt.Errorf("URL must not contain a query, fragment or user: %s; give only scheme://host:port", raw)
	}
	return urlHostPort(raw)
}

// bindURLHostPort checks a URL to listen on: a member URL whose host is an IP
// address or localhost, as etcd's checkBindURLs requires: a name would be resolved
// once, at start, to whatever address it had then.
func bindURLHostPort(raw string) (string, error) {
	addr, err := urlHostPort(raw)
	if err != nil {
		return "", err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("URL address does not have the form \"host:port\": %s", raw)
	}
	if host != "localhost" && net.ParseIP(host) == nil {
		return "", fmt.Errorf("expected IP in URL for binding (%s); listen on an IP address (0.0.0.0 for all), "+
			"and advertise the name with --advertise-client-urls or --initial-advertise-peer-urls", raw)
	}
	return addr, nil
}

// memberID derives a member's id from its peer URLs and the cluster token, as etcd
// does, so every member computes the same ids from the same --initial-cluster.
func memberID(peerURLs []string, token string) uint64 {
	urls := slices.Sorted(slices.Values(peerURLs))
	sum := sha256.Sum256([]byte(strings.Join(urls, ",") + "|" + token))
	id := binary.BigEndian.Uint64(sum[:8])
	if id == 0 {
		id = 1
	}
	return id
}

// clusterID derives the cluster's id from its members' ids and the token.
func clusterID(ids []uint64, token string) uint64 {
	h := sha256.New()
	for _, id := range slices.Sorted(slices.Values(ids)) {
		h.Write(binary.BigEndian.AppendUint64(nil, id))
	}
	h.Write([]byte(token))
	id := binary.BigEndian.Uint64(h.Sum(nil)[:8])
	if id == 0 {
		id = 1
	}
	return id
}

// memberFiles are the file systems a member keeps its log and its store on.
type memberFiles struct {
	log   storage.FS
	store vfs.FS
}

func (c *Config) logFS() storage.FS {
	if c.files != nil {
		return c.files.log
	}
	return storage.NewOSFS()
}

func (c *Config) storeFS() vfs.FS {
	if c.files != nil {
		return c.files.store
	}
	return nil
}
