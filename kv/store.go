package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Store is the KV state machine of one replica, on the storage engine (engine.go).
// Apply and Restore change it; Range, Txn (read-only), snapshots and the accessors
// read it, and may run concurrently with each other and with Apply: a range or a
// read-only txn reads a pebble iterator opened, under the lock, at the revision
// the store had then (iterators are point-in-time), so Apply waits for no read.
type Store struct {
	cfg Config
	// reads counts the reads out on pebble snapshots; Close waits for them.
	reads sync.WaitGroup
	// rangeCache answers point reads from memory (range_cache.go).
	rangeCache rangeCache
	// rangeCounts answers the counts of paged ranges (range_count.go).
	rangeCounts rangeCounts
	mu          struct {
		sync.RWMutex
		st *state
		// closed is set by Close, after which reads fail.
		closed bool
	}
}

// state is the store: the engine and the bounded tables kept in memory beside it
// (each change to them is a record in the batch of the entry that made it). Every
// method is deterministic and assumes its caller holds the Store's lock as needed.
type state struct {
	cfg      Config
	e        *engine
	sessions sessionTable
	// proposals deduplicates proposals that may be in the log twice (ApplyOnce).
	proposals proposalTable
	// auth holds the users, roles and permissions (auth.go).
	auth authState
	// index is the log index of the entry being applied.
	index uint64
	// failed is the engine failure that stopped the store: every Apply after it
	// returns it.
	failed error
	// put is what Apply decodes a put into: on the stack it would move to the
	// heap (the decoded command points to it), an allocation per put.
	put PutRequest
	// grouping says BeginGroup was called and EndGroup not yet: groupable
	// commands join the engine's open write (engine.open), one batch for
	// consecutive entries, not committed until a command that is not
	// groupable, any other write, or EndGroup. openIndex is the last entry the
	// open write holds.
	grouping  bool
	openIndex uint64
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

// ErrEngineFailed: the storage engine failed a write (a full disk, say) or a read
// (an I/O error, a corrupt block). The store refuses every Apply after it with
// the same error, which wraps the cause (errors.Is(err, syscall.ENOSPC) holds for
// a full disk); the read that failed returns it too, and Failed is closed: the
// member must stop, and restarts from the engine's last flushed state and the log.
var ErrEngineFailed = errors.New("kv: the storage engine failed; the store applies nothing more")

// OpenStore opens the store whose engine is in dir, creating an empty one
// (revision 1, nothing compacted, nothing applied) if dir holds none. It refuses,
// naming dir and the reason, an engine whose records are corrupt and one that a
// restore was cut off in. Zero fields of cfg take their defaults.
func OpenStore(cfg Config, dir string) (*Store, error) {
	return openStore(cfg, dir, nil)
}

// NewStore returns an empty store on an engine in memory (pebble's in-memory
// file system): for tests and tools. Zero fields of cfg take their defaults.
func NewStore(cfg Config) (*Store, error) {
	return openStore(cfg, "/store", vfs.NewMem())
}

func openStore(cfg Config, dir string, fs vfs.FS) (*Store, error) {
	return openStoreMode(cfg, dir, fs, false)
}

// openStoreMode opens the store in dir; toRestore also opens one whose engine a
// restore was cut off in (OpenStoreToRestoreFS).
func openStoreMode(cfg Config, dir string, fs vfs.FS, toRestore bool) (*Store, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := openEngineMode(dir, cfg.engineConfig(fs), toRestore)
	if err != nil {
		return nil, err
	}
	var restoring []byte
	if toRestore {
		if restoring, err = e.getMeta(metaRestoring); err == nil && restoring != nil {
			// What the cut-off restore left (nothing, or some of the snapshot's
			// records) goes, so that the tables below read as an empty store's.
			err = e.markRestoring()
		}
	}
	var st *state
	if err == nil {
		st, err = loadState(cfg, e)
	}
	if err != nil {
		_ = e.close()
		return nil, err
	}
	if restoring != nil {
		st.failed = fmt.Errorf("%w: engine in %q; it must be restored before use", ErrRestoreCutOff, dir)
	}
	s := &Store{cfg: cfg}
	s.mu.st = st
	return s, nil
}

// loadState reads the tables kept in memory from the engine.
func loadState(cfg Config, e *engine) (*state, error) {
	st := &state{cfg: cfg, e: e}
	var err error
	if st.sessions, err = e.loadSessions(cfg.MaxSessions); err != nil {
		return nil, err
	}
	if st.proposals, err = e.loadProposals(cfg.MaxProposers, cfg.MaxProposalResults); err != nil {
		return nil, err
	}
	if st.auth, err = e.loadAuth(); err != nil {
		return nil, err
	}
	return st, nil
}

// Close closes the engine, once the reads out have ended. Writes not flushed are
// lost, as in a crash: the raft log holds them. Reads and snapshots after it fail
// with ErrClosed; Apply and Restore must not be called.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	s.mu.closed = true
	s.reads.Wait()
	st := s.mu.st
	if err := st.commitOpen(); err != nil {
		_ = st.e.close()
		return err
	}
	return st.e.close()
}

