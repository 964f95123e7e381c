package server

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"

	"raftkv/kv"
)

// This file holds the simple tokens (etcd's --auth-token simple) and the answer to
// "who sends this call?".
//
// As in etcd, a token is issued through the log: Authenticate checks the password
// on the member that took the call, then proposes an entry, and every member that
// applies the entry learns the token, which reads "<secret>.<index of the entry>".
// A member given a token it does not know waits until it has applied that index (a
// client may authenticate on one member and call another at once), then looks it
// up. Tokens live in each member's memory only: a restart or a snapshot installed
// from the leader forgets them, a token unused for --auth-token-ttl expires on each
// member separately (each use renews it on the member used), and deleting a user,
// changing its password or disabling auth ends its tokens everywhere. clientv3 and
// etcdctl authenticate again when a member answers "invalid auth token", so a
// forgotten token costs one more Authenticate.
//
// Better than etcd: the log and the snapshots hold only SHA-256 of a token's
// secret, never a usable token, so a copy of a data dir or of the WAL hands out no
// sessions; the secret is 24 letters (137 bits) where etcd's is 16 (91 bits); and
// each member keeps at most maxSimpleTokens, forgetting the least recently used
// beyond (etcd's table grows with every Authenticate within the TTL).

// ErrInvalidAuthToken: a call carries a token this member does not know, or that
// expired.
var errInvalidAuthToken = errors.New("etcdserver: invalid auth token")

const (
	// DefaultAuthTokenTTL is etcd's --auth-token-ttl default.
	DefaultAuthTokenTTL = 300 * time.Second
	// maxSimpleTokens bounds the tokens a member keeps: at 100,000 a member holds
	// about 15 MB of them, far beyond what the clients of a cluster hold at once.
	maxSimpleTokens    = 100_000
	tokenSecretLetters = 24
	tokenLetters       = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

type tokenDigest = [sha256.Size]byte

// simpleTokens is a member's table of simple tokens, least recently used last.
type simpleTokens struct {
	ttl time.Duration
	max int
	mu  struct {
		sync.Mutex
		byDigest map[tokenDigest]*list.Element // of *simpleToken
		byUse    *list.List
	}
}

type simpleToken struct {
	digest  tokenDigest
	user    string
	index   uint64
	expires time.Time
}

func newSimpleTokens(ttl time.Duration, maxTokens int) *simpleTokens {
	t := &simpleTokens{ttl: ttl, max: maxTokens}
	t.mu.byDigest = map[tokenDigest]*list.Element{}
	t.mu.byUse = list.New()
	return t
}

// newTokenSecret draws a token's secret part.
func newTokenSecret() string {
	b := make([]byte, 0, tokenSecretLetters)
	var r [64]byte
	for len(b) < tokenSecretLetters {
		_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
		for _, c := range r {
			// 208 = 4 * 52: taking c % 52 only below it keeps the letters uniform.
			if c < 208 && len(b) < tokenSecretLetters {
				b = append(b, tokenLetters[c%52])
			}
		}
	}
	return string(b)
}

// add records a token issued at index for user (the apply loop, on every member).
func (t *simpleTokens) add(digest []byte, user string, index uint64, now time.Time) {
	var d tokenDigest
	if copy(d[:], digest) != len(d) {
		return // not ours: every member writes 32 bytes
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	if _, dup := t.mu.byDigest[d]; dup {
		return
	}
	for t.mu.byUse.Len() >= t.max {
		t.removeLocked(t.mu.byUse.Back())
	}
	t.mu.byDigest[d] = t.mu.byUse.PushFront(&simpleToken{digest: d, user: user, index: index, expires: now.Add(t.ttl)})
}

// lookup returns the user of a token issued at index, and renews it.
func (t *simpleTokens) lookup(secret string, index uint64, now time.Time) (string, bool) {
	d := sha256.Sum256([]byte(secret))
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.mu.byDigest[d]
	if e == nil {
		return "", false
	}
	tok := e.Value.(*simpleToken)
	if tok.index != index || now.After(tok.expires) {
		return "", false
	}
	tok.expires = now.Add(t.ttl)
	t.mu.byUse.MoveToFront(e)
	return tok.user, true
}

// revokeUser ends every token of user (its deletion or new password).
func (t *simpleTokens) revokeUser(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.mu.byUse.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*simpleToken).user == user {
			t.removeLocked(e)
		}
		e = next
	}
}

// clear ends every token (auth disabled, or a snapshot installed).
func (t *simpleTokens) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.mu.byDigest)
	t.mu.byUse.Init()
}

func (t *simpleTokens) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.byUse.Len()
}

// sweepLocked drops the expired tokens at the tail: the least recently used
// expire first, since each use renews a token for the same TTL.
func (t *simpleTokens) sweepLocked(now time.Time) {
	for e := t.mu.byUse.Back(); e != nil && now.After(e.Value.(*simpleToken).expires); e = t.mu.byUse.Back() {
		t.removeLocked(e)
	}
}

