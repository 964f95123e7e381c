package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"raftkv/kv"
)

// withToken is ctx carrying token where clientv3 puts it.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, token)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus fails unless err is the gRPC status want (code and message).
func wantStatus(t *testing.T, what string, err, want error) {
	t.Helper()
	got, w := status.Convert(err), status.Convert(want)
	if err == nil || got.Code() != w.Code() || got.Message() != w.Message() {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

// setupRootAndAlice makes root (root role) and alice (role app: readwrite on app/),
// both with passwords, and enables auth, through member m.
func setupRootAndAlice(t *testing.T, ctx context.Context, auth pb.AuthClient) {
	t.Helper()
	steps := []func() error{
		func() error {
			_, err := auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"})
			return err
		},
		func() error {
			_, err := auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
			return err
		},
		func() error { _, err := auth.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "app"}); return err },
		func() error {
			_, err := auth.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: "app",
				Perm: &authpb.Permission{PermType: authpb.READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")}})
			return err
		},
		func() error {
			_, err := auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "alice", Password: "alicepw"})
			return err
		},
		func() error {
			_, err := auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "alice", Role: "app"})
			return err
		},
		func() error { _, err := auth.AuthEnable(ctx, &pb.AuthEnableRequest{}); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}
}

func authenticate(t *testing.T, ctx context.Context, auth pb.AuthClient, name, password string) string {
	t.Helper()
	resp, err := auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: name, Password: password})
	if err != nil {
		t.Fatalf("authenticate %s: %v", name, err)
	}
	return resp.Token
}

// Every request is checked once auth is enabled: a token issued by one member
// serves on the others, a write or read outside the user's permissions gets
// etcd's "permission denied" and changes nothing, requests without a user or with
// an unknown token get etcd's errors, a watch on a range the user may not read is
// refused at create, and a revoked permission holds at once on every member.
func TestAuthEnforcedOnEveryMember(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.BcryptCost = 4 })
	ctx := testCtx(t)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("other"), Value: []byte("before")})
		return err
	})
	auth0 := pb.NewAuthClient(members[0].conn)
	setupRootAndAlice(t, ctx, auth0)

	// alice authenticates on member 1 and uses the token on member 2 at once.
	token := authenticate(t, ctx, pb.NewAuthClient(members[1].conn), "alice", "alicepw")
	alice := withToken(ctx, token)
	kv2 := members[2].client
	if _, err := kv2.Put(alice, &pb.PutRequest{Key: []byte("app/1"), Value: []byte("v")}); err != nil {
		t.Fatalf("alice puts app/1 on another member: %v", err)
	}
	_, err := kv2.Put(alice, &pb.PutRequest{Key: []byte("other"), Value: []byte("alice")})
	wantStatus(t, "alice puts other", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = kv2.Range(alice, &pb.RangeRequest{Key: []byte("other")})
	wantStatus(t, "alice reads other", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = kv2.Txn(alice, &pb.TxnRequest{
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("app/2")}}}},
		Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("other")}}}},
	})
	wantStatus(t, "alice's txn touching other in its failure branch", err, rpctypes.ErrGRPCPermissionDenied)
	_, err = kv2.Put(ctx, &pb.PutRequest{Key: []byte("app/3")})
	wantStatus(t, "a put without a token", err, rpctypes.ErrGRPCUserEmpty)
	_, err = kv2.Put(withToken(ctx, "forged.5"), &pb.PutRequest{Key: []byte("app/3")})
	wantStatus(t, "a put with a forged token", err, rpctypes.ErrGRPCInvalidAuthToken)
	_, err = pb.NewMaintenanceClient(members[2].conn).Status(ctx, &pb.StatusRequest{})
	wantStatus(t, "status without a token", err, rpctypes.ErrGRPCUserEmpty)
	if _, err := pb.NewMaintenanceClient(members[2].conn).Status(alice, &pb.StatusRequest{}); err != nil {
		t.Fatalf("alice's status: %v", err)
	}
	_, err = kv2.Compact(alice, &pb.CompactionRequest{Revision: 1})
	wantStatus(t, "alice compacts", err, rpctypes.ErrGRPCPermissionDenied)

	// Root reads "other": untouched by alice's denied requests.
	root := withToken(ctx, authenticate(t, ctx, auth0, "root", "rootpw"))
	r, err := kv2.Range(root, &pb.RangeRequest{Key: []byte("other")})
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "before" {
		t.Fatalf("root reads other: %v %v", r, err)
	}

	// A watch outside alice's permissions is refused when created.
	ws, err := pb.NewWatchClient(members[2].conn).Watch(alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("other")}}}); err != nil {
		t.Fatal(err)
	}
	wr, err := ws.Recv()
	if err != nil || !wr.Created || !wr.Canceled || wr.WatchId != -1 || wr.CancelReason != rpctypes.ErrGRPCPermissionDenied.Error() {
		t.Fatalf("watch on other: %+v %v", wr, err)
	}
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("app/"), RangeEnd: []byte("app0")}}}); err != nil {
		t.Fatal(err)
	}
	if wr, err = ws.Recv(); err != nil || !wr.Created || wr.Canceled {
		t.Fatalf("watch on app/: %+v %v", wr, err)
	}

	// Root takes the permission away; alice's next put on any member is denied.
	if _, err := auth0.RoleRevokePermission(root, &pb.AuthRoleRevokePermissionRequest{Role: "app", Key: []byte("app/"), RangeEnd: []byte("app0")}); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		// A linearizable read first: a member that has not applied the revoke yet
		// stamps the put with the old auth revision, and the put then fails with
		// "revision of auth store is old" (as etcd's does) instead.
		if _, err := m.client.Range(root, &pb.RangeRequest{Key: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		_, err := m.client.Put(alice, &pb.PutRequest{Key: []byte("app/1"), Value: []byte("after")})
		wantStatus(t, "alice's put after the revoke on member "+string(rune('0'+i)), err, rpctypes.ErrGRPCPermissionDenied)
	}
	// Deleting alice ends her token on every member.
	if _, err := auth0.UserDelete(root, &pb.AuthUserDeleteRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		if _, err := m.client.Range(root, &pb.RangeRequest{Key: []byte("x")}); err != nil { // a linearizable read: the delete applied here
			t.Fatal(err)
		}
		_, err := m.client.Range(alice, &pb.RangeRequest{Key: []byte("app/1")})
		wantStatus(t, "alice's token after her deletion on member "+string(rune('0'+i)), err, rpctypes.ErrGRPCInvalidAuthToken)
	}
}

