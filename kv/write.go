package kv

import "bytes"

// writeTxn applies the writes of one command. Every change it makes shares one
// main revision, beginRev+1, and the store's revision moves to it only if
// something changed, as etcd's storeTxnWrite does.
type writeTxn struct {
	st       *state
	beginRev int64
	changes  int
}

func (st *state) beginWrite() writeTxn {
	return writeTxn{st: st, beginRev: st.rev}
}

// readRev is the revision that reads inside the txn see: the txn's own writes
// once there are any, as in etcd.
func (w *writeTxn) readRev() int64 {
	if w.changes > 0 {
		return w.beginRev + 1
	}
	return w.beginRev
}

// end publishes the txn's revision.
func (w *writeTxn) end() {
	if w.changes > 0 {
		w.st.rev = w.beginRev + 1
	}
}

// put mirrors etcd's put(): it reads the previous key only when a flag needs it.
// Validation (checkPut) has already run.
func (w *writeTxn) put(p *PutRequest) (*PutResponse, error) {
	resp := &PutResponse{}
	value, lease := p.Value, p.Lease
	valueOwned := false
	var ki *keyIndex
	if p.IgnoreValue || p.IgnoreLease || p.PrevKv {
		ki = w.st.index.get(p.Key)
		var prev KeyValue
		found := false
		if ki != nil {
			prev, found = ki.kvAt(w.readRev())
		}
		if (p.IgnoreValue || p.IgnoreLease) && !found {
			return nil, ErrKeyNotFound
		}
		if p.IgnoreValue {
			// Stored values are immutable, so the new revision can share the slice.
			value, valueOwned = prev.Value, true
		}
		if p.IgnoreLease {
			lease = prev.Lease
		}
		if p.PrevKv && found {
			resp.PrevKv = &prev
		}
	}
	resp.Header.Revision = w.putKey(ki, p.Key, value, lease, valueOwned)
	return resp, nil
}

// putKey writes key at the txn's revision and returns that revision. ki is the
// key's entry if the caller already looked it up, else nil. Unless valueOwned,
// the value is copied: the caller's bytes may alias a log entry.
func (w *writeTxn) putKey(ki *keyIndex, key, value []byte, lease int64, valueOwned bool) int64 {
	rev := w.beginRev + 1
	if ki == nil {
		ki = w.st.index.get(key)
		if ki == nil {
			ki = &keyIndex{key: bytes.Clone(key)}
			w.st.index.insert(ki)
		}
	}
	if !valueOwned {
		value = cloneBytes(value)
	}
	ki.put(rev, value, lease)
	w.changes++
	return rev
}

// deleteRange mirrors etcd's deleteRange(): PrevKvs are read before the delete,
// and the header revision is the txn's revision only if the txn changed
// something so far.
func (w *writeTxn) deleteRange(d *DeleteRangeRequest) *DeleteRangeResponse {
	resp := &DeleteRangeResponse{}
	if d.PrevKv {
		resp.PrevKvs, _ = w.st.collect(d.Key, d.RangeEnd, w.readRev(), 0)
	}
	rev := w.beginRev + 1
	readRev := w.readRev()
	end, single := parseRangeEnd(d.RangeEnd)
	if single {
		if ki := w.st.index.get(d.Key); ki != nil {
			if _, _, ok := ki.at(readRev); ok {
				ki.tombstone(rev)
				resp.Deleted++
			}
		}
	} else {
		// Tombstoning does not change the tree's shape, so it is safe mid-walk.
		w.st.index.ascend(d.Key, func(ki *keyIndex) bool {
			if end != nil && bytes.Compare(ki.key, end) >= 0 {
				return false
			}
			if _, _, ok := ki.at(readRev); ok {
				ki.tombstone(rev)
				resp.Deleted++
			}
			return true
		})
	}
	w.changes += int(resp.Deleted)
	resp.Header.Revision = w.readRev()
	return resp
}

// cloneBytes copies b; an empty value is stored as nil so that snapshots and
// comparisons do not tell nil from empty.
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}
