package kv

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

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
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := openEngineForRestore(dir, cfg.engineConfig(fs))
	if err != nil {
		return nil, err
	}
	restoring, err := e.getMeta(metaRestoring)
	if err == nil && restoring != nil {
		// What the cut-off restore left (nothing, or some of the snapshot's
		// records) goes, so that the tables below read as those of an empty store.
		err = e.markRestoring()
	}
	var st *state
	if err == nil {
		st, err = loadState(cfg, e)
	}
	if err != nil {
		_ = e.close()
		return nil, err
	}
	if restoring != nil {
		st.failed = fmt.Errorf("%w: engine in %q; it must be restored before use", ErrRestoreCutOff, dir)
	}
	s := &Store{cfg: cfg}
	s.mu.st = st
	return s, nil
}
