package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"raftkv/internal/procs"
	"raftkv/server"
	"raftkv/version"
	"raftkv/watch"
)

// serveFlags are the member's flags: etcd's names and defaults (except the data dir,
// ./<name>.raftkv, and the cluster token), each also settable from the environment
// or a config file (see sources.go).
type serveFlags struct {
	name, dataDir, walDir                string
	listenClient, advertiseClient        string
	listenPeer, initialAdvertisePeer     string
	initialCluster, initialClusterState  string
	initialClusterToken                  string
	heartbeatMs, electionMs              int
	maxRequestBytes, maxTxnOps           int
	maxResponseBytes                     int
	snapshotCount                        uint64
	snapshotCatchUpEntries               uint64
	autoCompactionMode                   string
	autoCompactionRetention              string
	forceNewCluster, strictReconfigCheck bool
	quotaBackendBytes                    int64
	backendCacheBytes                    int64
	backendMemTableBytes                 int64
	backendSeparateValueBytes            int
	initialCorruptCheck                  bool
	adaptiveGOMAXPROCS                   bool
	raftAppendToAll, raftReadIndexToAll  bool
	corruptCheckTime                     time.Duration
	watchProgressNotifyInterval          time.Duration
	leaseCheckpointInterval              time.Duration
	tls                                  tlsFlags
	auth                                 authFlags
	listenMetrics, metrics               string
	enablePprof, enableGRPCGateway       bool
	logLevel, logFormat, logOutputs      string
	configFile                           string
	// supervisorFD is the read end of a pipe from "raftkv cluster": the member stops
	// when it reads EOF, that is when the supervisor has died (see watchSupervisor).
	supervisorFD int
}

