package transport

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := Config{ID: 1, ClusterID: 7, Peers: map[uint64]string{1: "127.0.0.1:7001", 2: "node2.example:7001"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"zero id", func(c *Config) { c.ID = 0 }, "ID is 0"},
		{"zero cluster", func(c *Config) { c.ClusterID = 0 }, "ClusterID is 0"},
		{"zero peer id", func(c *Config) { c.Peers = map[uint64]string{0: "a:1"} }, "holds id 0"},
		{"no port", func(c *Config) { c.Peers = map[uint64]string{2: "node2"} }, `Peers[2] = "node2"`},
		{"port 0", func(c *Config) { c.Peers = map[uint64]string{2: "node2:0"} }, "not a fixed port"},
		{"no host", func(c *Config) { c.Peers = map[uint64]string{2: ":7001"} }, "host is empty"},
		{"tiny frames", func(c *Config) { c.MaxFrameBytes = 100 }, "MaxFrameBytes 100 is outside"},
		{"huge frames", func(c *Config) { c.MaxFrameBytes = 2 << 30 }, "is outside"},
		{"negative queue", func(c *Config) { c.SendQueueLen = -1 }, "SendQueueLen -1"},
		{"chunk over frame", func(c *Config) { c.MaxFrameBytes = 1 << 20; c.SnapshotChunkBytes = 2 << 20 }, "at most MaxFrameBytes"},
		{"negative snapshot limit", func(c *Config) { c.MaxSnapshotBytes = -1 }, "MaxSnapshotBytes -1"},
		{"negative timeout", func(c *Config) { c.IOTimeout = -time.Second }, "IOTimeout -1s"},
		{"backoff inverted", func(c *Config) { c.MinBackoff = time.Second; c.MaxBackoff = time.Millisecond }, "MinBackoff <= MaxBackoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, err := New(cfg, newFakeHandler()); err == nil {
				t.Fatalf("New accepted a config Validate refuses")
			}
		})
	}
	if _, err := New(good, nil); err == nil || !strings.Contains(err.Error(), "Handler") {
		t.Fatalf("New with a nil handler = %v, want an error naming the Handler", err)
	}
	// A small MaxFrameBytes alone must not make the default chunk size invalid.
	if err := (Config{ID: 1, ClusterID: 1, MaxFrameBytes: 64 << 10}).Validate(); err != nil {
		t.Fatalf("small MaxFrameBytes with default chunks: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 10 * time.Millisecond, max: 80 * time.Millisecond}
	for i, step := range []time.Duration{10, 20, 40, 80, 80, 80} {
		step *= time.Millisecond
		for range 20 {
			bb := b
			if d := bb.next(); d < step/2 || d > step {
				t.Fatalf("attempt %d: wait %v, want within [%v, %v]", i, d, step/2, step)
			}
		}
		b.next()
	}
	b.reset()
	if d := b.next(); d > 10*time.Millisecond {
		t.Fatalf("after reset: wait %v, want at most the minimum", d)
	}
}

func TestOutageLogWarnsOnChange(t *testing.T) {
	var o outageLog
	now := time.Now()
	refused := fmt.Errorf("handshake with x: %w: wrong cluster", ErrHandshake)
	steps := []struct {
		err      error
		after    time.Duration
		wantWarn bool
	}{
		{errors.New("connection refused"), 0, true},
		{errors.New("i/o timeout"), time.Second, false},
		{refused, time.Second, true},
		{refused, time.Second, false},
		{refused, outageReminderInterval, true},
		{errors.New("connection refused"), time.Second, true},
	}
	for i, s := range steps {
		now = now.Add(s.after)
		if got := o.shouldWarn(s.err, now); got != s.wantWarn {
			t.Fatalf("step %d (%v): warn %v, want %v", i, s.err, got, s.wantWarn)
		}
	}
}
