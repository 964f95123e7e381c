package server

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"raftkv/kv"
)

// An etcd backup (etcdctl snapshot save against etcd, or a copy of a stopped etcd
// member's member/snap/db with --skip-hash-check) is etcd's bbolt database: what
// restore migrates from etcd into a new raftkv cluster. It is read with bbolt, in
// etcd's schema (go.etcd.io/etcd/server/v3/storage/schema):
//
//   - bucket "key": one record per change, keyed by its revision (8 bytes main,
//     '_', 8 bytes sub, and a 't' for a delete), holding an mvccpb.KeyValue; what
//     etcd's compactions left is each key's retained history;
//   - bucket "meta": "finishedCompactRev" and "scheduledCompactRev", the
//     compaction revisions (a revision's 17 bytes);
//   - bucket "lease": leasepb.Lease by id;
//   - buckets "auth" ("authEnabled", "authRevision"), "authUsers" and "authRoles"
//     (authpb.User, authpb.Role), whose password hashes are bcrypt's, as raftkv's.
//
// The membership, alarms and cluster version are not carried over: a restore
// starts a new cluster, as etcdutl's does.
//
// bbolt keeps the changes in revision order and Import takes keys in key order. A
// first pass reads only each record's key (protowire, the value left in place) and
// sorts the changes by key outside memory (etcdChangeSort); nextKey then reads one
// key's records at a time, in the read transaction held open meanwhile. The
// compaction is applied as etcd's own restart would finish it: a backup taken while
// a compaction was under way (scheduledCompactRev past finishedCompactRev) still
// holds some of what it drops.

// errBadEtcdBackup: the etcd database cannot be migrated as it is.
var errBadEtcdBackup = errors.New("not a usable etcd backup")

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

// etcdRev is one change of etcd's key bucket.
type etcdRev struct {
	main      int64
	sub       uint32
	tombstone bool
}

// bucketKey is the change's key in etcd's key bucket.
func (r etcdRev) bucketKey() []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, etcdRevBytes+1), uint64(r.main))
	k = append(k, '_')
	k = binary.BigEndian.AppendUint64(k, uint64(r.sub))
	if r.tombstone {
		k = append(k, 't')
	}
	return k
}

// etcdBackup is an etcd database open for reading, with every key's changes
// sorted by key.
type etcdBackup struct {
	db   *bbolt.DB
	tx   *bbolt.Tx
	keys *bbolt.Bucket
	// sorted holds the changes by key (etcdChangeSort); compactRev is the
	// compaction applied to each key's as it is read.
	sorted     *etcdChangeSort
	compactRev int64
	// deletes reads the changes at the compaction revision, for nextDelete.
	deletes *bbolt.Cursor
}

func (e *etcdBackup) close() {
	if e.sorted != nil {
		e.sorted.close()
	}
	if e.tx != nil {
		_ = e.tx.Rollback()
	}
	_ = e.db.Close()
}

// readEtcdBackup opens the etcd database at path and reads into br.info what it
// holds; br.nextKey then hands out its keys' histories. A damaged database, which
// bbolt meets with a panic, is refused with an error.
func readEtcdBackup(path string, br *backupReader) (err error) {
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return fmt.Errorf("%w: the etcd database is locked by another process (an etcd running on it?): "+
			"stop it, or take a backup with etcdctl snapshot save", errBadEtcdBackup)
	case err != nil:
		return fmt.Errorf("%w: bbolt cannot open the etcd database: %v", errBadEtcdBackup, err)
	}
	e := &etcdBackup{db: db}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	defer recoverDamagedEtcd(&err)
	// A page id past the file's end makes bbolt read outside its mapping: a fault,
	// which is fatal unless it panics instead.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if e.tx, err = db.Begin(false); err != nil {
		return fmt.Errorf("%w: %v", errBadEtcdBackup, err)
	}
	info := &br.info
	info.Version, info.Format = backupVersion, "etcd"
	finished, scheduled := int64(-1), int64(-1) // etcd's compactMainRev before any compaction
	if b := e.tx.Bucket([]byte("meta")); b != nil {
		if finished, err = etcdMetaRev(b, "finishedCompactRev"); err != nil {
			return err
		}
		if scheduled, err = etcdMetaRev(b, "scheduledCompactRev"); err != nil {
			return err
		}
	}
	// A compaction scheduled and not finished is finished at etcd's next start.
	info.CompactRevision = max(finished, scheduled)
	if e.keys = e.tx.Bucket([]byte("key")); e.keys == nil {
		return fmt.Errorf("%w: the etcd database has no key bucket", errBadEtcdBackup)
	}
	e.compactRev = info.CompactRevision
	last, keys, err := e.gather()
	if err != nil {
		return err
	}
	// A compaction past the last change (every key deleted before it) leaves etcd
	// at the compaction revision, as etcd's own restart does.
	info.Revision = max(last, info.CompactRevision, 1)
	info.TotalKeys = keys
	if info.Leases, err = etcdLeases(e.tx.Bucket([]byte("lease"))); err != nil {
		return err
	}
	if info.AuthState, err = etcdAuthState(e.tx); err != nil {
		return err
	}
	br.etcd = e
	return nil
}