func (f *serveFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "name", server.DefaultName, "Human-readable name for this member; must appear in --initial-cluster.")
	fs.StringVar(&f.dataDir, "data-dir", "", "Path to the data directory.")
	setHelpDefault(fs, "data-dir", "${name}.raftkv")
	fs.StringVar(&f.walDir, "wal-dir", "", "Path to a dedicated WAL directory (e.g. on a disk of its own); empty keeps the WAL in the data directory.")
	numberVar(fs, &f.snapshotCount, "snapshot-count", server.DefaultSnapshotCount, "entries", "Number of applied entries between log compactions: each makes the store durable and drops the log before it\n(0: the default).")
	numberVar(fs, &f.snapshotCatchUpEntries, "snapshot-catchup-entries", 0, "entries", "Number of entries for a slow follower to catch up after compacting the raft storage entries\n(0: 5000, or --snapshot-count if lower).")
	numberVar(fs, &f.heartbeatMs, "heartbeat-interval", int(server.DefaultHeartbeatInterval/time.Millisecond), "milliseconds", "Time (in milliseconds) of a heartbeat interval.")
	numberVar(fs, &f.electionMs, "election-timeout", int(server.DefaultElectionTimeout/time.Millisecond), "milliseconds", "Time (in milliseconds) for an election to timeout; each timeout is drawn from [t, 2t).")
	fs.StringVar(&f.listenPeer, "listen-peer-urls", "http://127.0.0.1:2380", "List of URLs to listen on for peer traffic.")
	fs.StringVar(&f.listenClient, "listen-client-urls", "http://127.0.0.1:2379", "List of URLs to listen on for client gRPC traffic (the etcd v3 API).")
	numberVar(fs, &f.maxTxnOps, "max-txn-ops", server.DefaultMaxTxnOps, "operations", "Maximum number of operations permitted in a transaction (0: the default).")
	numberVar(fs, &f.maxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "bytes", "Maximum client request size in bytes the server will accept (0: the default).")
	numberVar(fs, &f.maxResponseBytes, "max-response-bytes", 0, "bytes", "Most bytes of keys and values one Range response may carry, or of keys one lease's\n"+
		"time-to-live --keys answer; a larger one is refused (ResourceExhausted): read a range\n"+
		fmt.Sprintf("in pages, with a limit or a narrower range (0: %d MiB).", server.DefaultMaxResponseBytes>>20))
	fs.BoolVar(&f.raftAppendToAll, "raft-append-to-all", false, "Send each new log entry to every follower at once, as etcd does: a commit waits for the\n"+
		"fastest majority, at a message, a WAL write and an fsync more per write on the other followers\n"+
		"(default: at once only to the followers that completed the last commit, to the others gathered,\n"+
		"up to 10 ms later).")
	fs.BoolVar(&f.raftReadIndexToAll, "raft-read-index-to-all", false, "Ask every follower in each linearizable read's round of heartbeats, as etcd does\n"+
		"(default: only those that answered the last round, and the others if one of them is silent\n"+
		"for a twentieth of --heartbeat-interval, 5 ms at its default).")
	setGroup(fs, groupMember, "name", "data-dir", "wal-dir", "snapshot-count", "snapshot-catchup-entries", "heartbeat-interval", "election-timeout",
		"listen-peer-urls", "listen-client-urls", "max-txn-ops", "max-request-bytes", "max-response-bytes", "raft-append-to-all", "raft-read-index-to-all")

	fs.StringVar(&f.initialAdvertisePeer, "initial-advertise-peer-urls", "", "List of this member's peer URLs to advertise to the rest of the cluster (default: --listen-peer-urls).")
	fs.StringVar(&f.initialCluster, "initial-cluster", "", "Initial cluster configuration for bootstrapping: name=peerURL,... (default: ${name}=${initial-advertise-peer-urls}).")
	fs.StringVar(&f.initialClusterState, "initial-cluster-state", "new", "'new' when bootstrapping a new cluster, 'existing' to join a running one (after 'member add',\nwith an empty data dir) or restart a member of it.")
	fs.StringVar(&f.initialClusterToken, "initial-cluster-token", server.DefaultInitialClusterToken, "Initial cluster token; makes the ids of two clusters with the same members differ.")
	fs.StringVar(&f.advertiseClient, "advertise-client-urls", "", "List of this member's client URLs to advertise to the cluster (default: --listen-client-urls).")
	fs.BoolVar(&f.strictReconfigCheck, "strict-reconfig-check", true, "Reject membership changes that would leave the cluster without a quorum of started,\nconnected members.")
	setGroup(fs, groupClustering, "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state", "initial-cluster-token", "advertise-client-urls",
		"strict-reconfig-check")

	fs.StringVar(&f.autoCompactionMode, "auto-compaction-mode", "periodic", "How to read --auto-compaction-retention: 'periodic' (a duration, hours if no unit, e.g. '5m')\nor 'revision' (a number of revisions).")
	fs.StringVar(&f.autoCompactionRetention, "auto-compaction-retention", "0", "Auto compaction retention; 0 disables auto compaction.")
	fs.BoolVar(&f.forceNewCluster, "force-new-cluster", false, "Start this member, with its data, as the only member of a new cluster: recovery after a lost quorum.")
	numberVar(fs, &f.quotaBackendBytes, "quota-backend-bytes", 0, "bytes", "Space quota in bytes of the store in use: past it writes fail and the NOSPACE alarm is raised\n(0: etcd's default, 2 GiB; below 0: none).")
	numberVar(fs, &f.backendCacheBytes, "backend-cache-bytes", 0, "bytes", "Bytes of the store engine's block cache: with the memtables, all of the store's memory\nthat grows with use, whatever the data's size (0: 64 MiB, or an eighth of the cgroup's memory\nlimit if that is below 512 MiB).")
	numberVar(fs, &f.backendMemTableBytes, "backend-memtable-bytes", 0, "bytes", "Bytes of one of the store engine's two write buffers (memtables), flushed to disk when full\n(0: 32 MiB, or a sixteenth of the cgroup's memory limit if that is below 512 MiB).")
	numberVar(fs, &f.backendSeparateValueBytes, "backend-separate-value-bytes", 0, "bytes", "Values of at least this many bytes are stored apart from their keys' version records, so that\nwalks over keys (a paged range's count, an MVCC compaction) skip them (0: 128; -1: none).")
	fs.BoolVar(&f.initialCorruptCheck, "initial-corrupt-check", false, "Once caught up after starting, compare this member's HashKV with the others' (a mismatch raises CORRUPT).")
	fs.Var(durationValue{&f.corruptCheckTime}, "corrupt-check-time", "Duration of time between cluster corruption check passes (the leader's; 0: none).")
	setHelpDefault(fs, "corrupt-check-time", "0s")
	// etcd 3.5's names, which 3.7 replaced by the flag above and its feature gate
	// (and 3.6's for --snapshot-catchup-entries, which 3.7 dropped).
	fs.BoolVar(&f.initialCorruptCheck, "experimental-initial-corrupt-check", false, "")
	fs.Var(durationValue{&f.corruptCheckTime}, "experimental-corrupt-check-time", "")
	numberVar(fs, &f.snapshotCatchUpEntries, "experimental-snapshot-catchup-entries", 0, "entries", "")
	for old, repl := range map[string]string{"experimental-initial-corrupt-check": "--initial-corrupt-check",
		"experimental-corrupt-check-time":       "--corrupt-check-time",
		"experimental-snapshot-catchup-entries": "--snapshot-catchup-entries"} {
		if err := fs.MarkDeprecated(old, "use "+repl); err != nil {
			panic(err)
		}
	}
	fs.BoolVar(&f.adaptiveGOMAXPROCS, "adaptive-gomaxprocs", true, "Run the Go scheduler on one thread (GOMAXPROCS=1) while the member uses less than 0.6 of a CPU,\n"+
		"on the runtime's default again as soon as it needs more: it spares a lightly loaded member\n"+
		"(a follower) the wake-ups of idle threads. Off if the GOMAXPROCS variable is set.")
	setGroup(fs, groupOperations, "auto-compaction-mode", "auto-compaction-retention", "force-new-cluster",
		"quota-backend-bytes", "backend-cache-bytes", "backend-memtable-bytes", "backend-separate-value-bytes", "initial-corrupt-check", "corrupt-check-time",
		"adaptive-gomaxprocs")

	f.watchProgressNotifyInterval = watch.DefaultProgressNotifyInterval
	fs.Var(durationValue{&f.watchProgressNotifyInterval}, "watch-progress-notify-interval",
		"How often a watch created with progress_notify hears the revision it has reached when no event came\n(below 100ms: 100ms).")
	setHelpDefault(fs, "watch-progress-notify-interval", "10m")
	// etcd 3.5's name for it, which etcd 3.7 no longer takes: old command lines and
	// config files still start a member.
	fs.Var(durationValue{&f.watchProgressNotifyInterval}, "experimental-watch-progress-notify-interval", "")
	if err := fs.MarkDeprecated("experimental-watch-progress-notify-interval", "use --watch-progress-notify-interval"); err != nil {
		panic(err)
	}
	f.leaseCheckpointInterval = server.DefaultLeaseCheckpointInterval
	fs.Var(durationValue{&f.leaseCheckpointInterval}, "lease-checkpoint-interval",
		"How often the leader records through Raft the remaining TTL of each lease with more than that\n"+
			"left, so that a new leader counts it down from there rather than from its full TTL; at least 1s (0: 5m).")
	setHelpDefault(fs, "lease-checkpoint-interval", "5m")
	setGroup(fs, groupWatchLease, "watch-progress-notify-interval", "lease-checkpoint-interval")

	f.tls.register(fs)
	f.auth.register(fs)
	fs.StringVar(&f.listenMetrics, "listen-metrics-urls", "", "List of URLs to listen on for /metrics and the health endpoints (/health, /livez, /readyz);\nthe client URLs serve them too.")
	fs.StringVar(&f.metrics, "metrics", server.MetricsBasic, "Set level of detail for exported metrics, specify 'extensive' to include gRPC handling-time histograms.")
	fs.BoolVar(&f.enablePprof, "enable-pprof", false, "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"")
	setGroup(fs, groupMonitoring, "listen-metrics-urls", "metrics", "enable-pprof")
	fs.BoolVar(&f.enableGRPCGateway, "enable-grpc-gateway", true, "Serve etcd's JSON gateway (POST /v3/kv/range and the rest) on the client URLs, as etcd does.")
	setGroup(fs, groupMember, "enable-grpc-gateway")

	fs.StringVar(&f.logLevel, "log-level", "info", "Log level: debug, info, warn or error (etcd's panic and fatal mean error).")
	fs.StringVar(&f.logFormat, "log-format", "console", "Log format: console (key=value text; 'text' too) or json.")
	fs.StringVar(&f.logOutputs, "log-outputs", "default", "Where logs go: default (stderr), stderr or stdout.")
	setGroup(fs, groupLogging, "log-level", "log-format", "log-outputs")

	fs.StringVar(&f.configFile, "config-file", "", "Path to an etcd YAML configuration file. Unlike etcd, flags and environment variables\nstill apply and win over the file's settings.")
	setGroup(fs, groupOther, "config-file")

	fs.IntVar(&f.supervisorFD, supervisorFDFlag, -1, "File descriptor of the pipe from raftkv cluster (internal).")
	if err := fs.MarkHidden(supervisorFDFlag); err != nil {
		panic(err)
	}
	registerEtcdFlags(fs)
	plainBools(fs)
}

