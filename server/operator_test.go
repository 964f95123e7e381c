package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"raftkv/internal/testport"
	"raftkv/version"
)

// oneMemberConfig is the Config of a single member on free loopback ports.
func oneMemberConfig(t *testing.T, dataDir string) Config {
	ports := testport.Free(t, 2)
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	return Config{
		Name: "a", DataDir: dataDir, ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
		ListenPeerURLs: []string{peer}, InitialCluster: map[string][]string{"a": {peer}},
	}
}

// A port outside 1-65535 is refused by Validate with the value and the range, not
// with a guess about another process.
func TestBadPortRefused(t *testing.T) {
	for _, port := range []string{"99999", "0", "65536"} {
		cfg := oneMemberConfig(t, t.TempDir())
		cfg.ListenClientURLs = []string{"http://127.0.0.1:" + port}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "port "+port+" is outside 1-65535") ||
			!strings.Contains(err.Error(), "--listen-client-urls") || strings.Contains(err.Error(), "another") {
			t.Errorf("port %s: Validate says %v; want --listen-client-urls and \"port %s is outside 1-65535\"", port, err, port)
		}
	}
}

// A client or peer port in use fails New with that reason, before the data dir is
// created: nothing is left behind.
func TestPortInUseLeavesNothingBehind(t *testing.T) {
	for _, which := range []string{"client", "peer"} {
		t.Run(which, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			parent := t.TempDir()
			cfg := oneMemberConfig(t, filepath.Join(parent, "new", "data"))
			url := "http://" + busy.Addr().String()
			if which == "client" {
				cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []string{url}, []string{url}
			} else {
				cfg.ListenPeerURLs, cfg.InitialCluster = []string{url}, map[string][]string{"a": {url}}
			}
			srv, err := New(cfg)
			if err == nil {
				srv.Stop()
				t.Fatal("New on a port in use succeeded")
			}
			if !strings.Contains(err.Error(), "another member or process is using the port") {
				t.Errorf("New on a port in use: %v; want it to say the port is in use", err)
			}
			if _, err := os.Stat(filepath.Join(parent, "new")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after the failed start, %s exists (%v); want nothing created", filepath.Join(parent, "new"), err)
			}
			// The other port is free again: a member starts on it at once.
			if which == "client" {
				cfg.ListenClientURLs = []string{fmt.Sprintf("http://127.0.0.1:%d", testport.Free(t, 1)[0])}
				cfg.AdvertiseClientURLs = cfg.ListenClientURLs
				srv, err := New(cfg)
				if err != nil {
					t.Fatalf("New after freeing the port: %v", err)
				}
				srv.Stop()
			}
		})
	}
}

// A failed start after the data dir was created (here: existing state asked of an
// empty dir) removes the dir it created.
func TestFailedStartRemovesCreatedDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	cfg := oneMemberConfig(t, dir)
	cfg.InitialClusterState = "existing"
	if _, err := New(cfg); err == nil {
		t.Fatal("New with state existing on an empty data dir succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after the failed start, %s exists (%v)", dir, err)
	}
}