// Failed is closed once the storage engine has failed: a write, a read, or
// pebble's background work (a flush or a compaction). The store then applies
// nothing more, and the member must stop (Failure says why). Range and Txn fail
// too once an Apply has been refused; before that, they answer from a state that
// holds every entry applied (or fail, as the damage lies).
func (s *Store) Failed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.e.bg.done
}

// Failure returns the engine's failure, wrapping ErrEngineFailed and the cause,
// once Failed is closed; nil before.
func (s *Store) Failure() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.mu.st.e.bg.get(); err != nil {
		return fmt.Errorf("%w: %w", ErrEngineFailed, err)
	}
	return nil
}

// Config returns the store's config with defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Flush makes everything applied so far durable and returns the applied index
// the engine's durable state now covers: the raft log may be truncated up to it.
// It holds the store's lock only to take the applied index and start pebble's
// flush of the memtables as they are then (which hold whole entries up to that
// index, and nothing of a later one); Apply goes on while the flush writes.
func (s *Store) Flush() (appliedIndex uint64, err error) {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return 0, ErrClosed
	}
	st := s.mu.st
	if st.failed != nil {
		s.mu.Unlock()
		return 0, st.failed
	}
	e := st.e
	applied, flushed, err := e.startFlush()
	if err != nil {
		st.fail(err)
		s.mu.Unlock()
		return 0, st.failed
	}
	// Close waits for the flush, as for a read, before it closes the engine.
	s.reads.Add(1)
	s.mu.Unlock()
	err = e.waitFlush(flushed)
	s.reads.Done()
	if err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.mu.st.failed == nil {
			s.mu.st.fail(err)
		}
		return 0, s.mu.st.failed
	}
	return applied, nil
}

// SetTerm sets the raft term of the entries Apply is given from now on; each
// entry's batch records it with the applied index (AppliedTerm).
func (s *Store) SetTerm(term uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.st.e.term = term
}

// AppliedTerm returns the term recorded with AppliedIndex (0 if never set).
func (s *Store) AppliedTerm() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.e.appliedTerm
}

// BeginGroup lets the entries applied from now on until EndGroup share one engine
// batch where that changes no answer: plain puts (no lease, prev_kv,
// ignore_value or ignore_lease; groupable). Committing a batch has a cost of its
// own in pebble, beside the records it holds, and each batch records the applied
// index again: BenchmarkApplyGroupedPuts (256-byte values on 1,000 keys, pebble's
// flushes and compactions included) took 5.0-5.2 µs of CPU a put one batch an
// entry, 3.4-4.0 in batches of 8 and 3.0-3.9 in batches of 32. The group
// commits, with its last entry's index, before any other entry applies and at
// EndGroup; until then the store answers reads, AppliedIndex and Revision from
// the state before the group, so the caller must not answer for a grouped entry
// before EndGroup returns nil. A crash before the commit loses the whole group,
// which the raft log applies again.
func (s *Store) BeginGroup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.st.grouping = true
}

