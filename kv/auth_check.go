package kv

import (
	"bytes"
	"slices"
)

// This file decides whether a sender may do what a command or read asks, as
// etcd's authStore.isOpPermitted and apply/auth.go do: every put, delete, range,
// compare and nested txn of a request is checked, whichever branch a txn takes.
// The store runs the checks when it applies a command (so the log decides) and,
// for reads, under the same read lock as the read.

// keyInterval is [begin, end) of keys, or every key from begin on when open.
type keyInterval struct {
	begin, end []byte
	open       bool
}

// permInterval turns a permission's key and range end into its interval: a key
// alone is [key, key+"\x00"), the keys that sort between key and the next key.
func permInterval(key, rangeEnd []byte) keyInterval {
	switch {
	case len(rangeEnd) == 0:
		return keyInterval{begin: key, end: append(bytes.Clone(key), 0)}
	case isOpenEnd(rangeEnd):
		return keyInterval{begin: key, open: true}
	}
	return keyInterval{begin: key, end: rangeEnd}
}

// permSet is a union of key intervals kept as disjoint, non-touching
// intervals sorted by begin, so a range is covered by the union iff one of them
// covers it. etcd keeps an interval tree and asks whether the intervals overlapping
// the range form one contiguous run covering it: the same answer.
type permSet []keyInterval

// newPermSet merges ivs (which it sorts).
func newPermSet(ivs []keyInterval) permSet {
	slices.SortFunc(ivs, func(a, b keyInterval) int { return bytes.Compare(a.begin, b.begin) })
	var out permSet
	for _, iv := range ivs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.open || bytes.Compare(iv.begin, last.end) <= 0 {
				switch {
				case last.open:
				case iv.open:
					last.open, last.end = true, nil
				case bytes.Compare(iv.end, last.end) > 0:
					last.end = iv.end
				}
				continue
			}
		}
		out = append(out, iv)
	}
	return out
}

// covers reports whether the set holds every key of [key, rangeEnd), as etcd's
// checks read a range: rangeEnd empty is the key alone, "\x00" every key from key
// on. A range whose end is not after its key (which reads nothing) is covered when
// the interval holding its key reaches its end, which is what etcd's interval tree
// answers for it.
func (s permSet) covers(key, rangeEnd []byte) bool {
	// The last interval beginning at or before key is the only one that can hold it.
	i, found := slices.BinarySearchFunc(s, key, func(iv keyInterval, k []byte) int { return bytes.Compare(iv.begin, k) })
	if !found {
		i--
	}
	if i < 0 {
		return false
	}
	iv := &s[i]
	if iv.open {
		return true
	}
	if bytes.Compare(key, iv.end) >= 0 {
		return false
	}
	switch {
	case len(rangeEnd) == 0:
		return true
	case isOpenEnd(rangeEnd):
		return false
	}
	return bytes.Compare(rangeEnd, iv.end) <= 0
}

// userPerms is one user's permissions merged over its roles, etcd's
// unifiedRangePermissions.
type userPerms struct {
	read, write permSet
}

// refresh rebuilds every user's merged permissions, as etcd's
// refreshRangePermCache does after each change.
func (a *authState) refresh() {
	clear(a.perms)
	for name, u := range a.users {
		var read, write []keyInterval
		for _, roleName := range u.roles {
			r := a.roles[roleName]
			if r == nil {
				continue
			}
			for _, p := range r.perms {
				iv := permInterval(p.Key, p.RangeEnd)
				if p.Type == PermRead || p.Type == PermReadWrite {
					read = append(read, iv)
				}
				if p.Type == PermWrite || p.Type == PermReadWrite {
					write = append(write, iv)
				}
			}
		}
		a.perms[name] = &userPerms{read: newPermSet(read), write: newPermSet(write)}
	}
}