// The auth state is replicated state: after every member restarts (tokens are
// forgotten, as etcd forgets simple tokens) auth is still enabled, with its users.
func TestAuthSurvivesRestart(t *testing.T) {
	members := startTestCluster(t, 3, func(c *Config) { c.BcryptCost = 4; c.SnapshotCount = 5 })
	ctx := testCtx(t)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	auth := pb.NewAuthClient(members[0].conn)
	setupRootAndAlice(t, ctx, auth)
	old := authenticate(t, ctx, auth, "alice", "alicepw")
	for i := range 20 { // past SnapshotCount: the state comes back from a snapshot and the log
		if _, err := members[0].client.Put(withToken(ctx, old), &pb.PutRequest{Key: []byte("app/k"), Value: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		m.stop()
	}
	for _, m := range members {
		m.start(t)
	}
	auth = pb.NewAuthClient(members[1].conn)
	var st *pb.AuthStatusResponse
	retry(t, func(ctx context.Context) error {
		var err error
		st, err = auth.AuthStatus(ctx, &pb.AuthStatusRequest{})
		return err
	})
	if !st.Enabled {
		t.Fatal("auth is disabled after a restart")
	}
	_, err := members[1].client.Range(withToken(ctx, old), &pb.RangeRequest{Key: []byte("app/k")})
	wantStatus(t, "a token from before the restart", err, rpctypes.ErrGRPCInvalidAuthToken)
	token := authenticate(t, ctx, auth, "alice", "alicepw")
	r, err := members[1].client.Range(withToken(ctx, token), &pb.RangeRequest{Key: []byte("app/k")})
	if err != nil || len(r.Kvs) != 1 || r.Kvs[0].Value[0] != 19 {
		t.Fatalf("alice reads app/k after the restart: %v %v", r, err)
	}
	_, err = auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "wrong"})
	wantStatus(t, "a wrong password", err, rpctypes.ErrGRPCAuthFailed)
}

// lockedBuffer is a log destination tests read while the member writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Wrong passwords from one address: the first three answer etcd's error at once;
// after the fourth the address must wait, and a try before then is refused
// without checking the password, saying how long to wait; a right password after
// the wait clears the count. No password ever reaches the log.
func TestAuthenticateSlowsRepeatedFailures(t *testing.T) {
	logs := &lockedBuffer{}
	members := startTestCluster(t, 1, func(c *Config) {
		c.BcryptCost = 4
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := testCtx(t)
	retry(t, func(ctx context.Context) error {
		_, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	auth := pb.NewAuthClient(members[0].conn)
	setupRootAndAlice(t, ctx, auth)
	for i := range authFreeFailures + 1 {
		_, err := auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "guess-" + string(rune('a'+i))})
		wantStatus(t, "wrong password", err, rpctypes.ErrGRPCAuthFailed)
	}
	start := time.Now()
	_, err := auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "alicepw"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "retry in") {
		if time.Since(start) < authFirstDelay { // a loaded machine may take the whole delay to get here
			t.Fatalf("a try right after the fourth failure: %v, want ResourceExhausted with the wait", err)
		}
	}
	time.Sleep(authFirstDelay)
	authenticate(t, ctx, auth, "alice", "alicepw")
	// Cleared: the next wrong one answers at once with etcd's error.
	_, err = auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "guess-z"})
	wantStatus(t, "wrong password after a success", err, rpctypes.ErrGRPCAuthFailed)
	for _, secret := range []string{"alicepw", "rootpw", "guess-a", "guess-z"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the log holds the password %q", secret)
		}
	}
	if !strings.Contains(logs.String(), "authentication failed") {
		t.Fatal("failed authentications are not logged")
	}
}

// The auth errors reach clients as etcd's statuses, code and text, which clientv3
// matches on (it authenticates again on "invalid auth token" and on "revision of
// auth store is old").
func TestAuthErrorsMapToEtcdStatuses(t *testing.T) {
	wantStatus(t, "invalid token", toGRPC(errInvalidAuthToken), rpctypes.ErrGRPCInvalidAuthToken)
	for kvErr, want := range authErrors {
		wantStatus(t, kvErr.Error(), toGRPC(kvErr), want)
		if status.Convert(want).Message() != kvErr.Error() {
			t.Errorf("kv's %q is not etcd's text %q", kvErr, status.Convert(want).Message())
		}
	}
	// etcd has no status for this one and sends its text with Unknown.
	if st := status.Convert(toGRPC(kv.ErrNoPasswordUser)); st.Code() != codes.Unknown ||
		st.Message() != "auth: authentication failed, password was given for no password user" {
		t.Fatalf("no-password user: %v", st)
	}
}
