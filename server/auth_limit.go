package server

import (
	"container/list"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The policy for repeated wrong passwords (etcd has none): failures are counted
// per client address (the IP, without the port), in a row. The first
// authFreeFailures cost nothing, for typing mistakes; after the n-th beyond them
// the address must wait authFirstDelay·2^(n-1), at most authMaxDelay, before its
// next Authenticate is looked at. One that comes sooner is refused at once, without
// checking its password (so it costs no bcrypt and no waiting goroutine), with
// ResourceExhausted saying how long to wait. A correct password clears the
// address's count; an address with no failure for authForgetAfter is forgotten.
// So a guesser on one address gets about 2,900 guesses a day once at the cap,
// against some 20 a second per core that bcrypt alone allows.
//
// Memory: at most authMaxAddresses addresses, the one whose last failure is
// oldest forgotten first, so a flood from many addresses cannot grow the member;
// its price is that such a flood can make the member forget an address early.
// Counting per address rather than per user keeps a guesser from locking a user
// (root) out; a guesser with many addresses is slowed only by bcrypt's cost.
const (
	authFreeFailures = 3
	authFirstDelay   = 500 * time.Millisecond
	authMaxDelay     = 30 * time.Second
	authForgetAfter  = 15 * time.Minute
	authMaxAddresses = 10_000
)

type authLimiter struct {
	mu struct {
		sync.Mutex
		byAddr map[string]*list.Element // of *authFailures
		byAge  *list.List               // most recent failure first
	}
}

type authFailures struct {
	addr     string
	count    int
	last     time.Time
	notUntil time.Time
}

func newAuthLimiter() *authLimiter {
	l := &authLimiter{}
	l.mu.byAddr = map[string]*list.Element{}
	l.mu.byAge = list.New()
	return l
}

// clientAddr is the IP a call comes from, or "" if unknown: through the JSON
// gateway, the HTTP client's, so that one client's wrong passwords do not hold up
// every other's.
func clientAddr(ctx context.Context) string {
	if addr, ok := gatewayClientAddr(ctx); ok {
		return addr
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}

// allow says whether addr may try a password now, or how long it must wait.
func (l *authLimiter) allow(addr string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.mu.byAddr[addr]
	if e == nil {
		return 0, true
	}
	f := e.Value.(*authFailures)
	if now.Sub(f.last) > authForgetAfter {
		l.removeLocked(e)
		return 0, true
	}
	if wait := f.notUntil.Sub(now); wait > 0 {
		return wait, false
	}
	return 0, true
}

// failed counts a wrong password from addr.
func (l *authLimiter) failed(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.mu.byAddr[addr]
	if e == nil {
		for l.mu.byAge.Len() >= authMaxAddresses {
			l.removeLocked(l.mu.byAge.Back())
		}
		e = l.mu.byAge.PushFront(&authFailures{addr: addr})
		l.mu.byAddr[addr] = e
	} else {
		l.mu.byAge.MoveToFront(e)
	}
	f := e.Value.(*authFailures)
	if now.Sub(f.last) > authForgetAfter {
		f.count = 0
	}
	f.count++
	f.last = now
	f.notUntil = now.Add(authDelay(f.count))
}

// succeeded clears addr's count.
func (l *authLimiter) succeeded(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.mu.byAddr[addr]; e != nil {
		l.removeLocked(e)
	}
}

func (l *authLimiter) removeLocked(e *list.Element) {
	delete(l.mu.byAddr, e.Value.(*authFailures).addr)
	l.mu.byAge.Remove(e)
}

// authDelay is the wait after the failures-th failure in a row.
func authDelay(failures int) time.Duration {
	beyond := failures - authFreeFailures
	if beyond <= 0 {
		return 0
	}
	d := authFirstDelay
	for i := 1; i < beyond && d < authMaxDelay; i++ {
		d *= 2
	}
	return min(d, authMaxDelay)
}

// errTooManyAuthFailures answers an Authenticate that came too soon.
func errTooManyAuthFailures(addr string, wait time.Duration) error {
	return status.Error(codes.ResourceExhausted, fmt.Sprintf(
		"raftkv: authentication refused: too many wrong passwords in a row from %s; retry in %s",
		addr, wait.Round(time.Millisecond)))
}
