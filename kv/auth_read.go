package kv

import "slices"

// This file holds the reads of the auth state and the reads checked against it.
// The server makes them linearizable as any read (ReadIndex, then wait for the
// apply), so each answers as of a point of the log, under the store's read lock.

// AuthStatus returns whether auth is enabled and the auth revision.
func (s *Store) AuthStatus() (enabled bool, revision uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := &s.mu.st.auth
	return a.enabled, a.revision
}

// UserPassword returns what checking name's password needs, as etcd's
// CheckPassword reads it: the bcrypt hash and the auth revision it is current at.
// It fails with ErrAuthNotEnabled, ErrAuthFailed (no such user) or
// ErrNoPasswordUser.
func (s *Store) UserPassword(name string) (hash []byte, revision uint64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := &s.mu.st.auth
	if !a.enabled {
		return nil, 0, ErrAuthNotEnabled
	}
	u := a.users[name]
	switch {
	case u == nil:
		return nil, 0, ErrAuthFailed
	case u.noPassword:
		return nil, 0, ErrNoPasswordUser
	}
	return u.password, a.revision, nil
}

// CheckAdmin is etcd's IsAdminPermitted: nil when auth is disabled or sender has
// the root role.
func (s *Store) CheckAdmin(sender AuthInfo) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.auth.checkAdmin(sender)
}

// CheckRead is etcd's IsRangePermitted: may sender read [key, rangeEnd)?
func (s *Store) CheckRead(sender AuthInfo, key, rangeEnd []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.auth.checkOp(sender, key, rangeEnd, false)
}

// RequireUser is etcd's requireAuthInfo for the requests that need a user but no
// permission (Status, LeaseGrant): with auth enabled, a sender without one fails
// with ErrUserEmpty.
func (s *Store) RequireUser(sender AuthInfo) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.st.auth.enabled && sender.isZero() {
		return ErrUserEmpty
	}
	return nil
}

// RangeAs is RangeLimited for sender: the request's checks, then its permission,
// then the read, under one read lock. A point read at the current revision may
// be answered from memory (range_cache.go); the key and value slices of a
// response may be shared with the cache and with other responses, so a caller
// must not modify them.
func (s *Store) RangeAs(sender AuthInfo, r *RangeRequest, maxResponseBytes int64) (*RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	probe := s.rangeAsCached(sender, r, maxResponseBytes)
	if probe.answered {
		return probe.resp, probe.err
	}
	rd, err := s.beginRead(func(st *state) error { return st.auth.checkOp(sender, r.Key, r.RangeEnd, false) })
	if err != nil {
		return nil, err
	}
	defer rd.end()
	resp, err := engineRangeAt(rd.r, r, rd.rev, rd.compactRev, newBudget(maxResponseBytes))
	if err != nil {
		return readResult(rd, resp, err)
	}
	s.remember(&probe, resp)
	return resp, nil
}

// TxnAs is TxnLimited for sender, checked as a txn applied for it would be.
func (s *Store) TxnAs(sender AuthInfo, r *TxnRequest, maxResponseBytes int64) (*TxnResponse, error) {
	if !IsTxnReadOnly(r) {
		return nil, ErrNotReadOnly
	}
	if err := checkTxn(r, s.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	rd, err := s.beginRead(func(st *state) error { return st.checkTxnAuth(sender, r) })
	if err != nil {
		return nil, err
	}
	defer rd.end()
	resp, err := rd.readTxn(r, s.cfg.MaxTxnOps, newBudget(maxResponseBytes))
	return readResult(rd, resp, err)
}

// UserGet returns a user's roles. With auth enabled, a user may read itself, and
// only root any user (etcd's authApplierV3.UserGet).
func (s *Store) UserGet(sender AuthInfo, name string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := &s.mu.st.auth
	if err := a.checkAdmin(sender); err != nil && name != sender.User {
		return nil, err
	}
	u := a.users[name]
	if u == nil {
		return nil, ErrUserNotFound
	}
	return slices.Clone(u.roles), nil
}

// UserList returns every user's name, in order; root only when auth is enabled.
func (s *Store) UserList(sender AuthInfo) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := &s.mu.st.auth
	if err := a.checkAdmin(sender); err != nil {
		return nil, err
	}
	return sortedNames(a.users), nil
}

// RoleGet returns a role's permissions (the root role's is every key, read and
// write). With auth enabled, a user may read the roles it has, and only root any.
func (s *Store) RoleGet(sender AuthInfo, name string) ([]Permission, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := &s.mu.st.auth
	if err := a.checkAdmin(sender); err != nil {
		if u := a.users[sender.User]; u == nil || !u.hasRole(name) {
			return nil, err
		}
	}
	r := a.roles[name]
	if r == nil {
		return nil, ErrRoleNotFound
	}
	if name == RootRole {
		return []Permission{rootPermission}, nil
	}
	return slices.Clone(r.perms), nil
}

// RoleList returns every role's name, in order; root only when auth is enabled.
func (s *Store) RoleList(sender AuthInfo) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := &s.mu.st.auth
	if err := a.checkAdmin(sender); err != nil {
		return nil, err
	}
	return sortedNames(a.roles), nil
}
