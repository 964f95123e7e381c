package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"raftkv/internal/testport"
	"raftkv/server"
)

// A backup of etcd (clientv3's Snapshot, as etcdctl snapshot save takes it),
// restored into raftkv with server.Restore (raftkv snapshot restore), gives back
// what etcd held: every key as of the backup and at each revision the compaction
// kept, with create and mod revisions, versions and leases; the compaction
// revision; the leases, their TTLs and keys; the users, roles and permissions, auth
// enabled at etcd's auth revision, and the passwords (a user logs in with hers).
func TestRestoreMigratesAnEtcdBackup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	etcdHost := startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })
	leases := writeMigrationData(t, ctx, newClient(t, etcdHost))
	etcdRoot := newAuthClient(t, etcdHost, "root", "rootpw")
	backup := saveBackup(t, ctx, etcdRoot)
	info, err := server.ReadBackupInfo(backup, false)
	if err != nil || info.Format != "etcd" || info.CompactRevision == 0 {
		t.Fatalf("reading etcd's backup: %+v, %v", info, err)
	}

	ports := testport.Free(t, 2)
	dir := t.TempDir()
	initial := map[string][]string{"m0": {fmt.Sprintf("http://127.0.0.1:%d", ports[1])}}
	res, err := server.Restore(server.RestoreConfig{BackupPath: backup, DataDir: filepath.Join(dir, "m0"), Name: "m0",
		InitialCluster: initial, InitialAdvertisePeerURLs: initial["m0"], Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("restoring etcd's backup: %v", err)
	}
	members, err := startRaftkvOn(ports, dir, 1, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(members[0].srv.Stop)
	raftkvHost := hostPort(members[0].clientURL)
	if res.Revision != info.Revision {
		t.Fatalf("restore says revision %d, status %d", res.Revision, info.Revision)
	}
	compareMigrated(t, ctx, etcdRoot, raftkvHost, leases)
}

// writeMigrationData writes, through cli, the history the migration tests carry
// from one system to the other: 240 puts, deletes and txns of three changes over 40
// keys, some on two leases, a compaction at a delete's revision (etcd 3.6 on keeps
// that delete and drops the put before it), then users with a password and without,
// root, a role with two permissions, and auth enabled. It returns the leases.
func writeMigrationData(t *testing.T, ctx context.Context, cli *clientv3.Client) []clientv3.LeaseID {
	t.Helper()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	short, err := cli.Grant(ctx, 600)
	must(nil, err)
	long, err := cli.Grant(ctx, 3000)
	must(nil, err)
	for i := range 240 {
		key := fmt.Sprintf("key/%02d", i%40)
		switch {
		case i%17 == 5:
			must(cli.Delete(ctx, key))
		case i%23 == 7:
			// One revision of three changes, in that order (sub-revisions).
			must(cli.Txn(ctx).Then(clientv3.OpPut(key, "txn"), clientv3.OpDelete(fmt.Sprintf("key/%02d", (i+1)%40)),
				clientv3.OpPut("other/"+key, "t")).Commit())
		case i%11 == 3:
			must(cli.Put(ctx, key, fmt.Sprint("short-", i), clientv3.WithLease(short.ID)))
		case i%13 == 4:
			must(cli.Put(ctx, key, fmt.Sprint("long-", i), clientv3.WithLease(long.ID)))
		default:
			must(cli.Put(ctx, key, fmt.Sprint("v", i)))
		}
		if i == 150 {
			must(cli.Put(ctx, "gone", "soon"))
			del, err := cli.Delete(ctx, "gone")
			must(nil, err)
			must(cli.Compact(ctx, del.Header.Revision))
		}
	}
	must(cli.RoleAdd(ctx, "root"))
	must(cli.UserAdd(ctx, "root", "rootpw"))
	must(cli.UserGrantRole(ctx, "root", "root"))
	must(cli.RoleAdd(ctx, "reader"))
	must(cli.RoleGrantPermission(ctx, "reader", "key/", clientv3.GetPrefixRangeEnd("key/"), clientv3.PermissionType(clientv3.PermRead)))
	must(cli.RoleGrantPermission(ctx, "reader", "other/key/00", "", clientv3.PermissionType(clientv3.PermReadWrite)))
	must(cli.UserAdd(ctx, "alice", "alicepw"))
	must(cli.UserGrantRole(ctx, "alice", "reader"))
	must(cli.UserAddWithOptions(ctx, "bob", "", &clientv3.UserAddOptions{NoPassword: true}))
	must(cli.AuthEnable(ctx))
	return []clientv3.LeaseID{short.ID, long.ID}
}

// watchUntil watches every key through cli from revision from and returns the
// events up to revision last.
func watchUntil(t *testing.T, ctx context.Context, cli *clientv3.Client, from, last int64) []*clientv3.Event {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var evs []*clientv3.Event
	for resp := range cli.Watch(clientv3.WithRequireLeader(wctx), "", clientv3.WithFromKey(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			t.Fatalf("watch from %d: %v", from, err)
		}
		evs = append(evs, resp.Events...)
		if len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision >= last {
			return evs
		}
	}
	t.Fatalf("watch from %d ended after %d events, before revision %d", from, len(evs), last)
	return nil
}

// saveBackup saves a backup through cli (Maintenance.Snapshot, as etcdctl snapshot
// save) into a file, and returns its path.
func saveBackup(t *testing.T, ctx context.Context, cli *clientv3.Client) string {
	t.Helper()
	backup := filepath.Join(t.TempDir(), "backup.db")
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return backup
}

// compareMigrated compares, as root, the system a backup came from (src) with the
// one it was restored into (at dstHost): every revision the compaction
// kept and the compacted one before, the events a watch from exactly the compaction
// revision reports (the delete made there included), the leases' TTLs and keys, the users, roles
// and auth revision; then a user logs in with her password on dst and is held to
// her role, and dst's next write comes at the next revision.
func compareMigrated(t *testing.T, ctx context.Context, src *clientv3.Client, dstHost string, leases []clientv3.LeaseID) {
	t.Helper()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dst := newAuthClient(t, dstHost, "root", "rootpw")
	if err := eventually(20*time.Second, 50*time.Millisecond, func() error {
		_, err := dst.Get(ctx, "key/00")
		return err
	}); err != nil {
		t.Fatalf("the restored member does not serve root: %v", err)
	}
	want, err := src.Get(ctx, "", clientv3.WithFromKey())
	must(nil, err)
	// Every revision from the last down to the first the compaction dropped.
	compared, compacted, compactRev := 0, false, int64(0)
	for rev := want.Header.Revision; rev >= 1 && !compacted; rev-- {
		w, werr := src.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithRev(rev))
		g, gerr := dst.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithRev(rev))
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("revision %d: source %v, restored %v", rev, werr, gerr)
		}
		if werr != nil {
			if !errors.Is(werr, rpctypes.ErrCompacted) {
				t.Fatalf("revision %d: source %v", rev, werr)
			}
			compacted, compactRev = true, rev+1
			continue
		}
		compared++
		if g.Header.Revision != w.Header.Revision || !reflect.DeepEqual(g.Kvs, w.Kvs) || g.Count != w.Count {
			t.Fatalf("revision %d: the restored %d keys at %d differ from the source's %d at %d", rev, len(g.Kvs), g.Header.Revision, len(w.Kvs), w.Header.Revision)
		}
	}
	if !compacted || compared < 50 {
		t.Fatalf("compared %d revisions (compacted ones reached: %v); the test's history is too short", compared, compacted)
	}
	t.Logf("%d revisions the same on both, then both compacted; %d keys at %d", compared, len(want.Kvs), want.Header.Revision)
	wantEvs := watchUntil(t, ctx, src, compactRev, want.Header.Revision)
	gotEvs := watchUntil(t, ctx, dst, compactRev, want.Header.Revision)
	if !reflect.DeepEqual(gotEvs, wantEvs) {
		t.Fatalf("a watch from the compaction revision %d: restored %d events, source %d; they differ:\n%v\n%v",
			compactRev, len(gotEvs), len(wantEvs), gotEvs, wantEvs)
	}
	if len(wantEvs) == 0 || wantEvs[0].Type != clientv3.EventTypeDelete || wantEvs[0].Kv.ModRevision != compactRev {
		t.Fatalf("a watch from the compaction revision %d begins with %v, not the delete made there", compactRev, wantEvs[:min(1, len(wantEvs))])
	}
	for _, id := range leases {
		w, err := src.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
		must(nil, err)
		g, err := dst.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
		must(nil, err)
		slices.SortFunc(w.Keys, func(a, b []byte) int { return slices.Compare(a, b) })
		slices.SortFunc(g.Keys, func(a, b []byte) int { return slices.Compare(a, b) })
		if g.GrantedTTL != w.GrantedTTL || !reflect.DeepEqual(g.Keys, w.Keys) || g.TTL <= 0 || g.TTL > g.GrantedTTL {
			t.Fatalf("lease %x: restored TTL %d of %d, %d keys; source TTL %d of %d, %d keys", id, g.TTL, g.GrantedTTL, len(g.Keys), w.TTL, w.GrantedTTL, len(w.Keys))
		}
	}
	wantUsers, err := src.UserList(ctx)
	must(nil, err)
	gotUsers, err := dst.UserList(ctx)
	must(nil, err)
	if !slices.Equal(gotUsers.Users, wantUsers.Users) {
		t.Fatalf("users: restored %v, source %v", gotUsers.Users, wantUsers.Users)
	}
	for _, u := range wantUsers.Users {
		w, err := src.UserGet(ctx, u)
		must(nil, err)
		g, err := dst.UserGet(ctx, u)
		must(nil, err)
		if !slices.Equal(g.Roles, w.Roles) {
			t.Fatalf("user %s: roles %v restored, %v at the source", u, g.Roles, w.Roles)
		}
	}
	for _, r := range []string{"root", "reader"} {
		w, err := src.RoleGet(ctx, r)
		must(nil, err)
		g, err := dst.RoleGet(ctx, r)
		must(nil, err)
		if fmt.Sprint(g.Perm) != fmt.Sprint(w.Perm) {
			t.Fatalf("role %s: permissions %v restored, %v at the source", r, g.Perm, w.Perm)
		}
	}
	wantAuth, err := src.AuthStatus(ctx)
	must(nil, err)
	gotAuth, err := dst.AuthStatus(ctx)
	must(nil, err)
	if !gotAuth.Enabled || gotAuth.AuthRevision != wantAuth.AuthRevision {
		t.Fatalf("auth status: restored enabled %v at revision %d, source enabled at %d", gotAuth.Enabled, gotAuth.AuthRevision, wantAuth.AuthRevision)
	}
	// alice logs in with her password, reads what her role lets her, no more.
	alice := newAuthClient(t, dstHost, "alice", "alicepw")
	if _, err := alice.Get(ctx, "key/01"); err != nil {
		t.Fatalf("alice reading key/01 after the restore: %v", err)
	}
	if _, err := alice.Put(ctx, "key/01", "no"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice writing key/01 after the restore: %v, want permission denied", err)
	}
	put, err := dst.Put(ctx, "after", "restore")
	must(nil, err)
	if put.Header.Revision != want.Header.Revision+1 {
		t.Fatalf("the first write after the restore is at revision %d, want %d", put.Header.Revision, want.Header.Revision+1)
	}
}

// newAuthClient is newClient with a user's credentials.
func newAuthClient(t *testing.T, endpoint, user, password string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second,
		Username: user, Password: password, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("clientv3.New(%s as %s): %v", endpoint, user, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