func (t *simpleTokens) removeLocked(e *list.Element) {
	delete(t.mu.byDigest, e.Value.(*simpleToken).digest)
	t.mu.byUse.Remove(e)
}

// parseToken splits "<secret>.<index>".
func parseToken(token string) (secret string, index uint64, ok bool) {
	secret, num, found := strings.Cut(token, ".")
	if !found || secret == "" {
		return "", 0, false
	}
	index, err := strconv.ParseUint(num, 10, 64)
	return secret, index, err == nil && index > 0
}

// tokenFromContext returns the token a call carries, where etcd's clients put it.
func tokenFromContext(ctx context.Context) (string, bool) {
	for _, key := range []string{rpctypes.TokenFieldNameGRPC, rpctypes.TokenFieldNameSwagger} {
		if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
			return strings.TrimPrefix(v[0], "Bearer "), true
		}
	}
	return "", false
}

// sender says who sends a call, as etcd's AuthInfoFromCtx does: the user of the
// call's token (an unknown or expired token is errInvalidAuthToken), or without a
// token, with --client-cert-auth, the common name of the client's verified
// certificate; nobody while auth is disabled, except the certificate's user. The
// auth revision is this member's now: the state machine refuses the request if the
// auth state changed before it applies (kv.ErrAuthOldRevision), and the client
// sends it again.
//
// A member may not yet have applied an AuthEnable that another member has, and a
// command it sent on as nobody's would be refused where it applies, with auth on,
// though the client had credentials. So the certificate's user is named whether or
// not auth is enabled here (etcd names it likewise), and a token issued by an
// entry this member has not applied yet is waited for, within the request timeout,
// before auth is looked at: that entry comes after the AuthEnable.
func (s *Server) sender(ctx context.Context) (kv.AuthInfo, error) {
	token, hasToken := tokenFromContext(ctx)
	if hasToken {
		if err := s.awaitTokenEntry(ctx, token); err != nil {
			return kv.AuthInfo{}, err
		}
	}
	enabled, rev := s.sm.store.AuthStatus()
	if hasToken && enabled {
		user, err := s.tokenUser(token)
		if err != nil {
			return kv.AuthInfo{}, err
		}
		return kv.AuthInfo{User: user, Revision: rev}, nil
	}
	if s.cfg.ClientTLS.ClientCertAuth {
		if cn, ok := ClientCertCommonName(ctx); ok {
			return kv.AuthInfo{User: cn, Revision: rev}, nil
		}
	}
	return kv.AuthInfo{}, nil
}

// awaitTokenEntry waits, within the request timeout, until this member has applied
// the entry that issued token (an index the token names). A token that does not
// parse, or names an entry that does not come within the timeout, is left to
// tokenUser to refuse; a member that stops meanwhile returns errStopped.
func (s *Server) awaitTokenEntry(ctx context.Context, token string) error {
	_, index, ok := parseToken(token)
	if !ok || s.applied.get() >= index {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	err := s.applied.wait(wctx, index)
	switch {
	case errors.Is(err, errStopped):
		return err // the member is stopping: "server stopped", not an invalid token
	case err != nil && ctx.Err() != nil:
		return s.contextError(ctx)
	}
	return nil
}

// tokenUser looks a token up among this member's tokens.
func (s *Server) tokenUser(token string) (string, error) {
	secret, index, ok := parseToken(token)
	if !ok {
		return "", errInvalidAuthToken
	}
	user, ok := s.tokens.lookup(secret, index, time.Now())
	if !ok {
		return "", errInvalidAuthToken
	}
	return user, nil
}

// authApplied acts on an applied auth command's response: tokens issued and
// ended. A copy of a command that had applied (kv.Store.ApplyOnce) returns the
// first copy's response, whose Index is not this entry's: that was acted on.
func (s *Server) authApplied(index uint64, res *kv.Result) {
	a := res.Auth
	if a == nil || res.Err != nil || a.Index != index {
		return
	}
	switch a.Op {
	case kv.Authenticate:
		s.tokens.add(a.TokenDigest, a.Name, index, time.Now())
	case kv.UserDelete, kv.UserChangePassword:
		s.tokens.revokeUser(a.Name)
	case kv.AuthDisable:
		s.tokens.clear()
	}
}

// requireUser is etcd's requireAuthInfo: with auth enabled the call must come from
// a user (a valid token, or a certificate's common name with --client-cert-auth).
func (s *Server) requireUser(ctx context.Context) error {
	sender, err := s.sender(ctx)
	if err == nil {
		err = s.sm.store.RequireUser(sender)
	}
	return toGRPC(err)
}

// requireAdmin is etcd's AuthAdmin.isPermitted: with auth enabled the call must
// come from a user with the root role.
func (s *Server) requireAdmin(ctx context.Context) error {
	sender, err := s.sender(ctx)
	if err == nil {
		err = s.sm.store.CheckAdmin(sender)
	}
	return toGRPC(err)
}
