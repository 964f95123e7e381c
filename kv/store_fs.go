package kv

import "github.com/cockroachdb/pebble/v2/vfs"

// OpenStoreFS is OpenStore with the engine's files on fs; nil is the operating
// system's. Crash tests pass a file system that loses what was not synced.
func OpenStoreFS(cfg Config, dir string, fs vfs.FS) (*Store, error) {
	return openStore(cfg, dir, fs)
}

// OpenStoreToRestoreFS opens, to restore a snapshot into it again, the store in
// dir whose engine a restore was cut off in (OpenStoreFS refuses it with
// ErrRestoreCutOff). The store holds nothing (its applied index is 0) and fails
// every call but RestoreFrom, RestoreFromTables, Meta and Close until a restore
// succeeds. An engine that was not cut off opens as OpenStoreFS opens it.
func OpenStoreToRestoreFS(cfg Config, dir string, fs vfs.FS) (*Store, error) {
	return openStoreMode(cfg, dir, fs, true)
}
