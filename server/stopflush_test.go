package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/kv"
	"raftkv/storage"
)

// TestGracefulStopFlushesTheStore: a member stopped gracefully has made durable
// everything it applied, so that its restart replays none of the log: its store,
// opened on its own, holds the last acknowledged write. The store writes without
// a WAL of its own, so without the flush the writes since the last log compaction
// would be in the raft log alone.
func TestGracefulStopFlushesTheStore(t *testing.T) {
	dir := t.TempDir()
	cfg := crashConfig(t, dir, nil)
	cfg.SnapshotCount = 10000 // no log compaction, and so no flush, before the stop
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &testMember{cfg: cfg}
	m.connect(t, srv)
	const n = 20
	for i := range n {
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte(fmt.Sprintf("k%02d", i)), Value: []byte("v")})
			return err
		})
	}
	m.stop()

	s, err := kv.OpenStore(kv.Config{}, storeDir(filepath.Join(dir, "member")))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := s.RangeAs(kv.AuthInfo{}, &kv.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != n {
		t.Fatalf("the store of a member stopped gracefully holds %d of the %d keys written (applied index %d)", len(resp.Kvs), n, s.AppliedIndex())
	}
}

// TestStopSaysWhenItsFlushFails: a flush at a graceful stop that fails (here the
// store's new tables cannot be created) is said in the member's log, once, not
// lost: the member stops all the same, and its restart replays the log.
func TestStopSaysWhenItsFlushFails(t *testing.T) {
	var failing atomic.Bool
	storeFS := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	cfg := crashConfig(t, t.TempDir(), &memberFiles{log: storage.NewMemFS(), store: storeFS})
	cfg.SnapshotCount = 10000
	logs := &lockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &testMember{cfg: cfg}
	m.connect(t, srv)
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	failing.Store(true)
	m.stop()
	if n := strings.Count(logs.String(), "flushing the kv store"); n != 1 || !strings.Contains(logs.String(), "injected error") {
		t.Fatalf("the stop's failed flush was said %d times; the member's log:\n%s", n, logs.String())
	}
}
