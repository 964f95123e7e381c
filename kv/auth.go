package kv

import (
	"bytes"
	"errors"
	"slices"
	"strings"
)

// This file is the replicated half of etcd's authentication: the enabled flag,
// the users, the roles and their permissions, and the auth revision, all changed
// only by commands in the log (Command.Auth) and all in the snapshot (auth_codec.go).
// The other half, who a request comes from (tokens, client certificates), belongs
// to each member and lives in the server; it reaches the state machine as the
// Command's Sender, which the store checks when it applies the command
// (auth_check.go). So a permission revoked between a proposal and its apply is
// honoured: every replica decides the same way, at the same point of the log.
//
// Semantics and error texts are etcd 3.7's (server/auth/store.go), including its
// quirks: AuthEnable leaves the auth revision as it is, RoleAdd moves it, granting a
// role a user already has changes nothing, the "root" role can be granted without
// existing as a role. Passwords arrive as bcrypt hashes made by the proposing member:
// the state machine never sees a password and never hashes.

// Errors of the auth commands and checks, with etcd's texts (its gRPC errors'
// messages, so the server hands them on unchanged).
var (
	ErrRootUserNotExist     = errors.New("etcdserver: root user does not exist")
	ErrRootRoleNotExist     = errors.New("etcdserver: root user does not have root role")
	ErrUserAlreadyExist     = errors.New("etcdserver: user name already exists")
	ErrUserEmpty            = errors.New("etcdserver: user name is empty")
	ErrUserNotFound         = errors.New("etcdserver: user name not found")
	ErrRoleAlreadyExist     = errors.New("etcdserver: role name already exists")
	ErrRoleNotFound         = errors.New("etcdserver: role name not found")
	ErrRoleEmpty            = errors.New("etcdserver: role name is empty")
	ErrAuthFailed           = errors.New("etcdserver: authentication failed, invalid user ID or password")
	ErrPermissionNotGiven   = errors.New("etcdserver: permission not given")
	ErrPermissionDenied     = errors.New("etcdserver: permission denied")
	ErrRoleNotGranted       = errors.New("etcdserver: role is not granted to the user")
	ErrPermissionNotGranted = errors.New("etcdserver: permission is not granted to the role")
	ErrAuthNotEnabled       = errors.New("etcdserver: authentication is not enabled")
	ErrInvalidAuthMgmt      = errors.New("etcdserver: invalid auth management")
	ErrAuthOldRevision      = errors.New("etcdserver: revision of auth store is old")
	// ErrNoPasswordUser: a password was given for a user added without one. etcd
	// has no gRPC error for it and sends its internal text, as this does.
	ErrNoPasswordUser = errors.New("auth: authentication failed, password was given for no password user")
	// ErrAuthPasswordChecked: an Authenticate's password was checked at an older
	// auth revision than the one it applies at (the password, or the user, may have
	// changed in between). No token is issued; the server checks the password again
	// and sends a new Authenticate, which is what etcd does after issuing the token.
	ErrAuthPasswordChecked = errors.New("kv: the password was checked against an older auth revision; check it again")
)

// Names etcd gives special meaning.
const (
	RootUser = "root"
	RootRole = "root"
)

// PermissionType mirrors authpb.Permission_Type, numbered as in etcd.
type PermissionType int32

// Permission types.
const (
	PermRead      PermissionType = 0
	PermWrite     PermissionType = 1
	PermReadWrite PermissionType = 2
	// PermNotGiven stands for a grant request without a permission in it.
	PermNotGiven PermissionType = -1
)

// Permission mirrors authpb.Permission: Type on Key alone (RangeEnd empty), on
// [Key, RangeEnd), or on every key from Key on (RangeEnd "\x00").
type Permission struct {
	Type     PermissionType
	Key      []byte
	RangeEnd []byte
}

// rootPermission is what RoleGet answers for the root role: everything.
var rootPermission = Permission{Type: PermReadWrite, Key: []byte{}, RangeEnd: []byte{0}}

