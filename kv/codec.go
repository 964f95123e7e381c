package kv

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Command is one write for the replicated log: exactly one of Put, DeleteRange,
// Txn, Compact, the lease commands and Auth, plus the client session it belongs to
// and its sender. ClientID 0 means no session: the command is applied every time
// it is committed. A client with a session numbers its requests 1, 2, 3...: a
// retry reuses the number.
type Command struct {
	ClientID uint64
	Seq      uint64
	// Sender says who sent the command; with auth enabled the store checks its
	// permissions when it applies the command (auth_check.go). Zero: no user.
	Sender      AuthInfo
	Put         *PutRequest
	DeleteRange *DeleteRangeRequest
	Txn         *TxnRequest
	Compact     *CompactionRequest
	// LeaseGrant, LeaseRevoke and LeaseCheckpoint change the leases (lease.go).
	LeaseGrant      *LeaseGrantRequest
	LeaseRevoke     *LeaseRevokeRequest
	LeaseCheckpoint *LeaseCheckpointRequest
	// Auth changes the users, roles and permissions, or authenticates (auth.go).
	Auth *AuthRequest
}

func (c *Command) kind() opKind {
	kind, n := opEmpty, 0
	if c.Put != nil {
		kind, n = opPut, n+1
	}
	if c.DeleteRange != nil {
		kind, n = opDeleteRange, n+1
	}
	if c.Txn != nil {
		kind, n = opTxn, n+1
	}
	if c.Compact != nil {
		kind, n = opCompact, n+1
	}
	if c.LeaseGrant != nil {
		kind, n = opLeaseGrant, n+1
	}
	if c.LeaseRevoke != nil {
		kind, n = opLeaseRevoke, n+1
	}
	if c.LeaseCheckpoint != nil {
		kind, n = opLeaseCheckpoint, n+1
	}
	if c.Auth != nil {
		kind, n = opAuth, n+1
	}
	if n != 1 {
		return opMany
	}
	return kind
}

// check runs the request checks that need no state (see Store.Check).
func (c *Command) check(maxTxnOps int) error {
	switch c.kind() {
	case opPut:
		return checkPut(c.Put)
	case opDeleteRange:
		return checkDeleteRange(c.DeleteRange)
	case opTxn:
		return checkTxn(c.Txn, maxTxnOps)
	case opCompact, opLeaseRevoke, opAuth:
		return nil
	case opLeaseGrant:
		return checkLeaseGrant(c.LeaseGrant)
	case opLeaseCheckpoint:
		return checkLeaseCheckpoint(c.LeaseCheckpoint)
	}
	return ErrInvalidCommand
}

// The wire format, version 1. Integers are varints (signed ones zigzag), byte
// strings are a uvarint length then the bytes, booleans are bits of one flags
// byte per request. Decoding is strict (minimal varints, known flag bits, no
// trailing bytes), so every command has exactly one encoding and
// Encode(Decode(b)) == b for every b that decodes.
//
//	command  = version:1 kind:1 clientID:uvarint seq:uvarint [sender] body
//	put      = key value lease:varint flags
//	delete   = key rangeEnd flags
//	compact  = revision:varint flags
//	grant    = id:varint ttl:varint
//	revoke   = id:varint
//	checkpoint = n:uvarint (id:varint remainingTTL:varint)*n
//	auth     = authRequest (auth_codec.go)
//	txn      = n:uvarint compare*n  n:uvarint op*n  n:uvarint op*n
//	compare  = result:varint target:varint key rangeEnd operand
//	op       = kind:1 [range | put | delete | txn]
//	range    = key rangeEnd limit revision sortOrder sortTarget flags
//	           minMod maxMod minCreate maxCreate
//
// Version 2 is version 1 with the command's Sender after seq (auth_codec.go); a
// command with no sender is written as version 1, so one command still has one
// encoding, and commands from before auth read as sent by nobody.
const (
	commandVersion       = 1
	commandVersionSender = 2
)

// Decoding limits. A txn nests at most maxTxnDepth deep (checkTxnRequest refuses a
// deeper one, whatever MaxTxnOps), which bounds the decoder's recursion. A list
// longer than maxTxnListLen would fail ErrTooManyOps under any Config; a list is also
// refused before allocating for it when the bytes left cannot hold it (count).
const (
	maxTxnDepth   = 1024
	maxTxnListLen = maxTxnOpsCap
)