// Status reports the store's size, not the WAL's preallocated segments (64 MiB on an
// empty store), and the etcd API version as the server version.
func TestStatusReportsStoreSizeAndAPIVersion(t *testing.T) {
	members := startTestCluster(t, 1, nil)
	maint := pb.NewMaintenanceClient(members[0].conn)
	var empty *pb.StatusResponse
	noLeaderSeen := false
	retry(t, func(ctx context.Context) error {
		var err error
		if empty, err = maint.Status(ctx, &pb.StatusRequest{}); err == nil && empty.Leader == 0 {
			// As etcd's: "no leader" heads the errors until one is elected.
			if len(empty.Errors) == 0 || empty.Errors[0] != "etcdserver: no leader" {
				t.Fatalf("Status without a leader: errors %q, want etcd's no leader first", empty.Errors)
			}
			noLeaderSeen = true
			return fmt.Errorf("no leader yet")
		}
		return err
	})
	t.Logf("a Status without a leader seen: %v", noLeaderSeen)
	if empty.DbSize > 64<<10 || empty.DbSize < 1 {
		t.Fatalf("empty store: DbSize %d, want between 1 and 64 KiB", empty.DbSize)
	}
	if empty.Version != version.APIVersion || empty.StorageVersion == "" {
		t.Fatalf("Version %q StorageVersion %q, want %q and a storage version", empty.Version, empty.StorageVersion, version.APIVersion)
	}
	// As etcd's: the quota as configured (here the default), a downgrade that is
	// not enabled, not a learner, no errors with a leader.
	if empty.DbSizeQuota != DefaultQuotaBackendBytes || empty.DowngradeInfo == nil || empty.DowngradeInfo.Enabled ||
		empty.IsLearner || len(empty.Errors) != 0 {
		t.Fatalf("DbSizeQuota %d, DowngradeInfo %v, IsLearner %v, Errors %q; want %d, not enabled, false, none",
			empty.DbSizeQuota, empty.DowngradeInfo, empty.IsLearner, empty.Errors, int64(DefaultQuotaBackendBytes))
	}
	value := make([]byte, 64<<10)
	for i := range 32 {
		retry(t, func(ctx context.Context) error {
			_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: value})
			return err
		})
	}
	full, err := maint.Status(context.Background(), &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if grown := full.DbSize - empty.DbSize; grown < 2<<20 || grown > 3<<20 {
		t.Fatalf("after 2 MiB of values DbSize grew by %d bytes, want about 2 MiB", grown)
	}
	if full.DbSizeInUse < 2<<20 || full.DbSizeInUse > full.DbSize {
		t.Fatalf("DbSizeInUse %d, want at least 2 MiB and at most DbSize %d", full.DbSizeInUse, full.DbSize)
	}
}

// A Range or read-only Txn over MaxResponseBytes is refused with ResourceExhausted,
// naming the size, the limit and what to do; pages of it are served.
func TestRangeOverMaxResponseBytesRefused(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes, c.MaxResponseBytes = 8192, 64<<10 })
	c := members[0].client
	value := make([]byte, 4000)
	for i := range 32 {
		retry(t, func(ctx context.Context) error {
			_, err := c.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%02d", i), Value: value})
			return err
		})
	}
	ctx := context.Background()
	whole := &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}
	_, err := c.Range(ctx, whole)
	st := status.Convert(err)
	// 32 key-values of a 3-byte key, a 4000-byte value and three small revisions.
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "carry 128") ||
		!strings.Contains(st.Message(), "over --max-response-bytes (65536)") || !strings.Contains(st.Message(), "--limit") {
		t.Fatalf("range of 128 KB with a 64 KiB limit: %v; want ResourceExhausted naming the size, the limit and --limit", err)
	}
	_, err = c.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: whole}}}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("read-only txn of the same range: %v, want ResourceExhausted", err)
	}
	// Paging through it works, and so does the range without values.
	var keys int
	for from := []byte("k"); ; {
		resp, err := c.Range(ctx, &pb.RangeRequest{Key: from, RangeEnd: []byte("l"), Limit: 8})
		if err != nil {
			t.Fatalf("page from %q: %v", from, err)
		}
		keys += len(resp.Kvs)
		if !resp.More {
			break
		}
		from = append(resp.Kvs[len(resp.Kvs)-1].Key, 0)
	}
	if keys != 32 {
		t.Fatalf("paging found %d keys, want 32", keys)
	}
	if resp, err := c.Range(ctx, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), KeysOnly: true}); err != nil || len(resp.Kvs) != 32 {
		t.Fatalf("keys-only range: %v", err)
	}
}