// recoverDamagedEtcd turns bbolt's panic on a damaged page (an assertion, or a fault
// under debug.SetPanicOnFault) into an error.
func recoverDamagedEtcd(err *error) {
	switch r := recover().(type) {
	case nil:
	case sortFatal:
		*err = fmt.Errorf("sorting etcd's changes by key: %s", r)
	default:
		*err = fmt.Errorf("%w: the etcd database is damaged (%v); take a new backup with etcdctl snapshot save", errBadEtcdBackup, r)
	}
}

// etcdMetaRev reads a revision from etcd's meta bucket; -1 if absent.
func etcdMetaRev(b *bbolt.Bucket, name string) (int64, error) {
	v := b.Get([]byte(name))
	if v == nil {
		return -1, nil
	}
	if len(v) != etcdRevBytes {
		return 0, fmt.Errorf("%w: etcd's %s has %d bytes, not %d", errBadEtcdBackup, name, len(v), etcdRevBytes)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// gather sorts every change by key, and returns the last change's revision and
// the number of keys the compaction leaves a history.
func (e *etcdBackup) gather() (last int64, keys uint64, err error) {
	if e.sorted, err = newEtcdChangeSort(); err != nil {
		return 0, 0, err
	}
	err = e.keys.ForEach(func(k, v []byte) error {
		tombstone := len(k) == etcdRevBytes+1 && k[etcdRevBytes] == 't'
		if (len(k) != etcdRevBytes && !tombstone) || k[8] != '_' {
			return fmt.Errorf("%w: etcd's key bucket holds %x, which is not a revision", errBadEtcdBackup, k)
		}
		r := etcdRev{main: int64(binary.BigEndian.Uint64(k)), tombstone: tombstone}
		sub := binary.BigEndian.Uint64(k[9:])
		if sub > uint64(^uint32(0)) {
			return fmt.Errorf("%w: etcd's change %d_%d has a sub-revision past 2^32", errBadEtcdBackup, r.main, sub)
		}
		r.sub = uint32(sub)
		key, err := etcdRecordKey(v)
		if err != nil {
			return fmt.Errorf("%w: etcd's change at revision %d: %v", errBadEtcdBackup, r.main, err)
		}
		last = r.main
		return e.sorted.add(key, r)
	})
	if err != nil {
		return 0, 0, err
	}
	if err := e.sorted.rewind(); err != nil {
		return 0, 0, err
	}
	for {
		_, revs, ok, err := e.sorted.next()
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			break
		}
		if len(compactEtcdRevs(revs, e.compactRev)) > 0 {
			keys++
		}
	}
	return last, keys, e.sorted.rewind()
}

// compactEtcdRevs returns what a compaction at compactRev keeps of one key's
// changes, as raftkv keeps a history (kv.KeyHistory): a lifetime that ended at or
// before it goes whole, and of the others the last put at or before it and all
// after. A delete with no put before it is dropped too: since etcd 3.6 a
// compaction at a delete's revision keeps the delete and drops the put, and
// nextDelete hands out those at the compaction revision, which a watch from
// exactly there reports.
func compactEtcdRevs(revs []etcdRev, compactRev int64) []etcdRev {
	var out, life []etcdRev // life: the lifetime being read, puts then its delete
	flush := func() {
		if len(life) == 0 {
			return
		}
		if end := life[len(life)-1]; end.tombstone && end.main <= compactRev {
			life = life[:0]
			return
		}
		first := 0
		for i, r := range life {
			if !r.tombstone && r.main <= compactRev {
				first = i
			}
		}
		out = append(out, life[first:]...)
		life = life[:0]
	}
	for _, r := range revs {
		if r.tombstone && len(life) == 0 {
			continue
		}
		life = append(life, r)
		if r.tombstone {
			flush()
		}
	}
	flush()
	return out
}

// nextDelete returns the next delete at the compaction revision, nil after the
// last: etcd keeps it (its key's history, compactEtcdRevs, does not), and a watch
// from exactly the compaction revision reports it. They come from etcd's key
// bucket, which holds the changes in the order of their revisions.
func (e *etcdBackup) nextDelete() (d *kv.CompactionDelete, err error) {
	defer func() {
		if err != nil {
			d = nil
		}
	}()
	defer recoverDamagedEtcd(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if e.compactRev < 1 {
		return nil, nil
	}
	var k, v []byte
	if e.deletes == nil {
		e.deletes = e.keys.Cursor()
		k, v = e.deletes.Seek(etcdRev{main: e.compactRev}.bucketKey())
	} else {
		k, v = e.deletes.Next()
	}
	for ; k != nil && int64(binary.BigEndian.Uint64(k)) == e.compactRev; k, v = e.deletes.Next() {
		if len(k) != etcdRevBytes+1 || k[etcdRevBytes] != 't' {
			continue
		}
		key, err := etcdRecordKey(v)
		if err != nil || len(key) == 0 {
			return nil, fmt.Errorf("%w: etcd's delete at revision %d cannot be read again", errBadEtcdBackup, e.compactRev)
		}
		return &kv.CompactionDelete{Key: bytes.Clone(key), Sub: uint32(binary.BigEndian.Uint64(k[9:]))}, nil
	}
	return nil, nil
}

// etcdRecordKey returns the key of an mvccpb.KeyValue (field 1), leaving the rest
// of the record unread.
func etcdRecordKey(v []byte) ([]byte, error) {
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		v = v[n:]
		if num == 1 && typ == protowire.BytesType {
			key, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			return key, nil
		}
		if n = protowire.ConsumeFieldValue(num, typ, v); n < 0 {
			return nil, protowire.ParseError(n)
		}
		v = v[n:]
	}
	return nil, errors.New("the record names no key")
}

// next returns the next key's history, nil after the last.
func (e *etcdBackup) next() (h *kv.KeyHistory, err error) {
	defer func() {
		if err != nil {
			h = nil
		}
	}()
	defer recoverDamagedEtcd(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var revs []etcdRev
	var k []byte
	for len(revs) == 0 {
		var ok bool
		if k, revs, ok, err = e.sorted.next(); err != nil || !ok {
			return nil, err
		}
		revs = compactEtcdRevs(revs, e.compactRev)
	}
	key := string(k)
	h = &kv.KeyHistory{Key: []byte(key)}
	for _, r := range revs {
		v := e.keys.Get(r.bucketKey())
		var rec mvccpb.KeyValue
		if v == nil || proto.Unmarshal(v, &rec) != nil || string(rec.Key) != key {
			return nil, fmt.Errorf("%w: etcd's change of %q at revision %d cannot be read again", errBadEtcdBackup, key, r.main)
		}
		open := len(h.Generations) > 0 && h.Generations[len(h.Generations)-1].TombstoneRevision == 0
		switch {
		case r.tombstone:
			g := &h.Generations[len(h.Generations)-1] // compactEtcdRevs left a put before it
			g.TombstoneRevision, g.TombstoneSub = r.main, r.sub
		default:
			if !open {
				h.Generations = append(h.Generations, kv.KeyGeneration{CreateRevision: rec.CreateRevision, FirstVersion: rec.Version})
			}
			g := &h.Generations[len(h.Generations)-1]
			g.Revisions = append(g.Revisions, kv.KeyRevision{ModRevision: r.main, Sub: r.sub, Lease: rec.Lease, Value: rec.Value})
		}
	}
	return h, nil
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
			return fmt.Errorf("%w: etcd's lease %x: %v", errBadEtcdBackup, k, err)
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
				return fmt.Errorf("%w: etcd's user %q: %v", errBadEtcdBackup, k, err)
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
				return fmt.Errorf("%w: etcd's role %q: %v", errBadEtcdBackup, k, err)
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
		return nil, fmt.Errorf("%w: etcd's %s", errBadEtcdBackup, strings.TrimPrefix(err.Error(), "auth state: "))
	}
	return state, nil
}
