package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"raftkv/server"
	"raftkv/version"
)

// runCLI runs the command line in process with the given environment.
func runCLI(t *testing.T, environ []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, environ, &out, &errOut)
	return out.String(), errOut.String(), code
}

// parseServe parses the member's flags, applies the environment and the config file,
// and returns the resulting config and warnings.
func parseServe(args, environ []string) (server.Config, []string, error) {
	f := &serveFlags{}
	fs := pflag.NewFlagSet("raftkv", pflag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return server.Config{}, nil, err
	}
	warnings, err := applySources(fs, environ)
	if err != nil {
		return server.Config{}, warnings, err
	}
	cfg, err := f.config()
	return cfg, warnings, err
}

// The monitoring flags reach the server's Config, from the command line or etcd's
// environment variables, and default to etcd's defaults.
func TestServeMonitoringFlags(t *testing.T) {
	cfg, _, err := parseServe(nil, nil)
	if err != nil || cfg.Metrics != server.MetricsBasic || cfg.EnablePprof || len(cfg.ListenMetricsURLs) != 0 {
		t.Fatalf("defaults: metrics %q, pprof %v, metrics URLs %v, err %v", cfg.Metrics, cfg.EnablePprof, cfg.ListenMetricsURLs, err)
	}
	cfg, warnings, err := parseServe([]string{"--enable-pprof", "--metrics", "extensive"},
		[]string{"ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:9379,http://127.0.0.1:9380"})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("%v, warnings %q", err, warnings)
	}
	if cfg.Metrics != server.MetricsExtensive || !cfg.EnablePprof ||
		strings.Join(cfg.ListenMetricsURLs, ",") != "http://127.0.0.1:9379,http://127.0.0.1:9380" {
		t.Fatalf("metrics %q, pprof %v, metrics URLs %v", cfg.Metrics, cfg.EnablePprof, cfg.ListenMetricsURLs)
	}
	// The JSON gateway is on unless turned off, as in etcd; ETCD_ENABLE_GRPC_GATEWAY too.
	if cfg, _, err := parseServe(nil, nil); err != nil || cfg.DisableGRPCGateway {
		t.Fatalf("default: gateway off %v, err %v", cfg.DisableGRPCGateway, err)
	}
	for _, tc := range []struct{ args, env []string }{
		{[]string{"--enable-grpc-gateway=false"}, nil},
		{nil, []string{"ETCD_ENABLE_GRPC_GATEWAY=false"}},
	} {
		if cfg, warnings, err := parseServe(tc.args, tc.env); err != nil || len(warnings) > 0 || !cfg.DisableGRPCGateway {
			t.Errorf("%v %v: gateway off %v, warnings %q, err %v", tc.args, tc.env, cfg.DisableGRPCGateway, warnings, err)
		}
	}
	if _, _, err := parseServe([]string{"--metrics", "all"}, nil); err == nil || !strings.Contains(err.Error(), `--metrics "all": use "basic" or "extensive"`) {
		t.Errorf("--metrics all: %v", err)
	}
}

func TestServeFlagsDefaults(t *testing.T) {
	cfg, warnings, err := parseServe(nil, nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("defaults: %v, warnings %q", err, warnings)
	}
	if cfg.Name != "default" || cfg.DataDir != "default.raftkv" ||
		cfg.ListenClientURLs[0] != "http://127.0.0.1:2379" || cfg.ListenPeerURLs[0] != "http://127.0.0.1:2380" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if got := cfg.InitialCluster["default"]; len(got) != 1 || got[0] != "http://127.0.0.1:2380" {
		t.Fatalf("default --initial-cluster: %v", cfg.InitialCluster)
	}
	if cfg.AutoCompactionMode != "periodic" || cfg.AutoCompactionRetention != "0" || cfg.WALDir != "" || cfg.ForceNewCluster || cfg.MaxResponseBytes != 0 {
		t.Fatalf("defaults of the operator flags: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config does not validate: %v", err)
	}
}