// user is one user. Roles are sorted, as etcd keeps them.
type user struct {
	name string
	// password is the bcrypt hash; nil for a user added with NoPassword.
	password   []byte
	noPassword bool
	roles      []string
}

func (u *user) hasRole(role string) bool {
	_, found := slices.BinarySearch(u.roles, role)
	return found
}

// role is one role; perms are sorted by key, ties in the order granted (etcd's).
type role struct {
	name  string
	perms []Permission
}

// authState is the replicated auth state. Deterministic; no lock of its own.
//
// Invariant: revision >= 1 (etcd starts at 1); perms holds exactly the users'
// merged permissions (rebuilt by refresh after every change).
type authState struct {
	enabled  bool
	revision uint64
	users    map[string]*user
	roles    map[string]*role
	perms    map[string]*userPerms
}

func newAuthState() authState {
	return authState{revision: 1, users: map[string]*user{}, roles: map[string]*role{}, perms: map[string]*userPerms{}}
}

// AuthInfo says who sends a request, as etcd's AuthInfo does: a user and the auth
// revision the member was at when it took the request (a token's or certificate's
// user is checked against the state as of that revision).
type AuthInfo struct {
	User     string
	Revision uint64
	// Member marks a command a member makes itself (auto-compaction, a lease's
	// expiry), which etcd runs as root. No client request ever carries it.
	Member bool
}

// isZero: no user, the sender of every request when auth is disabled.
func (a AuthInfo) isZero() bool { return a.User == "" && a.Revision == 0 && !a.Member }

// AuthOp names an auth command.
type AuthOp uint8

// Auth commands. The numbers are the wire format: append only.
const (
	AuthEnable AuthOp = iota + 1
	AuthDisable
	Authenticate
	UserAdd
	UserDelete
	UserChangePassword
	UserGrantRole
	UserRevokeRole
	RoleAdd
	RoleDelete
	RoleGrantPermission
	RoleRevokePermission
	authOpEnd
)

// AuthRequest is one change to the auth state, or an authentication.
type AuthRequest struct {
	Op AuthOp
	// Name is the user (Authenticate, User*) or the role (Role*) it is about.
	Name string
	// Role is the role UserGrantRole and UserRevokeRole grant or revoke.
	Role string
	// PasswordHash is the bcrypt hash of the new password (UserAdd,
	// UserChangePassword), made by the proposing member.
	PasswordHash []byte
	// NoPassword adds a user that cannot authenticate with a password (UserAdd).
	NoPassword bool
	// Perm is granted by RoleGrantPermission; RoleRevokePermission reads its Key
	// and RangeEnd.
	Perm Permission
	// CheckedRevision is the auth revision at which the proposer checked the
	// password (Authenticate).
	CheckedRevision uint64
	// TokenDigest is the SHA-256 of the secret part of the simple token the
	// proposer will hand out (Authenticate). Only the digest is in the log.
	TokenDigest []byte
}

// AuthResponse answers an applied AuthRequest.
type AuthResponse struct {
	Op   AuthOp
	Name string
	// Revision is the auth revision after the command.
	Revision uint64
	// Index is the log index the command applied at. A copy of a command that had
	// applied (ApplyOnce) returns the first copy's response, so a server acting
	// on the response (tokens) does so only when Index is the entry it applies.
	Index uint64
	// TokenDigest is the request's (Authenticate).
	TokenDigest []byte
}