const supervisorFDFlag = "supervisor-fd"

func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// checkURLs checks the syntax of a URL list flag, so that a mistyped port is reported
// before the member touches its data dir (the server checks the rest).
func checkURLs(flag, list string) error {
	for _, raw := range splitURLs(list) {
		if err := needScheme(raw); err != nil {
			return fmt.Errorf("--%s: %v", flag, err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("--%s: %q is not a URL: %v", flag, raw, err)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("--%s: port %s in %q is not a TCP port; use 1-65535", flag, p, raw)
			}
		}
	}
	return nil
}

// needScheme refuses a URL written without its scheme ("127.0.0.1:2379"), which Go's
// url.Parse refuses in words that do not say what is missing, or takes the host for
// the scheme ("localhost:2379").
func needScheme(raw string) error {
	if strings.Contains(raw, "://") {
		return nil
	}
	return fmt.Errorf("%q has no scheme; add http:// or https:// (with TLS), e.g. http://%s", raw, strings.TrimPrefix(raw, "//"))
}

// config turns the flags into a server.Config, checking what the server cannot: the
// syntax of each value, in the words of the flag that carries it.
func (f *serveFlags) config() (server.Config, error) {
	if f.dataDir == "" {
		f.dataDir = f.name + ".raftkv"
	}
	if f.advertiseClient == "" {
		f.advertiseClient = f.listenClient
	}
	if f.initialAdvertisePeer == "" {
		f.initialAdvertisePeer = f.listenPeer
	}
	if f.name == "" {
		return server.Config{}, fmt.Errorf("--name is empty; give the member a name, the one --initial-cluster lists it under (default %q)", server.DefaultName)
	}
	if f.initialCluster == "" {
		f.initialCluster = f.name + "=" + f.initialAdvertisePeer
	}
	for _, urls := range []struct{ flag, list string }{
		{"listen-client-urls", f.listenClient}, {"advertise-client-urls", f.advertiseClient},
		{"listen-peer-urls", f.listenPeer}, {"initial-advertise-peer-urls", f.initialAdvertisePeer},
		{"listen-metrics-urls", f.listenMetrics},
	} {
		if err := checkURLs(urls.flag, urls.list); err != nil {
			return server.Config{}, err
		}
	}
	cluster := map[string][]string{}
	for _, part := range splitURLs(f.initialCluster) {
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return server.Config{}, fmt.Errorf("--initial-cluster entry %q is not name=URL", part)
		}
		if err := checkURLs("initial-cluster", u); err != nil {
			return server.Config{}, err
		}
		cluster[name] = append(cluster[name], u)
	}
	mine := slices.Sorted(slices.Values(cluster[f.name]))
	advertised := slices.Sorted(slices.Values(splitURLs(f.initialAdvertisePeer)))
	if len(mine) > 0 && !slices.Equal(mine, advertised) {
		return server.Config{}, fmt.Errorf("--initial-cluster gives %s the peer URLs %v but --initial-advertise-peer-urls is %v; make them agree",
			f.name, mine, advertised)
	}
	if f.heartbeatMs <= 0 || f.electionMs <= 0 {
		return server.Config{}, fmt.Errorf("--heartbeat-interval %d and --election-timeout %d must be positive milliseconds", f.heartbeatMs, f.electionMs)
	}
	// Checked here, in milliseconds, before they become durations (which a huge
	// number would overflow); the server checks the ratio of the two.
	if f.electionMs > server.MaxElectionTimeoutMs {
		return server.Config{}, fmt.Errorf("--election-timeout[%dms] is too long, and should be set less than %dms", f.electionMs, server.MaxElectionTimeoutMs)
	}
	if f.heartbeatMs > f.electionMs {
		return server.Config{}, fmt.Errorf("--election-timeout %dms must be at least 5 times --heartbeat-interval %dms (10x is usual)", f.electionMs, f.heartbeatMs)
	}
	if f.maxResponseBytes < 0 {
		return server.Config{}, fmt.Errorf("--max-response-bytes %d is negative; use 0 for the default or a number of bytes", f.maxResponseBytes)
	}
	if err := checkAutoCompaction(f.autoCompactionMode, f.autoCompactionRetention); err != nil {
		return server.Config{}, err
	}
	if f.metrics != server.MetricsBasic && f.metrics != server.MetricsExtensive {
		return server.Config{}, fmt.Errorf("--metrics %q: use %q or %q", f.metrics, server.MetricsBasic, server.MetricsExtensive)
	}
	logger, err := f.logger()
	if err != nil {
		return server.Config{}, err
	}
	cfg := server.Config{
		Name:                        f.name,
		DataDir:                     f.dataDir,
		WALDir:                      f.walDir,
		ForceNewCluster:             f.forceNewCluster,
		QuotaBackendBytes:           f.quotaBackendBytes,
		BackendCacheBytes:           f.backendCacheBytes,
		BackendMemTableBytes:        f.backendMemTableBytes,
		BackendSeparateValueBytes:   f.backendSeparateValueBytes,
		InitialCorruptCheck:         f.initialCorruptCheck,
		CorruptCheckTime:            f.corruptCheckTime,
		AutoCompactionMode:          f.autoCompactionMode,
		AutoCompactionRetention:     f.autoCompactionRetention,
		ListenClientURLs:            splitURLs(f.listenClient),
		AdvertiseClientURLs:         splitURLs(f.advertiseClient),
		ListenPeerURLs:              splitURLs(f.listenPeer),
		InitialCluster:              cluster,
		InitialClusterState:         f.initialClusterState,
		DisableStrictReconfigCheck:  !f.strictReconfigCheck,
		InitialClusterToken:         f.initialClusterToken,
		HeartbeatInterval:           time.Duration(f.heartbeatMs) * time.Millisecond,
		ElectionTimeout:             time.Duration(f.electionMs) * time.Millisecond,
		AppendToAll:                 f.raftAppendToAll,
		ReadIndexToAll:              f.raftReadIndexToAll,
		MaxRequestBytes:             f.maxRequestBytes,
		MaxTxnOps:                   f.maxTxnOps,
		MaxResponseBytes:            f.maxResponseBytes,
		SnapshotCount:               f.snapshotCount,
		SnapshotCatchUpEntries:      f.snapshotCatchUpEntries,
		WatchProgressNotifyInterval: f.watchProgressNotifyInterval,
		LeaseCheckpointInterval:     f.leaseCheckpointInterval,
		ListenMetricsURLs:           splitURLs(f.listenMetrics),
		Metrics:                     f.metrics,
		EnablePprof:                 f.enablePprof,
		DisableGRPCGateway:          !f.enableGRPCGateway,
		Logger:                      logger,
	}
	if err := f.tls.apply(&cfg); err != nil {
		return server.Config{}, err
	}
	if err := f.auth.apply(&cfg); err != nil {
		return server.Config{}, err
	}
	return cfg, nil
}