// EndGroup commits the group BeginGroup began, if it holds any entry, and ends
// it. An error is the engine's failure (ErrEngineFailed), during the group or
// before it: the group's entries may not be applied, and the store applies
// nothing more.
func (s *Store) EndGroup() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	st.grouping = false
	if err := st.commitOpen(); err != nil {
		return err
	}
	return st.failed // an entry of the group failed, and dropped those before it
}

// Apply applies the committed log entry at index. data is an encoded Command;
// empty data is an entry with no command (a new leader's no-op), which only
// advances the applied index. Apply keeps no reference to data. Each entry is
// one engine batch with its applied index.
//
// Apply must see entries in index order. An index at or below the last applied
// one (raft replaying what a restored snapshot holds) is skipped with
// ErrAlreadyApplied. Bytes that do not decode, or are too large, fail with
// ErrCorruptCommand or ErrRequestTooLarge: every replica fails the same way. An
// engine failure fails with ErrEngineFailed, for this entry and every later one.
func (s *Store) Apply(index uint64, data []byte) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if res, ok := st.admit(index); !ok {
		return res
	}
	var cmd Command
	if res, ok := st.decode(data, &cmd, &st.put); !ok {
		st.put = PutRequest{}
		return st.advance(index, res)
	}
	res := st.applyCommand(index, &cmd, nil)
	st.put = PutRequest{} // no reference to data
	return res
}

// ApplyCommand is Apply for a command already decoded (tests and the
// simulator use it). It keeps no reference to cmd.
func (s *Store) ApplyCommand(index uint64, cmd *Command) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if res, ok := st.admit(index); !ok {
		return res
	}
	return st.applyCommand(index, cmd, nil)
}

// ApplyOnce is Apply for a command proposed under id, which may be in the log more
// than once: it applies the first copy to arrive and returns its Result, returns that
// same Result for a later copy, and refuses (ErrProposalExpired) a copy its proposer
// no longer waits for. See proposalTable.
func (s *Store) ApplyOnce(index uint64, id ProposalID, data []byte) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if res, ok := st.admit(index); !ok {
		return res
	}
	if id.Proposer == 0 {
		return st.advance(index, Result{Err: ErrInvalidCommand})
	}
	var cmd Command
	if res, ok := st.decode(data, &cmd, &st.put); !ok {
		// Every copy fails alike, so the table need not answer a later one.
		st.put = PutRequest{}
		return st.advance(index, res)
	}
	res := st.applyCommand(index, &cmd, &id)
	st.put = PutRequest{} // no reference to data
	return res
}

// RefuseOnce is ApplyOnce for a copy of proposal id that the caller refuses with
// refusal, ErrRefusedNoSpace or ErrRefusedCorrupt (a raised alarm refuses
// writes): it applies nothing and records refusal as the proposal's result, so
// that a later copy, applying after the alarm is cleared, writes nothing its
// client was told failed, and gets the same refusal. If a copy applied before
// this one, its Result stands and is returned: that copy's client was told it (a
// member that installed a snapshot past the first copy waits for a later one).
// A client's session is left as it was: a retry of the request is a request anew.
func (s *Store) RefuseOnce(index uint64, id ProposalID, refusal error) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if res, ok := st.admit(index); !ok {
		return res
	}
	if _, ok := errorCode(refusal); id.Proposer == 0 || !ok || refusal == nil {
		return st.advance(index, Result{Err: ErrInvalidCommand})
	}
	if err := st.commitOpen(); err != nil {
		return Result{Err: err}
	}
	w := st.e.beginBlindWrite()
	st.index = index
	res := w.applyOnce(&st.proposals, id, index, func() Result { return Result{Err: refusal} })
	if err := w.commit(index); err != nil {
		return Result{Err: st.fail(err)}
	}
	return res
}

