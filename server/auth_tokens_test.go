package server

import (
	"crypto/sha256"
	"testing"
	"time"
)

func digestOf(secret string) []byte {
	d := sha256.Sum256([]byte(secret))
	return d[:]
}

// A simple token lives ttl unused, each use renewing it; the table keeps at most
// its bound, forgetting the least recently used; a user's tokens end with it.
func TestSimpleTokens(t *testing.T) {
	now := time.Unix(1000, 0)
	tokens := newSimpleTokens(10*time.Second, 3)
	tokens.add(digestOf("a"), "alice", 7, now)
	if user, ok := tokens.lookup("a", 7, now.Add(9*time.Second)); !ok || user != "alice" {
		t.Fatalf("lookup within the TTL: %q %v", user, ok)
	}
	if _, ok := tokens.lookup("a", 8, now); ok {
		t.Fatal("a token read with another index")
	}
	if _, ok := tokens.lookup("b", 7, now); ok {
		t.Fatal("an unknown secret")
	}
	// Renewed at +9s: alive at +18s, gone at +20s.
	if _, ok := tokens.lookup("a", 7, now.Add(18*time.Second)); !ok {
		t.Fatal("a token used 9s ago expired")
	}
	if _, ok := tokens.lookup("a", 7, now.Add(29*time.Second)); ok {
		t.Fatal("a token unused for 11s is still valid")
	}
	// The bound: a fourth token pushes out the least recently used.
	now = now.Add(time.Minute)
	tokens.add(digestOf("x"), "x", 1, now)
	tokens.add(digestOf("y"), "y", 2, now)
	tokens.add(digestOf("z"), "z", 3, now)
	tokens.lookup("x", 1, now) // x is now the most recent
	tokens.add(digestOf("w"), "w", 4, now)
	if tokens.len() != 3 {
		t.Fatalf("%d tokens kept, bound 3", tokens.len())
	}
	if _, ok := tokens.lookup("y", 2, now); ok {
		t.Fatal("the least recently used token survived the bound")
	}
	if _, ok := tokens.lookup("x", 1, now); !ok {
		t.Fatal("a recently used token was evicted")
	}
	tokens.revokeUser("x")
	if _, ok := tokens.lookup("x", 1, now); ok {
		t.Fatal("a revoked user's token is valid")
	}
	tokens.clear()
	if tokens.len() != 0 {
		t.Fatal("clear left tokens")
	}
}

func TestParseToken(t *testing.T) {
	for token, ok := range map[string]bool{
		"abc.12": true, "abc.0": false, ".12": false, "abc": false, "abc.x": false, "abc.-1": false, "a.b.3": false,
	} {
		if _, _, got := parseToken(token); got != ok {
			t.Errorf("parseToken(%q): %v, want %v", token, got, ok)
		}
	}
	s := newTokenSecret()
	if len(s) != tokenSecretLetters || s == newTokenSecret() {
		t.Fatalf("secret %q", s)
	}
}

// The wait after each failure in a row doubles from authFirstDelay to
// authMaxDelay once the free ones are spent; a success forgets the address; so
// does a long quiet spell; and the table holds at most authMaxAddresses.
func TestAuthLimiter(t *testing.T) {
	want := []time.Duration{0, 0, 0, 500 * time.Millisecond, time.Second, 2 * time.Second}
	for i, w := range want {
		if got := authDelay(i + 1); got != w {
			t.Errorf("delay after %d failures: %v, want %v", i+1, got, w)
		}
	}
	if authDelay(40) != authMaxDelay {
		t.Errorf("delay after 40 failures: %v", authDelay(40))
	}
	now := time.Unix(1000, 0)
	l := newAuthLimiter()
	for range authFreeFailures {
		l.failed("10.0.0.1", now)
	}
	if _, ok := l.allow("10.0.0.1", now); !ok {
		t.Fatal("refused after the free failures")
	}
	l.failed("10.0.0.1", now)
	if wait, ok := l.allow("10.0.0.1", now.Add(100*time.Millisecond)); ok || wait != 400*time.Millisecond {
		t.Fatalf("right after the fourth failure: wait %v ok %v", wait, ok)
	}
	if _, ok := l.allow("10.0.0.2", now); !ok {
		t.Fatal("another address is refused")
	}
	if _, ok := l.allow("10.0.0.1", now.Add(authFirstDelay)); !ok {
		t.Fatal("refused after the wait")
	}
	l.succeeded("10.0.0.1")
	l.failed("10.0.0.1", now)
	if _, ok := l.allow("10.0.0.1", now); !ok {
		t.Fatal("a success did not clear the count")
	}
	for range 10 {
		l.failed("10.0.0.3", now)
	}
	if _, ok := l.allow("10.0.0.3", now.Add(authForgetAfter+time.Second)); !ok {
		t.Fatal("an address quiet for authForgetAfter is still slowed")
	}
	for i := range authMaxAddresses + 10 {
		l.failed(string(rune(i)), now)
	}
	if n := len(l.mu.byAddr); n > authMaxAddresses {
		t.Fatalf("%d addresses kept, bound %d", n, authMaxAddresses)
	}
}
