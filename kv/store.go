package kv

import (
	"fmt"
	"sync"
)

// Store is the KV state machine of one replica. Apply and Restore change it;
// Range, Txn (read-only), Snapshot and the accessors read it, and may run
// concurrently with each other and with Apply.
type Store struct {
	cfg Config
	// newValues makes the valueLog of a new state (NewStore, Restore).
	newValues func() (valueLog, error)
	// snapMu is held while a SnapshotView is out (see SnapshotView); the
	// rewrite of the value log, Restore and Close wait for it.
	snapMu sync.Mutex
	mu     struct {
		sync.RWMutex
		// st is replaced whole by Restore.
		st *state
		// closed is set by Close, after which reads fail.
		closed bool
	}
}

// state is the store itself, with no lock: every method is deterministic and
// assumes its caller holds the Store's lock as needed.
//
// Invariant: compactRev <= rev.
type state struct {
	cfg   Config
	index btree
	// vals holds the values the index points to.
	vals      valueLog
	newValues func() (valueLog, error)
	// rev is the revision of the last write; 1 for an empty store, as in etcd.
	rev int64
	// compactRev is the revision of the last compaction; -1 before the first one,
	// as in etcd, which is why Compact(0) succeeds once on a new store.
	compactRev   int64
	appliedIndex uint64
	sessions     sessionTable
	// proposals deduplicates proposals that may be in the log twice (ApplyOnce).
	proposals proposalTable
	// sizes count what Sizes reports.
	sizes sizeCounters
	// leases holds the lease ids the index's revisions name.
	leases leaseTable
	// history lists each revision's changes in order, for Events (history.go).
	history history
	// grants holds the leases granted and not revoked, and their keys (lease.go).
	grants grantTable
	// auth holds the users, roles and permissions (auth.go).
	auth authState
	// snapMu is the Store's, held while a SnapshotView is out; nil for a state
	// no Store holds.
	snapMu *sync.Mutex
}

func newState(cfg Config, newValues func() (valueLog, error)) (*state, error) {
	vals, err := newValues()
	if err != nil {
		return nil, err
	}
	return &state{cfg: cfg, vals: vals, newValues: newValues, rev: 1, compactRev: -1,
		sessions: newSessionTable(cfg.MaxSessions), proposals: newProposalTable(cfg.MaxProposers, cfg.MaxProposalResults),
		auth: newAuthState()}, nil
}

// Result is the outcome of one applied command: the response matching its
// request, or Err. The responses are shared with the session table, which hands
// the same Result to a retry, so they must not be modified.
type Result struct {
	Put         *PutResponse
	DeleteRange *DeleteRangeResponse
	Txn         *TxnResponse
	Compact     *CompactionResponse
	// LeaseGrant, LeaseRevoke and LeaseCheckpoint answer the lease commands.
	LeaseGrant      *LeaseGrantResponse
	LeaseRevoke     *LeaseRevokeResponse
	LeaseCheckpoint *LeaseCheckpointResponse
	// Auth answers an auth command.
	Auth *AuthResponse
	Err  error
}

// NewStore returns an empty store that keeps its values on the Go heap:
// revision 1, nothing compacted, nothing applied. Zero fields of cfg take their
// defaults.
func NewStore(cfg Config) (*Store, error) {
	return newStore(cfg, func() (valueLog, error) { return newMemValues(), nil })
}

// NewFileBackedStore is NewStore for a store that keeps its values in a file in
// dir rather than in memory, so that the process's resident memory holds the index
// but not every revision's value: the kernel's page cache holds the values it reads
// often. The file is unlinked as soon as it is created (nothing is left in dir,
// even after a crash) and Close releases it. It is no state of its own: a store is
// rebuilt from a snapshot and the log. A failed write or read of the file panics,
// as the store cannot answer without its values.
func NewFileBackedStore(cfg Config, dir string) (*Store, error) {
	return newStore(cfg, func() (valueLog, error) { return newFileValues(dir) })
}

func newStore(cfg Config, newValues func() (valueLog, error)) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, newValues: newValues}
	if s.mu.st, err = newState(cfg, newValues); err != nil {
		return nil, err
	}
	s.mu.st.snapMu = &s.snapMu
	return s, nil
}

// Close releases the store's values. Reads and snapshots after it fail with
// ErrClosed; the accessors still answer; Apply and Restore must not be called.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	s.mu.closed = true
	s.snapMu.Lock() // a SnapshotView out still reads the values
	defer s.snapMu.Unlock()
	return s.mu.st.vals.close()
}

