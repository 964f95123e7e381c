package kv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
)

// authCmd applies an auth command sent by sender and returns its error.
func authCmd(t *testing.T, s *Store, sender AuthInfo, r *AuthRequest) error {
	t.Helper()
	return apply(t, s, &Command{Sender: sender, Auth: r}).Err
}

func mustAuth(t *testing.T, s *Store, sender AuthInfo, r *AuthRequest) {
	t.Helper()
	if err := authCmd(t, s, sender, r); err != nil {
		t.Fatalf("auth op %d %q: %v", r.Op, r.Name, err)
	}
}

// as is a sender at the store's current auth revision, as the server stamps one.
func as(s *Store, name string) AuthInfo {
	_, rev := s.AuthStatus()
	return AuthInfo{User: name, Revision: rev}
}

// setupAuth makes root (role root), alice with role "app" (readwrite on app/ and
// read on "config"), and enables auth.
func setupAuth(t *testing.T, s *Store) {
	t.Helper()
	none := AuthInfo{}
	mustAuth(t, s, none, &AuthRequest{Op: UserAdd, Name: "root", PasswordHash: []byte("hash-root")})
	mustAuth(t, s, none, &AuthRequest{Op: UserGrantRole, Name: "root", Role: RootRole})
	mustAuth(t, s, none, &AuthRequest{Op: UserAdd, Name: "alice", PasswordHash: []byte("hash-alice")})
	mustAuth(t, s, none, &AuthRequest{Op: RoleAdd, Name: "app"})
	mustAuth(t, s, none, &AuthRequest{Op: RoleGrantPermission, Name: "app",
		Perm: Permission{Type: PermReadWrite, Key: []byte("app/"), RangeEnd: []byte("app0")}})
	mustAuth(t, s, none, &AuthRequest{Op: RoleGrantPermission, Name: "app",
		Perm: Permission{Type: PermRead, Key: []byte("config")}})
	mustAuth(t, s, none, &AuthRequest{Op: UserGrantRole, Name: "alice", Role: "app"})
	mustAuth(t, s, none, &AuthRequest{Op: AuthEnable})
}

// AuthEnable needs a root user with the root role, as etcd's; the auth revision
// moves with each change but AuthEnable, a no-op grant and a failure.
func TestAuthEnableAndRevision(t *testing.T) {
	s := newTestStore(t, Config{})
	none := AuthInfo{}
	if enabled, rev := s.AuthStatus(); enabled || rev != 1 {
		t.Fatalf("new store: enabled %v revision %d, want false 1", enabled, rev)
	}
	if err := authCmd(t, s, none, &AuthRequest{Op: AuthEnable}); !errors.Is(err, ErrRootUserNotExist) {
		t.Fatalf("enable without root: %v", err)
	}
	mustAuth(t, s, none, &AuthRequest{Op: UserAdd, Name: "root", PasswordHash: []byte("h")})
	if err := authCmd(t, s, none, &AuthRequest{Op: AuthEnable}); !errors.Is(err, ErrRootRoleNotExist) {
		t.Fatalf("enable without the root role: %v", err)
	}
	mustAuth(t, s, none, &AuthRequest{Op: UserGrantRole, Name: "root", Role: RootRole})
	mustAuth(t, s, none, &AuthRequest{Op: UserGrantRole, Name: "root", Role: RootRole}) // no-op
	if _, rev := s.AuthStatus(); rev != 3 {
		t.Fatalf("after user add and one grant: revision %d, want 3", rev)
	}
	mustAuth(t, s, none, &AuthRequest{Op: AuthEnable})
	if enabled, rev := s.AuthStatus(); !enabled || rev != 3 {
		t.Fatalf("after enable: enabled %v revision %d, want true 3", enabled, rev)
	}
	// Now only root may change anything, and root stays root.
	if err := authCmd(t, s, none, &AuthRequest{Op: RoleAdd, Name: "r"}); !errors.Is(err, ErrUserEmpty) {
		t.Fatalf("role add without a user: %v", err)
	}
	for _, r := range []*AuthRequest{
		{Op: UserDelete, Name: "root"}, {Op: UserRevokeRole, Name: "root", Role: RootRole}, {Op: RoleDelete, Name: RootRole},
	} {
		if err := authCmd(t, s, as(s, "root"), r); !errors.Is(err, ErrInvalidAuthMgmt) {
			t.Fatalf("op %d on root: %v, want %v", r.Op, err, ErrInvalidAuthMgmt)
		}
	}
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: AuthDisable})
	if enabled, rev := s.AuthStatus(); enabled || rev != 4 {
		t.Fatalf("after disable: enabled %v revision %d, want false 4", enabled, rev)
	}
}

