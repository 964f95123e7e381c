package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
)

// servedEtcdFlags are the flags of etcd 3.7's `etcd --help` that raftkv serves under
// the same name (serveFlags registers them). With etcdFlags they cover every flag of
// that help text; README.md's table lists them all, and a test holds the three together.
var servedEtcdFlags = []string{
	"name", "data-dir", "wal-dir", "snapshot-count", "heartbeat-interval", "election-timeout",
	"listen-peer-urls", "listen-client-urls", "max-txn-ops", "max-request-bytes",
	"initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state", "initial-cluster-token",
	"advertise-client-urls", "auto-compaction-retention", "auto-compaction-mode",
	"log-level", "log-format", "log-outputs", "force-new-cluster", "config-file", "version",
	"listen-metrics-urls", "metrics", "enable-pprof", "enable-grpc-gateway", "watch-progress-notify-interval", "strict-reconfig-check",
	"quota-backend-bytes", "corrupt-check-time", "snapshot-catchup-entries",
	// and servedTLSFlags and servedAuthFlags, added by init
}

func init() {
	servedEtcdFlags = append(servedEtcdFlags, servedTLSFlags...)
	servedEtcdFlags = append(servedEtcdFlags, servedAuthFlags...)
}

// etcdFlag is a flag of etcd 3.7's `etcd --help` that raftkv does not serve. raftkv
// accepts it (as a flag, an ETCD_ variable or a config file key) so that etcd's
// command lines and files start raftkv, and then either ignores it with a warning, or
// refuses to start when its value asks for something raftkv cannot do. A refused
// flag set to etcd's default asks for nothing, so it is only ignored.
type etcdFlag struct {
	name        string
	etcdDefault string // as etcd's help prints it
	isBool      bool
	refused     bool
	why         string
}

const (
	noSelfDial    = "raftkv never dials its own client URLs (etcd does, for its gateway), so it presents no client certificate"
	noDiscovery   = "raftkv has no discovery service: list the members in --initial-cluster"
	oneClientPort = "raftkv serves HTTP (the JSON gateway, /metrics, the health endpoints) beside gRPC on every client URL, told apart per connection at no cost to gRPC; list the URL in --listen-client-urls"
	noBbolt       = "raftkv's store does not use bbolt"
	ownRetain     = "raftkv prunes old snapshots and the WAL segments a snapshot covers by itself"
	notTunable    = "not tunable in raftkv"
)