// Config returns the store's config with defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Apply applies the committed log entry at index. data is an encoded Command;
// empty data is an entry with no command (a new leader's no-op), which only
// advances the applied index. Apply keeps no reference to data.
//
// Apply must see entries in index order. An index at or below the last applied
// one (raft replaying what a restored snapshot holds) is skipped with
// ErrAlreadyApplied. Bytes that do not decode, or are too large, fail with
// ErrCorruptCommand or ErrRequestTooLarge: every replica fails the same way.
func (s *Store) Apply(index uint64, data []byte) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if index <= st.appliedIndex {
		return Result{Err: ErrAlreadyApplied}
	}
	st.appliedIndex = index
	return st.applyData(data)
}

// applyData decodes and applies one command; empty data is no command.
func (st *state) applyData(data []byte) Result {
	if len(data) == 0 {
		return Result{}
	}
	if len(data) > st.cfg.MaxCommandBytes {
		return Result{Err: ErrRequestTooLarge}
	}
	// Decoding into values on the stack saves two allocations per put.
	var cmd Command
	var put PutRequest
	if err := cmd.decode(data, &put); err != nil {
		return Result{Err: err}
	}
	return st.applyCommand(&cmd)
}

// ApplyCommand is Apply for a command already decoded (tests and the
// simulator use it). It keeps no reference to cmd.
func (s *Store) ApplyCommand(index uint64, cmd *Command) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if index <= st.appliedIndex {
		return Result{Err: ErrAlreadyApplied}
	}
	st.appliedIndex = index
	return st.applyCommand(cmd)
}

// Check runs the checks that depend only on the request and the config, the
// ones etcd makes before proposing, so the server can refuse a bad request
// without spending a log entry. Apply runs them again.
func (s *Store) Check(cmd *Command) error {
	return cmd.check(s.cfg.MaxTxnOps)
}

// Range answers a read at the store's current state, as etcd's Range does.
func (s *Store) Range(r *RangeRequest) (*RangeResponse, error) {
	return s.RangeLimited(r, 0)
}

// RangeLimited is Range with the response's key-values bounded to maxResponseBytes
// in etcd's encoding (no bound if 0 or less): a larger one fails with a
// *ResponseTooLargeError (ErrResponseTooLarge) before any value is read.
func (s *Store) RangeLimited(r *RangeRequest, maxResponseBytes int64) (*RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	st := s.mu.st
	return st.rangeAt(r, st.rev, newBudget(maxResponseBytes))
}

// Txn answers a read-only txn (see IsTxnReadOnly) without the log, as etcd
// does. A txn with writes fails with ErrNotReadOnly.
func (s *Store) Txn(r *TxnRequest) (*TxnResponse, error) {
	return s.TxnLimited(r, 0)
}

// TxnLimited is Txn with the key-values of all its ranges together bounded as
// RangeLimited bounds one range's.
func (s *Store) TxnLimited(r *TxnRequest, maxResponseBytes int64) (*TxnResponse, error) {
	if !IsTxnReadOnly(r) {
		return nil, ErrNotReadOnly
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	// With only ranges in it, the txn changes nothing, so a read lock suffices.
	return s.mu.st.readTxn(r, newBudget(maxResponseBytes))
}

// Revision returns the store's current revision.
func (s *Store) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.rev
}

// CompactRevision returns the revision of the last compaction, -1 if none.
func (s *Store) CompactRevision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.compactRev
}

// AppliedIndex returns the index of the last log entry applied.
func (s *Store) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.appliedIndex
}

// applyCommand answers a retry from the session table, or executes the
// command and records its result for the client.
func (st *state) applyCommand(cmd *Command) Result {
	if cmd.ClientID != 0 {
		if sess := st.sessions.get(cmd.ClientID); sess != nil {
			switch {
			case cmd.Seq == sess.seq:
				st.sessions.touch(sess)
				return sess.result
			case cmd.Seq < sess.seq:
				st.sessions.touch(sess)
				return Result{Err: ErrStaleSequence}
			}
		}
	}
	res := st.execute(cmd)
	if cmd.ClientID != 0 {
		st.sessions.record(cmd.ClientID, cmd.Seq, res)
	}
	return res
}

