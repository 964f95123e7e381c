package kv

import (
	"fmt"
	"slices"
)

// AuthImport is an auth state from outside the store, such as etcd's in one of its
// backups: EncodeAuthState turns it into ImportHeader.AuthState's bytes.
type AuthImport struct {
	Enabled bool
	// Revision is the auth revision (etcd's authRevision), at least 1.
	Revision uint64
	Users    []AuthImportUser
	Roles    []AuthImportRole
}

// AuthImportUser is one user of an AuthImport.
type AuthImportUser struct {
	Name string
	// PasswordHash is the bcrypt hash of the password, as etcd keeps it; empty with
	// NoPassword.
	PasswordHash []byte
	NoPassword   bool
	Roles        []string
}

// AuthImportRole is one role of an AuthImport, its permissions in the order etcd
// lists them.
type AuthImportRole struct {
	Name  string
	Perms []Permission
}

// EncodeAuthState returns a in the store's encoding of its auth state, which
// Import takes, checked as a snapshot's is: names unique, every permission valid,
// the revision at least 1, and auth enabled only with a root user holding the root
// role.
func EncodeAuthState(a AuthImport) ([]byte, error) {
	st := newAuthState()
	st.enabled, st.revision = a.Enabled, a.Revision
	for _, u := range a.Users {
		if st.users[u.Name] != nil {
			return nil, fmt.Errorf("auth state: user %q is listed twice", u.Name)
		}
		roles := slices.Compact(slices.Sorted(slices.Values(u.Roles)))
		st.users[u.Name] = &user{name: u.Name, password: slices.Clone(u.PasswordHash), noPassword: u.NoPassword, roles: roles}
	}
	for _, r := range a.Roles {
		if st.roles[r.Name] != nil {
			return nil, fmt.Errorf("auth state: role %q is listed twice", r.Name)
		}
		st.roles[r.Name] = &role{name: r.Name, perms: slices.Clone(r.Perms)}
	}
	e := &encoder{}
	st.encode(e)
	if e.err != nil {
		return nil, fmt.Errorf("auth state: %w", e.err)
	}
	check := newAuthState()
	d := decoder{buf: e.buf, copyBytes: true}
	d.authState(&check)
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("auth state: %w", d.err)
	}
	return e.buf, nil
}

// DecodeAuthState is EncodeAuthState's inverse: the users, roles and permissions,
// the enabled flag and the auth revision of ImportHeader.AuthState's bytes (a
// backup's), users and roles in name order. Nil bytes are auth never used.
func DecodeAuthState(b []byte) (AuthImport, error) {
	st := newAuthState()
	if b != nil {
		d := decoder{buf: b, copyBytes: true}
		d.authState(&st)
		d.end()
		if d.err != nil {
			return AuthImport{}, fmt.Errorf("%w: auth state: %v", ErrCorruptSnapshot, d.err)
		}
	}
	a := AuthImport{Enabled: st.enabled, Revision: st.revision}
	for _, name := range sortedNames(st.users) {
		u := st.users[name]
		a.Users = append(a.Users, AuthImportUser{Name: u.name, PasswordHash: slices.Clone(u.password), NoPassword: u.noPassword,
			Roles: slices.Clone(u.roles)})
	}
	for _, name := range sortedNames(st.roles) {
		r := st.roles[name]
		a.Roles = append(a.Roles, AuthImportRole{Name: r.name, Perms: slices.Clone(r.perms)})
	}
	return a, nil
}
