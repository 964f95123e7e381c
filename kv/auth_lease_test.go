package kv

import (
	"errors"
	"fmt"
	"testing"
)

// leaseAuthFixture is setupAuth's store with leases granted and keys attached by
// root: lease 1 holds app/a (alice may write it), lease 2 app/b and other (alice may
// write only the first), lease 3 nothing, lease 6 config (alice may read it, not
// write it).
func leaseAuthFixture(t *testing.T) *Store {
	t.Helper()
	s := newTestStore(t, Config{})
	setupAuth(t, s)
	for _, id := range []int64{1, 2, 3, 6} {
		if res := apply(t, s, &Command{Sender: as(s, "root"), LeaseGrant: &LeaseGrantRequest{ID: id, TTL: 60}}); res.Err != nil {
			t.Fatalf("root grants lease %d: %v", id, res.Err)
		}
	}
	for _, kv := range []struct {
		key   string
		lease int64
	}{{"app/a", 1}, {"app/b", 2}, {"other", 2}, {"config", 6}} {
		if err := putAs(t, s, as(s, "root"), kv.key, kv.lease); err != nil {
			t.Fatalf("root puts %s with lease %d: %v", kv.key, kv.lease, err)
		}
	}
	return s
}

func putAs(t *testing.T, s *Store, sender AuthInfo, key string, lease int64) error {
	t.Helper()
	return apply(t, s, &Command{Sender: sender, Put: &PutRequest{Key: []byte(key), Value: []byte("v"), Lease: lease}}).Err
}

func revokeAs(t *testing.T, s *Store, sender AuthInfo, id int64) error {
	t.Helper()
	return apply(t, s, &Command{Sender: sender, LeaseRevoke: &LeaseRevokeRequest{ID: id}}).Err
}

// A put naming a lease needs write permission on every key the lease holds, as in
// etcd (a user may not attach keys to a lease it could not revoke), in a txn too; a
// revoke needs write permission on every key it would delete. Both are decided
// when they apply, against the lease's keys at that point of the log. A denied one
// changes nothing.
func TestLeaseWritesCheckedAtApply(t *testing.T) {
	s := leaseAuthFixture(t)
	alice := func() AuthInfo { return as(s, "alice") }
	if err := putAs(t, s, alice(), "app/c", 1); err != nil {
		t.Fatalf("alice attaches app/c to lease 1 (app/a): %v", err)
	}
	if err := putAs(t, s, alice(), "app/e", 3); err != nil {
		t.Fatalf("alice attaches app/e to lease 3 (no keys): %v", err)
	}
	rev := s.Revision()
	for _, id := range []int64{2, 6} {
		if err := putAs(t, s, alice(), "app/d", id); !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("alice attaches app/d to lease %d: %v, want %v", id, err, ErrPermissionDenied)
		}
	}
	txn := &TxnRequest{Failure: []RequestOp{{Put: &PutRequest{Key: []byte("app/d"), Lease: 2}}}}
	if res := apply(t, s, &Command{Sender: alice(), Txn: txn}); !errors.Is(res.Err, ErrPermissionDenied) {
		t.Fatalf("alice's txn attaching app/d to lease 2 in the branch that does not run: %v", res.Err)
	}
	// The permission is checked first, as etcd does, then whether the lease exists.
	if err := putAs(t, s, alice(), "app/d", 404); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("alice puts with a lease that does not exist: %v, want %v", err, ErrLeaseNotFound)
	}
	if err := putAs(t, s, alice(), "other", 404); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice puts other with a lease that does not exist: %v, want %v", err, ErrPermissionDenied)
	}
	for _, id := range []int64{2, 6} {
		if err := revokeAs(t, s, alice(), id); !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("alice revokes lease %d: %v, want %v", id, err, ErrPermissionDenied)
		}
	}
	if err := revokeAs(t, s, AuthInfo{}, 2); !errors.Is(err, ErrUserEmpty) {
		t.Fatalf("a revoke with no user: %v, want %v", err, ErrUserEmpty)
	}
	if s.Revision() != rev || leaseKeys(s, 2) != "app/b,other" || leaseKeys(s, 6) != "config" {
		t.Fatalf("denied commands changed the store: revision %d (was %d), lease 2 holds %q, lease 6 %q",
			s.Revision(), rev, leaseKeys(s, 2), leaseKeys(s, 6))
	}
	if err := revokeAs(t, s, alice(), 1); err != nil {
		t.Fatalf("alice revokes lease 1 (app/a, app/c): %v", err)
	}
	if err := revokeAs(t, s, alice(), 404); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("alice revokes a lease that does not exist: %v, want %v", err, ErrLeaseNotFound)
	}

	// Decided at apply: alice's revoke of lease 3 is stamped while it holds only her
	// key, and applies after root attached one she may not write.
	stamped := alice()
	if err := putAs(t, s, as(s, "root"), "other2", 3); err != nil {
		t.Fatal(err)
	}
	if err := revokeAs(t, s, stamped, 3); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice's revoke applied after root attached other2: %v, want %v", err, ErrPermissionDenied)
	}
	// And one stamped before an auth change fails as etcd's do.
	if err := putAs(t, s, as(s, "root"), "app/f", 7); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with lease 7 before its grant: %v", err)
	}
	stamped = alice()
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: RoleAdd, Name: "moves-the-revision"})
	if err := revokeAs(t, s, stamped, 2); !errors.Is(err, ErrAuthOldRevision) {
		t.Fatalf("a revoke stamped before an auth change: %v, want %v", err, ErrAuthOldRevision)
	}
	// Root may revoke anything; so may the member itself (a lease's expiry), which
	// names no user.
	if err := revokeAs(t, s, as(s, "root"), 2); err != nil {
		t.Fatalf("root revokes lease 2: %v", err)
	}
	if err := revokeAs(t, s, AuthInfo{Member: true}, 6); err != nil {
		t.Fatalf("the member revokes lease 6 (an expiry): %v", err)
	}
	if got := describe(mustRange(t, s, &RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}).Kvs); got != "app/e=v(c7 m7 v1 l3) other2=v(c9 m9 v1 l3)" {
		t.Fatalf("keys left: %s", got)
	}
	// With auth disabled nothing is checked.
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: AuthDisable})
	if err := revokeAs(t, s, AuthInfo{}, 3); err != nil {
		t.Fatalf("a revoke with auth disabled: %v", err)
	}
}