// Encode returns the command's wire form. It fails only on a malformed command:
// no request or several, a txn op with several, or txns nested too deep.
func (c *Command) Encode() ([]byte, error) {
	return c.AppendEncode(nil)
}

// AppendEncode appends the command's wire form to dst.
func (c *Command) AppendEncode(dst []byte) ([]byte, error) {
	e := encoder{buf: dst}
	kind := c.kind()
	if kind == opMany {
		return dst, ErrInvalidCommand
	}
	version := byte(commandVersion)
	if !c.Sender.isZero() {
		version = commandVersionSender
	}
	e.byte(version)
	e.byte(byte(kind))
	e.uvarint(c.ClientID)
	e.uvarint(c.Seq)
	if version == commandVersionSender {
		e.sender(c.Sender)
	}
	switch kind {
	case opPut:
		e.put(c.Put)
	case opDeleteRange:
		e.deleteRange(c.DeleteRange)
	case opTxn:
		e.txn(c.Txn, 1)
	case opCompact:
		e.varint(c.Compact.Revision)
		e.flags(c.Compact.Physical)
	case opLeaseGrant, opLeaseRevoke, opLeaseCheckpoint:
		e.leaseCommand(c)
	case opAuth:
		e.authRequest(c.Auth)
	}
	if e.err != nil {
		return dst, e.err
	}
	return e.buf, nil
}

// DecodeCommand decodes a command. The command's byte slices point into data,
// which the caller must not change while it uses the command. It never panics,
// and it allocates at most a small multiple of len(data).
func DecodeCommand(data []byte) (*Command, error) {
	c := &Command{}
	if err := c.decode(data, nil); err != nil {
		return nil, err
	}
	return c, nil
}

// decode decodes data into c. A put request goes into putScratch if it is not
// nil, so that a caller with both on the stack decodes a put without allocating.
func (c *Command) decode(data []byte, putScratch *PutRequest) error {
	d := decoder{buf: data}
	version := d.byte()
	if d.err == nil && version != commandVersion && version != commandVersionSender {
		return fmt.Errorf("%w: format version %d, this build reads %d and %d", ErrCorruptCommand, version, commandVersion, commandVersionSender)
	}
	kind := opKind(d.byte())
	c.ClientID = d.uvarint()
	c.Seq = d.uvarint()
	if version == commandVersionSender {
		if c.Sender = d.sender(); d.err == nil && c.Sender.isZero() {
			d.fail("format version %d with an empty sender", version)
		}
	}
	switch kind {
	case opPut:
		if putScratch == nil {
			putScratch = &PutRequest{}
		}
		c.Put = putScratch
		d.putInto(c.Put)
	case opDeleteRange:
		c.DeleteRange = d.deleteRange()
	case opTxn:
		c.Txn = d.txn(1)
	case opCompact:
		c.Compact = &CompactionRequest{Revision: d.varint()}
		c.Compact.Physical = d.flags(1)[0]
	case opLeaseGrant, opLeaseRevoke, opLeaseCheckpoint:
		d.leaseCommand(kind, c)
	case opAuth:
		c.Auth = d.authRequest()
	default:
		d.fail("unknown command kind %d", kind)
	}
	d.end()
	if d.err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptCommand, d.err)
	}
	return nil
}

// encoder appends to buf; the first error sticks.
type encoder struct {
	buf []byte
	err error
}

func (e *encoder) byte(b byte)      { e.buf = append(e.buf, b) }
func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.buf = append(e.buf, b...) }
func (e *encoder) enum(v int32)     { e.varint(int64(v)) }
func (e *encoder) flags(bits ...bool) {
	var f byte
	for i, b := range bits {
		if b {
			f |= 1 << i
		}
	}
	e.byte(f)
}

func (e *encoder) put(p *PutRequest) {
	e.bytes(p.Key)
	e.bytes(p.Value)
	e.varint(p.Lease)
	e.flags(p.PrevKv, p.IgnoreValue, p.IgnoreLease)
}