// admit refuses an entry the store has applied, or any once the engine failed.
func (st *state) admit(index uint64) (Result, bool) {
	if st.failed == nil {
		if err := st.e.bg.get(); err != nil {
			st.fail(err)
		}
	}
	if st.failed != nil {
		return Result{Err: st.failed}, false
	}
	if index <= st.e.appliedIndex || (st.e.open != nil && index <= st.openIndex) {
		return Result{Err: ErrAlreadyApplied}, false
	}
	return Result{}, true
}

// commitOpen commits the open group's batch, if any.
func (st *state) commitOpen() error {
	w := st.e.open
	if w == nil {
		return nil
	}
	st.e.open = nil
	if err := w.commit(st.openIndex); err != nil {
		return st.fail(err)
	}
	return nil
}

// dropOpen drops the open group's batch, if any, after an engine failure.
func (st *state) dropOpen() {
	if w := st.e.open; w != nil {
		st.e.open = nil
		w.abort()
	}
}

// groupable says cmd may share a batch with the entries before it: its batch is
// blind (reads go around it), and its one read of the engine is newest, which
// sees the group's changes through the write's pending versions. A lease's
// check reads the lease's keys, prev_kv and the ignore options read the key's
// value, and a txn reads its own writes, so those commit alone.
func groupable(cmd *Command) bool {
	p := cmd.Put
	return p != nil && p.Lease == 0 && !p.PrevKv && !p.IgnoreValue && !p.IgnoreLease
}

// decode decodes data into cmd, and a put into put; ok is false (with the result
// to return) for no command, a command too large, or bytes that do not decode.
func (st *state) decode(data []byte, cmd *Command, put *PutRequest) (Result, bool) {
	if len(data) == 0 {
		return Result{}, false
	}
	if len(data) > st.cfg.MaxCommandBytes {
		return Result{Err: ErrRequestTooLarge}, false
	}
	if err := cmd.decode(data, put); err != nil {
		return Result{Err: err}, false
	}
	return Result{}, true
}

// advance records entry index, which changes nothing else, as applied, and
// returns res.
func (st *state) advance(index uint64, res Result) Result {
	if err := st.commitOpen(); err != nil {
		return Result{Err: err}
	}
	w := st.e.beginBlindWrite()
	if err := w.commit(index); err != nil {
		return Result{Err: st.fail(err)}
	}
	return res
}

// fail stops the store with the engine failure err and returns the error every
// Apply now returns.
func (st *state) fail(err error) error {
	st.failed = fmt.Errorf("%w: %w", ErrEngineFailed, err)
	st.e.bg.set(err)
	return st.failed
}

// isEngineError says err is no answer of the state machine's (all of which have
// a code in resultErrors) but a failure of the engine.
func isEngineError(err error) bool {
	_, ok := errorCode(err)
	return !ok
}

// applyCommand applies cmd as entry index in one engine batch, through the
// proposal table if once is set, and the session table: a retry is answered from
// the tables, anything else executed and its result recorded.
func (st *state) applyCommand(index uint64, cmd *Command, once *ProposalID) Result {
	grouped := st.grouping && groupable(cmd)
	var w *engineWrite
	switch {
	case grouped && st.e.open != nil:
		w = st.e.open
		w.nextEntry()
	default:
		if err := st.commitOpen(); err != nil {
			return Result{Err: err}
		}
		if cmd.Txn != nil {
			w = st.e.beginWrite() // a txn reads its own writes
		} else {
			w = st.e.beginBlindWrite()
		}
		if grouped {
			st.e.open = w
		}
	}
	st.index = index
	var engineErr error
	execute := func() Result {
		res := st.execute(w, cmd)
		if res.Err != nil && isEngineError(res.Err) {
			engineErr = res.Err
			return Result{}
		}
		return res
	}
	session := func() Result { return w.applySession(&st.sessions, cmd, index, execute) }
	var res Result
	if once != nil {
		res = w.applyOnce(&st.proposals, *once, index, session)
	} else {
		res = session()
	}
	if engineErr != nil {
		if grouped {
			st.dropOpen() // the group's earlier entries with it: the store stops
		} else {
			w.abort()
		}
		return Result{Err: st.fail(engineErr)}
	}
	if grouped {
		st.openIndex = index
		return res
	}
	if err := w.commit(index); err != nil {
		return Result{Err: st.fail(err)}
	}
	return res
}

