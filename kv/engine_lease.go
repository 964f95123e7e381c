package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Leases in the engine (lease.go has their semantics). Two kinds of record:
//
//	'g' id:8 -> ttl:varint remainingTTL:varint   a lease granted and not revoked
//	'a' id:8 key -> (empty)                      key's live version carries lease id
//
// The attachments are what the in-memory grant table's key sets were: a revoke
// reads its lease's keys, in key order, from one prefix. A put that moves a key to
// another lease, and a delete, rewrite them in the same batch as the version, so
// they agree with the versions after any crash. Ids are stored with their sign bit
// flipped, so that the records sort in id order.

const (
	engineGrantPrefix  = 'g'
	engineAttachPrefix = 'a'
)

func grantKey(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{engineGrantPrefix}, uint64(id)^(1<<63))
}

func attachPrefix(id int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{engineAttachPrefix}, uint64(id)^(1<<63))
}

func attachKey(id int64, key []byte) []byte { return append(attachPrefix(id), key...) }

// lease returns the lease with the given id, if it exists, as the reader sees it.
func leaseOf(r pebble.Reader, id int64) (LeaseInfo, bool, error) {
	v, closer, err := r.Get(grantKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return LeaseInfo{}, false, nil
	}
	if err != nil {
		return LeaseInfo{}, false, err
	}
	defer closer.Close()
	info := LeaseInfo{ID: id}
	ttl, n := binary.Varint(v)
	remaining, m := binary.Varint(v[max(n, 0):])
	if n <= 0 || m <= 0 || n+m != len(v) {
		return LeaseInfo{}, false, fmt.Errorf("%w: lease %d record %x", ErrCorruptEngine, id, v)
	}
	info.TTL, info.RemainingTTL = ttl, remaining
	return info, true, nil
}

func (e *engine) lease(id int64) (LeaseInfo, bool, error) { return leaseOf(e.db, id) }

