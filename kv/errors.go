package kv

import (
	"errors"
	"fmt"
)

// Errors that requests can fail with. Where etcd has an error for the same
// condition, the message is etcd's, word for word, so the server can hand it to
// clients unchanged (wrapped in etcd's gRPC status codes). Callers test them with
// errors.Is.
var (
	// ErrCompacted: the requested revision is older than the last compaction.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev: the requested revision is newer than the store's revision.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrEmptyKey: a request, compare or op has no key.
	ErrEmptyKey = errors.New("etcdserver: key is not provided")
	// ErrKeyNotFound: a put with IgnoreValue or IgnoreLease names a key that does
	// not exist, or a txn holds an op with no request in it (etcd's answer to both).
	ErrKeyNotFound = errors.New("etcdserver: key not found")
	// ErrValueProvided: a put sets both IgnoreValue and a value.
	ErrValueProvided = errors.New("etcdserver: value is provided")
	// ErrLeaseProvided: a put sets both IgnoreLease and a lease.
	ErrLeaseProvided = errors.New("etcdserver: lease is provided")
	// ErrTooManyOps: a txn has more compares or ops than Config.MaxTxnOps.
	ErrTooManyOps = errors.New("etcdserver: too many operations in txn request")
	// ErrDuplicateKey: a txn writes the same key twice (put/put or put/delete).
	ErrDuplicateKey = errors.New("etcdserver: duplicate key given in txn request")
	// ErrInvalidSortOption: a range has a sort order or target etcd does not define.
	ErrInvalidSortOption = errors.New("etcdserver: invalid sort option")
	// ErrRequestTooLarge: a command is larger than Config.MaxCommandBytes.
	ErrRequestTooLarge = errors.New("etcdserver: request is too large")
	// ErrLeaseNotFound: a put names a lease that does not exist, or a revoke a lease
	// that does not exist (any more).
	ErrLeaseNotFound = errors.New("etcdserver: requested lease not found")
	// ErrLeaseExists: a grant names the id of a lease that exists.
	ErrLeaseExists = errors.New("etcdserver: lease already exists")
	// ErrLeaseTTLTooLarge: a grant asks for a TTL above MaxLeaseTTL.
	ErrLeaseTTLTooLarge = errors.New("etcdserver: too large lease TTL")

	// ErrStaleSequence: a session command carries a sequence number lower than the
	// last one applied for its client. Its response is no longer kept, and
	// applying it again would break exactly-once, so it is not applied.
	ErrStaleSequence = errors.New("kv: request sequence number is below the last one applied for this client; it was applied before and its response is gone, send requests with increasing sequence numbers")
	// ErrAlreadyApplied: Apply was called with a log index at or below the last
	// applied index, as happens when raft replays entries a snapshot already holds.
	// The entry is skipped.
	ErrAlreadyApplied = errors.New("kv: log index already applied; entry skipped")
	// ErrTooManyCheckpoints: a LeaseCheckpointRequest holds more checkpoints than
	// one command may (10,000); the server's lessor sends at most 1,000.
	ErrTooManyCheckpoints = errors.New("kv: lease checkpoint command holds more than 10000 checkpoints; split it")
	// ErrInvalidCommand: a command or txn op sets no request or more than one.
	ErrInvalidCommand = errors.New("kv: command must hold exactly one request (and a txn op at most one)")
	// ErrNotReadOnly: Store.Txn was given a txn with writes; writes go through Apply.
	ErrNotReadOnly = errors.New("kv: txn has writes; propose it through the log and Apply it instead")
	// ErrCorruptCommand: command bytes do not decode. Wrapped with the reason.
	ErrCorruptCommand = errors.New("kv: corrupt command")
	// ErrCorruptSnapshot: snapshot bytes fail their checksum or do not decode into
	// a consistent store. Wrapped with the reason.
	ErrCorruptSnapshot = errors.New("kv: corrupt snapshot")
	// ErrCorruptEngine: a record in the storage engine does not decode, or the
	// engine's meta records are inconsistent. Wrapped with the record and reason.
	ErrCorruptEngine = errors.New("kv: corrupt engine data")
	// ErrRestoreCutOff: the engine was cut off while a snapshot was restored
	// into it (a crash between the clearing of its records and the end of the
	// restore). It wraps ErrCorruptEngine; OpenStoreToRestoreFS opens such an
	// engine to restore into it again.
	ErrRestoreCutOff = fmt.Errorf("%w: a snapshot restore into it was cut off", ErrCorruptEngine)
	// ErrInvalidConfig: a Config field is out of range. Wrapped with the field.
	ErrInvalidConfig = errors.New("kv: invalid config")
)