func (e *encoder) deleteRange(d *DeleteRangeRequest) {
	e.bytes(d.Key)
	e.bytes(d.RangeEnd)
	e.flags(d.PrevKv)
}

func (e *encoder) rangeRequest(r *RangeRequest) {
	e.bytes(r.Key)
	e.bytes(r.RangeEnd)
	e.varint(r.Limit)
	e.varint(r.Revision)
	e.enum(int32(r.SortOrder))
	e.enum(int32(r.SortTarget))
	e.flags(r.Serializable, r.KeysOnly, r.CountOnly)
	e.varint(r.MinModRevision)
	e.varint(r.MaxModRevision)
	e.varint(r.MinCreateRevision)
	e.varint(r.MaxCreateRevision)
}

func (e *encoder) txn(t *TxnRequest, depth int) {
	if depth > maxTxnDepth {
		e.err = fmt.Errorf("%w: txns nested more than %d deep", ErrInvalidCommand, maxTxnDepth)
		return
	}
	e.uvarint(uint64(len(t.Compare)))
	for i := range t.Compare {
		e.compare(&t.Compare[i])
	}
	for _, ops := range [2][]RequestOp{t.Success, t.Failure} {
		e.uvarint(uint64(len(ops)))
		for i := range ops {
			e.op(&ops[i], depth)
		}
	}
}

// compare writes only the operand that Target selects; the others are never
// read, so they are not kept.
func (e *encoder) compare(c *Compare) {
	e.enum(int32(c.Result))
	e.enum(int32(c.Target))
	e.bytes(c.Key)
	e.bytes(c.RangeEnd)
	switch c.Target {
	case CompareValue:
		e.bytes(c.Value)
	case CompareVersion:
		e.varint(c.Version)
	case CompareCreate:
		e.varint(c.CreateRevision)
	case CompareMod:
		e.varint(c.ModRevision)
	case CompareLease:
		e.varint(c.Lease)
	}
}

func (e *encoder) op(op *RequestOp, depth int) {
	kind := op.kind()
	if kind == opMany {
		e.err = ErrInvalidCommand
		return
	}
	e.byte(byte(kind))
	switch kind {
	case opRange:
		e.rangeRequest(op.Range)
	case opPut:
		e.put(op.Put)
	case opDeleteRange:
		e.deleteRange(op.DeleteRange)
	case opTxn:
		e.txn(op.Txn, depth+1)
	}
}

// decoder reads buf from off. The first error sticks and every later read
// returns zero, so callers check once at the end.
type decoder struct {
	buf []byte
	off int
	err error
	// copyBytes makes bytes() return copies instead of slices of buf, for data
	// that must outlive buf (snapshots).
	copyBytes bool
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format+" at byte %d", append(args, d.off)...)
	}
}

func (d *decoder) remaining() int { return len(d.buf) - d.off }

func (d *decoder) end() {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", d.remaining())
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail("truncated")
		return 0
	}
	b := d.buf[d.off]
	d.off++
	return b
}

// varintLen checks that the varint of n bytes at off is minimal: a longer
// encoding of the same value would decode fine but re-encode differently.
func (d *decoder) varintLen(n int) bool {
	if n <= 0 {
		if n == 0 {
			d.fail("truncated")
		} else {
			d.fail("varint overflows 64 bits")
		}
		return false
	}
	if n > 1 && d.buf[d.off+n-1] == 0 {
		d.fail("non-minimal varint")
		return false
	}
	d.off += n
	return true
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if !d.varintLen(n) {
		return 0
	}
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf[d.off:])
	if !d.varintLen(n) {
		return 0
	}
	return v
}

func (d *decoder) enum() int32 {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("enum value %d out of range", v)
		return 0
	}
	return int32(v)
}

// bytes reads a length-prefixed byte string, nil when empty. The length is
// checked against what is left, so a corrupt length cannot make it allocate.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(d.remaining()) {
		d.fail("byte string of %d bytes with %d left", n, d.remaining())
		return nil
	}
	if n == 0 {
		return nil
	}
	end := d.off + int(n)
	b := d.buf[d.off:end:end]
	d.off = end
	if d.copyBytes {
		b = append([]byte(nil), b...)
	}
	return b
}