// The checks of the lease requests a member answers itself, as etcd 3.7 makes
// them: a keep-alive needs write on every key of the lease, its time-to-live with
// keys and the list of leases read on every key they name; root needs nothing, a
// lease with no key or that does not exist needs only a user, and with auth enabled
// a request without a user fails with ErrUserEmpty.
func TestLeaseReadsChecked(t *testing.T) {
	s := leaseAuthFixture(t)
	alice, root, nobody := as(s, "alice"), as(s, "root"), AuthInfo{}
	for _, c := range []struct {
		sender AuthInfo
		id     int64
		renew  error
		keys   string // or the error
	}{
		{alice, 1, nil, "app/a"},
		{alice, 2, ErrPermissionDenied, ErrPermissionDenied.Error()},
		{alice, 3, nil, ""},
		{alice, 6, ErrPermissionDenied, "config"}, // read, not write
		{alice, 404, nil, ""},
		{root, 2, nil, "app/b,other"},
		{nobody, 3, ErrUserEmpty, ErrUserEmpty.Error()},
		{AuthInfo{User: "ghost", Revision: alice.Revision}, 1, ErrPermissionDenied, ErrPermissionDenied.Error()},
		{AuthInfo{User: "ghost", Revision: alice.Revision}, 3, nil, ""},
	} {
		what := fmt.Sprintf("%q on lease %d", c.sender.User, c.id)
		if err := s.CheckLeaseRenew(c.sender, c.id); !errors.Is(err, c.renew) {
			t.Errorf("renew by %s: %v, want %v", what, err, c.renew)
		}
		keys, err := s.LeaseKeysAs(c.sender, c.id, 0)
		got := joinKeys(keys)
		if err != nil {
			got = err.Error()
		}
		if got != c.keys {
			t.Errorf("keys for %s: %q, want %q", what, got, c.keys)
		}
	}
	if _, err := s.LeasesAs(alice); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("alice lists leases while lease 2 holds other: %v", err)
	}
	if _, err := s.LeasesAs(nobody); !errors.Is(err, ErrUserEmpty) {
		t.Fatalf("leases listed without a user: %v", err)
	}
	if leases, err := s.LeasesAs(root); err != nil || len(leases) != 4 {
		t.Fatalf("root lists leases: %v, %v", leases, err)
	}
	if err := revokeAs(t, s, root, 2); err != nil {
		t.Fatal(err)
	}
	if leases, err := s.LeasesAs(as(s, "alice")); err != nil || len(leases) != 3 {
		t.Fatalf("alice lists leases once every key is one she may read: %v, %v", leases, err)
	}
	// Auth disabled: no user needed.
	mustAuth(t, s, as(s, "root"), &AuthRequest{Op: AuthDisable})
	if err := s.CheckLeaseRenew(nobody, 1); err != nil {
		t.Fatalf("renew with auth disabled: %v", err)
	}
	if keys, err := s.LeaseKeysAs(nobody, 1, 0); err != nil || joinKeys(keys) != "app/a" {
		t.Fatalf("keys with auth disabled: %q, %v", joinKeys(keys), err)
	}
	if _, err := s.LeasesAs(nobody); err != nil {
		t.Fatalf("leases with auth disabled: %v", err)
	}
}

func joinKeys(keys [][]byte) string {
	var out string
	for i, k := range keys {
		if i > 0 {
			out += ","
		}
		out += string(k)
	}
	return out
}

// A lease's keys are listed within the response's budget: each key costs its bytes
// field in LeaseTimeToLiveResponse, and one past the limit refuses the listing
// with a *ResponseTooLargeError naming the lease, rather than building it.
func TestLeaseKeysWithinLimit(t *testing.T) {
	s := newTestStore(t, Config{})
	mustGrant(t, s, 9, 60)
	for i := range 10 {
		putWithLease(t, s, fmt.Sprintf("key%02d", i), 9) // 5 bytes: 7 in the field
	}
	if keys, err := s.LeaseKeysAs(AuthInfo{}, 9, 70); err != nil || len(keys) != 10 {
		t.Fatalf("10 keys of 7 bytes each within 70: %d keys, %v", len(keys), err)
	}
	_, err := s.LeaseKeysAs(AuthInfo{}, 9, 69)
	var tooLarge *ResponseTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Lease != 9 || tooLarge.Bytes != 70 || tooLarge.Limit != 69 {
		t.Fatalf("10 keys of 7 bytes each within 69: %v (%+v), want a ResponseTooLargeError for lease 9 of 70 bytes", err, tooLarge)
	}
	select {
	case <-s.Failed():
		t.Fatal("a refused listing stopped the store")
	default:
	}
}
