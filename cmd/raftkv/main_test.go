package main

import (
	"strings"
	"testing"
)

func TestServeFlagsDefaults(t *testing.T) {
	f, _, err := parseServeFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "default" || cfg.DataDir != "default.raftkv" ||
		cfg.ListenClientURLs[0] != "http://127.0.0.1:2379" || cfg.ListenPeerURLs[0] != "http://127.0.0.1:2380" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if got := cfg.InitialCluster["default"]; len(got) != 1 || got[0] != "http://127.0.0.1:2380" {
		t.Fatalf("default --initial-cluster: %v", cfg.InitialCluster)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config does not validate: %v", err)
	}
}

func TestServeFlagsRefuseBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--initial-cluster", "a"}, "not name=URL"},
		{[]string{"--name", "a", "--initial-cluster", "a=http://127.0.0.1:1", "--initial-advertise-peer-urls", "http://127.0.0.1:2"}, "make them agree"},
		{[]string{"--heartbeat-interval", "0"}, "must be positive"},
		{[]string{"--log-level", "loud"}, "--log-level"},
	} {
		f, _, err := parseServeFlags(tc.args)
		if err == nil {
			_, err = f.config()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	if code := run([]string{"--no-such-flag"}); code != 2 {
		t.Errorf("unknown flag exits %d, want 2", code)
	}
	if code := run([]string{"--election-timeout", "100", "--heartbeat-interval", "100", "--data-dir", t.TempDir()}); code != 2 && code != 1 {
		t.Errorf("election timeout equal to the heartbeat exits %d, want non-zero", code)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{"a": "b", "a\xff": "b", "\xff\xff": "\x00"} {
		if got := string(prefixEnd([]byte(in))); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReorderFlags(t *testing.T) {
	got := strings.Join(reorderFlags([]string{"foo", "--prefix", "--endpoints", "x:1"}), " ")
	if got != "--prefix --endpoints x:1 foo" {
		t.Fatalf("reorderFlags = %q", got)
	}
}
