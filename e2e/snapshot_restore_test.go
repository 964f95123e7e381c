package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"raftkv/internal/testport"
)

// A backup taken with etcdctl snapshot save from a raftkv cluster, restored with
// raftkv snapshot restore (etcdutl's workflow) into a fresh 3-member cluster on new
// data dirs and ports, gives back every key with its value, create and mod
// revision, version and lease, at the backup's revision, with the history after the
// compaction revision; and the new cluster, of a new cluster id, takes writes.
func TestEtcdctlSnapshotSaveRestore(t *testing.T) {
	t.Parallel()
	src := startProcCluster(t, 3)
	cli := src.members[0].client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		key := fmt.Sprintf("key/%03d", i%90)
		var opts []clientv3.OpOption
		if i%13 == 0 {
			opts = append(opts, clientv3.WithLease(lease.ID))
		}
		if _, err := cli.Put(ctx, key, strings.Repeat("x", i), opts...); err != nil {
			t.Fatal(err)
		}
		if i%29 == 28 {
			if _, err := cli.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
	}
	mid, err := cli.Get(ctx, "key/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	compactAt := mid.Header.Revision - 50
	if _, err := cli.Compact(ctx, compactAt); err != nil {
		t.Fatal(err)
	}
	want, err := cli.Get(ctx, "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	wantOld, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithRev(compactAt+20))
	if err != nil {
		t.Fatal(err)
	}
	srcStatus, err := cli.Status(ctx, hostPort(src.members[0].clientURL))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	e := etcdctl{t: t, bin: etcdctlBinary(t), endpoints: []string{hostPort(src.members[0].clientURL)}} // it applied the compaction
	out, stderr, err := e.run("", "snapshot", "save", backup)
	if err != nil || !strings.Contains(out, "Snapshot saved at "+backup) {
		t.Fatalf("etcdctl snapshot save: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	raftkv := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, src.bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("raftkv %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	status := raftkv("snapshot", "status", backup, "-w", "table")
	if !strings.Contains(status, fmt.Sprint(want.Header.Revision)) || !strings.Contains(status, fmt.Sprint(compactAt)) {
		t.Fatalf("raftkv snapshot status does not show revision %d and compaction %d:\n%s", want.Header.Revision, compactAt, status)
	}

	ports := testport.Free(t, 6)
	dst := &procCluster{t: t, bin: src.bin}
	var initial []string
	for i := range 3 {
		m := &procMember{name: fmt.Sprintf("r%d", i+1), clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])}
		m.dataDir, m.logPath = filepath.Join(dir, m.name), filepath.Join(dir, m.name+".log")
		initial = append(initial, m.name+"="+m.peerURL)
		dst.members = append(dst.members, m)
	}
	token := "restored-" + t.Name()
	for _, m := range dst.members {
		out := raftkv("snapshot", "restore", backup, "--name", m.name, "--data-dir", m.dataDir,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", token,
			"--initial-advertise-peer-urls", m.peerURL)
		if !strings.Contains(out, fmt.Sprintf("revision %d", want.Header.Revision)) {
			t.Fatalf("raftkv snapshot restore printed %q", out)
		}
		m.args = []string{"--name", m.name, "--data-dir", m.dataDir, "--listen-client-urls", m.clientURL,
			"--advertise-client-urls", m.clientURL, "--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", token}
		m.client = newClient(t, hostPort(m.clientURL))
	}
	src.cleanup() // the old cluster stops: nothing of it may be needed
	t.Cleanup(dst.cleanup)
	for _, m := range dst.members {
		dst.start(m)
	}
	for _, m := range dst.members {
		var got *clientv3.GetResponse
		err := eventually(30*time.Second, 100*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var err error
			got, err = m.client.Get(ctx, "", clientv3.WithFromKey())
			return err
		})
		if err != nil {
			t.Fatalf("%s: reading after restore: %v", m.name, err)
		}
		if got.Header.Revision != want.Header.Revision {
			t.Fatalf("%s: revision %d after restore, want %d", m.name, got.Header.Revision, want.Header.Revision)
		}
		if got.Header.ClusterId == srcStatus.Header.ClusterId {
			t.Fatalf("%s: the restored cluster kept the old cluster id %x", m.name, got.Header.ClusterId)
		}
		if !reflect.DeepEqual(got.Kvs, want.Kvs) {
			t.Fatalf("%s: %d keys after restore differ from the %d saved", m.name, len(got.Kvs), len(want.Kvs))
		}
		old, err := m.client.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithRev(compactAt+20))
		if err != nil || !reflect.DeepEqual(old.Kvs, wantOld.Kvs) {
			t.Fatalf("%s: keys at revision %d after restore differ (%v)", m.name, compactAt+20, err)
		}
		if _, err := m.client.Get(ctx, "key/", clientv3.WithRev(compactAt-1)); err == nil ||
			!strings.Contains(err.Error(), "required revision has been compacted") {
			t.Fatalf("%s: read below the compaction revision: %v", m.name, err)
		}
	}
	ttl, err := dst.members[0].client.TimeToLive(ctx, lease.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || len(ttl.Keys) == 0 {
		t.Fatalf("lease %x after restore: %+v, %v", lease.ID, ttl, err)
	}
	put, err := dst.members[2].client.Put(ctx, "after-restore", "1")
	if err != nil || put.Header.Revision != want.Header.Revision+1 {
		t.Fatalf("first write after restore: %+v, %v; want revision %d", put, err, want.Header.Revision+1)
	}
}
