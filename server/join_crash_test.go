package server

import (
	"context"
	"errors"
	"os"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// A joining member whose first start ends right after storage.Open made its WAL
// durable (a crash, here a failure injected there, in a data dir that existed so
// that nothing is cleaned up) restarts as the member it joined as: the record is
// written before the log, so the restart does not take the cluster id from the
// flags and refuse the WAL of the joined cluster.
func TestJoinInterruptedAfterTheWALRestarts(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	ctx := testCtx(t)
	m0 := members[0]
	retry(t, func(ctx context.Context) error {
		_, err := m0.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	joiner := joiningMember(t, members, "m1")
	added, err := pb.NewClusterClient(m0.conn).MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: joiner.cfg.ListenPeerURLs, IsLearner: true})
	if err != nil {
		t.Fatal(err)
	}
	// An existing, empty data dir: a failed start then removes nothing, as a
	// crash would not.
	if err := os.MkdirAll(joiner.cfg.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	crash := errors.New("injected crash after storage.Open")
	testHookAfterStorageOpen = func() error { return crash }
	_, err = New(joiner.cfg)
	testHookAfterStorageOpen = nil
	if !errors.Is(err, crash) {
		t.Fatalf("the first start of the joiner failed with %v, want the injected crash", err)
	}

	joiner.start(t)
	if joiner.srv.ID() != added.Member.ID || joiner.srv.ClusterID() != m0.srv.ClusterID() {
		t.Fatalf("the restarted joiner is member %x of cluster %x; want %x of %x",
			joiner.srv.ID(), joiner.srv.ClusterID(), added.Member.ID, m0.srv.ClusterID())
	}
	retry(t, func(ctx context.Context) error {
		resp, err := joiner.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Serializable: true})
		if err == nil && resp.Count != 1 {
			err = errors.New("the joiner does not hold the key yet")
		}
		return err
	})
}
