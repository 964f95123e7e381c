package kv

import "fmt"

// The auth state in the engine (auth.go has its semantics): users, roles and
// their permissions are few and change only by auth commands, so the state stays
// in memory and each auth command that changes it rewrites one record, encoded
// as the snapshot's auth section (auth_codec.go), in the batch of its entry.
var metaAuth = []byte{engineMetaPrefix, 'A'}

// writeAuth records a in the write.
func (w *engineWrite) writeAuth(a *authState) {
	var e encoder
	a.encode(&e)
	if e.err != nil {
		panic(fmt.Sprintf("kv: encoding the auth state: %v", e.err))
	}
	_ = w.b.Set(metaAuth, e.buf, nil)
}

// loadAuth reads the auth state; an engine with no auth record yet has auth
// disabled, no users and no roles, at auth revision 1.
func (e *engine) loadAuth() (authState, error) {
	a := newAuthState()
	b, err := e.getMeta(metaAuth)
	if err != nil || b == nil {
		return a, err
	}
	d := decoder{buf: b, copyBytes: true}
	d.authState(&a)
	d.end()
	if d.err != nil {
		return newAuthState(), fmt.Errorf("%w: auth record of the engine in %q: %v", ErrCorruptEngine, e.dir, d.err)
	}
	return a, nil
}