// ErrRefusedNoSpace and ErrRefusedCorrupt are the results of a write the server
// refused because the NOSPACE or CORRUPT alarm was raised when it applied
// (RefuseOnce): recorded as the proposal's result, so that every copy of it gets
// the answer its client got. The server answers them as etcd's errors.
var (
	ErrRefusedNoSpace = errors.New("etcdserver: mvcc: database space exceeded")
	ErrRefusedCorrupt = errors.New("etcdserver: corrupt cluster")
)

// resultErrors lists every error a Result can carry, so that session responses
// can be written into snapshots as a small code. The position is the code: append
// only, never reorder. Code 0 is "no error".
var resultErrors = []error{
	nil,
	ErrCompacted,
	ErrFutureRev,
	ErrEmptyKey,
	ErrKeyNotFound,
	ErrValueProvided,
	ErrLeaseProvided,
	ErrTooManyOps,
	ErrDuplicateKey,
	ErrInvalidSortOption,
	ErrRequestTooLarge,
	ErrStaleSequence,
	ErrInvalidCommand,
	ErrProposalExpired,
	ErrLeaseNotFound,
	ErrLeaseExists,
	ErrLeaseTTLTooLarge,
	ErrTooManyCheckpoints,
	// Auth (auth.go).
	ErrRootUserNotExist,
	ErrRootRoleNotExist,
	ErrUserAlreadyExist,
	ErrUserEmpty,
	ErrUserNotFound,
	ErrRoleAlreadyExist,
	ErrRoleNotFound,
	ErrRoleEmpty,
	ErrAuthFailed,
	ErrPermissionNotGiven,
	ErrPermissionDenied,
	ErrRoleNotGranted,
	ErrPermissionNotGranted,
	ErrAuthNotEnabled,
	ErrInvalidAuthMgmt,
	ErrAuthOldRevision,
	ErrNoPasswordUser,
	ErrAuthPasswordChecked,
	// Alarms' refusals (RefuseOnce).
	ErrRefusedNoSpace,
	ErrRefusedCorrupt,
}

// errorCode returns the snapshot code of err, which must be one of resultErrors.
func errorCode(err error) (byte, bool) {
	for i, e := range resultErrors {
		if e == err {
			return byte(i), true
		}
	}
	return 0, false
}

// ErrClosed is returned by reads of a Store after Close.
var ErrClosed = errors.New("kv: store is closed")

// engineReadError is a read of the engine that failed: an I/O error or a corrupt
// block in its files. The store cannot answer without its data; the read fails,
// and the engine is marked failed (engine.readFailed) so that the member stops,
// as after a failed write, and a restart reopens the engine, which checks its
// files.
type engineReadError struct {
	// dir is the engine's directory, once the failure is recorded.
	dir  string
	what string
	err  error
}

func (e *engineReadError) Error() string {
	if e.dir == "" {
		return fmt.Sprintf("kv: the storage engine failed reading %s: %v", e.what, e.err)
	}
	return fmt.Sprintf("kv: the storage engine in %q failed reading %s: %v", e.dir, e.what, e.err)
}

func (e *engineReadError) Unwrap() error { return e.err }

// engineReadFailed returns the error of a failed read of what.
func engineReadFailed(what string, err error) error {
	return &engineReadError{what: what, err: err}
}

// readFailed records err, if it is a failed read (engineReadError), as the
// engine's failure, and returns it as the reader's answer, wrapping
// ErrEngineFailed; it returns any other error as it is.
func (e *engine) readFailed(err error) error {
	var re *engineReadError
	if !errors.As(err, &re) {
		return err
	}
	failure := &engineReadError{dir: e.dir, what: re.what, err: re.err}
	e.bg.set(failure)
	return fmt.Errorf("%w: %w", ErrEngineFailed, failure)
}
