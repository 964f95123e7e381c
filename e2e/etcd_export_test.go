package e2e

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"raftkv/internal/testport"
	"raftkv/server"
)

// The way back: a backup of raftkv (Maintenance.Snapshot), written as etcd's
// database by raftkv snapshot to-etcd (server.WriteEtcdBackup), restored by
// etcdutl snapshot restore and started as an etcd member, gives back what raftkv
// held, as TestRestoreMigratesAnEtcdBackup checks the other way.
func TestEtcdRestoresARaftkvBackup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	member := startRaftkv(t, 1, 0)[0]
	raftkvHost := hostPort(member.clientURL)
	leases := writeMigrationData(t, ctx, newClient(t, raftkvHost))
	raftkvRoot := newAuthClient(t, raftkvHost, "root", "rootpw")
	backup := saveBackup(t, ctx, raftkvRoot)

	etcdDB := filepath.Join(t.TempDir(), "etcd.db")
	info, err := server.WriteEtcdBackup(backup, etcdDB, false)
	if err != nil {
		t.Fatalf("writing raftkv's backup as etcd's: %v", err)
	}
	if again, err := server.ReadBackupInfo(etcdDB, false); err != nil || again.Format != "etcd" ||
		again.Revision != info.Revision || again.CompactRevision != info.CompactRevision || again.TotalKeys != info.TotalKeys {
		t.Fatalf("reading the written etcd backup back: %+v (%v), want %+v", again, err, info)
	}
	if _, err := server.WriteEtcdBackup(backup, etcdDB, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("writing over an existing file: %v, want it refused", err)
	}

	ports := testport.Free(t, 1)
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	dataDir := filepath.Join(t.TempDir(), "etcd")
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{SnapshotPath: etcdDB, Name: "restored",
		OutputDataDir: dataDir, PeerURLs: []string{peer}, InitialCluster: "restored=" + peer, InitialClusterToken: "back-to-etcd"})
	if err != nil {
		t.Fatalf("etcdutl snapshot restore of raftkv's backup: %v", err)
	}
	peerURL, _ := url.Parse(peer)
	etcdHost := startEtcd(t, func(cfg *embed.Config) {
		cfg.TickMs, cfg.ElectionMs = 10, 100
		cfg.Name, cfg.Dir = "restored", dataDir
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peerURL}, []url.URL{*peerURL}
		cfg.InitialCluster, cfg.InitialClusterToken = "restored="+peer, "back-to-etcd"
		cfg.UnsafeNoFsync = false
	})
	compareMigrated(t, ctx, raftkvRoot, etcdHost, leases)
}