// execute checks and applies one command in w.
func (st *state) execute(w *engineWrite, cmd *Command) Result {
	if err := cmd.check(st.cfg.MaxTxnOps); err != nil {
		return Result{Err: err}
	}
	if err := st.checkCommand(cmd); err != nil {
		return Result{Err: err}
	}
	var res Result
	switch {
	case cmd.Put != nil:
		res.Put, res.Err = w.putRequest(cmd.Put)
	case cmd.DeleteRange != nil:
		res.DeleteRange, res.Err = w.deleteRangeRequest(cmd.DeleteRange)
	case cmd.Txn != nil:
		res.Txn, res.Err = w.txnRequest(cmd.Txn, st.cfg.MaxTxnOps)
	case cmd.Compact != nil:
		// etcd's Compact: the revision must be above the last compaction and at
		// most the current revision; compaction does not change the revision.
		if res.Err = w.compact(cmd.Compact.Revision); res.Err == nil {
			res.Compact = &CompactionResponse{Header: ResponseHeader{Revision: w.e.rev}}
		}
	case cmd.LeaseGrant != nil:
		res.LeaseGrant, res.Err = w.leaseGrant(cmd.LeaseGrant)
	case cmd.LeaseRevoke != nil:
		res.LeaseRevoke, res.Err = w.leaseRevoke(cmd.LeaseRevoke)
	case cmd.LeaseCheckpoint != nil:
		res.LeaseCheckpoint, res.Err = w.leaseCheckpoint(cmd.LeaseCheckpoint)
	case cmd.Auth != nil:
		if res.Auth, res.Err = st.applyAuth(cmd.Auth, cmd.Sender); res.Err == nil {
			w.writeAuth(&st.auth)
		}
	default:
		// Not formatted with cmd: that would make every decoded command escape to the heap.
		panic(fmt.Sprintf("kv: command of client %d seq %d passed its checks but holds no request", cmd.ClientID, cmd.Seq))
	}
	if res.Err != nil {
		return Result{Err: res.Err}
	}
	return res
}

// Check runs the checks that depend only on the request and the config, the
// ones etcd makes before proposing, so the server can refuse a bad request
// without spending a log entry. Apply runs them again.
func (s *Store) Check(cmd *Command) error {
	return cmd.check(s.cfg.MaxTxnOps)
}

// storeRead is a read of the store as of one revision: a pebble iterator opened
// under the store's lock, which sees the engine as it was then (pebble iterators
// are point-in-time), and clones of it. Cheaper than a pebble snapshot, whose
// release has pebble reconsider its compactions at every read.
type storeRead struct {
	engineRead
	s    *Store
	e    *engine
	view *iterView
}

// beginRead takes a view of the store; check, if not nil, runs first under the
// lock (an auth check). End the read with end.
func (s *Store) beginRead(check func(st *state) error) (*storeRead, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	st := s.mu.st
	if st.failed != nil {
		// An entry the engine refused is missing from this state, while the
		// member's applied index (which a linearizable read waits for) may have
		// moved past it before the member stops: answering would be a stale
		// read (chaos seed 9127, a full disk).
		return nil, st.failed
	}
	if check != nil {
		if err := check(st); err != nil {
			return nil, err
		}
	}
	base, err := st.e.db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	s.reads.Add(1)
	view := &iterView{base: base, counts: countRead{c: &s.rangeCounts, st: st}}
	return &storeRead{engineRead: engineRead{r: view, rev: st.e.rev, compactRev: st.e.compactRev}, s: s, e: st.e, view: view}, nil
}

