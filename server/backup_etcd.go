package server

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

// An etcd backup (etcdctl snapshot save against etcd, or a copy of an etcd
// member's member/snap/db with --skip-hash-check) is etcd's bbolt database: what
// restore migrates from etcd into a new raftkv cluster. It is read with bbolt, in
// etcd's schema (go.etcd.io/etcd/server/v3/storage/schema):
//
//   - bucket "key": one record per change, keyed by its revision (8 bytes main,
//     '_', 8 bytes sub, and a 't' for a delete), holding an mvccpb.KeyValue; what
//     etcd's compactions left is each key's retained history;
//   - bucket "meta": "finishedCompactRev", the compaction revision (a revision's
//     17 bytes);
//   - bucket "lease": leasepb.Lease by id;
//   - buckets "auth" ("authEnabled", "authRevision"), "authUsers" and "authRoles"
//     (authpb.User, authpb.Role), whose password hashes are bcrypt's, as raftkv's.
//
// The membership, alarms and cluster version are not carried over: a restore
// starts a new cluster, as etcdutl's does. The histories are gathered in memory,
// as bbolt keeps them in revision order and Import takes them in key order: a
// migration needs memory about the size of the data kept (keys, values, history).

// bboltMagic is bbolt's magic number, in the meta page at the start of the file
// (after a 16-byte page header), little-endian.
const bboltMagic = 0xED0CDAED

// etcdRevBytes is the length of a revision in etcd's key bucket, without the
// tombstone mark.
const etcdRevBytes = 8 + 1 + 8

// isBboltFile reports whether head, a file's first bytes, starts a bbolt database.
func isBboltFile(head []byte) bool {
	return len(head) >= 20 && binary.LittleEndian.Uint32(head[16:20]) == bboltMagic
}

// readEtcdBackup reads the etcd database at path into br: the store's header in
// br.info, the keys' histories, in key order, for nextKey.
func readEtcdBackup(path string, br *backupReader) error {
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: an etcd database that bbolt cannot open: %v", errBadBackup, err)
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		info := &br.info
		info.Version, info.Format = backupVersion, "etcd"
		if b := tx.Bucket([]byte("meta")); b != nil {
			if v := b.Get([]byte("finishedCompactRev")); v != nil {
				if len(v) != etcdRevBytes {
					return fmt.Errorf("%w: etcd's finishedCompactRev has %d bytes, not %d", errBadBackup, len(v), etcdRevBytes)
				}
				info.CompactRevision = int64(binary.BigEndian.Uint64(v))
			}
		}
		keys := tx.Bucket([]byte("key"))
		if keys == nil {
			return fmt.Errorf("%w: an etcd database without its key bucket", errBadBackup)
		}
		histories, rev, err := etcdHistories(keys)
		if err != nil {
			return err
		}
		// A compaction past the last change (every key deleted before it) leaves
		// etcd at the compaction revision, as etcd's own restart does.
		info.Revision = max(rev, info.CompactRevision, 1)
		br.etcdKeys, info.TotalKeys = histories, uint64(len(histories))
		if info.Leases, err = etcdLeases(tx.Bucket([]byte("lease"))); err != nil {
			return err
		}
		info.AuthState, err = etcdAuthState(tx)
		return err
	})
}

