package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/kv"
	"raftkv/storage"
)

// A read that the store's engine fails (an I/O error under its files) fails the
// request and stops the member with one line that says so, as a failed write does,
// rather than panicking.
func TestFailedEngineReadStopsTheMember(t *testing.T) {
	var failing atomic.Bool
	storeFS := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileRead || op.Kind == errorfs.OpFileReadAt) && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	files := &memberFiles{log: storage.NewMemFS(), store: storeFS}
	m := &testMember{cfg: crashConfig(t, t.TempDir(), files)}
	srv, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.connect(t, srv)
	// Past a few log compactions the first keys are in the engine's tables, 2 KiB
	// values so that they span several blocks.
	for key := 0; key < 30; key++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte(fmt.Sprintf("k%02d", key)), Value: make([]byte, 2048)})
		cancel()
		if err != nil {
			// Before the first election.
			key--
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Restarted, the member holds no block of those keys in its cache.
	m.stop()
	if srv, err = New(m.cfg); err != nil {
		t.Fatal(err)
	}
	m.connect(t, srv)
	defer m.stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("z"), Value: []byte("ready")})
		cancel()
		if err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	failing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = m.client.Range(ctx, &pb.RangeRequest{Key: []byte("k05"), Serializable: true})
	if err == nil {
		t.Fatal("a range over files that fail every read succeeded")
	}
	select {
	case <-srv.Done():
	case <-ctx.Done():
		t.Fatalf("the member did not stop after its engine failed a read (the range returned %v)", err)
	}
	// The range's read, or pebble's background work on the same files (a
	// compaction after the restart can open a table first: CI saw it under -race),
	// is the failure the member stops on.
	if err := srv.Err(); !errors.Is(err, kv.ErrEngineFailed) || !strings.Contains(err.Error(), "injected error") ||
		!(strings.Contains(err.Error(), "failed reading") || strings.Contains(err.Error(), "failed in the background")) {
		t.Fatalf("the member stopped with %v; want kv.ErrEngineFailed naming the failed read or the engine's background failure, with the injected error", err)
	}
	t.Logf("the member stopped with: %v", srv.Err())
}
