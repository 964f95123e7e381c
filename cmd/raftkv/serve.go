package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"raftkv/server"
)

// serveFlags are etcd's flags for the common case, with etcd's defaults where etcd has
// them (except the data dir, ./<name>.raftkv).
type serveFlags struct {
	name, dataDir                       string
	listenClient, advertiseClient       string
	listenPeer, initialAdvertisePeer    string
	initialCluster, initialClusterState string
	initialClusterToken                 string
	heartbeatMs, electionMs             int
	maxRequestBytes, maxTxnOps          int
	snapshotCount                       uint64
	logLevel                            string
}

func parseServeFlags(args []string) (*serveFlags, *flag.FlagSet, error) {
	f := &serveFlags{}
	fs := flag.NewFlagSet("raftkv", flag.ContinueOnError)
	fs.StringVar(&f.name, "name", server.DefaultName, "human-readable name of this member; must appear in --initial-cluster")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the member's WAL and snapshots (default ./<name>.raftkv)")
	fs.StringVar(&f.listenClient, "listen-client-urls", "http://127.0.0.1:2379", "comma-separated URLs to serve clients (the etcd v3 gRPC API) on")
	fs.StringVar(&f.advertiseClient, "advertise-client-urls", "", "comma-separated client URLs published to the cluster (default: --listen-client-urls)")
	fs.StringVar(&f.listenPeer, "listen-peer-urls", "http://127.0.0.1:2380", "comma-separated URLs to listen on for peer traffic")
	fs.StringVar(&f.initialAdvertisePeer, "initial-advertise-peer-urls", "", "this member's peer URLs as the others reach them (default: --listen-peer-urls)")
	fs.StringVar(&f.initialCluster, "initial-cluster", "", "every member as name=peerURL, comma-separated (default: <name>=<initial-advertise-peer-urls>)")
	fs.StringVar(&f.initialClusterState, "initial-cluster-state", "new", `"new" to bootstrap a cluster, "existing" to restart a member of one`)
	fs.StringVar(&f.initialClusterToken, "initial-cluster-token", server.DefaultInitialClusterToken, "token that makes this cluster's id unique")
	fs.IntVar(&f.heartbeatMs, "heartbeat-interval", int(server.DefaultHeartbeatInterval/time.Millisecond), "leader heartbeat period in milliseconds")
	fs.IntVar(&f.electionMs, "election-timeout", int(server.DefaultElectionTimeout/time.Millisecond), "election timeout in milliseconds (drawn at random from [t, 2t) on every reset)")
	fs.IntVar(&f.maxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "largest client request in bytes")
	fs.IntVar(&f.maxTxnOps, "max-txn-ops", server.DefaultMaxTxnOps, "most operations in one transaction")
	fs.Uint64Var(&f.snapshotCount, "snapshot-count", server.DefaultSnapshotCount, "least applied entries between snapshots; a snapshot also waits until the log since the last one is as large as it")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage+"\nServe flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, fs, err
	}
	if fs.NArg() > 0 {
		return nil, fs, fmt.Errorf("unexpected argument %q; flags start with --, and subcommands are cluster, put, get, del, status", fs.Arg(0))
	}
	return f, fs, nil
}

func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

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
	if f.initialCluster == "" {
		f.initialCluster = f.name + "=" + f.initialAdvertisePeer
	}
	cluster := map[string][]string{}
	for _, part := range splitURLs(f.initialCluster) {
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return server.Config{}, fmt.Errorf("--initial-cluster entry %q is not name=URL", part)
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return server.Config{}, fmt.Errorf("--log-level %q: use debug, info, warn or error", f.logLevel)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return server.Config{
		Name:                f.name,
		DataDir:             f.dataDir,
		ListenClientURLs:    splitURLs(f.listenClient),
		AdvertiseClientURLs: splitURLs(f.advertiseClient),
		ListenPeerURLs:      splitURLs(f.listenPeer),
		InitialCluster:      cluster,
		InitialClusterState: f.initialClusterState,
		InitialClusterToken: f.initialClusterToken,
		HeartbeatInterval:   time.Duration(f.heartbeatMs) * time.Millisecond,
		ElectionTimeout:     time.Duration(f.electionMs) * time.Millisecond,
		MaxRequestBytes:     f.maxRequestBytes,
		MaxTxnOps:           f.maxTxnOps,
		SnapshotCount:       f.snapshotCount,
		Logger:              logger,
	}, nil
}

func runServe(args []string) int {
	f, _, err := parseServeFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv: %v\n", err)
		return 2
	}
	cfg, err := f.config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv: %v\n", err)
		return 2
	}
	srv, err := server.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv: %v\n", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		cfg.Logger.Info("shutting down", "signal", sig.String())
		srv.Stop()
		return 0
	case <-srv.Done():
		err := srv.Err()
		srv.Stop()
		fmt.Fprintf(os.Stderr, "raftkv: member stopped: %v\n", err)
		return 1
	}
}