// etcdHistories gathers the key bucket's changes into each key's history, sorted by
// key, and returns the last change's revision.
func etcdHistories(b *bbolt.Bucket) ([]*kv.KeyHistory, int64, error) {
	byKey := map[string]*kv.KeyHistory{}
	var last int64
	err := b.ForEach(func(k, v []byte) error {
		tombstone := len(k) == etcdRevBytes+1 && k[etcdRevBytes] == 't'
		if (len(k) != etcdRevBytes && !tombstone) || k[8] != '_' {
			return fmt.Errorf("%w: etcd key bucket record %x is not a revision", errBadBackup, k)
		}
		main, sub := int64(binary.BigEndian.Uint64(k)), binary.BigEndian.Uint64(k[9:])
		var r mvccpb.KeyValue
		if err := proto.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: etcd change at revision %d: %v", errBadBackup, main, err)
		}
		if main < last || sub > uint64(^uint32(0)) {
			return fmt.Errorf("%w: etcd change at revision %d_%d is out of order", errBadBackup, main, sub)
		}
		last = main
		h := byKey[string(r.Key)]
		if h == nil {
			h = &kv.KeyHistory{Key: slices.Clone(r.Key)}
			byKey[string(r.Key)] = h
		}
		open := len(h.Generations) > 0 && h.Generations[len(h.Generations)-1].TombstoneRevision == 0
		switch {
		case tombstone && !open:
			return fmt.Errorf("%w: etcd deletes key %q at revision %d, which has no put before it", errBadBackup, r.Key, main)
		case tombstone:
			g := &h.Generations[len(h.Generations)-1]
			g.TombstoneRevision, g.TombstoneSub = main, uint32(sub)
		default:
			if !open {
				h.Generations = append(h.Generations, kv.KeyGeneration{CreateRevision: r.CreateRevision, FirstVersion: r.Version})
			}
			g := &h.Generations[len(h.Generations)-1]
			g.Revisions = append(g.Revisions, kv.KeyRevision{ModRevision: main, Sub: uint32(sub), Lease: r.Lease, Value: slices.Clone(r.Value)})
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]*kv.KeyHistory, 0, len(byKey))
	for _, h := range byKey {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *kv.KeyHistory) int { return bytes.Compare(a.Key, b.Key) })
	return out, last, nil
}

// etcdLeases reads etcd's lease bucket.
func etcdLeases(b *bbolt.Bucket) ([]kv.LeaseInfo, error) {
	if b == nil {
		return nil, nil
	}
	var out []kv.LeaseInfo
	err := b.ForEach(func(k, v []byte) error {
		var l leasepb.Lease
		if err := proto.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("%w: etcd lease %x: %v", errBadBackup, k, err)
		}
		out = append(out, kv.LeaseInfo{ID: l.ID, TTL: l.TTL, RemainingTTL: l.RemainingTTL})
		return nil
	})
	slices.SortFunc(out, func(a, b kv.LeaseInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, err
}

// etcdAuthState reads etcd's auth buckets as the store's auth state; nil for auth
// never used (no users, no roles, disabled).
func etcdAuthState(tx *bbolt.Tx) ([]byte, error) {
	a := kv.AuthImport{Revision: 1}
	if b := tx.Bucket([]byte("auth")); b != nil {
		a.Enabled = bytes.Equal(b.Get([]byte("authEnabled")), []byte{1})
		if v := b.Get([]byte("authRevision")); len(v) >= 8 {
			a.Revision = max(binary.BigEndian.Uint64(v), 1)
		}
	}
	if b := tx.Bucket([]byte("authUsers")); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			var u authpb.User
			if err := proto.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("%w: etcd user %q: %v", errBadBackup, k, err)
			}
			a.Users = append(a.Users, kv.AuthImportUser{Name: string(u.Name), PasswordHash: u.Password,
				NoPassword: u.Options.GetNoPassword(), Roles: u.Roles})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if b := tx.Bucket([]byte("authRoles")); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			var r authpb.Role
			if err := proto.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: etcd role %q: %v", errBadBackup, k, err)
			}
			role := kv.AuthImportRole{Name: string(r.Name)}
			for _, p := range r.KeyPermission {
				role.Perms = append(role.Perms, kv.Permission{Type: kv.PermissionType(p.PermType), Key: p.Key, RangeEnd: p.RangeEnd})
			}
			a.Roles = append(a.Roles, role)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if !a.Enabled && len(a.Users) == 0 && len(a.Roles) == 0 {
		return nil, nil
	}
	state, err := kv.EncodeAuthState(a)
	if err != nil {
		return nil, fmt.Errorf("%w: etcd's %s", errBadBackup, strings.TrimPrefix(err.Error(), "auth state: "))
	}
	return state, nil
}