// Every write is checked when it applies, against the state at its place in the
// log: a permission revoked after a put was proposed (its sender stamped at the
// older revision) fails it with etcd's ErrAuthOldRevision, and a put stamped after
// the revoke with permission denied; neither changes the store.
func TestWriteCheckedAtApply(t *testing.T) {
	s := newTestStore(t, Config{})
	setupAuth(t, s)
	alice := as(s, "alice")
	put := func(sender AuthInfo, key string) error {
		return apply(t, s, &Command{Sender: sender, Put: &PutRequest{Key: []byte(key), Value: []byte("v")}}).Err
	}
	if err := put(alice, "app/1"); err != nil {
		t.Fatalf("alice's put in app/: %v", err)
	}
	for _, key := range []string{"config", "other", "app0", "app"} {
		if err := put(alice, key); !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("alice's put of %q: %v, want %v", key, err, ErrPermissionDenied)
		}
	}
	if err := put(AuthInfo{}, "app/2"); !errors.Is(err, ErrUserEmpty) {
		t.Fatalf("a put with no user: %v, want %v", err, ErrUserEmpty)
	}
	// Proposed now, applied after the revoke below.
	stale := alice
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: RoleRevokePermission, Name: "app",
		Perm: Permission{Key: []byte("app/"), RangeEnd: []byte("app0")}})
	rev := s.Revision()
	if err := put(stale, "app/2"); !errors.Is(err, ErrAuthOldRevision) {
		t.Fatalf("a put stamped before the revoke: %v, want %v", err, ErrAuthOldRevision)
	}
	if err := put(as(s, "alice"), "app/2"); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("a put stamped after the revoke: %v, want %v", err, ErrPermissionDenied)
	}
	if s.Revision() != rev || mustRange(t, s, &RangeRequest{Key: []byte("app/2")}).Count != 0 {
		t.Fatalf("denied puts changed the store: revision %d (was %d)", s.Revision(), rev)
	}
	// Root may do anything; a member's own commands are never checked.
	if err := put(as(s, "root"), "anything"); err != nil {
		t.Fatalf("root's put: %v", err)
	}
	if res := apply(t, s, &Command{Sender: AuthInfo{Member: true}, Compact: &CompactionRequest{Revision: 2}}); res.Err != nil {
		t.Fatalf("a member's compaction: %v", res.Err)
	}
	if res := apply(t, s, &Command{Sender: as(s, "alice"), Compact: &CompactionRequest{Revision: 3}}); !errors.Is(res.Err, ErrPermissionDenied) {
		t.Fatalf("alice's compaction: %v, want %v", res.Err, ErrPermissionDenied)
	}
}