// execute checks and applies one command.
func (st *state) execute(cmd *Command) Result {
	if err := cmd.check(st.cfg.MaxTxnOps); err != nil {
		return Result{Err: err}
	}
	if err := st.checkCommand(cmd); err != nil {
		return Result{Err: err}
	}
	switch {
	case cmd.Put != nil:
		if err := st.checkPutLease(cmd.Put); err != nil {
			return Result{Err: err}
		}
		w := st.beginWrite()
		resp, err := w.put(cmd.Put)
		w.end()
		return Result{Put: resp, Err: err}
	case cmd.DeleteRange != nil:
		w := st.beginWrite()
		resp := w.deleteRange(cmd.DeleteRange)
		w.end()
		return Result{DeleteRange: resp}
	case cmd.Txn != nil:
		resp, err := st.txn(cmd.Txn)
		return Result{Txn: resp, Err: err}
	case cmd.Compact != nil:
		resp, err := st.compact(cmd.Compact.Revision)
		return Result{Compact: resp, Err: err}
	case cmd.LeaseGrant != nil:
		resp, err := st.leaseGrant(cmd.LeaseGrant)
		return Result{LeaseGrant: resp, Err: err}
	case cmd.LeaseRevoke != nil:
		resp, err := st.leaseRevoke(cmd.LeaseRevoke)
		return Result{LeaseRevoke: resp, Err: err}
	case cmd.LeaseCheckpoint != nil:
		return Result{LeaseCheckpoint: st.leaseCheckpoint(cmd.LeaseCheckpoint)}
	case cmd.Auth != nil:
		resp, err := st.applyAuth(cmd.Auth, cmd.Sender)
		return Result{Auth: resp, Err: err}
	}
	// Not formatted with cmd: that would make every decoded command escape to the heap.
	panic(fmt.Sprintf("kv: command of client %d seq %d passed its checks but holds no request", cmd.ClientID, cmd.Seq))
}

// compact mirrors etcd's Compact: the revision must be above the last
// compaction and at most the current revision, and afterwards reads below it
// fail with ErrCompacted. Compaction does not change the store's revision.
func (st *state) compact(rev int64) (*CompactionResponse, error) {
	if rev <= st.compactRev {
		return nil, ErrCompacted
	}
	if rev > st.rev {
		return nil, ErrFutureRev
	}
	var emptied bool
	st.index.ascend(nil, func(ki *keyIndex) bool {
		if !ki.compact(rev) {
			emptied = true
		}
		return true
	})
	if emptied {
		st.index = rebuildWithout(&st.index, func(ki *keyIndex) bool { return len(ki.gens) == 0 })
	}
	st.compactRev = rev
	st.history.compact(rev)
	st.collectValues()
	st.recountSizes()
	st.collectLeaseIDs()
	return &CompactionResponse{Header: ResponseHeader{Revision: st.rev}}, nil
}

// rebuildWithout returns a tree of old's entries except those drop selects.
func rebuildWithout(old *btree, drop func(*keyIndex) bool) btree {
	var t btree
	old.ascend(nil, func(ki *keyIndex) bool {
		if !drop(ki) {
			t.insert(ki)
		}
		return true
	})
	return t
}

// minValueGarbageBytes is the least garbage for which collectValues rewrites the
// value log (a variable so that tests can make it small).
var minValueGarbageBytes int64 = 4 << 20

// collectValues rewrites the value log without the values compaction dropped, once
// they outweigh the live ones, so that the log stays within twice the live values
// (plus minValueGarbageBytes). The rewrite costs time in proportion to the live
// values, and comes after at least as many bytes were dropped, so it adds a constant
// cost per byte written.
func (st *state) collectValues() {
	size := st.vals.size()
	if size < 2*minValueGarbageBytes {
		return
	}
	var live int64
	st.eachRev(func(r *keyRev, sameAsPrev bool) {
		if !sameAsPrev {
			live += int64(r.valueLen)
		}
	})
	if garbage := size - live; garbage < live || garbage < minValueGarbageBytes {
		return
	}
	if st.snapMu != nil {
		// A SnapshotView reads the revisions' values where they are now.
		st.snapMu.Lock()
		defer st.snapMu.Unlock()
	}
	vals, err := st.newValues()
	if err != nil {
		// Without a new log the old one stays, garbage and all: nothing is lost.
		return
	}
	var last valueRef
	var buf []byte
	st.eachRev(func(r *keyRev, sameAsPrev bool) {
		if sameAsPrev {
			r.setValue(last)
			return
		}
		buf = st.vals.readInto(r.value(), buf)
		last = vals.append(buf)
		r.setValue(last)
	})
	_ = st.vals.close() // a failed close of a log no longer used loses nothing
	st.vals = vals
}

// eachRev calls fn for every retained revision of every key, in key order.
// sameAsPrev says the revision shares its value with the one before it in its
// generation (a put with IgnoreValue), which must be copied once, not twice.
func (st *state) eachRev(fn func(r *keyRev, sameAsPrev bool)) {
	st.index.ascend(nil, func(ki *keyIndex) bool {
		for gi := range ki.gens {
			revs := ki.gens[gi].revs
			var prev valueRef // as it was before fn ran: fn may move it
			for i := range revs {
				cur := revs[i].value()
				fn(&revs[i], i > 0 && cur == prev && cur.n > 0)
				prev = cur
			}
		}
		return true
	})
}
