package kv

import (
	"errors"
	"fmt"
	"math/bits"
)

// This file bounds the bytes of a read's response (Store.RangeLimited,
// Store.TxnLimited), counted as etcd's protobuf encoding of the key-values would
// take them, so that a range over a large store is refused before its values are
// read rather than built whole in memory. Writes are never bounded: a write txn's
// ranges are answered in Apply, on every replica alike, whatever each replica's
// limit.

// ErrResponseTooLarge: a read's response would be larger than the limit it was
// given. The error is a *ResponseTooLargeError, with the sizes.
var ErrResponseTooLarge = errors.New("kv: response too large")

// ResponseTooLargeError says how large the refused response would have been.
type ResponseTooLargeError struct {
	// Bytes is the size of the key-values the response would carry, in etcd's
	// encoding; at least this much when SortByValue.
	Bytes int64
	// Limit is the limit it was over.
	Limit int64
	// SortByValue: the range sorts by value, so every value in it (before the
	// limit cuts any) would be read into memory.
	SortByValue bool
	// Lease, if not 0: the response lists the keys attached to this lease
	// (LeaseTimeToLive with keys), and Bytes counts them.
	Lease int64
}

func (e *ResponseTooLargeError) Error() string {
	if e.Lease != 0 {
		return fmt.Sprintf("kv: the keys of lease %d would take at least %d bytes of the response, over the limit of %d bytes",
			e.Lease, e.Bytes, e.Limit)
	}
	if e.SortByValue {
		return fmt.Sprintf("kv: sorting the range by value needs its %d bytes of key-values in memory, over the limit of %d bytes",
			e.Bytes, e.Limit)
	}
	return fmt.Sprintf("kv: the range response would carry %d bytes of key-values, over the limit of %d bytes", e.Bytes, e.Limit)
}

// Is makes errors.Is(err, ErrResponseTooLarge) hold.
func (e *ResponseTooLargeError) Is(target error) bool { return target == ErrResponseTooLarge }

// responseBudget is what one read's response may take, in bytes; the ranges of a
// read-only txn share one. A nil budget has no limit.
type responseBudget struct {
	limit, used int64
}

// newBudget returns a budget of limit bytes, or nil (no limit) for limit <= 0.
func newBudget(limit int64) *responseBudget {
	if limit <= 0 {
		return nil
	}
	return &responseBudget{limit: limit}
}

// wouldExceed reports whether n more bytes would pass the limit.
func (b *responseBudget) wouldExceed(n int64) bool {
	return b != nil && b.used+n > b.limit
}

// check returns a *ResponseTooLargeError if n more bytes would pass the limit.
func (b *responseBudget) check(n int64, sortByValue bool) error {
	if b.wouldExceed(n) {
		return &ResponseTooLargeError{Bytes: b.used + n, Limit: b.limit, SortByValue: sortByValue}
	}
	return nil
}

// take counts n bytes as used, or fails as check does.
func (b *responseBudget) take(n int64) error {
	if err := b.check(n, false); err != nil {
		return err
	}
	if b != nil {
		b.used += n
	}
	return nil
}

// rangeEntry is one key of a range before its value is read: the KeyValue without
// its value (unless the range copied it already), and the value's length.
type rangeEntry struct {
	kv       KeyValue
	valueLen uint32
	// sub and separated locate a value kept apart from its version record
	// (engine_keys.go): the range reads it once the response is settled.
	sub       uint32
	separated bool
}

// size is the bytes the entry takes in a RangeResponse: an mvccpb.KeyValue in the
// repeated field kvs (tag, length, message), its value left out if keysOnly.
func (e *rangeEntry) size(keysOnly bool) int64 {
	valueLen := int64(e.valueLen)
	if keysOnly {
		valueLen = 0
	}
	n := bytesFieldSize(int64(len(e.kv.Key))) + varintFieldSize(e.kv.CreateRevision) +
		varintFieldSize(e.kv.ModRevision) + varintFieldSize(e.kv.Version) +
		bytesFieldSize(valueLen) + varintFieldSize(e.kv.Lease)
	return 1 + varintSize(uint64(n)) + n
}

// entriesSize is the sum of the entries' sizes.
func entriesSize(entries []rangeEntry, keysOnly bool) int64 {
	var n int64
	for i := range entries {
		n += entries[i].size(keysOnly)
	}
	return n
}

// bytesFieldSize is the encoding of a bytes field of n bytes (field numbers below
// 16 take one byte of tag), nothing if empty, as proto3 leaves it out.
func bytesFieldSize(n int64) int64 {
	if n == 0 {
		return 0
	}
	return 1 + varintSize(uint64(n)) + n
}

// varintFieldSize is the encoding of an int64 field, nothing if zero.
func varintFieldSize(v int64) int64 {
	if v == 0 {
		return 0
	}
	return 1 + varintSize(uint64(v))
}

// varintSize is the bytes of v as a protobuf varint.
func varintSize(v uint64) int64 {
	return int64(9*bits.Len64(v)+64) / 64
}