// TestServeOperatorFlags checks that etcd's operator flags reach server.Config.
func TestServeOperatorFlags(t *testing.T) {
	cfg, _, err := parseServe([]string{
		"--wal-dir", "/wal", "--force-new-cluster", "--auto-compaction-mode", "revision",
		"--auto-compaction-retention", "1000", "--max-response-bytes", "1048576", "--log-level", "debug",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WALDir != "/wal" || !cfg.ForceNewCluster || cfg.AutoCompactionMode != "revision" ||
		cfg.AutoCompactionRetention != "1000" || cfg.MaxResponseBytes != 1048576 {
		t.Fatalf("operator flags did not reach the config: %+v", cfg)
	}
	if !cfg.Logger.Enabled(t.Context(), -4) {
		t.Fatal("--log-level debug: the logger does not log at debug")
	}
	for _, retention := range []string{"0", "5", "1h", "30m"} {
		if _, _, err := parseServe([]string{"--auto-compaction-retention", retention}, nil); err != nil {
			t.Errorf("--auto-compaction-retention %s (periodic): %v", retention, err)
		}
	}
}

func TestServeFlagsRefuseBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{args: []string{"--initial-cluster", "a"}, want: "not name=URL"},
		{args: []string{"--name", "a", "--initial-cluster", "a=http://127.0.0.1:1", "--initial-advertise-peer-urls", "http://127.0.0.1:2"}, want: "make them agree"},
		{args: []string{"--heartbeat-interval", "0"}, want: "must be positive"},
		{args: []string{"--log-level", "loud"}, want: "--log-level"},
		{args: []string{"--log-format", "xml"}, want: "--log-format"},
		{args: []string{"--listen-client-urls", "http://127.0.0.1:99999"}, want: "port 99999 in \"http://127.0.0.1:99999\" is not a TCP port; use 1-65535"},
		{args: []string{"--initial-cluster", "default=http://127.0.0.1:70000"}, want: "port 70000"},
		{args: []string{"--auto-compaction-mode", "weekly"}, want: "use 'periodic' or 'revision'"},
		{args: []string{"--auto-compaction-retention", "1 hour"}, want: "is not a duration"},
		{args: []string{"--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"}, want: "not a number of revisions"},
		{args: []string{"--max-response-bytes", "-1"}, want: "is negative"},
		{args: []string{"--discovery", "https://discovery.example"}, want: "--discovery \"https://discovery.example\" (from the command line) cannot be served: raftkv has no discovery service"},
		{args: []string{"--self-signed-cert-validity", "0"}, want: "--self-signed-cert-validity 0"},
		{args: []string{"--client-cert-auth=maybe"}, want: "client-cert-auth"},
		{args: []string{"--pre-vote=false"}, want: "always runs Pre-Vote"},
		{args: []string{"--unsafe-no-fsync"}, want: "always fsyncs"},
		{env: []string{"ETCD_DISCOVERY_SRV=example.com"}, want: "(from ETCD_DISCOVERY_SRV) cannot be served"},
		{env: []string{"RAFTKV_NAME=a", "ETCD_NAME=b"}, want: `RAFTKV_NAME="a" and ETCD_NAME="b" disagree`},
		{env: []string{"ETCD_HEARTBEAT_INTERVAL=fast"}, want: `ETCD_HEARTBEAT_INTERVAL="fast" is not a valid --heartbeat-interval (int)`},
	} {
		_, _, err := parseServe(tc.args, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want an error containing %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// TestServeSourcesPrecedence checks flag > environment > config file > default, and
// that each override is reported (etcd would have ignored the flag or refused).
func TestServeSourcesPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "etcd.yaml")
	writeFile(t, file, `
name: from-file
data-dir: /data/from-file
snapshot-count: 500
heartbeat-interval: 50
election-timeout: 500
initial-cluster-state: new
force-new-cluster: true
log-outputs: [stderr]
auto-compaction-mode: revision
auto-compaction-retention: "100"
enable-v2: false
quota-backend-bytes: 8589934592
client-transport-security:
  cert-file:
  client-cert-auth: false
`)
	get := func(cfg server.Config) string {
		return cfg.Name + " " + cfg.DataDir
	}
	for _, tc := range []struct {
		what         string
		args, env    []string
		want         string
		wantWarnings []string
	}{
		{what: "default", want: "default default.raftkv"},
		{what: "file", args: []string{"--config-file", file}, want: "from-file /data/from-file",
			wantWarnings: []string{`unknown key "enable-v2" ignored`}},
		{what: "file named by ETCD_CONFIG_FILE", env: []string{"ETCD_CONFIG_FILE=" + file}, want: "from-file /data/from-file"},
		{what: "env over file", args: []string{"--config-file", file}, env: []string{"ETCD_NAME=from-env"}, want: "from-env /data/from-file",
			wantWarnings: []string{`--name "from-env" from ETCD_NAME overrides name: "from-file" in --config-file`}},
		{what: "RAFTKV_ and ETCD_ agreeing", env: []string{"RAFTKV_NAME=same", "ETCD_NAME=same"}, want: "same same.raftkv"},
		{what: "flag over env over file", args: []string{"--config-file", file, "--name", "from-flag"},
			env: []string{"RAFTKV_NAME=from-env", "RAFTKV_DATA_DIR=/data/from-env"}, want: "from-flag /data/from-env",
			wantWarnings: []string{`--name "from-flag" from the command line overrides RAFTKV_NAME="from-env"`,
				`--data-dir "/data/from-env" from RAFTKV_DATA_DIR overrides data-dir: "/data/from-file"`}},
		{what: "unknown variable", env: []string{"ETCD_NO_SUCH_FLAG=1"}, want: "default default.raftkv",
			wantWarnings: []string{"unrecognized environment variable ETCD_NO_SUCH_FLAG"}},
		{what: "ignored etcd flag", args: []string{"--memory-mlock", "--pre-vote"}, want: "default default.raftkv",
			wantWarnings: []string{`--memory-mlock "true" (from the command line) is accepted for etcd compatibility and ignored`,
				`--pre-vote "true" (from the command line) is accepted`}},
	} {
		cfg, warnings, err := parseServe(tc.args, tc.env)
		if err != nil {
			t.Errorf("%s: %v", tc.what, err)
			continue
		}
		if got := get(cfg); got != tc.want {
			t.Errorf("%s: name and data dir %q, want %q", tc.what, got, tc.want)
		}
		for _, w := range tc.wantWarnings {
			if !strings.Contains(strings.Join(warnings, "\n"), w) {
				t.Errorf("%s: no warning containing %q in %q", tc.what, w, warnings)
			}
		}
	}
	cfg, _, err := parseServe([]string{"--config-file", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SnapshotCount != 500 || cfg.HeartbeatInterval.Milliseconds() != 50 || cfg.ElectionTimeout.Milliseconds() != 500 ||
		!cfg.ForceNewCluster || cfg.AutoCompactionMode != "revision" || cfg.AutoCompactionRetention != "100" ||
		cfg.QuotaBackendBytes != 8589934592 {
		t.Fatalf("config file values did not all reach the config: %+v", cfg)
	}

	tls := filepath.Join(t.TempDir(), "tls.yaml")
	writeFile(t, tls, `
client-transport-security:
  cert-file: /etc/etcd/server.crt
  key-file: /etc/etcd/server.key
  client-cert-auth: true
  trusted-ca-file: /etc/etcd/ca.crt
  allowed-cn: [alice]
  no-such-key: 1
peer-transport-security:
  cert-file: /etc/etcd/peer.crt
  key-file: /etc/etcd/peer.key
  client-cert-auth: true
  trusted-ca-file: /etc/etcd/peer-ca.crt
  allowed-cn: [m1, m2]
  skip-client-san-verification: true
  auto-tls: false
cipher-suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
tls-min-version: TLS1.3
`)
	cfg, warnings, err := parseServe([]string{"--config-file", tls, "--peer-key-file", "/flag/peer.key"}, nil)
	if err != nil {
		t.Fatalf("TLS in the config file: %v", err)
	}
	wantClient := server.TLSInfo{CertFile: "/etc/etcd/server.crt", KeyFile: "/etc/etcd/server.key", ClientCertAuth: true,
		TrustedCAFile: "/etc/etcd/ca.crt", AllowedCNs: []string{"alice"}}
	wantPeer := server.TLSInfo{CertFile: "/etc/etcd/peer.crt", KeyFile: "/flag/peer.key", ClientCertAuth: true,
		TrustedCAFile: "/etc/etcd/peer-ca.crt", AllowedCNs: []string{"m1", "m2"}, SkipClientSANVerify: true}
	if !reflect.DeepEqual(cfg.ClientTLS, wantClient) || !reflect.DeepEqual(cfg.PeerTLS, wantPeer) ||
		!slices.Equal(cfg.CipherSuites, []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}) || cfg.TLSMinVersion != "TLS1.3" {
		t.Fatalf("TLS from the config file:\nclient %+v\npeer   %+v\nciphers %v, min %q", cfg.ClientTLS, cfg.PeerTLS, cfg.CipherSuites, cfg.TLSMinVersion)
	}
	for _, w := range []string{`unknown key "client-transport-security.no-such-key" ignored`,
		`--peer-key-file "/flag/peer.key" from the command line overrides peer-transport-security.key-file: "/etc/etcd/peer.key"`} {
		if !strings.Contains(strings.Join(warnings, "\n"), w) {
			t.Errorf("no warning containing %q in %q", w, warnings)
		}
	}
	if _, _, err := parseServe([]string{"--config-file", filepath.Join(t.TempDir(), "missing.yaml")}, nil); err == nil || !strings.Contains(err.Error(), "--config-file") {
		t.Fatalf("missing config file: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBadPortIsReportedBeforeTheDataDir: a port out of range is a usage error that
// names it, and the member does not create its data dir first.
func TestBadPortIsReportedBeforeTheDataDir(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "member")
	_, stderr, code := runCLI(t, nil, "--data-dir", dataDir, "--listen-client-urls", "http://127.0.0.1:99999")
	if code != exitBadArgs {
		t.Errorf("exit code %d, want %d", code, exitBadArgs)
	}
	want := "Error: --listen-client-urls: port 99999 in \"http://127.0.0.1:99999\" is not a TCP port; use 1-65535\nRun 'raftkv --help' for usage.\n"
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the data dir exists after a refused port (stat: %v)", err)
	}
}

// TestUnknownFlagIsOneLineAndAHint: no usage dump, the exit code of a bad command line.
func TestUnknownFlagIsOneLineAndAHint(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "Error: unknown flag: --no-such-flag\nRun 'raftkv --help' for usage.\n"},
		{[]string{"get", "foo", "--no-such-flag"}, "Error: unknown flag: --no-such-flag\nRun 'raftkv get --help' for usage.\n"},
		{[]string{"cluster", "--no-such-flag"}, "Error: unknown flag: --no-such-flag\nRun 'raftkv cluster --help' for usage.\n"},
		{[]string{"gte", "foo"}, "Error: unknown command \"gte\"; did you mean \"get\"? (commands: cluster, put, get, del, watch, lease, status, member, snapshot; flags start with --)\nRun 'raftkv --help' for usage.\n"},
		{[]string{"put", "foo"}, "Error: raftkv put takes 2 argument(s) (KEY VALUE), got 1: [\"foo\"]\nRun 'raftkv put --help' for usage.\n"},
	} {
		stdout, stderr, code := runCLI(t, nil, tc.args...)
		if code != exitBadArgs || stderr != tc.want || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr\n%q\nwant exit %d and stderr\n%q", tc.args, code, stdout, stderr, exitBadArgs, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	stdout, stderr, code := runCLI(t, nil, "--version")
	if code != 0 || stdout != version.String() || stderr != "" {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, version.String())
	}
}

// TestHelpIsInEtcdStyle: each flag as --name 'default' with its meaning below, as
// etcd --help prints it, and the unserved etcd flags hidden.
func TestHelpIsInEtcdStyle(t *testing.T) {
	stdout, _, code := runCLI(t, nil, "--help")
	for _, want := range []string{
		"\n  --name 'default'\n    Human-readable name for this member",
		"\n  --data-dir '${name}.raftkv'\n",
		"\n  --force-new-cluster\n    Start this member",
		"\n  raftkv cluster [flags] [-- member flags]\n",
		"\n  raftkv --version\n",
		"\nSecurity:\n  --cert-file ''\n    Path to the client server TLS cert file",
		"\n  --tls-min-version 'TLS1.2'\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("raftkv --help has no %q", want)
		}
	}
	if code != 0 || strings.Contains(stdout, "--memory-mlock") || strings.Contains(stdout, "--name string") {
		t.Errorf("raftkv --help: exit %d, or it shows a hidden flag or cobra's layout:\n%s", code, stdout)
	}
	stdout, _, _ = runCLI(t, nil, "get", "--help")
	if !strings.Contains(stdout, "\n  --endpoints '127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379'\n") ||
		!strings.Contains(stdout, "\n  -w, --write-out 'simple'\n") || !strings.Contains(stdout, "\n  --prefix\n") {
		t.Errorf("raftkv get --help:\n%s", stdout)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"a": "b", "a\xff": "b", "\xff\xff": "\x00"} {
		if got := string(prefixEnd([]byte(in))); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReadmeEtcdFlagTable: README.md's table of etcd's flags says of each flag what
// the code does (served, ignored, refused), and lists each flag the code knows once.
func TestReadmeEtcdFlagTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| (served|ignored|refused)[^|]*\\|").FindAllStringSubmatch(string(readme), -1) {
		if _, dup := rows[m[1]]; dup {
			t.Errorf("README.md lists --%s twice", m[1])
		}
		rows[m[1]] = m[2]
	}
	want := map[string]string{}
	f := &serveFlags{}
	fs := pflag.NewFlagSet("raftkv", pflag.ContinueOnError)
	f.register(fs)
	for _, name := range servedEtcdFlags {
		want[name] = "served"
		if flag := fs.Lookup(name); name != "version" && (flag == nil || flag.Hidden) {
			t.Errorf("--%s is listed as served but the member has no visible flag of that name", name)
		}
	}
	for _, e := range etcdFlags {
		want[e.name] = "ignored"
		if e.refused {
			want[e.name] = "refused"
		}
	}
	for name, disposition := range want {
		if rows[name] != disposition {
			t.Errorf("README.md says --%s is %q; the code: %s", name, rows[name], disposition)
		}
	}
	for name := range rows {
		if want[name] == "" {
			t.Errorf("README.md lists --%s, which the code does not know as an etcd flag", name)
		}
	}
}

