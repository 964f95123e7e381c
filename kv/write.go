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
	lease := p.Lease
	var ki *keyIndex
	var prevValue *valueRef // set to the value of the revision read
	if p.IgnoreValue || p.IgnoreLease || p.PrevKv {
		ki = w.st.index.get(p.Key)
		var vals valueLog
		if p.PrevKv {
			vals = w.st.vals
		}
		var prev KeyValue
		found := false
		if ki != nil {
			prev, found = ki.kvAt(w.readRev(), vals, &w.st.leases)
		}
		if (p.IgnoreValue || p.IgnoreLease) && !found {
			return nil, ErrKeyNotFound
		}
		if p.IgnoreValue {
			// Stored values are immutable, so the new revision can share the old one's.
			g, i, _ := ki.at(w.readRev())
			v := g.revs[i].value()
			prevValue = &v
		}
		if p.IgnoreLease {
			lease = prev.Lease
		}
		if p.PrevKv && found {
			resp.PrevKv = &prev
		}
	}
	var value valueRef
	if prevValue != nil {
		value = *prevValue
	} else {
		// The log copies the bytes: the caller's may alias a log entry.
		value = w.st.vals.append(p.Value)
		w.st.sizes.liveValues += int64(value.n)
	}
	resp.Header.Revision = w.putKey(ki, p.Key, value, lease)
	return resp, nil
}

// putKey writes key at the txn's revision and returns that revision. ki is the
// key's entry if the caller already looked it up, else nil.
func (w *writeTxn) putKey(ki *keyIndex, key []byte, value valueRef, lease int64) int64 {
	rev := w.beginRev + 1
	if ki == nil {
		ki = w.st.index.get(key)
		if ki == nil {
			ki = &keyIndex{key: bytes.Clone(key)}
			w.st.index.insert(ki)
			w.st.sizes.keyBytes += int64(len(key))
		}
	}
	oldLease := ki.liveLease(&w.st.leases)
	ki.put(rev, value, w.st.leases.intern(lease))
	w.st.sizes.revs++
	if oldLease != lease {
		w.st.grants.detach(oldLease, ki)
		w.st.grants.attach(lease, ki)
	}
	w.record(ki, false)
	return rev
}

// deleteKey ends ki's live generation at the txn's revision, detaching the key from
// its lease. Every delete goes through here (a lease's revoke too), so that it
// reaches the history.
func (w *writeTxn) deleteKey(ki *keyIndex) {
	w.st.grants.detach(ki.liveLease(&w.st.leases), ki)
	ki.tombstone(w.beginRev + 1)
	w.record(ki, true)
}

// record counts a change the txn made to ki and notes it in the store's history,
// in the order the command made it: every put and delete, whatever the command
// (Put, DeleteRange, Txn, and any later one that writes through putKey or
// deleteKey), passes through here, and the history is where Store.Events, and so
// every watcher, learns of it.
func (w *writeTxn) record(ki *keyIndex, deleted bool) {
	w.st.history.record(w.beginRev+1, ki, deleted)
	w.changes++
}

// deleteRange mirrors etcd's deleteRange(): PrevKvs are read before the delete,
// and the header revision is the txn's revision only if the txn changed
// something so far.
func (w *writeTxn) deleteRange(d *DeleteRangeRequest) *DeleteRangeResponse {
	resp := &DeleteRangeResponse{}
	if d.PrevKv {
		resp.PrevKvs, _ = w.st.collect(d.Key, d.RangeEnd, w.readRev(), 0, true)
	}
	readRev := w.readRev()
	end, single := parseRangeEnd(d.RangeEnd)
	if single {
		if ki := w.st.index.get(d.Key); ki != nil {
			if _, _, ok := ki.at(readRev); ok {
				w.deleteKey(ki)
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
				w.deleteKey(ki)
				resp.Deleted++
			}
			return true
		})
	}
	resp.Header.Revision = w.readRev()
	return resp
}
