package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"raftkv/internal/testport"
)

// TestMaxResponseBytesHelp: --max-response-bytes's help says what the member does
// with a larger range (refuses it; read it in pages) and what 0 means.
func TestMaxResponseBytesHelp(t *testing.T) {
	stdout, _, code := runCLI(t, nil, "--help")
	_, after, ok := strings.Cut(stdout, "\n  --max-response-bytes '0'\n")
	if code != 0 || !ok {
		t.Fatalf("raftkv --help: exit %d, no --max-response-bytes:\n%s", code, stdout)
	}
	help, _, _ := strings.Cut(after, "\n  --")
	for _, want := range []string{"refused", "ResourceExhausted", "in pages", "limit", "(0: 512 MiB)"} {
		if !strings.Contains(help, want) {
			t.Errorf("--max-response-bytes help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "more=true") {
		t.Errorf("--max-response-bytes help still says a larger range answers with more=true:\n%s", help)
	}
}

// TestDurationFlagsRefuseABareNumber: a duration without a unit would be nanoseconds
// ("5" a 5ns ticker); etcd refuses it on the command line and in the environment,
// and so does the member, naming the flag and the value. etcd's YAML config file
// gives durations in nanoseconds, and they still mean that there; 0 needs no unit.
func TestDurationFlagsRefuseABareNumber(t *testing.T) {
	for _, tc := range []struct {
		args, env []string
		want      string
	}{
		{args: []string{"--corrupt-check-time", "5"}, want: `invalid argument "5" for "--corrupt-check-time" flag: "5" has no unit; give e.g. 5s`},
		{args: []string{"--watch-progress-notify-interval", "10"}, want: `"10" for "--watch-progress-notify-interval" flag: "10" has no unit`},
		{args: []string{"--lease-checkpoint-interval=1.5"}, want: `"1.5" has no unit`},
		{args: []string{"--experimental-corrupt-check-time", "60"}, want: `"60" has no unit`},
		{env: []string{"ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL=10"}, want: `ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL="10" is not a valid --watch-progress-notify-interval (duration)`},
		{env: []string{"RAFTKV_CORRUPT_CHECK_TIME=5"}, want: `"5" has no unit; give e.g. 5s`},
	} {
		// --log-level loud fails after the durations are read, so that a member
		// that took the duration is refused too rather than started.
		stdout, stderr, code := runCLI(t, tc.env, append(tc.args, "--log-level", "loud")...)
		if code != exitBadArgs || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 2 || stdout != "" {
			t.Errorf("%q %q: exit %d, stderr %q; want exit %d and %q", tc.args, tc.env, code, stderr, exitBadArgs, tc.want)
		}
	}
	for _, tc := range []struct {
		args, env []string
		want      time.Duration
	}{
		{args: []string{"--corrupt-check-time", "0"}, want: 0},
		{args: []string{"--corrupt-check-time", "5s"}, want: 5 * time.Second},
		{env: []string{"ETCD_CORRUPT_CHECK_TIME=2m"}, want: 2 * time.Minute},
	} {
		cfg, _, err := parseServe(tc.args, tc.env)
		if err != nil || cfg.CorruptCheckTime != tc.want {
			t.Errorf("%q %q: %v, corrupt check every %v; want %v", tc.args, tc.env, err, cfg.CorruptCheckTime, tc.want)
		}
	}
	file := filepath.Join(t.TempDir(), "etcd.yaml")
	writeFile(t, file, "corrupt-check-time: 5000000000\nwatch-progress-notify-interval: 0\nlease-checkpoint-interval: 90s\n")
	cfg, _, err := parseServe([]string{"--config-file", file}, nil)
	if err != nil || cfg.CorruptCheckTime != 5*time.Second || cfg.WatchProgressNotifyInterval != 0 || cfg.LeaseCheckpointInterval != 90*time.Second {
		t.Errorf("config file durations: %v; corrupt check %v, progress %v, checkpoint %v; want 5s, 0 and 1m30s",
			err, cfg.CorruptCheckTime, cfg.WatchProgressNotifyInterval, cfg.LeaseCheckpointInterval)
	}
	writeFile(t, file, "corrupt-check-time: \"5\"\n")
	if _, _, err := parseServe([]string{"--config-file", file}, nil); err == nil || !strings.Contains(err.Error(), `"5" has no unit`) {
		t.Errorf("config file corrupt-check-time: \"5\" (a string, which etcd refuses too): %v", err)
	}
}

// TestBackendSizesAreRefusedBeforeTheDataDir: a store engine size out of range is a
// usage error (exit 2) that names the flag, the value and the range, and the member
// does not create its data dir first.
func TestBackendSizesAreRefusedBeforeTheDataDir(t *testing.T) {
	for _, tc := range []struct {
		flag, value, want string
	}{
		{"--backend-cache-bytes", "-1", "Error: --backend-cache-bytes -1 is out of range; give between 1048576 (1 MiB) and 1099511627776 (1 TiB) bytes, or 0 for the default (64 MiB)\n"},
		{"--backend-memtable-bytes", "1", "Error: --backend-memtable-bytes 1 is out of range; give between 1048576 (1 MiB) and 1073741824 (1 GiB) bytes, or 0 for the default (32 MiB)\n"},
		{"--backend-separate-value-bytes", "-7", "Error: --backend-separate-value-bytes -7 is out of range; give a size in bytes (1 or more), 0 for the default (128) or -1 to keep every value with its version\n"},
	} {
		ports := testport.Free(t, 2)
		client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		dataDir := filepath.Join(t.TempDir(), "member")
		_, stderr, code := runCLI(t, nil, "--data-dir", dataDir, "--listen-client-urls", client, "--listen-peer-urls", peer, tc.flag, tc.value)
		if code != exitBadArgs || stderr != tc.want+"Run 'raftkv --help' for usage.\n" {
			t.Errorf("%s %s: exit %d, stderr\n%q\nwant exit %d and\n%q", tc.flag, tc.value, code, stderr, exitBadArgs, tc.want)
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("%s %s: the data dir exists after the refusal (stat: %v)", tc.flag, tc.value, err)
		}
	}
}

// TestURLWithoutSchemeSaysToAddOne: a URL flag written as host:port is refused with
// what to add, not Go's "first path segment in URL cannot contain colon" (nor with
// the host taken for a scheme).
func TestURLWithoutSchemeSaysToAddOne(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen-client-urls", "127.0.0.1:2379"}, `--listen-client-urls: "127.0.0.1:2379" has no scheme; add http:// or https:// (with TLS), e.g. http://127.0.0.1:2379`},
		{[]string{"--listen-peer-urls", "localhost:2380"}, `--listen-peer-urls: "localhost:2380" has no scheme; add http:// or https://`},
		{[]string{"--initial-cluster", "default=127.0.0.1:2380"}, `--initial-cluster: "127.0.0.1:2380" has no scheme; add http:// or https://`},
		{[]string{"--advertise-client-urls", "http://127.0.0.1:2379,10.0.0.1:2379"}, `--advertise-client-urls: "10.0.0.1:2379" has no scheme`},
	} {
		_, _, err := parseServe(tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestNumberFlagsSayWhatNumberTheyWant: a size with a unit, a negative count or a
// duration given to a millisecond flag is refused with the flag, the value and the
// plain number wanted, not strconv's "invalid syntax"; plain numbers still work.
func TestNumberFlagsSayWhatNumberTheyWant(t *testing.T) {
	for _, tc := range []struct {
		args, env []string
		want      string
	}{
		{args: []string{"--quota-backend-bytes", "8GB"}, want: `invalid argument "8GB" for "--quota-backend-bytes" flag: "8GB" has a unit; give a plain number of bytes, e.g. 8589934592 for 8 GiB`},
		{args: []string{"--backend-cache-bytes", "64MiB"}, want: `"64MiB" has a unit; give a plain number of bytes, e.g. 67108864 for 64 MiB`},
		{args: []string{"--max-request-bytes=2M"}, want: `"2M" has a unit; give a plain number of bytes, e.g. 2097152 for 2 MiB`},
		{args: []string{"--snapshot-count", "-1"}, want: `invalid argument "-1" for "--snapshot-count" flag: "-1" is negative; give a plain number of entries, 0 or more`},
		{args: []string{"--snapshot-count", "10k"}, want: `"10k" is not a plain number of entries; give digits only, without a unit`},
		{args: []string{"--heartbeat-interval", "100ms"}, want: `"100ms" is not a plain number of milliseconds`},
		{args: []string{"--auth-token-ttl", "5m"}, want: `"5m" is not a plain number of seconds`},
		{args: []string{"--max-response-bytes", "99999999999999999999"}, want: `is too large; give a number of bytes up to`},
		{env: []string{"ETCD_QUOTA_BACKEND_BYTES=8G"}, want: `ETCD_QUOTA_BACKEND_BYTES="8G" is not a valid --quota-backend-bytes (int64): `},
		{env: []string{"ETCD_QUOTA_BACKEND_BYTES=8G"}, want: `"8G" has a unit; give a plain number of bytes, e.g. 8589934592 for 8 GiB`},
	} {
		// --log-level loud fails after the numbers are read: nothing starts.
		stdout, stderr, code := runCLI(t, tc.env, append(tc.args, "--log-level", "loud")...)
		if code != exitBadArgs || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "strconv") || stdout != "" {
			t.Errorf("%q %q: exit %d, stderr %q; want exit %d and %q", tc.args, tc.env, code, stderr, exitBadArgs, tc.want)
		}
	}
	cfg, _, err := parseServe([]string{"--quota-backend-bytes", "8589934592", "--backend-separate-value-bytes", "-1",
		"--snapshot-count", "0x10", "--heartbeat-interval", "50", "--election-timeout", "500", "--auth-token-ttl", "60"}, nil)
	if err != nil || cfg.QuotaBackendBytes != 8<<30 || cfg.BackendSeparateValueBytes != -1 || cfg.SnapshotCount != 16 ||
		cfg.HeartbeatInterval != 50*time.Millisecond || cfg.ElectionTimeout != 500*time.Millisecond || cfg.AuthTokenTTL != time.Minute {
		t.Errorf("plain numbers: %v; %+v", err, cfg)
	}
}

// TestMemberPeerURLsAreCheckedBeforeTheCall: member add and update check --peer-urls
// themselves and say what is wrong (exit 2), rather than sending them and printing
// the server's "given member URLs are invalid".
func TestMemberPeerURLsAreCheckedBeforeTheCall(t *testing.T) {
	dead := deadEndpoints(t, 1)[0]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"member", "add", "x", "--peer-urls", "10.0.0.4:2380"}, `--peer-urls: "10.0.0.4:2380" has no scheme; add http:// or https:// (with TLS), e.g. http://10.0.0.4:2380`},
		{[]string{"member", "add", "x", "--peer-urls", "http://10.0.0.4:2380,10.0.0.5:2380"}, `"10.0.0.5:2380" has no scheme`},
		{[]string{"member", "add", "x", "--peer-urls", "http://10.0.0.4"}, `"http://10.0.0.4" needs a host and a port`},
		{[]string{"member", "add", "x", "--peer-urls", "http://10.0.0.4:2380/peer"}, `has more than scheme://host:port`},
		{[]string{"member", "add", "x", "--peer-urls", "unix://10.0.0.4:2380"}, `scheme "unix" is not served; use http:// or https://`},
		{[]string{"member", "add", "x", "--peer-urls", "http://10.0.0.4:70000"}, `port 70000 in "http://10.0.0.4:70000" is not a TCP port`},
		{[]string{"member", "update", "8e9e05c52164694d", "--peer-urls", "10.0.0.4:2380"}, `--peer-urls: "10.0.0.4:2380" has no scheme`},
	} {
		stdout, stderr, code := runCLI(t, nil, append(tc.args, "--endpoints", dead, "--dial-timeout", "100ms")...)
		if code != exitBadArgs || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, exitBadArgs, tc.want)
		}
	}
}

// TestMalformedEndpointIsNamed: an endpoint that is not host:port is refused before
// any dial with what is wrong (exit 2), not gRPC's "name resolver error: produced
// zero addresses".
func TestMalformedEndpointIsNamed(t *testing.T) {
	dead := deadEndpoints(t, 1)[0]
	for _, tc := range []struct {
		endpoints, want string
	}{
		{"http//bad", `--endpoints "http//bad" is malformed: missing port in address; give host:port, http://host:port or https://host:port`},
		{dead + ",http//bad", `--endpoints "http//bad" is malformed`},
		{"http://127.0.0.1:99999", `--endpoints "http://127.0.0.1:99999" is malformed: port "99999" is not a TCP port`},
		{":2379", `--endpoints ":2379" is malformed: no host`},
		{"127.0.0.1:2379/v3", `--endpoints "127.0.0.1:2379/v3" is malformed`},
	} {
		stdout, stderr, code := runCLI(t, nil, "get", "foo", "--endpoints", tc.endpoints, "--dial-timeout", "100ms")
		if code != exitBadArgs || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("--endpoints %q: exit %d, stderr %q; want exit %d and %q", tc.endpoints, code, stderr, exitBadArgs, tc.want)
		}
	}
}