// applyAuth applies one auth command sent by sender.
func (st *state) applyAuth(r *AuthRequest, sender AuthInfo) (*AuthResponse, error) {
	a := &st.auth
	if r.Op != Authenticate {
		// etcd checks admin rights before every change (apply/auth.go).
		if err := a.checkAdmin(sender); err != nil {
			return nil, err
		}
	}
	var err error
	switch r.Op {
	case AuthEnable:
		err = a.enable()
	case AuthDisable:
		a.disable()
	case Authenticate:
		err = a.authenticate(r)
	case UserAdd:
		err = a.userAdd(r)
	case UserDelete:
		err = a.userDelete(r.Name)
	case UserChangePassword:
		err = a.userChangePassword(r)
	case UserGrantRole:
		err = a.userGrantRole(r.Name, r.Role)
	case UserRevokeRole:
		err = a.userRevokeRole(r.Name, r.Role)
	case RoleAdd:
		err = a.roleAdd(r.Name)
	case RoleDelete:
		err = a.roleDelete(r.Name)
	case RoleGrantPermission:
		err = a.roleGrantPermission(r.Name, r.Perm)
	case RoleRevokePermission:
		err = a.roleRevokePermission(r.Name, r.Perm.Key, r.Perm.RangeEnd)
	default:
		return nil, ErrInvalidCommand
	}
	if err != nil {
		return nil, err
	}
	return &AuthResponse{Op: r.Op, Name: r.Name, Revision: a.revision, Index: st.index, TokenDigest: r.TokenDigest}, nil
}

// commit moves the auth revision and rebuilds the permission cache: every change
// but AuthEnable and a no-op grant does.
func (a *authState) commit() {
	a.revision++
	a.refresh()
}

func (a *authState) enable() error {
	if a.enabled {
		return nil
	}
	u := a.users[RootUser]
	if u == nil {
		return ErrRootUserNotExist
	}
	if !u.hasRole(RootRole) {
		return ErrRootRoleNotExist
	}
	a.enabled = true
	a.refresh()
	return nil
}

func (a *authState) disable() {
	if !a.enabled {
		return
	}
	a.enabled = false
	a.commit()
}

// authenticate checks what etcd checks when it issues a token; the password itself
// was checked by the proposer, at CheckedRevision.
func (a *authState) authenticate(r *AuthRequest) error {
	if !a.enabled {
		return ErrAuthNotEnabled
	}
	u := a.users[r.Name]
	if u == nil || u.noPassword {
		return ErrAuthFailed
	}
	if r.CheckedRevision != a.revision {
		return ErrAuthPasswordChecked
	}
	return nil
}

func (a *authState) userAdd(r *AuthRequest) error {
	if r.Name == "" {
		return ErrUserEmpty
	}
	if a.users[r.Name] != nil {
		return ErrUserAlreadyExist
	}
	u := &user{name: r.Name, noPassword: r.NoPassword}
	if !r.NoPassword {
		u.password = r.PasswordHash
	}
	a.users[r.Name] = u
	a.commit()
	return nil
}

func (a *authState) userDelete(name string) error {
	if a.enabled && name == RootUser {
		return ErrInvalidAuthMgmt
	}
	if a.users[name] == nil {
		return ErrUserNotFound
	}
	delete(a.users, name)
	a.commit()
	return nil
}

func (a *authState) userChangePassword(r *AuthRequest) error {
	u := a.users[r.Name]
	if u == nil {
		return ErrUserNotFound
	}
	if !u.noPassword {
		u.password = r.PasswordHash
	}
	a.commit()
	return nil
}

func (a *authState) userGrantRole(name, roleName string) error {
	u := a.users[name]
	if u == nil {
		return ErrUserNotFound
	}
	if roleName != RootRole && a.roles[roleName] == nil {
		return ErrRoleNotFound
	}
	i, found := slices.BinarySearch(u.roles, roleName)
	if found {
		return nil // etcd ignores the grant, and the revision stays
	}
	u.roles = slices.Insert(u.roles, i, roleName)
	a.commit()
	return nil
}

func (a *authState) userRevokeRole(name, roleName string) error {
	if a.enabled && name == RootUser && roleName == RootRole {
		return ErrInvalidAuthMgmt
	}
	u := a.users[name]
	if u == nil {
		return ErrUserNotFound
	}
	i, found := slices.BinarySearch(u.roles, roleName)
	if !found {
		return ErrRoleNotGranted
	}
	u.roles = slices.Delete(u.roles, i, i+1)
	a.commit()
	return nil
}

