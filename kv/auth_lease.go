package kv

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// This file holds etcd's permission checks on leases (etcdserver/apply/auth.go's
// checkLeasePuts, and v3_server.go's checkLeaseRenew, checkLeaseTimeToLive and
// checkLeaseLeases in etcd 3.7). A lease stands for the keys attached to it: who
// revokes it deletes them, who renews it keeps them, who lists them reads their
// names. So a user without the root role must be permitted on every attached key:
// write to revoke or renew the lease or to attach another key to it, read to list
// its keys. The revoke and the put are checked where they apply, against the lease's
// keys at that point of the log, so every replica decides alike; the others are
// checked by the member that serves them, under the store's read lock.

// checkLeaseAuth is etcd's checkLeasePutsKeys (write) and the key loop of its
// lease reads (read). A lease that does not exist, or holds no key, needs no
// permission: the request then fails or succeeds on its own. A key's check can
// fail only with the sender's error (no user, an old auth revision, or permission
// denied), the same for every key.
func (a *authState) checkLeaseAuth(sender AuthInfo, r pebble.Reader, id int64, write bool) error {
	if id == 0 || a.checkAdmin(sender) == nil {
		return nil
	}
	var denied error
	err := eachLeaseKey(r, id, func(k []byte) error {
		denied = a.checkOp(sender, k, nil, write)
		return denied
	})
	switch {
	case denied != nil:
		return denied
	case err != nil:
		return engineReadFailed(fmt.Sprintf("the keys of lease %d", id), err)
	}
	return nil
}

// checkLeaseUser is the start of etcd's lease checks outside the log: with auth
// enabled the request needs a user. ok is false when nothing more is to be checked
// (auth disabled, or the member's own request).
func (a *authState) checkLeaseUser(sender AuthInfo) (ok bool, err error) {
	switch {
	case !a.enabled || sender.Member:
		return false, nil
	case sender.isZero():
		return false, ErrUserEmpty
	}
	return true, nil
}

// CheckLeaseRenew is etcd's checkLeaseRenew, for a keep-alive: with auth enabled a
// user, and unless it has the root role, write permission on every key attached to
// lease id.
func (s *Store) CheckLeaseRenew(sender AuthInfo, id int64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.mu.st
	if ok, err := st.auth.checkLeaseUser(sender); !ok {
		return err
	}
	return st.e.readFailed(st.auth.checkLeaseAuth(sender, st.e.db, id, true))
}

// LeaseKeysAs is LeaseKeys for sender, checked as etcd's checkLeaseTimeToLive: with
// auth enabled a user, and unless it has the root role, read permission on every
// key it returns. Keys that would take more than limit bytes of the response (none
// if limit <= 0) are refused with a *ResponseTooLargeError naming the lease.
func (s *Store) LeaseKeysAs(sender AuthInfo, id, limit int64) ([][]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.mu.st
	if ok, err := st.auth.checkLeaseUser(sender); err != nil {
		return nil, err
	} else if ok {
		if err := st.auth.checkLeaseAuth(sender, st.e.db, id, false); err != nil {
			return nil, st.e.readFailed(err)
		}
	}
	keys, err := st.e.leaseKeysLimited(id, limit)
	if errors.Is(err, ErrResponseTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, st.e.readFailed(engineReadFailed(fmt.Sprintf("the keys of lease %d", id), err))
	}
	return keys, nil
}

// LeasesAs is Leases for sender, checked as etcd's checkLeaseLeases: with auth
// enabled a user, and unless it has the root role, read permission on every key
// attached to any lease (a user who may not read one of them lists none).
func (s *Store) LeasesAs(sender AuthInfo) ([]LeaseInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.mu.st
	leases, err := st.e.leases()
	if err != nil {
		return nil, st.e.readFailed(engineReadFailed("the leases", err))
	}
	if ok, err := st.auth.checkLeaseUser(sender); err != nil {
		return nil, err
	} else if ok {
		for _, l := range leases {
			if err := st.e.readFailed(st.auth.checkLeaseAuth(sender, st.e.db, l.ID, false)); err != nil {
				return nil, err
			}
		}
	}
	return leases, nil
}