func (rd *storeRead) end() {
	_ = rd.view.Close()
	rd.s.reads.Done()
}

// readResult returns a read's answer, recording a failed read as the engine's
// failure (engine.readFailed): the member stops (Store.Failed).
func readResult[T any](rd *storeRead, resp *T, err error) (*T, error) {
	if err != nil {
		return nil, rd.e.readFailed(err)
	}
	return resp, nil
}

// iterView is a pebble.Reader over the point-in-time view of one iterator: each
// NewIter is a clone of it, over the same data.
type iterView struct {
	base *pebble.Iterator
	// counts is the range count cache of the view's state (range_count.go).
	counts countRead
}

func (v *iterView) NewIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	return v.base.Clone(pebble.CloneOptions{IterOptions: o})
}

func (v *iterView) NewIterWithContext(ctx context.Context, o *pebble.IterOptions) (*pebble.Iterator, error) {
	return v.base.CloneWithContext(ctx, pebble.CloneOptions{IterOptions: o})
}

func (v *iterView) Get(key []byte) ([]byte, io.Closer, error) {
	it, err := v.NewIter(nil)
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	if !it.SeekGE(key) || !bytes.Equal(it.Key(), key) {
		if err := it.Error(); err != nil {
			return nil, nil, err
		}
		return nil, nil, pebble.ErrNotFound
	}
	return bytes.Clone(it.Value()), io.NopCloser(nil), nil
}

func (v *iterView) Close() error { return v.base.Close() }

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
	rd, err := s.beginRead(nil)
	if err != nil {
		return nil, err
	}
	defer rd.end()
	resp, err := engineRangeAt(rd.r, r, rd.rev, rd.compactRev, newBudget(maxResponseBytes))
	return readResult(rd, resp, err)
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
	rd, err := s.beginRead(nil)
	if err != nil {
		return nil, err
	}
	defer rd.end()
	resp, err := rd.readTxn(r, s.cfg.MaxTxnOps, newBudget(maxResponseBytes))
	return readResult(rd, resp, err)
}

// Revision returns the store's current revision.
func (s *Store) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.e.rev
}

// CompactRevision returns the revision of the last compaction, -1 if none.
func (s *Store) CompactRevision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.e.compactRev
}

// AppliedIndex returns the index of the last log entry applied.
func (s *Store) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.st.e.appliedIndex
}

// Server records: opaque records of the server's (the member list, alarms, the
// cluster's identity) kept in the engine beside the store's, in the same
// snapshots.
const engineServerMetaPrefix = 'S'

func serverMetaKey(name string) []byte {
	return append([]byte{engineMetaPrefix, engineServerMetaPrefix}, name...)
}

// ApplyMeta applies log entry index, whose only effect is the server record
// name = value, in one batch with the applied index. An index at or below the
// last applied one fails with ErrAlreadyApplied.
func (s *Store) ApplyMeta(index uint64, name string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if res, ok := st.admit(index); !ok {
		return res.Err
	}
	if err := st.commitOpen(); err != nil {
		return err
	}
	w := st.e.beginBlindWrite()
	_ = w.b.Set(serverMetaKey(name), value, nil)
	if err := w.commit(index); err != nil {
		return st.fail(err)
	}
	return nil
}

// SetMeta writes the server record name = value without moving the applied
// index (a member's identity, written once when it is created). Flush makes it
// durable. Server records are in the engine's snapshots like the rest: a
// RestoreFrom replaces them with the sender's, so a member rewrites the records
// that are its own (not the cluster's) after a restore.
func (s *Store) SetMeta(name string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.st
	if st.failed != nil {
		return st.failed
	}
	if err := st.commitOpen(); err != nil {
		return err
	}
	b := st.e.db.NewBatch()
	defer b.Close()
	_ = b.Set(serverMetaKey(name), value, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return st.fail(err)
	}
	return nil
}

// Meta returns the server record name, nil if there is none.
func (s *Store) Meta(name string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	return s.mu.st.e.getMeta(serverMetaKey(name))
}