var etcdFlags = []etcdFlag{
	// Member
	{name: "initial-election-tick-advance", etcdDefault: "true", isBool: true, why: notTunable + ": a member's first election timeout is drawn like every other, from [t, 2t)"},
	{name: "listen-client-http-urls", refused: true, why: oneClientPort},
	{name: "max-snapshots", etcdDefault: "5", why: ownRetain},
	{name: "max-wals", etcdDefault: "5", why: ownRetain},
	{name: "memory-mlock", etcdDefault: "false", isBool: true, why: "raftkv does not lock its pages in memory"},
	{name: "backend-bbolt-freelist-type", etcdDefault: "map", why: noBbolt},
	{name: "backend-batch-interval", why: noBbolt},
	{name: "backend-batch-limit", etcdDefault: "0", why: noBbolt},
	{name: "max-concurrent-streams", etcdDefault: "math.MaxUint32", why: notTunable},
	{name: "grpc-keepalive-min-time", etcdDefault: "5s", why: notTunable + ": raftkv uses etcd's default, 5s"},
	{name: "grpc-keepalive-interval", etcdDefault: "2h", why: notTunable + ": raftkv uses etcd's default, 2h"},
	{name: "grpc-keepalive-timeout", etcdDefault: "20s", why: notTunable + ": raftkv uses etcd's default, 20s"},
	{name: "socket-reuse-port", etcdDefault: "false", isBool: true, why: notTunable},
	{name: "socket-reuse-address", etcdDefault: "false", isBool: true, why: notTunable},
	{name: "raft-read-timeout", etcdDefault: "5s", why: notTunable + ": peer streams have their own timeouts"},
	{name: "raft-write-timeout", etcdDefault: "5s", why: notTunable + ": peer streams have their own timeouts"},
	{name: "feature-gates", why: "raftkv has no feature gates"},
	// Clustering
	{name: "discovery", refused: true, why: noDiscovery},
	{name: "discovery-token", refused: true, why: noDiscovery},
	{name: "discovery-endpoints", refused: true, why: noDiscovery},
	{name: "discovery-dial-timeout", etcdDefault: "2s", why: noDiscovery},
	{name: "discovery-request-timeout", etcdDefault: "5s", why: noDiscovery},
	{name: "discovery-keepalive-time", etcdDefault: "2s", why: noDiscovery},
	{name: "discovery-keepalive-timeout", etcdDefault: "6s", why: noDiscovery},
	{name: "discovery-insecure-transport", etcdDefault: "true", isBool: true, why: noDiscovery},
	{name: "discovery-insecure-skip-tls-verify", etcdDefault: "false", isBool: true, why: noDiscovery},
	{name: "discovery-cert", why: noDiscovery},
	{name: "discovery-key", why: noDiscovery},
	{name: "discovery-cacert", why: noDiscovery},
	{name: "discovery-user", why: noDiscovery},
	{name: "discovery-password", why: noDiscovery},
	{name: "discovery-fallback", etcdDefault: "exit", why: noDiscovery},
	{name: "discovery-proxy", why: noDiscovery},
	{name: "discovery-srv", refused: true, why: noDiscovery},
	{name: "discovery-srv-name", why: noDiscovery},
	{name: "pre-vote", etcdDefault: "true", isBool: true, refused: true, why: "raftkv always runs Pre-Vote and CheckQuorum (Ongaro's thesis §9.6)"},
	{name: "v2-deprecation", etcdDefault: "write-only", why: "raftkv never had the v2 store"},
	// Security
	{name: "client-cert-file", why: noSelfDial},
	{name: "client-key-file", why: noSelfDial},
	{name: "cors", etcdDefault: "*", refused: true, why: "raftkv's JSON gateway allows every origin, as etcd's default does, and has no check to narrow it; turn the gateway off (--enable-grpc-gateway=false) where web pages must not reach it"},
	{name: "host-whitelist", etcdDefault: "*", refused: true, why: "raftkv accepts any Host header, as etcd's default does, and has no check to narrow it; turn the gateway off (--enable-grpc-gateway=false) against DNS rebinding"},
	// Auth
	// Logging
	{name: "logger", etcdDefault: "zap", why: "raftkv logs with log/slog; --log-format chooses text or JSON"},
	{name: "enable-log-rotation", etcdDefault: "false", isBool: true, refused: true, why: "raftkv logs to stderr or stdout; rotate with the process manager"},
	{name: "log-rotation-config-json", etcdDefault: `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`, why: "raftkv does not rotate logs"},
	{name: "warning-unary-request-duration", etcdDefault: "300ms", why: notTunable},
	// Distributed tracing
	{name: "enable-distributed-tracing", etcdDefault: "false", isBool: true, refused: true, why: "raftkv has no OpenTelemetry tracing"},
	{name: "distributed-tracing-address", etcdDefault: "localhost:4317", why: "raftkv has no OpenTelemetry tracing"},
	{name: "distributed-tracing-service-name", etcdDefault: "etcd", why: "raftkv has no OpenTelemetry tracing"},
	{name: "distributed-tracing-instance-id", why: "raftkv has no OpenTelemetry tracing"},
	{name: "distributed-tracing-sampling-rate", etcdDefault: "0", why: "raftkv has no OpenTelemetry tracing"},
	// Features
	{name: "compact-hash-check-time", etcdDefault: "1m", why: "raftkv compares HashKV between members (--corrupt-check-time), not the hashes of compactions"},
	{name: "compaction-batch-limit", etcdDefault: "1000", why: notTunable + ": a compaction applies as one entry"},
	{name: "warning-apply-duration", etcdDefault: "100ms", why: notTunable},
	{name: "bootstrap-defrag-threshold-megabytes", etcdDefault: "0", why: noBbolt},
	{name: "max-learners", etcdDefault: "1", why: "raftkv allows one learner at a time, etcd's default"},
	{name: "compaction-sleep-interval", why: notTunable},
	{name: "downgrade-check-time", why: "raftkv has no downgrade protocol"},
	// Unsafe
	{name: "unsafe-no-fsync", etcdDefault: "false", isBool: true, refused: true, why: "raftkv always fsyncs before it acknowledges a write"},
}

// etcdFlagValue holds whatever an etcd flag raftkv does not serve was given; a
// boolean one must still parse as a boolean.
type etcdFlagValue struct {
	value  string
	isBool bool
}

func (v *etcdFlagValue) String() string { return v.value }

func (v *etcdFlagValue) Set(s string) error {
	if v.isBool {
		if _, err := strconv.ParseBool(s); err != nil {
			return fmt.Errorf("not a boolean")
		}
	}
	v.value = s
	return nil
}

func (v *etcdFlagValue) Type() string {
	if v.isBool {
		return "bool"
	}
	return "string"
}

// registerEtcdFlags adds etcdFlags to fs, hidden from the help (README.md lists them).
func registerEtcdFlags(fs *pflag.FlagSet) {
	for _, e := range etcdFlags {
		f := fs.VarPF(&etcdFlagValue{value: e.etcdDefault, isBool: e.isBool}, e.name, "", e.why)
		if e.isBool {
			f.NoOptDefVal = "true"
		}
		f.Hidden = true
	}
}

// checkEtcdFlags returns a warning for each etcd flag raftkv ignores that was set, and
// an error for the first that asks for something raftkv cannot do.
func checkEtcdFlags(fs *pflag.FlagSet, origin map[string]string) (warnings []string, err error) {
	for _, e := range etcdFlags {
		f := fs.Lookup(e.name)
		if !f.Changed {
			continue
		}
		value := f.Value.String()
		if e.refused && !sameValue(value, e.etcdDefault, e.isBool) {
			fix := "drop it"
			if e.etcdDefault != "" {
				fix += ", or give etcd's default, " + e.etcdDefault
			}
			return nil, fmt.Errorf("--%s %q (from %s) cannot be served: %s; %s", e.name, value, origin[e.name], e.why, fix)
		}
		warnings = append(warnings, fmt.Sprintf("--%s %q (from %s) is accepted for etcd compatibility and ignored: %s",
			e.name, value, origin[e.name], e.why))
	}
	return warnings, nil
}

func sameValue(value, etcdDefault string, isBool bool) bool {
	if isBool {
		a, errA := strconv.ParseBool(value)
		b, errB := strconv.ParseBool(etcdDefault)
		return errA == nil && errB == nil && a == b
	}
	return value == etcdDefault
}