// checkAutoCompaction checks the syntax of etcd's two auto-compaction flags: the
// server decides what they do.
func checkAutoCompaction(mode, retention string) error {
	switch mode {
	case "periodic":
		if _, err := strconv.ParseUint(retention, 10, 63); err == nil {
			return nil // a bare number is hours, as in etcd
		}
		d, err := time.ParseDuration(retention)
		if err != nil && durationSyntax.MatchString(retention) {
			// The syntax of a duration, whose value does not fit one.
			return fmt.Errorf("--auto-compaction-retention %q is too long; give at most %v", retention, time.Duration(1<<63-1).Truncate(time.Hour))
		}
		if err != nil || d < 0 {
			return fmt.Errorf("--auto-compaction-retention %q is not a duration; with --auto-compaction-mode periodic use e.g. '1h', '30m' or '5' (hours), 0 for off", retention)
		}
	case "revision":
		if _, err := strconv.ParseUint(retention, 10, 63); err != nil {
			return fmt.Errorf("--auto-compaction-retention %q is not a number of revisions; with --auto-compaction-mode revision use e.g. '1000', 0 for off", retention)
		}
	default:
		return fmt.Errorf("--auto-compaction-mode %q: use 'periodic' or 'revision'", mode)
	}
	return nil
}

// durationSyntax is time.ParseDuration's syntax (without a sign): a value it matches
// that ParseDuration refuses is too long for a time.Duration.
var durationSyntax = regexp.MustCompile(`^((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$`)