func (a *authState) roleAdd(name string) error {
	if name == "" {
		return ErrRoleEmpty
	}
	if a.roles[name] != nil {
		return ErrRoleAlreadyExist
	}
	a.roles[name] = &role{name: name}
	// etcd moves the revision but leaves its permission cache: a new role is in
	// nobody's roles yet, so there is nothing to rebuild.
	a.revision++
	return nil
}

func (a *authState) roleDelete(name string) error {
	if a.enabled && name == RootRole {
		return ErrInvalidAuthMgmt
	}
	if a.roles[name] == nil {
		return ErrRoleNotFound
	}
	delete(a.roles, name)
	for _, u := range a.users {
		if i, found := slices.BinarySearch(u.roles, name); found {
			u.roles = slices.Delete(u.roles, i, i+1)
		}
	}
	a.commit()
	return nil
}

func (a *authState) roleGrantPermission(name string, p Permission) error {
	if p.Type == PermNotGiven {
		return ErrPermissionNotGiven
	}
	// etcd would store a type it does not know, and then ignore it.
	if !validPermissionRange(p.Key, p.RangeEnd) || p.Type < PermRead || p.Type > PermReadWrite {
		return ErrInvalidAuthMgmt
	}
	r := a.roles[name]
	if r == nil {
		return ErrRoleNotFound
	}
	// A grant on a key and range end the role has already updates its type
	// (etcd looks at the first permission on the key only, and so appends a
	// duplicate when another range end on that key comes first; this looks at
	// every one). A new one goes after every permission on a key up to its own,
	// where etcd's sort leaves it.
	for i := range r.perms {
		if bytes.Equal(r.perms[i].Key, p.Key) && bytes.Equal(r.perms[i].RangeEnd, p.RangeEnd) {
			r.perms[i].Type = p.Type
			a.commit()
			return nil
		}
	}
	i, _ := slices.BinarySearchFunc(r.perms, p.Key, func(q Permission, key []byte) int {
		if bytes.Compare(q.Key, key) <= 0 {
			return -1
		}
		return 1
	})
	p = Permission{Type: p.Type, Key: bytes.Clone(p.Key), RangeEnd: bytes.Clone(p.RangeEnd)}
	r.perms = slices.Insert(r.perms, i, p)
	a.commit()
	return nil
}

func (a *authState) roleRevokePermission(name string, key, rangeEnd []byte) error {
	r := a.roles[name]
	if r == nil {
		return ErrRoleNotFound
	}
	n := len(r.perms)
	r.perms = slices.DeleteFunc(r.perms, func(p Permission) bool {
		return bytes.Equal(p.Key, key) && bytes.Equal(p.RangeEnd, rangeEnd)
	})
	if len(r.perms) == n {
		return ErrPermissionNotGranted
	}
	a.commit()
	return nil
}

// validPermissionRange is etcd's rule: a non-empty key, and a range end that is
// empty (the key alone), after the key, or "\x00" (every key from the key on).
func validPermissionRange(key, rangeEnd []byte) bool {
	switch {
	case len(key) == 0:
		return false
	case len(rangeEnd) == 0 || isOpenEnd(rangeEnd):
		return true
	}
	return bytes.Compare(key, rangeEnd) < 0
}

func isOpenEnd(rangeEnd []byte) bool { return len(rangeEnd) == 1 && rangeEnd[0] == 0 }

// checkAdmin is etcd's IsAdminPermitted: with auth enabled, the sender must be a
// user with the root role. It does not look at the sender's auth revision.
func (a *authState) checkAdmin(sender AuthInfo) error {
	if !a.enabled || sender.Member {
		return nil
	}
	if sender.User == "" {
		return ErrUserEmpty
	}
	u := a.users[sender.User]
	if u == nil {
		return ErrUserNotFound
	}
	if !u.hasRole(RootRole) {
		return ErrPermissionDenied
	}
	return nil
}

// sortedNames returns a map's keys in order.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.SortFunc(names, strings.Compare)
	return names
}