// A txn is checked whole, as etcd checks it: every compare is a read, and the ops
// of both branches, nested ones too, whichever branch would run; prev_kv on a put
// or delete also needs read.
func TestTxnCheckedWhole(t *testing.T) {
	s := newTestStore(t, Config{})
	setupAuth(t, s)
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: RoleGrantPermission, Name: "app",
		Perm: Permission{Type: PermWrite, Key: []byte("log/"), RangeEnd: []byte("log0")}})
	putOp := func(key string, prevKv bool) RequestOp {
		return RequestOp{Put: &PutRequest{Key: []byte(key), Value: []byte("v"), PrevKv: prevKv}}
	}
	cases := []struct {
		name string
		txn  *TxnRequest
		want error
	}{
		{"allowed", &TxnRequest{
			Compare: []Compare{{Key: []byte("config"), Target: CompareVersion}},
			Success: []RequestOp{putOp("app/a", false), putOp("log/1", false)},
			Failure: []RequestOp{{Range: &RangeRequest{Key: []byte("app/"), RangeEnd: []byte("app0")}}},
		}, nil},
		{"compare outside", &TxnRequest{
			Compare: []Compare{{Key: []byte("secret"), Target: CompareVersion}},
			Success: []RequestOp{putOp("app/a", false)},
		}, ErrPermissionDenied},
		{"compare on write-only", &TxnRequest{
			Compare: []Compare{{Key: []byte("log/1"), Target: CompareVersion}},
		}, ErrPermissionDenied},
		{"failure branch denied", &TxnRequest{
			Success: []RequestOp{putOp("app/a", false)},
			Failure: []RequestOp{putOp("config", false)},
		}, ErrPermissionDenied},
		{"prev_kv needs read", &TxnRequest{Success: []RequestOp{putOp("log/2", true)}}, ErrPermissionDenied},
		{"delete prev_kv needs read", &TxnRequest{Success: []RequestOp{
			{DeleteRange: &DeleteRangeRequest{Key: []byte("log/"), RangeEnd: []byte("log0"), PrevKv: true}}}}, ErrPermissionDenied},
		{"nested", &TxnRequest{Success: []RequestOp{{Txn: &TxnRequest{
			Failure: []RequestOp{{DeleteRange: &DeleteRangeRequest{Key: []byte("x")}}}}}}}, ErrPermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rev := s.Revision()
			res := apply(t, s, &Command{Sender: as(s, "alice"), Txn: c.txn})
			if !errors.Is(res.Err, c.want) || (c.want == nil && res.Err != nil) {
				t.Fatalf("txn: %v, want %v", res.Err, c.want)
			}
			if c.want != nil && s.Revision() != rev {
				t.Fatalf("a denied txn moved the revision from %d to %d", rev, s.Revision())
			}
		})
	}
	// The same checks serve reads, under the read's lock.
	if _, err := s.TxnAs(as(s, "alice"), &TxnRequest{Success: []RequestOp{{Range: &RangeRequest{Key: []byte("log/1")}}}}, 0); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice's read-only txn on write-only log/: %v", err)
	}
	if _, err := s.RangeAs(as(s, "alice"), &RangeRequest{Key: []byte("config")}, 0); err != nil {
		t.Fatalf("alice reads config: %v", err)
	}
	if _, err := s.RangeAs(AuthInfo{}, &RangeRequest{Key: []byte("config")}, 0); !errors.Is(err, ErrUserEmpty) {
		t.Fatalf("a read with no user: %v", err)
	}
}

// User and role management answer as etcd's: errors for what is missing or
// present, deleting a role takes it from its users, and the reads check who asks.
func TestUserAndRoleManagement(t *testing.T) {
	s := newTestStore(t, Config{})
	setupAuth(t, s)
	root := func() AuthInfo { return as(s, "root") }
	errCases := []struct {
		r    *AuthRequest
		want error
	}{
		{&AuthRequest{Op: UserAdd, Name: "alice"}, ErrUserAlreadyExist},
		{&AuthRequest{Op: UserAdd}, ErrUserEmpty},
		{&AuthRequest{Op: RoleAdd, Name: "app"}, ErrRoleAlreadyExist},
		{&AuthRequest{Op: RoleAdd}, ErrRoleEmpty},
		{&AuthRequest{Op: UserDelete, Name: "bob"}, ErrUserNotFound},
		{&AuthRequest{Op: UserGrantRole, Name: "alice", Role: "nope"}, ErrRoleNotFound},
		{&AuthRequest{Op: UserRevokeRole, Name: "alice", Role: "nope"}, ErrRoleNotGranted},
		{&AuthRequest{Op: RoleRevokePermission, Name: "app", Perm: Permission{Key: []byte("zzz")}}, ErrPermissionNotGranted},
		{&AuthRequest{Op: RoleGrantPermission, Name: "app", Perm: Permission{Type: PermNotGiven}}, ErrPermissionNotGiven},
		{&AuthRequest{Op: RoleGrantPermission, Name: "app", Perm: Permission{Key: []byte("b"), RangeEnd: []byte("a")}}, ErrInvalidAuthMgmt},
		{&AuthRequest{Op: RoleGrantPermission, Name: "app", Perm: Permission{}}, ErrInvalidAuthMgmt},
		{&AuthRequest{Op: RoleGrantPermission, Name: "nope", Perm: Permission{Key: []byte("a")}}, ErrRoleNotFound},
	}
	for _, c := range errCases {
		if err := authCmd(t, s, root(), c.r); !errors.Is(err, c.want) {
			t.Errorf("op %d %q: %v, want %v", c.r.Op, c.r.Name, err, c.want)
		}
	}
	if err := authCmd(t, s, as(s, "alice"), &AuthRequest{Op: RoleAdd, Name: "x"}); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice adds a role: %v", err)
	}
	// A grant of the same key and range end updates the type in place; the order
	// is by key, ties as granted.
	mustAuth(t, s, root(), &AuthRequest{Op: RoleGrantPermission, Name: "app", Perm: Permission{Type: PermReadWrite, Key: []byte("config")}})
	mustAuth(t, s, root(), &AuthRequest{Op: RoleGrantPermission, Name: "app", Perm: Permission{Type: PermRead, Key: []byte("b"), RangeEnd: []byte{0}}})
	perms, err := s.RoleGet(root(), "app")
	if err != nil {
		t.Fatal(err)
	}
	want := []Permission{
		{PermReadWrite, []byte("app/"), []byte("app0")}, {PermRead, []byte("b"), []byte{0}}, {PermReadWrite, []byte("config"), nil},
	}
	if !slices.EqualFunc(perms, want, func(a, b Permission) bool {
		return a.Type == b.Type && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.RangeEnd, b.RangeEnd)
	}) {
		t.Fatalf("role app: %+v, want %+v", perms, want)
	}
	// Reads: alice may read herself and her roles, not others.
	if roles, err := s.UserGet(as(s, "alice"), "alice"); err != nil || !slices.Equal(roles, []string{"app"}) {
		t.Fatalf("alice reads alice: %v %v", roles, err)
	}
	if _, err := s.UserGet(as(s, "alice"), "root"); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice reads root: %v", err)
	}
	if _, err := s.RoleGet(as(s, "alice"), "app"); err != nil {
		t.Fatalf("alice reads her role: %v", err)
	}
	if _, err := s.UserList(as(s, "alice")); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice lists users: %v", err)
	}
	if p, err := s.RoleGet(root(), RootRole); !errors.Is(err, ErrRoleNotFound) {
		t.Fatalf("root role not added as a role: %v %v", p, err)
	}
	// Deleting a role takes it from its users, and their permissions with it.
	mustAuth(t, s, root(), &AuthRequest{Op: RoleDelete, Name: "app"})
	if roles, _ := s.UserGet(root(), "alice"); len(roles) != 0 {
		t.Fatalf("alice keeps deleted role: %v", roles)
	}
	if err := s.CheckRead(as(s, "alice"), []byte("config"), nil); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice reads config after its role went: %v", err)
	}
	users, _ := s.UserList(root())
	roles, _ := s.RoleList(root())
	if !slices.Equal(users, []string{"alice", "root"}) || len(roles) != 0 {
		t.Fatalf("users %v roles %v", users, roles)
	}
}