func (f *serveFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	switch f.logLevel {
	case "panic", "fatal":
		level = slog.LevelError
	default:
		if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", f.logLevel)
		}
	}
	var out *os.File
	switch f.logOutputs {
	case "default", "stderr", "":
		out = os.Stderr
	case "stdout":
		out = os.Stdout
	default:
		return nil, fmt.Errorf("--log-outputs %q: raftkv logs to one of default, stderr or stdout; redirect it to write a file", f.logOutputs)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "console", "text":
		return slog.New(slog.NewTextHandler(out, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(out, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use console (or text) or json", f.logFormat)
	}
}

// serve runs a member until SIGTERM or SIGINT (or the death of its supervisor), then
// stops it cleanly.
func (a *app) serve(cmd *cobra.Command, f *serveFlags) error {
	if err := checkClientBoolFlags(cmd.Flags()); err != nil {
		return &usageError{err}
	}
	warnings, origin, err := applySourcesFrom(cmd.Flags(), a.environ)
	if err != nil {
		return &usageError{err}
	}
	cfg, err := f.config()
	if err != nil {
		return &usageError{withOrigin(err, origin)}
	}
	for _, w := range warnings {
		cfg.Logger.Warn(w)
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{withOrigin(err, origin)}
	}
	cfg.Logger.Info("starting raftkv", "version", version.Version, "etcd-api", version.APIVersion, "git-sha", version.GitSHA(),
		"name", cfg.Name, "data-dir", cfg.DataDir, "listen-client-urls", cfg.ListenClientURLs, "listen-peer-urls", cfg.ListenPeerURLs)
	// After the flags are checked: it sizes only what they leave at the default.
	applyMemoryLimit(&cfg, a.environ)
	// The signals are caught before the member starts: a start can wait (a join
	// waits for the cluster up to 20 s), and a SIGTERM then must say why the member
	// went away.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	srv, err := startMember(cfg, sigs)
	if err != nil {
		return withOrigin(err, origin)
	}
	if f.adaptiveGOMAXPROCS {
		stopProcs, on := procs.Start(procs.Config{Logger: cfg.Logger}, a.environ)
		defer stopProcs()
		if !on {
			cfg.Logger.Info("--adaptive-gomaxprocs is off: GOMAXPROCS is set, or the process has one CPU", "gomaxprocs", runtime.GOMAXPROCS(0))
		}
	}
	stop := make(chan string, 1)
	if f.supervisorFD >= 0 {
		// The member's output is a pipe to the supervisor. Once the supervisor is
		// gone, a write to it must fail rather than kill the member with SIGPIPE
		// before it has stopped cleanly.
		signal.Ignore(syscall.SIGPIPE)
		go watchSupervisor(f.supervisorFD, stop)
	}
	select {
	case sig := <-sigs:
		cfg.Logger.Info("shutting down", "signal", sig.String())
	case why := <-stop:
		cfg.Logger.Info("shutting down", "reason", why)
	case <-srv.Done():
		err := srv.Err()
		srv.Stop()
		return fmt.Errorf("member stopped: %w", err)
	}
	srv.Stop()
	return nil
}

// startMember starts the member with server.New. A signal that arrives first is
// logged and then delivered again with its default action, so the process ends as
// an unhandled SIGTERM would: what server.New has written is as safe as after a kill.
func startMember(cfg server.Config, sigs chan os.Signal) (*server.Server, error) {
	type started struct {
		srv *server.Server
		err error
	}
	done := make(chan started, 1)
	go func() {
		srv, err := server.New(cfg)
		done <- started{srv, err}
	}()
	select {
	case r := <-done:
		return r.srv, r.err
	case sig := <-sigs:
		cfg.Logger.Info("shutting down while starting: the member stops as if killed; a restart on its data dir goes on from what it wrote", "signal", sig.String())
		signal.Stop(sigs)
		signal.Reset(sig)
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			_ = p.Signal(sig)
		}
		// A signal that was ignored when the process started (SIGINT for a shell's
		// background job) is ignored again once reset: exit as it would have ended it.
		time.Sleep(2 * time.Second)
		code := 1
		if n, ok := sig.(syscall.Signal); ok {
			code = 128 + int(n)
		}
		os.Exit(code)
		return nil, nil
	}
}

// watchSupervisor reads the pipe "raftkv cluster" handed the member until it ends:
// the supervisor holds the write end, so EOF means the supervisor exited, however it
// died, and the member must not outlive it. (On Linux the member also gets SIGTERM
// as its parent-death signal; the pipe covers the other systems and the case where
// the thread that started the member is gone.)
func watchSupervisor(fd int, stop chan<- string) {
	pipe := os.NewFile(uintptr(fd), "supervisor pipe")
	if pipe == nil {
		stop <- fmt.Sprintf("--%s %d is not an open file", supervisorFDFlag, fd)
		return
	}
	buf := make([]byte, 1)
	for {
		if _, err := pipe.Read(buf); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			stop <- "the supervisor (raftkv cluster) exited"
			return
		}
	}
}

// durationValue is a duration flag: a number with a unit (10m, 30s, 500ms), or 0.
// A bare number other than 0 is refused, as etcd refuses it on its command line and
// in its environment: it would mean nanoseconds, never what was meant ("5" for a
// 5ns ticker). etcd's YAML config file gives durations as whole nanoseconds
// (600000000000 for 10m); applyConfigKey turns such a number into a duration first.
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	if s != "0" && strings.ContainsAny(s, "0123456789") && strings.Trim(s, "+-.0123456789") == "" {
		return fmt.Errorf("%q has no unit; give e.g. %ss, %sm or %sms (0 for none)", s, s, s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration: give e.g. 10m, 30s or 500ms")
	}
	*v.d = d
	return nil
}

func (durationValue) Type() string { return "duration" }
