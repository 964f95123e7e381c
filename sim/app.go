package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"raftkv/raft"
)

// appState is a node's application: the smallest state machine that still lets the
// checker see everything. It folds every command it applies into a running hash, so
// two nodes agree on their whole history up to an index exactly when they agree on
// the hash there. Its snapshot is that pair (index, hash). It is volatile: a crash
// loses it and a restart rebuilds it from the storage's snapshot.
type appState struct {
	// applied is the index of the last entry applied (or the snapshot restored).
	applied uint64
	// hash folds every command applied so far, with its index.
	hash uint64
	// membership is the configuration as of applied, from the snapshot and the
	// configuration entries applied since; empty while it is the bootstrap one.
	membership raft.Membership
}

// FNV-1a, 64 bit.
const (
	initialHash = 14695981039346656037
	fnvPrime    = 1099511628211
)

// foldCommand returns the application hash after applying data at index.
func foldCommand(hash, index uint64, data []byte) uint64 {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], index)
	for _, b := range buf {
		hash = (hash ^ uint64(b)) * fnvPrime
	}
	for _, b := range data {
		hash = (hash ^ uint64(b)) * fnvPrime
	}
	return hash
}

const snapshotMagic = 0x51a45e7a

// encodeSnapshot is the application's snapshot format: magic, index, hash.
func encodeSnapshot(index, hash uint64) []byte {
	buf := make([]byte, 20)
	binary.BigEndian.PutUint32(buf[0:], snapshotMagic)
	binary.BigEndian.PutUint64(buf[4:], index)
	binary.BigEndian.PutUint64(buf[12:], hash)
	return buf
}

var errBadSnapshot = errors.New("not an application snapshot")

func decodeSnapshot(data []byte) (index, hash uint64, err error) {
	if len(data) != 20 || binary.BigEndian.Uint32(data) != snapshotMagic {
		return 0, 0, fmt.Errorf("%w: %d bytes %x", errBadSnapshot, len(data), data)
	}
	return binary.BigEndian.Uint64(data[4:]), binary.BigEndian.Uint64(data[12:]), nil
}

// restoreApp replaces node n's application state with snap's: at start from the
// storage's snapshot, or when the leader sent one. The app must only ever move forward.
func (c *Cluster) restoreApp(n *node, snap raft.Snapshot) bool {
	index, hash, err := decodeSnapshot(snap.Data)
	if err != nil {
		c.violate("snapshot", "node %d: snapshot %d/%d: %v", n.id, snap.Index, snap.Term, err)
		return false
	}
	if index != snap.Index {
		c.violate("snapshot", "node %d: snapshot says index %d but its data was taken at %d", n.id, snap.Index, index)
		return false
	}
	if n.rn != nil && snap.Index <= n.app.applied {
		c.violate("apply order", "node %d: Ready.Snapshot at %d would rewind the application, which applied %d", n.id, snap.Index, n.app.applied)
		return false
	}
	c.checkSnapshotState(n, snap.Index, snap.Term, hash)
	c.checkSnapshotConf(n, snap)
	c.tracef("n%d app restore snapshot %d/%d", n.id, snap.Index, snap.Term)
	n.app = appState{applied: index, hash: hash, membership: snap.Membership}
	// Commands proposed here at an index the snapshot covers will never be applied
	// here one by one, so their clients cannot learn their fate: they give up.
	for _, idx := range slices.Sorted(maps.Keys(n.pendingProposals)) {
		if idx <= index {
			c.abandonProposal(n.pendingProposals[idx], "snapshot")
		}
	}
	return c.err == nil
}

// applyEntry applies one committed entry: exactly the next index, never one twice.
func (c *Cluster) applyEntry(n *node, e raft.Entry) bool {
	if e.Index != n.app.applied+1 {
		c.violate("apply order", "node %d: application applied %d, next committed entry is %d (a skip or a re-apply)", n.id, n.app.applied, e.Index)
		return false
	}
	switch e.Type {
	case raft.EntryCommand:
		n.app.hash = foldCommand(n.app.hash, e.Index, e.Data)
	case raft.EntryConfChange:
		var ce raft.ConfEntry
		if err := ce.Unmarshal(e.Data); err != nil {
			c.violate("configuration", "node %d: committed configuration entry %d does not decode: %v", n.id, e.Index, err)
			return false
		}
		n.app.membership = ce.Membership
	}
	n.app.applied = e.Index
	c.checkApplied(n, e)
	if c.err != nil {
		return false
	}
	if p := n.pendingProposals[e.Index]; p != nil {
		c.resolveProposal(p, e)
	}
	return true
}

// maybeCompact takes an application snapshot every SnapshotEvery applied entries, the
// way a server bounds its log; lagging and restarted followers then need snapshots.
func (c *Cluster) maybeCompact(n *node) {
	every := uint64(c.opts.SnapshotEvery)
	if every == 0 || n.rn == nil {
		return
	}
	first, err := n.storage.FirstIndex()
	if err != nil {
		c.violate("storage", "node %d: FirstIndex: %v", n.id, err)
		return
	}
	if n.app.applied < first-1+every {
		return
	}
	if _, err := n.storage.CreateSnapshot(n.app.applied, n.app.membership, encodeSnapshot(n.app.applied, n.app.hash)); err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) || c.crashedInStorage(n, err) {
			return
		}
		c.violate("storage", "node %d: CreateSnapshot(%d): %v", n.id, n.app.applied, err)
		return
	}
	c.compactDurable(n, n.app.applied, n.app.membership, encodeSnapshot(n.app.applied, n.app.hash))
	c.tracef("n%d compact through %d", n.id, n.app.applied)
	c.counters.Compactions++
}
