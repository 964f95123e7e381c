package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/storage"
)

// An entry the store refused (its engine failed: a full disk, say) is not counted
// applied, nor is any after it. A linearizable read waits for the member's applied
// index; had it moved past the refused entry, a lease read (which does not read the
// store's keys) would answer from a state without that entry while the member stops.
// Done is closed, but nobody stops the member here, so it goes on taking requests.
func TestRefusedEntryIsNotApplied(t *testing.T) {
	t.Parallel() // it mostly waits
	var failing atomic.Bool
	storeFS := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return errorfs.ErrInjected
		}
		return nil
	}))
	m := &testMember{cfg: crashConfig(t, t.TempDir(), &memberFiles{log: storage.NewMemFS(), store: storeFS})}
	m.cfg.SnapshotCount = 10_000 // no flush of the member's own during the test
	// The read round of the lease read below waits for an index that never comes;
	// Stop must end that wait, not wait out the round's RequestTimeout.
	m.cfg.RequestTimeout = 30 * time.Second
	srv, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.connect(t, srv)
	stopped := false
	defer func() {
		if !stopped {
			m.stop()
		}
	}()
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")})
		return err
	})
	leases := pb.NewLeaseClient(m.conn)
	var lease int64
	retry(t, func(ctx context.Context) error {
		resp, err := leases.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 600})
		if err == nil {
			lease = resp.ID
		}
		return err
	})

	// The engine fails a flush: the store refuses every entry from now on.
	failing.Store(true)
	if _, err := srv.sm.store.Flush(); err == nil {
		t.Fatal("the store's flush succeeded on files that fail every write")
	}
	storeApplied := srv.sm.store.AppliedIndex()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = m.client.Put(ctx, &pb.PutRequest{Key: []byte("b"), Value: []byte("2")})
	cancel()
	if err == nil {
		t.Fatal("a put on a store that refuses every entry succeeded")
	}
	// The put's entry went through the apply loop (its refusal is what the put
	// returned): the member's applied index must not count it.
	if applied := srv.applied.get(); applied > storeApplied {
		t.Fatalf("the member counts index %d applied; its store holds entries up to %d only", applied, storeApplied)
	}
	// The read fails at once (the member is stopping), rather than holding the
	// member's stop up while it waits for its context.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if resp, err := leases.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: lease}); err == nil {
		t.Fatalf("a linearizable lease read answered (TTL %d) past an entry the store refused", resp.TTL)
	} else if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a lease read past an entry the store refused failed only after %v (%v), at its deadline", took, err)
	} else {
		t.Logf("the lease read failed after %v: %v", took.Round(time.Millisecond), err)
	}
	select {
	case <-srv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the member is not stopping 10 s after its store refused an entry")
	}
	start = time.Now()
	m.stop()
	stopped = true
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Stop took %v: it waited out a read round's RequestTimeout (%v)", took, m.cfg.RequestTimeout)
	}
}
