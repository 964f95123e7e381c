package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"

	"raftkv/bench/internal/pprofserve"
	"raftkv/internal/procs"
	"raftkv/server"
)

// The bench binary re-executes itself with one of these hidden subcommands to run a
// cluster member, so the whole comparison is one module and one "go run".

// runEtcdMember serves one etcd member with embed's default settings (fsync on) until
// SIGTERM or SIGINT.
func runEtcdMember(args []string) int {
	fs := flag.NewFlagSet("bench etcd-member", flag.ContinueOnError)
	name := fs.String("name", "", "member name, as in --initial-cluster")
	dir := fs.String("data-dir", "", "data directory")
	clientURL := fs.String("listen-client-urls", "", "client URL (one)")
	peerURL := fs.String("listen-peer-urls", "", "peer URL (one)")
	initialCluster := fs.String("initial-cluster", "", "name=peerURL,...")
	token := fs.String("initial-cluster-token", "", "cluster token")
	pprofAddr := fs.String("pprof-addr", "", "host:port to serve /debug/pprof on; empty for none")
	clusterState := fs.String("initial-cluster-state", embed.ClusterStateFlagNew, "new, or existing to join a running cluster after member add")
	// Left at etcd's defaults unless a scenario asks (the data scenarios, bigdata.go).
	snapshotCount := fs.Uint64("snapshot-count", 0, "etcd's --snapshot-count; 0 for its default")
	catchUpEntries := fs.Uint64("snapshot-catchup-entries", 0, "etcd's --snapshot-catchup-entries; 0 for its default")
	quotaBytes := fs.Int64("quota-backend-bytes", 0, "etcd's --quota-backend-bytes; 0 for its default (2 GiB)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client, err := url.Parse(*clientURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-member: --listen-client-urls %q: %v\n", *clientURL, err)
		return 2
	}
	peer, err := url.Parse(*peerURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-member: --listen-peer-urls %q: %v\n", *peerURL, err)
		return 2
	}
	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dir
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = *initialCluster
	cfg.InitialClusterToken = *token
	cfg.ClusterState = *clusterState
	if *snapshotCount > 0 {
		cfg.SnapshotCount = *snapshotCount
	}
	if *catchUpEntries > 0 {
		cfg.SnapshotCatchUpEntries = *catchUpEntries
	}
	cfg.QuotaBackendBytes = *quotaBytes
	if err := pprofserve.Serve(*pprofAddr); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-member: %v\n", err)
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-member: starting etcd: %v\n", err)
		return 1
	}
	defer e.Close()
	select {
	case <-sigs:
		return 0
	case err := <-e.Err():
		fmt.Fprintf(os.Stderr, "etcd-member: etcd failed: %v\n", err)
		return 1
	}
}

// runRaftkvMember serves one raftkv member in this process. The harness uses it instead
// of the raftkv binary only with --cpuprofile, because the binary has no pprof endpoint.
// It takes the raftkv binary's flags that the harness passes, and leaves everything
// else at server's defaults, which are the binary's defaults too; it runs the
// binary's GOMAXPROCS governor (internal/procs) as the binary does by default.
func runRaftkvMember(args []string) int {
	fs := flag.NewFlagSet("bench raftkv-member", flag.ContinueOnError)
	name := fs.String("name", "", "member name, as in --initial-cluster")
	dir := fs.String("data-dir", "", "data directory")
	clientURL := fs.String("listen-client-urls", "", "client URL")
	advertiseClientURL := fs.String("advertise-client-urls", "", "advertised client URL")
	peerURL := fs.String("listen-peer-urls", "", "peer URL")
	fs.String("initial-advertise-peer-urls", "", "ignored: the same as --listen-peer-urls here")
	initialCluster := fs.String("initial-cluster", "", "name=peerURL,...")
	fs.String("initial-cluster-state", "new", "ignored: always new")
	token := fs.String("initial-cluster-token", "", "cluster token")
	pprofAddr := fs.String("pprof-addr", "", "host:port to serve /debug/pprof on; empty for none")
	quotaBytes := fs.Int64("quota-backend-bytes", 0, "the space quota; 0 for the default")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cluster := map[string][]string{}
	for _, part := range strings.Split(*initialCluster, ",") {
		n, u, ok := strings.Cut(part, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "raftkv-member: --initial-cluster entry %q is not name=URL\n", part)
			return 2
		}
		cluster[n] = append(cluster[n], u)
	}
	if err := pprofserve.Serve(*pprofAddr); err != nil {
		fmt.Fprintf(os.Stderr, "raftkv-member: %v\n", err)
		return 1
	}
	srv, err := server.New(server.Config{
		Name:                *name,
		DataDir:             *dir,
		ListenClientURLs:    []string{*clientURL},
		AdvertiseClientURLs: []string{*advertiseClientURL},
		ListenPeerURLs:      []string{*peerURL},
		InitialCluster:      cluster,
		InitialClusterToken: *token,
		QuotaBackendBytes:   *quotaBytes,
		Logger:              slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv-member: %v\n", err)
		return 1
	}
	stopProcs, _ := procs.Start(procs.Config{}, os.Environ())
	defer stopProcs()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sigs:
		srv.Stop()
		return 0
	case <-srv.Done():
		err := srv.Err()
		srv.Stop()
		fmt.Fprintf(os.Stderr, "raftkv-member: member stopped: %v\n", err)
		return 1
	}
}