// leases returns every lease, in id order.
func (e *engine) leases() ([]LeaseInfo, error) {
	it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: []byte{engineGrantPrefix}, UpperBound: []byte{engineGrantPrefix + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []LeaseInfo
	for valid := it.First(); valid; valid = it.Next() {
		if len(it.Key()) != 9 {
			return nil, fmt.Errorf("%w: lease key %x", ErrCorruptEngine, it.Key())
		}
		info, _, err := leaseOf(e.db, int64(binary.BigEndian.Uint64(it.Key()[1:])^(1<<63)))
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, it.Error()
}

// leaseKeysOf returns the keys attached to lease id, in key order.
func leaseKeysOf(r pebble.Reader, id int64) ([][]byte, error) {
	var keys [][]byte
	err := eachLeaseKey(r, id, func(k []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	})
	return keys, err
}

// eachLeaseKey calls fn with each key attached to lease id, in key order, until fn
// fails; the key is valid only during the call. So a check over a lease's keys
// holds one at a time, however many the lease has.
func eachLeaseKey(r pebble.Reader, id int64, fn func(key []byte) error) error {
	prefix := attachPrefix(id)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixSuccessor(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		if err := fn(it.Key()[len(prefix):]); err != nil {
			return err
		}
	}
	return it.Error()
}

func (e *engine) leaseKeys(id int64) ([][]byte, error) { return leaseKeysOf(e.db, id) }

// leaseKeysLimited is leaseKeys with the response's budget: a
// *ResponseTooLargeError (its Lease set) as soon as the keys, in a
// LeaseTimeToLiveResponse's repeated keys field, would pass limit bytes (no limit
// if limit <= 0), so that listing a lease with millions of keys builds no answer
// larger than a Range may.
func (e *engine) leaseKeysLimited(id, limit int64) ([][]byte, error) {
	budget := newBudget(limit)
	var keys [][]byte
	err := eachLeaseKey(e.db, id, func(k []byte) error {
		if err := budget.take(1 + varintSize(uint64(len(k))) + int64(len(k))); err != nil {
			tooLarge := err.(*ResponseTooLargeError)
			tooLarge.Lease = id
			return tooLarge
		}
		keys = append(keys, bytes.Clone(k))
		return nil
	})
	return keys, err
}

// prefixSuccessor returns the least key above every key with prefix p (p is not
// all 0xff).
func prefixSuccessor(p []byte) []byte {
	s := bytes.Clone(p)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	panic(fmt.Sprintf("kv: no successor of prefix %x", p))
}

func encodeLease(info LeaseInfo) []byte {
	return binary.AppendVarint(binary.AppendVarint(nil, info.TTL), info.RemainingTTL)
}

// leaseGrant mirrors etcd's lessor.Grant (state.leaseGrant).
func (w *engineWrite) leaseGrant(r *LeaseGrantRequest) (*LeaseGrantResponse, error) {
	if err := checkLeaseGrant(r); err != nil {
		return nil, err
	}
	_, found, err := leaseOf(w.reader(), r.ID)
	if err != nil {
		return nil, err
	}
	if found {
		return nil, ErrLeaseExists
	}
	_ = w.b.Set(grantKey(r.ID), encodeLease(LeaseInfo{ID: r.ID, TTL: r.TTL}), nil)
	return &LeaseGrantResponse{Header: ResponseHeader{Revision: w.beginRev}, ID: r.ID, TTL: r.TTL}, nil
}

// leaseRevoke mirrors etcd's lessor.Revoke (state.leaseRevoke): the lease's keys
// are deleted in key order at one revision, then the lease goes.
func (w *engineWrite) leaseRevoke(r *LeaseRevokeRequest) (*LeaseRevokeResponse, error) {
	_, found, err := leaseOf(w.reader(), r.ID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrLeaseNotFound
	}
	keys, err := leaseKeysOf(w.reader(), r.ID)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		w.record(k, &versionRecord{tombstone: true})
		_ = w.b.Delete(attachKey(r.ID, k), nil)
	}
	_ = w.b.Delete(grantKey(r.ID), nil)
	return &LeaseRevokeResponse{Header: ResponseHeader{Revision: w.readRev()}, ID: r.ID}, nil
}

// putRequest is etcd's put: it reads the previous key only when a flag
// needs it, and checks the lease as etcd's checkLease does. Validation (checkPut)
// has already run.
func (w *engineWrite) putRequest(p *PutRequest) (*PutResponse, error) {
	if p.Lease != 0 {
		if _, found, err := leaseOf(w.reader(), p.Lease); err != nil || !found {
			if err == nil {
				err = ErrLeaseNotFound
			}
			return nil, err
		}
	}
	resp := &PutResponse{}
	value, lease := p.Value, p.Lease
	if p.IgnoreValue || p.IgnoreLease || p.PrevKv {
		prev, found, err := w.get(p.Key, w.readRev(), true)
		if err != nil {
			return nil, err
		}
		if (p.IgnoreValue || p.IgnoreLease) && !found {
			return nil, ErrKeyNotFound
		}
		if p.IgnoreValue {
			value = prev.Value
		}
		if p.IgnoreLease {
			lease = prev.Lease
		}
		if p.PrevKv && found {
			resp.PrevKv = &prev
		}
	}
	rev, err := w.put(p.Key, value, lease)
	resp.Header.Revision = rev
	return resp, err
}

// deleteRangeRequest is etcd's DeleteRange: PrevKvs are read before the
// delete, and the header revision is the write's only if it changed something.
// With prev_kv its walk builds the answer's PrevKvs, in key order, and notes
// where the separated values are, read after it in one pass in revision order
// (readSeparated), not one point read each in key order. Without, it keeps only
// what the tombstones need.
func (w *engineWrite) deleteRangeRequest(d *DeleteRangeRequest) (*DeleteRangeResponse, error) {
	var prevKvs []KeyValue
	var separated []separatedAt
	var deleted []leasedKey
	lower, upper := rangeBounds(d.Key, d.RangeEnd)
	err := engineAscend(w.reader(), lower, upper, w.readRev(), func(prefix []byte, modRev int64, sub uint32, rec *versionRecord) bool {
		key := unescapeKey(prefix)
		if !d.PrevKv {
			deleted = append(deleted, leasedKey{key: key, lease: rec.lease})
			return true
		}
		if rec.separated && rec.separatedLen > 0 {
			separated = append(separated, separatedAt{at: len(prevKvs), sub: sub, valueLen: uint32(rec.separatedLen)})
		}
		prevKvs = append(prevKvs, rec.keyValue(key, modRev, true))
		return true
	})
	if err == nil {
		slices.SortFunc(separated, func(x, y separatedAt) int {
			if c := cmp.Compare(prevKvs[x.at].ModRevision, prevKvs[y.at].ModRevision); c != 0 {
				return c
			}
			return cmp.Compare(x.sub, y.sub)
		})
		err = readSeparated(w.reader(), len(separated), func(j int) (int64, uint32, uint32, *[]byte) {
			s, kv := &separated[j], &prevKvs[separated[j].at]
			return kv.ModRevision, s.sub, s.valueLen, &kv.Value
		})
	}
	if err != nil {
		return nil, err
	}
	for i := range deleted {
		w.tombstone(deleted[i].key, deleted[i].lease)
	}
	for i := range prevKvs {
		w.tombstone(prevKvs[i].Key, prevKvs[i].Lease)
	}
	resp := &DeleteRangeResponse{Deleted: int64(len(deleted) + len(prevKvs)), PrevKvs: prevKvs}
	resp.Header.Revision = w.readRev()
	return resp, nil
}

// separatedAt locates the separated value (engine_keys.go) of a DeleteRange's
// PrevKvs[at]: the change at its ModRevision and sub, of valueLen bytes.
type separatedAt struct {
	at            int
	sub, valueLen uint32
}

// leasedKey is a key a DeleteRange without prev_kv deletes, with the lease its
// tombstone detaches it from.
type leasedKey struct {
	key   []byte
	lease int64
}

// leaseCheckpoint mirrors state.leaseCheckpoint: each checkpoint of a lease that
// exists rewrites its record with the remaining TTL; a lease that is gone is
// skipped.
func (w *engineWrite) leaseCheckpoint(r *LeaseCheckpointRequest) (*LeaseCheckpointResponse, error) {
	resp := &LeaseCheckpointResponse{Header: ResponseHeader{Revision: w.beginRev}}
	for _, cp := range r.Checkpoints {
		info, found, err := leaseOf(w.reader(), cp.ID)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		info.RemainingTTL = max(cp.RemainingTTL, 0)
		_ = w.b.Set(grantKey(cp.ID), encodeLease(info), nil)
		resp.Checkpoints = append(resp.Checkpoints, LeaseCheckpoint{ID: cp.ID, RemainingTTL: info.RemainingTTL})
	}
	return resp, nil
}