// bytesNoCopy is bytes without the copy, for a caller that copies them itself.
func (d *decoder) bytesNoCopy() []byte {
	copyBytes := d.copyBytes
	d.copyBytes = false
	b := d.bytes()
	d.copyBytes = copyBytes
	return b
}

// count reads a list length, refusing one that could not fit in what is left
// at minSize bytes per element or that is longer than maxLen.
func (d *decoder) count(minSize, maxLen int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(maxLen) || n > uint64(d.remaining()/minSize) {
		d.fail("list of %d elements with %d bytes left", n, d.remaining())
		return 0
	}
	return int(n)
}

// flags reads a flags byte holding n booleans; other bits must be clear.
func (d *decoder) flags(n int) [8]bool {
	var out [8]bool
	f := d.byte()
	if f>>n != 0 {
		d.fail("unknown flag bits %#x", f)
		return out
	}
	for i := range n {
		out[i] = f&(1<<i) != 0
	}
	return out
}

func (d *decoder) put() *PutRequest {
	p := &PutRequest{}
	d.putInto(p)
	return p
}

func (d *decoder) putInto(p *PutRequest) {
	p.Key, p.Value, p.Lease = d.bytes(), d.bytes(), d.varint()
	f := d.flags(3)
	p.PrevKv, p.IgnoreValue, p.IgnoreLease = f[0], f[1], f[2]
}

func (d *decoder) deleteRange() *DeleteRangeRequest {
	r := &DeleteRangeRequest{Key: d.bytes(), RangeEnd: d.bytes()}
	r.PrevKv = d.flags(1)[0]
	return r
}

func (d *decoder) rangeRequest() *RangeRequest {
	r := &RangeRequest{Key: d.bytes(), RangeEnd: d.bytes(), Limit: d.varint(), Revision: d.varint()}
	r.SortOrder = SortOrder(d.enum())
	r.SortTarget = SortTarget(d.enum())
	f := d.flags(3)
	r.Serializable, r.KeysOnly, r.CountOnly = f[0], f[1], f[2]
	r.MinModRevision = d.varint()
	r.MaxModRevision = d.varint()
	r.MinCreateRevision = d.varint()
	r.MaxCreateRevision = d.varint()
	return r
}

// Smallest encodings, for bounding list lengths: a compare is result, target
// and two empty byte strings; an op is its kind byte.
const (
	minCompareBytes = 4
	minOpBytes      = 1
)

func (d *decoder) txn(depth int) *TxnRequest {
	if depth > maxTxnDepth {
		d.fail("txns nested more than %d deep", maxTxnDepth)
		return nil
	}
	t := &TxnRequest{}
	if n := d.count(minCompareBytes, maxTxnListLen); n > 0 {
		t.Compare = make([]Compare, n)
		for i := range t.Compare {
			d.compare(&t.Compare[i])
		}
	}
	t.Success = d.ops(depth)
	t.Failure = d.ops(depth)
	return t
}

func (d *decoder) compare(c *Compare) {
	c.Result = CompareResult(d.enum())
	c.Target = CompareTarget(d.enum())
	c.Key = d.bytes()
	c.RangeEnd = d.bytes()
	switch c.Target {
	case CompareValue:
		c.Value = d.bytes()
	case CompareVersion:
		c.Version = d.varint()
	case CompareCreate:
		c.CreateRevision = d.varint()
	case CompareMod:
		c.ModRevision = d.varint()
	case CompareLease:
		c.Lease = d.varint()
	}
}

func (d *decoder) ops(depth int) []RequestOp {
	n := d.count(minOpBytes, maxTxnListLen)
	if n == 0 {
		return nil
	}
	ops := make([]RequestOp, n)
	for i := range ops {
		if d.err != nil {
			return nil
		}
		switch kind := opKind(d.byte()); kind {
		case opEmpty:
		case opRange:
			ops[i].Range = d.rangeRequest()
		case opPut:
			ops[i].Put = d.put()
		case opDeleteRange:
			ops[i].DeleteRange = d.deleteRange()
		case opTxn:
			ops[i].Txn = d.txn(depth + 1)
		default:
			d.fail("unknown op kind %d", kind)
		}
	}
	return ops
}