// checkOp is etcd's isOpPermitted: may sender read (or write) [key, rangeEnd)?
func (a *authState) checkOp(sender AuthInfo, key, rangeEnd []byte, write bool) error {
	if !a.enabled || sender.Member {
		return nil
	}
	if sender.Revision == 0 {
		return ErrUserEmpty // no user: a request without a token or certificate
	}
	if sender.Revision < a.revision {
		return ErrAuthOldRevision
	}
	u := a.users[sender.User]
	if u == nil {
		return ErrPermissionDenied
	}
	if u.hasRole(RootRole) {
		return nil
	}
	perms := a.perms[sender.User]
	set := perms.read
	if write {
		set = perms.write
	}
	if !set.covers(key, rangeEnd) {
		return ErrPermissionDenied
	}
	return nil
}

// checkCommand checks a client's write before it applies: each of its requests as
// etcd's authApplierV3 does, and a compaction, which etcd checks (admin only) when
// the request arrives, here at apply like the rest.
func (st *state) checkCommand(cmd *Command) error {
	a := &st.auth
	if !a.enabled || cmd.Sender.Member {
		return nil
	}
	switch {
	case cmd.Put != nil:
		return st.checkPutAuth(cmd.Sender, cmd.Put)
	case cmd.DeleteRange != nil:
		return a.checkDeleteAuth(cmd.Sender, cmd.DeleteRange)
	case cmd.Txn != nil:
		return st.checkTxnAuth(cmd.Sender, cmd.Txn)
	case cmd.Compact != nil:
		return a.checkAdmin(cmd.Sender)
	case cmd.LeaseRevoke != nil:
		// Revoking deletes the lease's keys: the sender must be allowed to write each
		// key attached when the revoke applies (auth_lease.go). A grant needs only a
		// user, which the server checks before proposing, as etcd does.
		return a.checkLeaseAuth(cmd.Sender, st.e.db, cmd.LeaseRevoke.ID, true)
	}
	return nil
}

func (st *state) checkPutAuth(sender AuthInfo, p *PutRequest) error {
	a := &st.auth
	if err := a.checkOp(sender, p.Key, nil, true); err != nil {
		return err
	}
	// A lease holding a key the sender may not write is one it could not revoke, so
	// it may not attach keys to it either (etcd's checkLeasePuts, in a txn too).
	if err := a.checkLeaseAuth(sender, st.e.db, p.Lease, true); err != nil {
		return err
	}
	if p.PrevKv {
		return a.checkOp(sender, p.Key, nil, false)
	}
	return nil
}

func (a *authState) checkDeleteAuth(sender AuthInfo, d *DeleteRangeRequest) error {
	if err := a.checkOp(sender, d.Key, d.RangeEnd, true); err != nil {
		return err
	}
	if d.PrevKv {
		return a.checkOp(sender, d.Key, d.RangeEnd, false)
	}
	return nil
}

// checkTxnAuth checks every compare, then every op of both branches, nested txns
// included, in etcd's order (so the first failure is etcd's).
func (st *state) checkTxnAuth(sender AuthInfo, t *TxnRequest) error {
	a := &st.auth
	for i := range t.Compare {
		if err := a.checkOp(sender, t.Compare[i].Key, t.Compare[i].RangeEnd, false); err != nil {
			return err
		}
	}
	for _, ops := range [2][]RequestOp{t.Success, t.Failure} {
		for i := range ops {
			op := &ops[i]
			var err error
			switch {
			case op.Range != nil:
				err = a.checkOp(sender, op.Range.Key, op.Range.RangeEnd, false)
			case op.Put != nil:
				err = st.checkPutAuth(sender, op.Put)
			case op.DeleteRange != nil:
				// etcd checks the read of prev_kv first here, unlike a DeleteRange
				// on its own.
				if op.DeleteRange.PrevKv {
					err = a.checkOp(sender, op.DeleteRange.Key, op.DeleteRange.RangeEnd, false)
				}
				if err == nil {
					err = a.checkOp(sender, op.DeleteRange.Key, op.DeleteRange.RangeEnd, true)
				}
			case op.Txn != nil:
				err = st.checkTxnAuth(sender, op.Txn)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