// TestServeTLSFlags: etcd's TLS flags reach server.Config.
func TestServeTLSFlags(t *testing.T) {
	cfg, warnings, err := parseServe([]string{
		"--listen-client-urls", "https://127.0.0.1:2379", "--cert-file", "s.crt", "--key-file", "s.key",
		"--trusted-ca-file", "ca.crt", "--client-cert-auth", "--client-crl-file", "c.crl", "--client-cert-allowed-hostname", "a.example,b.example",
		"--peer-cert-file", "p.crt", "--peer-key-file", "p.key", "--peer-client-cert-file", "pc.crt", "--peer-client-key-file", "pc.key",
		"--peer-trusted-ca-file", "pca.crt", "--peer-client-cert-auth", "--peer-cert-allowed-cn", "m1, m2",
		"--peer-skip-client-san-verification", "--peer-crl-file", "p.crl", "--auto-tls", "--peer-auto-tls",
		"--self-signed-cert-validity", "3", "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"--tls-min-version", "TLS1.2", "--tls-max-version", "TLS1.3",
	}, nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("%v, warnings %q", err, warnings)
	}
	wantClient := server.TLSInfo{CertFile: "s.crt", KeyFile: "s.key", TrustedCAFile: "ca.crt", ClientCertAuth: true, CRLFile: "c.crl",
		AllowedHostnames: []string{"a.example", "b.example"}, AutoTLS: true}
	wantPeer := server.TLSInfo{CertFile: "p.crt", KeyFile: "p.key", ClientCertFile: "pc.crt", ClientKeyFile: "pc.key", TrustedCAFile: "pca.crt",
		ClientCertAuth: true, CRLFile: "p.crl", AllowedCNs: []string{"m1", "m2"}, SkipClientSANVerify: true, AutoTLS: true}
	if !reflect.DeepEqual(cfg.ClientTLS, wantClient) || !reflect.DeepEqual(cfg.PeerTLS, wantPeer) {
		t.Fatalf("client %+v\npeer   %+v", cfg.ClientTLS, cfg.PeerTLS)
	}
	if len(cfg.CipherSuites) != 2 || cfg.TLSMinVersion != "TLS1.2" || cfg.TLSMaxVersion != "TLS1.3" || cfg.SelfSignedCertValidity != 3 {
		t.Fatalf("ciphers %v, versions %q-%q, validity %d", cfg.CipherSuites, cfg.TLSMinVersion, cfg.TLSMaxVersion, cfg.SelfSignedCertValidity)
	}
}