// Authenticate issues nothing for a password checked at an older revision, so a
// password changed between the check and the apply cannot be used.
func TestAuthenticateChecksRevision(t *testing.T) {
	s := newTestStore(t, Config{})
	setupAuth(t, s)
	hash, rev, err := s.UserPassword("alice")
	if err != nil || string(hash) != "hash-alice" {
		t.Fatalf("UserPassword: %q %v", hash, err)
	}
	res := apply(t, s, &Command{Auth: &AuthRequest{Op: Authenticate, Name: "alice", CheckedRevision: rev, TokenDigest: []byte("d")}})
	if res.Err != nil || res.Auth.Index != s.AppliedIndex() || string(res.Auth.TokenDigest) != "d" {
		t.Fatalf("authenticate: %+v %v", res.Auth, res.Err)
	}
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: UserChangePassword, Name: "alice", PasswordHash: []byte("new")})
	res = apply(t, s, &Command{Auth: &AuthRequest{Op: Authenticate, Name: "alice", CheckedRevision: rev}})
	if !errors.Is(res.Err, ErrAuthPasswordChecked) {
		t.Fatalf("authenticate checked at an old revision: %v", res.Err)
	}
	if err := authCmd(t, s, AuthInfo{}, &AuthRequest{Op: Authenticate, Name: "bob"}); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("authenticate an unknown user: %v", err)
	}
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: UserAdd, Name: "svc", NoPassword: true, PasswordHash: []byte("ignored")})
	if _, _, err := s.UserPassword("svc"); !errors.Is(err, ErrNoPasswordUser) {
		t.Fatalf("password of a no-password user: %v", err)
	}
}

