package kv

import "github.com/cockroachdb/pebble/v2/vfs"

// OpenStoreFS is OpenStore with the engine's files on fs; nil is the operating
// system's. Crash tests pass a file system that loses what was not synced.
func OpenStoreFS(cfg Config, dir string, fs vfs.FS) (*Store, error) {
	return openStore(cfg, dir, fs)
}