// LeaseTimeToLive with keys is bounded as a Range is: a lease whose keys would take
// more than MaxResponseBytes of the answer is refused with ResourceExhausted,
// naming the lease in hex as etcdctl prints it, the sizes and what to do; its TTL
// alone is still answered.
func TestLeaseKeysOverMaxResponseBytesRefused(t *testing.T) {
	members := startTestCluster(t, 1, func(c *Config) { c.MaxRequestBytes, c.MaxResponseBytes = 4096, 64<<10 })
	m := members[0]
	grant(t, m, 0x2a, 60)
	key := make([]byte, 4000)
	for i := range 20 {
		copy(key, fmt.Sprintf("k%02d", i))
		retry(t, func(ctx context.Context) error {
			_, err := m.client.Put(ctx, &pb.PutRequest{Key: key, Lease: 0x2a})
			return err
		})
	}
	ctx := context.Background()
	leases := pb.NewLeaseClient(m.conn)
	_, err := leases.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 0x2a, Keys: true})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "the keys of lease 2a") ||
		!strings.Contains(st.Message(), "over --max-response-bytes (65536)") || !strings.Contains(st.Message(), "without its keys") {
		t.Fatalf("20 keys of 4000 bytes with a 64 KiB limit: %v; want ResourceExhausted naming the lease, the limit and the remedy", err)
	}
	resp, err := leases.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 0x2a})
	if err != nil || resp.TTL <= 0 || len(resp.Keys) != 0 {
		t.Fatalf("the same lease without keys: %v, %v", resp, err)
	}
}

func TestMaxResponseBytesValidated(t *testing.T) {
	for _, tc := range []struct{ request, response int }{{4096, 4095}, {0, 1 << 20}, {0, MaxMaxResponseBytes + 1}} {
		cfg := oneMemberConfig(t, t.TempDir())
		cfg.MaxRequestBytes, cfg.MaxResponseBytes = tc.request, tc.response
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--max-response-bytes") {
			t.Errorf("--max-request-bytes %d --max-response-bytes %d: Validate says %v", tc.request, tc.response, err)
		}
	}
	cfg := oneMemberConfig(t, t.TempDir())
	if err := cfg.Validate(); err != nil || cfg.withDefaults().MaxResponseBytes != DefaultMaxResponseBytes {
		t.Fatalf("default --max-response-bytes: %v, %d", err, cfg.withDefaults().MaxResponseBytes)
	}
}

// With WALDir the WAL lives there: the member writes its segments there, restarts
// from them with its data, and refuses to start without it.
func TestWALDirHoldsTheLog(t *testing.T) {
	walDir := filepath.Join(t.TempDir(), "wal")
	members := startTestCluster(t, 1, func(c *Config) { c.WALDir = walDir })
	m := members[0]
	retry(t, func(ctx context.Context) error {
		_, err := m.client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	m.stop()
	names, err := os.ReadDir(walDir)
	if err != nil || len(names) < 2 { // the lock and a segment
		t.Fatalf("WAL dir %s holds %v (%v); want the member's segments", walDir, names, err)
	}
	if names, _ := os.ReadDir(filepath.Join(m.cfg.DataDir, "member", "wal")); len(names) != 0 {
		t.Fatalf("the data dir's own wal/ holds %v", names)
	}
	withoutWAL := m.cfg
	withoutWAL.WALDir = ""
	if srv, err := New(withoutWAL); err == nil || !strings.Contains(err.Error(), "--wal-dir") {
		if srv != nil {
			srv.Stop()
		}
		t.Fatalf("restart without the WAL dir: %v; want a refusal naming --wal-dir", err)
	}
	m.start(t)
	retry(t, func(ctx context.Context) error {
		resp, err := m.client.Range(ctx, &pb.RangeRequest{Key: []byte("k")})
		if err == nil && len(resp.Kvs) != 1 {
			t.Fatalf("after a restart on the WAL dir: %d keys, want 1", len(resp.Kvs))
		}
		return err
	})
}

// A 3-member cluster loses two members for good; the survivor, restarted with
// ForceNewCluster, is a cluster of one: it takes writes and keeps every key, lists
// itself alone, and stays so when restarted without the flag.
func TestForceNewClusterRecoversFromLostQuorum(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.SnapshotCount = 20 })
	for i := range 50 {
		retry(t, func(ctx context.Context) error {
			_, err := members[i%3].client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "k%02d", i), Value: []byte("v")})
			return err
		})
	}
	for _, m := range members {
		m.stop()
	}
	survivor := members[1]
	survivor.cfg.ForceNewCluster = true
	for restart := range 2 {
		survivor.start(t)
		retry(t, func(ctx context.Context) error {
			_, err := survivor.client.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "after%d", restart), Value: []byte("v")})
			return err
		})
		resp, err := survivor.client.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 50 {
			t.Fatalf("start %d after losing quorum: %d of the 50 keys", restart, resp.Count)
		}
		list, err := pb.NewClusterClient(survivor.conn).MemberList(context.Background(), &pb.MemberListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Members) != 1 || list.Members[0].ID != survivor.srv.ID() {
			t.Fatalf("start %d: member list %v, want only the survivor %x", restart, list.Members, survivor.srv.ID())
		}
		survivor.stop()
		survivor.cfg.ForceNewCluster = false // the recorded membership holds without it
	}
}

