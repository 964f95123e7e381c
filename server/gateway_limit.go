package server

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gatewayBody is a unary gateway request's body, read by the handler's decoder up
// to bound bytes: a larger body fails the read, and the gateway's error handler
// then answers as etcd answers a request over gRPC's limit (429, code 8,
// ResourceExhausted), where etcd reads the body whole first. Its text is gRPC's
// with what raftkv knows of the size: it stopped reading at the bound, so not the
// request's size in protobuf, which etcd names.
type gatewayBody struct {
	body        io.ReadCloser
	left, bound int64
	limit       int // gRPC's limit on a request: --max-request-bytes and the overhead
	over        bool
}

func (b *gatewayBody) Read(p []byte) (int, error) {
	if b.over {
		return 0, errStreamMessageTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.body.Read(p)
	if int64(n) > b.left {
		b.over = true
		return int(b.left), errStreamMessageTooLarge
	}
	b.left -= int64(n)
	return n, err
}

func (b *gatewayBody) Close() error { return b.body.Close() }

func (b *gatewayBody) tooLarge() error {
	return status.Errorf(codes.ResourceExhausted,
		"grpc: received message larger than max (a JSON body over the gateway's bound of %d bytes vs. %d); "+
			"the gateway takes a request of at most --max-request-bytes, in JSON with its bytes in base64", b.bound, b.limit)
}

// readCloser reads from one and closes the other.
type readCloser struct {
	io.Reader
	io.Closer
}

// errStreamMessageTooLarge ends a gateway stream's body whose one request passed
// the gateway's bound (see jsonMessageLimiter).
var errStreamMessageTooLarge = errors.New("http: request body too large")

// jsonMessageLimiter bounds each JSON value of a streaming gateway body
// (/v3/watch, /v3/lease/keepalive) rather than the body: such a body carries many
// requests over the stream's life, and etcd's generated handlers decode each with
// a json.Decoder, which buffers a whole value before gRPC's own limit sees it, so
// one endless value would grow the member's heap without bound. It follows the
// JSON's nesting and strings byte by byte (4.7 ns a byte, against 41 for the
// decoder that reads the same bytes: BenchmarkJSONMessageLimiter) and fails the
// read once a value, with the whitespace before it, passes limit bytes. The
// generated handler then only closes the call's sending side and tells grpclog, so
// onCut lets the member log it. A hand-written scanner because the bound must hold before the decoder buffers the
// value: a json.Decoder of our own in front would buffer it first.
type jsonMessageLimiter struct {
	r     io.Reader
	limit int64

	onCut func() // called once, when a value passes the limit

	n        int64 // bytes of the current value so far, and the whitespace before it
	depth    int   // open objects and arrays
	inValue  bool  // a value has begun and not yet ended
	inString bool
	escaped  bool  // the byte before was a backslash inside a string
	err      error // once a value passed the limit
}

func newJSONMessageLimiter(r io.Reader, limit int64) *jsonMessageLimiter {
	return &jsonMessageLimiter{r: r, limit: limit}
}

func (l *jsonMessageLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for i, b := range p[:n] {
		if !l.scan(b) {
			// The bytes before this one are handed on, so that the decoder ends
			// at the values before it, and then fails on the cut one: the error
			// stays, since a json.Decoder that finds a whole value in what it
			// read drops the error that came with it and reads again.
			l.err = fmt.Errorf("%w: one request of the stream passed %d bytes", errStreamMessageTooLarge, l.limit)
			if l.onCut != nil {
				l.onCut()
			}
			return i, l.err
		}
	}
	return n, err
}

// scan takes one byte and reports whether the current value, with the whitespace
// before it, is still within the limit. The whitespace counts: a json.Decoder keeps
// what precedes a value in its buffer until the value is decoded, so endless spaces
// would grow it as an endless value does.
func (l *jsonMessageLimiter) scan(b byte) bool {
	l.n++
	if l.n > l.limit {
		return false
	}
	space := b == ' ' || b == '\t' || b == '\r' || b == '\n'
	if !l.inValue {
		if space {
			return true
		}
		l.inValue = true
	}
	switch {
	case l.inString:
		switch {
		case l.escaped:
			l.escaped = false
		case b == '\\':
			l.escaped = true
		case b == '"':
			l.inString = false
			l.endUnlessNested()
		}
	case b == '"':
		l.inString = true
	case b == '{' || b == '[':
		l.depth++
	case b == '}' || b == ']':
		if l.depth > 0 {
			l.depth--
		}
		l.endUnlessNested()
	case l.depth == 0 && space:
		// The end of a top-level number or literal.
		l.endUnlessNested()
	}
	return true
}

// endUnlessNested ends the current value, and starts the count of the next, if the
// byte just scanned closed the outermost level.
func (l *jsonMessageLimiter) endUnlessNested() {
	if l.depth == 0 {
		l.inValue, l.n = false, 0
	}
}