// The auth state is in the snapshot: a restored store answers the same, and
// snapshots of it again to the same bytes.
func TestAuthSnapshotRoundTrip(t *testing.T) {
	s := newTestStore(t, Config{})
	setupAuth(t, s)
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: UserAdd, Name: "svc", NoPassword: true})
	if res := apply(t, s, &Command{Sender: as(s, "alice"), Put: &PutRequest{Key: []byte("app/k")}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	view, err := s.SnapshotView()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := view.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	view.Release()
	if !bytes.Equal(buf.Bytes(), snap) {
		t.Fatal("SnapshotView wrote other bytes than Snapshot")
	}
	r := newTestStore(t, Config{})
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	again, _ := r.Snapshot()
	if !bytes.Equal(again, snap) {
		t.Fatal("a restored store snapshots to other bytes")
	}
	enabled, rev := r.AuthStatus()
	wantEnabled, wantRev := s.AuthStatus()
	if enabled != wantEnabled || rev != wantRev {
		t.Fatalf("restored auth: %v %d, want %v %d", enabled, rev, wantEnabled, wantRev)
	}
	if err := r.CheckRead(as(r, "alice"), []byte("app/x"), nil); err != nil {
		t.Fatalf("restored: alice reads app/x: %v", err)
	}
	if err := r.CheckRead(as(r, "alice"), []byte("other"), nil); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("restored: alice reads other: %v", err)
	}
	if _, _, err := r.UserPassword("svc"); !errors.Is(err, ErrNoPasswordUser) {
		t.Fatalf("restored: svc: %v", err)
	}
}

// Commands with a sender and auth requests encode and decode to themselves; a
// version 2 command with no sender is not canonical and is refused.
func TestAuthCommandCodec(t *testing.T) {
	cmds := []*Command{
		{Sender: AuthInfo{User: "alice", Revision: 7}, Put: &PutRequest{Key: []byte("k")}},
		{Sender: AuthInfo{Member: true}, Compact: &CompactionRequest{Revision: 3}},
		{Sender: AuthInfo{User: "root", Revision: 2}, Auth: &AuthRequest{Op: RoleGrantPermission, Name: "r",
			Perm: Permission{Type: PermWrite, Key: []byte("a"), RangeEnd: []byte{0}}}},
		{Auth: &AuthRequest{Op: Authenticate, Name: "alice", CheckedRevision: 9, TokenDigest: []byte{1, 2, 3}}},
		{Auth: &AuthRequest{Op: UserAdd, Name: "u", PasswordHash: []byte("$2a$10$x"), NoPassword: true}},
	}
	for _, c := range cmds {
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", c, err)
		}
		b2, _ := d.Encode()
		if !bytes.Equal(b, b2) || d.Sender != c.Sender {
			t.Fatalf("round trip of %+v gave %+v", c, d)
		}
	}
	b, _ := (&Command{Put: &PutRequest{Key: []byte("k")}}).Encode()
	if b[0] != commandVersion {
		t.Fatalf("a command with no sender is written as version %d", b[0])
	}
	forged := append([]byte{commandVersionSender, b[1], 0, 0, 0, 0, 0}, b[4:]...)
	if _, err := DecodeCommand(forged); !errors.Is(err, ErrCorruptCommand) {
		t.Fatalf("version 2 with an empty sender: %v", err)
	}
}

// Snapshots of formats 1 to 4, from before the auth section (the fixtures the
// snapshot_compat tests restore, each written by the code of its format), restore
// with auth disabled, no users or roles, at auth revision 1, which is where a
// cluster of those versions was, and take auth commands from there: a member
// upgraded across the change reads the snapshot it left on disk.
func TestOlderSnapshotsRestoreWithoutAuth(t *testing.T) {
	for version := 1; version < snapshotVersionAuth; version++ {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			data, err := os.ReadFile(fmt.Sprintf("testdata/snapshot-v%d.bin", version))
			if err != nil {
				t.Fatal(err)
			}
			s := newTestStore(t, Config{})
			if err := s.Restore(data); err != nil {
				t.Fatal(err)
			}
			if enabled, rev := s.AuthStatus(); enabled || rev != 1 {
				t.Fatalf("auth after restoring format %d: enabled %v revision %d", version, enabled, rev)
			}
			if users, _ := s.UserList(AuthInfo{}); len(users) != 0 {
				t.Fatalf("users after restoring format %d: %v", version, users)
			}
			if roles, _ := s.RoleList(AuthInfo{}); len(roles) != 0 {
				t.Fatalf("roles after restoring format %d: %v", version, roles)
			}
			mustAuth(t, s, AuthInfo{}, &AuthRequest{Op: UserAdd, Name: "root", PasswordHash: []byte("h")})
			if _, rev := s.AuthStatus(); rev != 2 {
				t.Fatalf("auth revision after a user add: %d", rev)
			}
			// And what it writes now is format 5, which restores with the user.
			snap, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			again := newTestStore(t, Config{})
			if err := again.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if users, _ := again.UserList(AuthInfo{}); len(users) != 1 || users[0] != "root" {
				t.Fatalf("users after a round trip: %v", users)
			}
		})
	}
}
