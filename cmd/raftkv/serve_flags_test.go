package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
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
