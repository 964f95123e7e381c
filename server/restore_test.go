package server

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"raftkv/internal/testport"
)

// saveBackup streams Maintenance.Snapshot from m into path, as etcdctl snapshot save
// does, and returns the bytes written.
func saveBackup(t *testing.T, m *testMember, path string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := pb.NewMaintenanceClient(m.conn).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("Snapshot stream: %v", err)
		}
		if resp.Version == "" {
			t.Fatal("Snapshot response without the storage version")
		}
		w, err := f.Write(resp.Blob)
		if err != nil {
			t.Fatal(err)
		}
		n += int64(w)
	}
}

// rangeAll reads every key of m at rev (0: current), serializably.
func rangeAll(t *testing.T, m *testMember, rev int64) *pb.RangeResponse {
	t.Helper()
	var resp *pb.RangeResponse
	retry(t, func(ctx context.Context) error {
		var err error
		resp, err = m.client.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
		return err
	})
	return resp
}

// A backup streamed from one member of a cluster, restored into a fresh 3-member
// cluster (new data dirs, new ports, a new cluster id), gives back every key with
// its value, create and mod revision, version and lease, the revision, the
// compaction revision and the history after it; the new cluster takes writes from
// there. A damaged backup is refused and leaves no data dir.
func TestBackupRestoresIntoNewCluster(t *testing.T) {
	src := startTestCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	retry(t, func(ctx context.Context) error {
		_, err := src[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k000"), Value: []byte("first")})
		return err
	})
	lease, err := pb.NewLeaseClient(src[0].conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 3600})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		req := &pb.PutRequest{Key: fmt.Appendf(nil, "k%03d", i%60), Value: []byte(strings.Repeat("v", i))}
		if i%17 == 0 {
			req.Lease = lease.ID
		}
		if _, err := src[0].client.Put(ctx, req); err != nil {
			t.Fatal(err)
		}
		if i%23 == 22 {
			if _, err := src[0].client.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: fmt.Appendf(nil, "k%03d", i%60)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := rangeAll(t, src[0], 0)
	compactAt := before.Header.Revision - 40
	if _, err := src[0].client.Compact(ctx, &pb.CompactionRequest{Revision: compactAt}); err != nil {
		t.Fatal(err)
	}
	want := rangeAll(t, src[0], 0)
	wantOld := rangeAll(t, src[0], compactAt+10)

	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	size := saveBackup(t, src[0], backup) // the member the compaction was sent to has applied it
	if size%512 != 32 {
		t.Fatalf("backup of %d bytes: not a multiple of 512 plus the 32-byte SHA-256 etcdctl looks for", size)
	}
	info, err := ReadBackupInfo(backup, false)
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision < want.Header.Revision || info.CompactRevision != compactAt {
		t.Fatalf("backup at revision %d compacted at %d, want at least %d and %d", info.Revision, info.CompactRevision,
			want.Header.Revision, compactAt)
	}

	// A new cluster on new ports.
	ports := testport.Free(t, 6)
	initial := map[string][]string{}
	for i := range 3 {
		initial[fmt.Sprintf("r%d", i)] = []string{fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])}
	}
	damaged := filepath.Join(dir, "damaged.db")
	data, _ := os.ReadFile(backup)
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(damaged, data, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad-restore")
	if _, err := Restore(RestoreConfig{BackupPath: damaged, DataDir: bad, Name: "r0", InitialCluster: initial}); err == nil ||
		!strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("restoring a damaged backup: %v, want a SHA-256 mismatch", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a refused restore left %s behind (%v)", bad, err)
	}

	restored := make([]*testMember, 3)
	var clusterID uint64
	for i := range 3 {
		name := fmt.Sprintf("r%d", i)
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		// Started with another --initial-cluster-token than the restore's: the
		// restored data dir names its cluster and member, as etcdutl's does, and the
		// start ignores the bootstrap flags (it refused the data dir as another
		// cluster's before).
		cfg := Config{Name: name, DataDir: filepath.Join(dir, name), ListenClientURLs: []string{client},
			AdvertiseClientURLs: []string{client}, ListenPeerURLs: initial[name], InitialCluster: initial,
			InitialClusterToken: "not-the-restores", HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond}
		res, err := Restore(RestoreConfig{BackupPath: backup, DataDir: cfg.DataDir, Name: name, InitialCluster: initial,
			InitialAdvertisePeerURLs: initial[name]})
		if err != nil {
			t.Fatal(err)
		}
		if res.ClusterID == src[0].srv.ClusterID() {
			t.Fatalf("restored cluster id %x is the source's", res.ClusterID)
		}
		clusterID = res.ClusterID
		restored[i] = &testMember{cfg: cfg}
	}
	if _, err := Restore(RestoreConfig{BackupPath: backup, DataDir: restored[0].cfg.DataDir, Name: "r0", InitialCluster: initial}); err == nil {
		t.Fatal("restore into a data dir that is not empty succeeded")
	}
	for _, m := range src {
		m.stop()
	}
	for _, m := range restored {
		m.start(t)
	}
	t.Cleanup(func() {
		for _, m := range restored {
			m.stop()
		}
	})
	for _, m := range restored {
		got := rangeAll(t, m, 0)
		if got.Header.Revision != info.Revision || got.Header.ClusterId != clusterID {
			t.Fatalf("%s: revision %d cluster %x, want %d and %x", m.cfg.Name, got.Header.Revision, got.Header.ClusterId,
				info.Revision, clusterID)
		}
		if !reflect.DeepEqual(got.Kvs, want.Kvs) || got.Count != want.Count {
			t.Fatalf("%s: restored keys differ:\n got %v\nwant %v", m.cfg.Name, got.Kvs, want.Kvs)
		}
		if old := rangeAll(t, m, compactAt+10); !reflect.DeepEqual(old.Kvs, wantOld.Kvs) {
			t.Fatalf("%s: keys at revision %d differ after restore", m.cfg.Name, compactAt+10)
		}
		_, err := m.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Revision: compactAt - 1})
		if err == nil || !strings.Contains(err.Error(), "compacted") {
			t.Fatalf("%s: range below the compaction revision: %v", m.cfg.Name, err)
		}
	}
	ttl, err := pb.NewLeaseClient(restored[0].conn).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: lease.ID, Keys: true})
	if err != nil || ttl.TTL <= 0 || len(ttl.Keys) == 0 {
		t.Fatalf("lease %x after restore: %+v, %v; want it live with its keys", lease.ID, ttl, err)
	}
	var resp *pb.PutResponse
	retry(t, func(ctx context.Context) error {
		resp, err = restored[1].client.Put(ctx, &pb.PutRequest{Key: []byte("new"), Value: []byte("x")})
		return err
	})
	if resp.Header.Revision != info.Revision+1 {
		t.Fatalf("first write after restore at revision %d, want %d", resp.Header.Revision, info.Revision+1)
	}
}