// TestServeRaftFlags: --raft-append-to-all and --raft-read-index-to-all reach
// server.Config (off by default) from the command line, the environment and a config
// file.
func TestServeRaftFlags(t *testing.T) {
	check := func(what string, args, env []string, appendToAll, readIndexToAll bool) {
		t.Helper()
		cfg, _, err := parseServe(args, env)
		if err != nil || cfg.AppendToAll != appendToAll || cfg.ReadIndexToAll != readIndexToAll {
			t.Errorf("%s: AppendToAll %v, ReadIndexToAll %v, %v; want %v and %v", what, cfg.AppendToAll, cfg.ReadIndexToAll, err, appendToAll, readIndexToAll)
		}
	}
	check("defaults", nil, nil, false, false)
	check("flags", []string{"--raft-append-to-all", "--raft-read-index-to-all"}, nil, true, true)
	check("one flag", []string{"--raft-read-index-to-all=true"}, nil, false, true)
	check("environment", nil, []string{"RAFTKV_RAFT_APPEND_TO_ALL=true"}, true, false)
	file := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(file, []byte("raft-append-to-all: true\nraft-read-index-to-all: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("config file", []string{"--config-file", file}, nil, true, false)
	if _, _, err := parseServe([]string{"--raft-append-to-all=sometimes"}, nil); err == nil {
		t.Error("--raft-append-to-all=sometimes was taken")
	}
}

// TestServeWatchAndLeaseFlags: --watch-progress-notify-interval (and etcd 3.5's
// --experimental- name for it) and --lease-checkpoint-interval reach server.Config
// from the command line, the environment and a config file (whose durations etcd
// writes in nanoseconds), with etcd's defaults.
func TestServeWatchAndLeaseFlags(t *testing.T) {
	check := func(what string, args, env []string, progress, checkpoint time.Duration) {
		t.Helper()
		cfg, _, err := parseServe(args, env)
		if err != nil || cfg.WatchProgressNotifyInterval != progress || cfg.LeaseCheckpointInterval != checkpoint {
			t.Errorf("%s: progress %v, checkpoint %v, %v; want %v and %v", what, cfg.WatchProgressNotifyInterval, cfg.LeaseCheckpointInterval, err, progress, checkpoint)
		}
	}
	check("defaults", nil, nil, 10*time.Minute, 5*time.Minute)
	check("flags", []string{"--watch-progress-notify-interval", "30s", "--lease-checkpoint-interval", "2m"}, nil, 30*time.Second, 2*time.Minute)
	check("etcd 3.5's flag", []string{"--experimental-watch-progress-notify-interval=1m"}, nil, time.Minute, 5*time.Minute)
	check("environment", nil, []string{"ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL=5s", "RAFTKV_LEASE_CHECKPOINT_INTERVAL=90s"}, 5*time.Second, 90*time.Second)
	file := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(file, []byte("watch-progress-notify-interval: 600000000000\nlease-checkpoint-interval: 10s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check("config file", []string{"--config-file", file}, nil, 10*time.Minute, 10*time.Second)

	if _, _, err := parseServe([]string{"--watch-progress-notify-interval", "often"}, nil); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Errorf("--watch-progress-notify-interval often: %v", err)
	}
	cfg, _, err := parseServe([]string{"--lease-checkpoint-interval", "500ms"}, nil)
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "--lease-checkpoint-interval 500ms is too short") {
		t.Errorf("--lease-checkpoint-interval 500ms: %v", err)
	}
	// The old name is taken, and said to be deprecated.
	_, stderr, _ := runCLI(t, nil, "--experimental-watch-progress-notify-interval", "often")
	if !strings.Contains(stderr, "not a duration") {
		t.Errorf("--experimental-watch-progress-notify-interval often: %q", stderr)
	}
}

// TestServeAuthFlags: etcd's auth flags reach server.Config, and the values the
// server refuses are refused at start with the flag named.
func TestServeAuthFlags(t *testing.T) {
	cfg, warnings, err := parseServe([]string{"--auth-token", "simple", "--auth-token-ttl", "60", "--bcrypt-cost", "12"}, nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("%v, warnings %q", err, warnings)
	}
	if cfg.AuthToken != "simple" || cfg.AuthTokenTTL.Seconds() != 60 || cfg.BcryptCost != 12 {
		t.Fatalf("auth config: %q %v %d", cfg.AuthToken, cfg.AuthTokenTTL, cfg.BcryptCost)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth-token", "jwt,pub-key=a.pub,priv-key=a.key,sign-method=RS256"}, "--auth-token"},
		{[]string{"--auth-token", "opaque"}, "unknown token type"},
		{[]string{"--bcrypt-cost", "3"}, "--bcrypt-cost 3"},
		{[]string{"--auth-token-ttl", "0"}, "--auth-token-ttl 0"},
	} {
		cfg, _, err := parseServe(c.args, nil)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %q", c.args, err, c.want)
		}
	}
}

// TestQuotaAndCorruptCheckFlags: etcd 3.7's --quota-backend-bytes and
// --corrupt-check-time, raftkv's --initial-corrupt-check, and etcd 3.5's
// --experimental- names reach server.Config.
func TestQuotaAndCorruptCheckFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		quota   int64
		initial bool
		every   time.Duration
	}{
		{nil, 0, false, 0},
		{[]string{"--quota-backend-bytes", "1048576", "--corrupt-check-time", "3m", "--initial-corrupt-check"}, 1 << 20, true, 3 * time.Minute},
		{[]string{"--experimental-corrupt-check-time=1m", "--experimental-initial-corrupt-check"}, 0, true, time.Minute},
	} {
		cfg, _, err := parseServe(tc.args, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if cfg.QuotaBackendBytes != tc.quota || cfg.InitialCorruptCheck != tc.initial || cfg.CorruptCheckTime != tc.every {
			t.Errorf("%q: quota %d, initial check %v, every %v; want %d, %v, %v", tc.args, cfg.QuotaBackendBytes,
				cfg.InitialCorruptCheck, cfg.CorruptCheckTime, tc.quota, tc.initial, tc.every)
		}
	}
}
