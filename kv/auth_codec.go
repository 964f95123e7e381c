package kv

import (
	"bytes"
	"fmt"
	"slices"
)

// The wire forms of the auth state and commands, in the codec's conventions
// (codec.go):
//
//	sender    = flags(member) user:bytes revision:uvarint
//	             (a command of format version 2 carries it after seq)
//	auth      = op:1 name role passwordHash flags(noPassword) permType:varint
//	            permKey permRangeEnd checkedRevision:uvarint tokenDigest
//	authResp  = op:1 name revision:uvarint index:uvarint tokenDigest
//	            (a Result of kind opAuth)
//	authState = flags(enabled) revision:uvarint nUsers:uvarint user*nUsers
//	            nRoles:uvarint role*nRoles            (the snapshot's auth section)
//	user      = name password flags(noPassword) nRoles:uvarint roleName*nRoles
//	role      = name nPerms:uvarint (type:varint key rangeEnd)*nPerms
//
// Users and roles are in name order, a user's roles sorted, a role's permissions
// in the role's order, so one state has one encoding.

// Smallest encodings, for bounding list lengths.
const (
	minUserBytes = 4 // empty name, empty password, flags, nRoles
	minRoleBytes = 2 // empty name, nPerms
	minPermBytes = 3 // type, empty key, empty range end
	minNameBytes = 1
)

func (e *encoder) sender(a AuthInfo) {
	e.flags(a.Member)
	e.bytes([]byte(a.User))
	e.uvarint(a.Revision)
}

func (d *decoder) sender() AuthInfo {
	a := AuthInfo{Member: d.flags(1)[0]}
	a.User = string(d.bytesNoCopy())
	a.Revision = d.uvarint()
	return a
}

func (e *encoder) authRequest(r *AuthRequest) {
	if r.Op == 0 || r.Op >= authOpEnd {
		e.err = fmt.Errorf("%w: unknown auth op %d", ErrInvalidCommand, r.Op)
		return
	}
	e.byte(byte(r.Op))
	e.bytes([]byte(r.Name))
	e.bytes([]byte(r.Role))
	e.bytes(r.PasswordHash)
	e.flags(r.NoPassword)
	e.enum(int32(r.Perm.Type))
	e.bytes(r.Perm.Key)
	e.bytes(r.Perm.RangeEnd)
	e.uvarint(r.CheckedRevision)
	e.bytes(r.TokenDigest)
}

func (d *decoder) authRequest() *AuthRequest {
	r := &AuthRequest{Op: AuthOp(d.byte())}
	if d.err == nil && (r.Op == 0 || r.Op >= authOpEnd) {
		d.fail("unknown auth op %d", r.Op)
		return nil
	}
	r.Name = string(d.bytesNoCopy())
	r.Role = string(d.bytesNoCopy())
	r.PasswordHash = bytes.Clone(d.bytesNoCopy())
	r.NoPassword = d.flags(1)[0]
	r.Perm.Type = PermissionType(d.enum())
	r.Perm.Key = bytes.Clone(d.bytesNoCopy())
	r.Perm.RangeEnd = bytes.Clone(d.bytesNoCopy())
	r.CheckedRevision = d.uvarint()
	r.TokenDigest = bytes.Clone(d.bytesNoCopy())
	return r
}

func (e *encoder) authResponse(r *AuthResponse) {
	e.byte(byte(r.Op))
	e.bytes([]byte(r.Name))
	e.uvarint(r.Revision)
	e.uvarint(r.Index)
	e.bytes(r.TokenDigest)
}

func (d *decoder) authResponse() *AuthResponse {
	r := &AuthResponse{Op: AuthOp(d.byte())}
	r.Name = string(d.bytesNoCopy())
	r.Revision = d.uvarint()
	r.Index = d.uvarint()
	r.TokenDigest = bytes.Clone(d.bytesNoCopy())
	return r
}

// encodeAuth writes the snapshot's auth section.
func (a *authState) encode(e *encoder) {
	e.flags(a.enabled)
	e.uvarint(a.revision)
	e.uvarint(uint64(len(a.users)))
	for _, name := range sortedNames(a.users) {
		u := a.users[name]
		e.bytes([]byte(u.name))
		e.bytes(u.password)
		e.flags(u.noPassword)
		e.uvarint(uint64(len(u.roles)))
		for _, r := range u.roles {
			e.bytes([]byte(r))
		}
	}
	e.uvarint(uint64(len(a.roles)))
	for _, name := range sortedNames(a.roles) {
		r := a.roles[name]
		e.bytes([]byte(r.name))
		e.uvarint(uint64(len(r.perms)))
		for _, p := range r.perms {
			e.enum(int32(p.Type))
			e.bytes(p.Key)
			e.bytes(p.RangeEnd)
		}
	}
}

// authState reads the snapshot's auth section into a and checks it: names in
// order and unique, a user's roles sorted and unique, every permission valid,
// the revision at least 1, and auth enabled only with a root user holding the
// root role (AuthEnable's condition, which the commands keep true).
func (d *decoder) authState(a *authState) {
	a.enabled = d.flags(1)[0]
	a.revision = d.uvarint()
	if d.err == nil && a.revision < 1 {
		d.fail("auth revision 0")
	}
	nUsers := d.count(minUserBytes, int(^uint(0)>>1))
	prev := ""
	for i := 0; i < nUsers && d.err == nil; i++ {
		u := &user{name: string(d.bytesNoCopy())}
		u.password = bytes.Clone(d.bytesNoCopy())
		u.noPassword = d.flags(1)[0]
		nRoles := d.count(minNameBytes, int(^uint(0)>>1))
		for j := 0; j < nRoles && d.err == nil; j++ {
			u.roles = append(u.roles, string(d.bytesNoCopy()))
		}
		switch {
		case d.err != nil:
		case u.name == "" || (i > 0 && u.name <= prev):
			d.fail("user %q is empty or out of order", u.name)
		case !slices.IsSorted(u.roles) || len(slices.Compact(slices.Clone(u.roles))) != len(u.roles):
			d.fail("user %q has roles out of order or repeated", u.name)
		default:
			a.users[u.name] = u
			prev = u.name
		}
	}
	nRoles := d.count(minRoleBytes, int(^uint(0)>>1))
	prev = ""
	for i := 0; i < nRoles && d.err == nil; i++ {
		r := &role{name: string(d.bytesNoCopy())}
		nPerms := d.count(minPermBytes, int(^uint(0)>>1))
		for j := 0; j < nPerms && d.err == nil; j++ {
			p := Permission{Type: PermissionType(d.enum())}
			p.Key = bytes.Clone(d.bytesNoCopy())
			p.RangeEnd = bytes.Clone(d.bytesNoCopy())
			if d.err == nil && (!validPermissionRange(p.Key, p.RangeEnd) || p.Type < PermRead || p.Type > PermReadWrite) {
				d.fail("role %q has an invalid permission on %q", r.name, p.Key)
			}
			r.perms = append(r.perms, p)
		}
		switch {
		case d.err != nil:
		case r.name == "" || (i > 0 && r.name <= prev):
			d.fail("role %q is empty or out of order", r.name)
		default:
			a.roles[r.name] = r
			prev = r.name
		}
	}
	if d.err == nil && a.enabled {
		if u := a.users[RootUser]; u == nil || !u.hasRole(RootRole) {
			d.fail("auth is enabled without a root user holding the root role")
		}
	}
	if d.err == nil {
		a.refresh()
	}
}
