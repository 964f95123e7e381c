package server

import (
	"strings"
	"testing"
)

// TestValidateBackendSizes: the store engine's sizes out of range are refused by
// Validate, naming the flag, the value and the range, before the store opens
// (which refused them only after the data dir was made).
func TestValidateBackendSizes(t *testing.T) {
	base := Config{DataDir: t.TempDir(), ListenClientURLs: []string{"http://127.0.0.1:2379"},
		AdvertiseClientURLs: []string{"http://127.0.0.1:2379"}, ListenPeerURLs: []string{"http://127.0.0.1:2380"},
		InitialCluster: map[string][]string{DefaultName: {"http://127.0.0.1:2380"}}}
	if err := base.Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tc := range []struct {
		set  func(*Config)
		want string // "" for valid
	}{
		{func(c *Config) { c.BackendCacheBytes = -1 }, "--backend-cache-bytes -1 is out of range; give between 1048576 (1 MiB) and 1099511627776 (1 TiB) bytes, or 0 for the default (64 MiB)"},
		{func(c *Config) { c.BackendCacheBytes = 1<<40 + 1 }, "--backend-cache-bytes 1099511627777 is out of range"},
		{func(c *Config) { c.BackendMemTableBytes = 1 }, "--backend-memtable-bytes 1 is out of range; give between 1048576 (1 MiB) and 1073741824 (1 GiB) bytes, or 0 for the default (32 MiB)"},
		{func(c *Config) { c.BackendSeparateValueBytes = -7 }, "--backend-separate-value-bytes -7 is out of range; give a size in bytes (1 or more), 0 for the default (128) or -1"},
		{func(c *Config) {
			c.BackendCacheBytes, c.BackendMemTableBytes, c.BackendSeparateValueBytes = 1<<20, 1<<30, -1
		}, ""},
		{func(c *Config) { c.BackendCacheBytes, c.BackendSeparateValueBytes = 1<<40, 1 }, ""},
	} {
		c := base
		tc.set(&c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("cache %d, memtable %d, separate %d: %v", c.BackendCacheBytes, c.BackendMemTableBytes, c.BackendSeparateValueBytes, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
}