// A member whose WAL dir holds another member's WAL (here b's segments copied over
// a's, both of one cluster, so every cluster and term check passes) is refused: that
// log holds b's votes, which a would take for its own. (A member started on another
// member's data dir is that member, as in etcd: the data dir names it.)
func TestMemberRefusesAnotherMembersWAL(t *testing.T) {
	walRoot := t.TempDir()
	members := startTestCluster(t, 3, func(c *Config) { c.WALDir = filepath.Join(walRoot, c.Name) })
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	for _, m := range members {
		m.stop()
	}
	a, b := members[0], members[1]
	bRecord, err := os.ReadFile(filepath.Join(b.cfg.WALDir, "member"))
	if err != nil {
		t.Fatalf("b's WAL dir has no member record: %v", err)
	}
	bID := strings.TrimSpace(string(bRecord))
	// b's WAL, its member record included, in place of a's.
	names, err := os.ReadDir(a.cfg.WALDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(a.cfg.WALDir, n.Name())); err != nil {
			t.Fatal(err)
		}
	}
	names, err = os.ReadDir(b.cfg.WALDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(b.cfg.WALDir, n.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(a.cfg.WALDir, n.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := New(a.cfg)
	if err == nil {
		srv.Stop()
		t.Fatalf("member %s started on member %s's WAL", a.cfg.Name, b.cfg.Name)
	}
	if want := "the log and votes of member " + bID; !strings.Contains(err.Error(), want) {
		t.Fatalf("refusal %q does not say %q", err, want)
	}
	b.start(t) // b still starts on its own
	retry(t, func(ctx context.Context) error {
		_, err := b.client.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Serializable: true})
		return err
	})
}

// A data dir whose WAL and snapshot dirs hold only storage's own records (the WAL's
// member record, a lock, a temp file), as a first start that failed after writing
// one leaves it, holds no state: a member joining with it asks the cluster again
// instead of bootstrapping from --initial-cluster.
func TestHasStateIgnoresStoragesOwnRecords(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), WALDir: filepath.Join(t.TempDir(), "wal")}
	wal, snap := filepath.Join(cfg.DataDir, "member", "wal"), filepath.Join(cfg.DataDir, "member", "snap")
	for _, d := range []string{wal, snap, cfg.WALDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(wal, "member"), filepath.Join(wal, "member.tmp"), filepath.Join(cfg.WALDir, "LOCK"),
		filepath.Join(cfg.WALDir, "member"), filepath.Join(snap, "x.snap.tmp")} {
		if err := os.WriteFile(f, []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if hasState(cfg) {
		t.Fatal("a data dir with only storage's own records counts as holding state")
	}
	if err := os.WriteFile(filepath.Join(cfg.WALDir, "0000000000000001.wal"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if !hasState(cfg) {
		t.Fatal("a WAL dir with a segment does not count as holding state")
	}
}
