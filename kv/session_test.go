package kv

import (
	"testing"
)

func sessionPut(client, seq uint64, key, value string) *Command {
	return &Command{ClientID: client, Seq: seq, Put: &PutRequest{Key: []byte(key), Value: []byte(value)}}
}

func TestSessionRetryAppliedOnce(t *testing.T) {
	s := newTestStore(t, Config{})
	first := apply(t, s, sessionPut(7, 1, "a", "1"))
	if first.Err != nil || s.Revision() != 2 {
		t.Fatalf("first apply: %v, revision %d", first.Err, s.Revision())
	}
	// The log holds the command twice (the client retried after a leader change).
	retry := apply(t, s, sessionPut(7, 1, "a", "1"))
	if retry.Put != first.Put || s.Revision() != 2 {
		t.Fatalf("retry applied again: revision %d, response %+v vs %+v", s.Revision(), retry.Put, first.Put)
	}
	wantKV(t, "after retry", get(t, s, "a", 0), "a", "1", 2, 2, 1)

	// Another client with the same seq is a different request.
	if res := apply(t, s, sessionPut(8, 1, "a", "2")); res.Err != nil || s.Revision() != 3 {
		t.Fatalf("client 8: %v, revision %d", res.Err, s.Revision())
	}
	// The next seq applies; an older one is refused, not applied.
	apply(t, s, sessionPut(7, 2, "a", "3"))
	wantErr(t, "stale seq", apply(t, s, sessionPut(7, 1, "a", "1")).Err, ErrStaleSequence)
	if s.Revision() != 4 {
		t.Fatalf("revision %d, want 4", s.Revision())
	}
	// Client 0 has no session: every apply applies.
	apply(t, s, sessionPut(0, 1, "z", "1"))
	apply(t, s, sessionPut(0, 1, "z", "1"))
	if s.Revision() != 6 {
		t.Fatalf("sessionless commands deduplicated: revision %d", s.Revision())
	}
}

func TestSessionRemembersErrors(t *testing.T) {
	s := newTestStore(t, Config{})
	cmd := &Command{ClientID: 3, Seq: 1, Put: &PutRequest{Key: []byte("a"), IgnoreValue: true}}
	wantErr(t, "first", apply(t, s, cmd).Err, ErrKeyNotFound)
	mustPut(t, s, "a", "now it exists")
	// The retry gets the first answer, although applying it now would succeed.
	wantErr(t, "retry", apply(t, s, cmd).Err, ErrKeyNotFound)
	if kv := get(t, s, "a", 0); kv.Version != 1 {
		t.Fatalf("retry applied: version %d", kv.Version)
	}
}

func TestSessionEvictionLeastRecentlyUsed(t *testing.T) {
	s := newTestStore(t, Config{MaxSessions: 2})
	apply(t, s, sessionPut(1, 1, "k", "1"))
	apply(t, s, sessionPut(2, 1, "k", "2"))
	apply(t, s, sessionPut(1, 1, "k", "1")) // a retry counts as use: 2 is now the oldest
	apply(t, s, sessionPut(3, 1, "k", "3")) // evicts 2
	st := s.mu.st
	if st.sessions.len() != 2 || st.sessions.get(2) != nil || st.sessions.get(1) == nil || st.sessions.get(3) == nil {
		t.Fatalf("sessions after eviction: %d, has 1/2/3 = %v/%v/%v", st.sessions.len(),
			st.sessions.get(1) != nil, st.sessions.get(2) != nil, st.sessions.get(3) != nil)
	}
	rev := s.Revision()
	// Client 2 lost its session, so its retry is applied again: the documented
	// cost of the bound.
	apply(t, s, sessionPut(2, 1, "k", "2"))
	if s.Revision() != rev+1 {
		t.Fatalf("evicted client's retry: revision %d, want %d", s.Revision(), rev+1)
	}
	if st.sessions.get(1) != nil {
		t.Fatal("client 1 should have been evicted by client 2's return")
	}
}

func TestSessionsSurviveSnapshot(t *testing.T) {
	s := newTestStore(t, Config{MaxSessions: 3})
	r1 := apply(t, s, sessionPut(1, 5, "a", "1"))
	apply(t, s, &Command{ClientID: 2, Seq: 9, Txn: &TxnRequest{
		Success: []RequestOp{putOp("b", "1"), rangeOp("a", "\x00"), txnOp(&TxnRequest{Failure: []RequestOp{delOp("zz", "")}})},
	}})
	apply(t, s, &Command{ClientID: 3, Seq: 1, Put: &PutRequest{Key: []byte("x"), IgnoreLease: true}})
	apply(t, s, sessionPut(1, 5, "a", "1")) // order now 2, 3, 1
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := newTestStore(t, Config{MaxSessions: 3})
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	rev := r.Revision()
	retry := apply(t, r, sessionPut(1, 5, "a", "1"))
	if r.Revision() != rev || retry.Err != nil || retry.Put.Header.Revision != r1.Put.Header.Revision {
		t.Fatalf("retry after restore: %+v, revision %d -> %d", retry, rev, r.Revision())
	}
	txnRetry := apply(t, r, &Command{ClientID: 2, Seq: 9, Txn: &TxnRequest{}})
	if txnRetry.Txn == nil || len(txnRetry.Txn.Responses) != 3 || txnRetry.Txn.Responses[2].Txn == nil {
		t.Fatalf("txn result after restore: %+v", txnRetry)
	}
	wantErr(t, "error result after restore", apply(t, r, &Command{ClientID: 3, Seq: 1, Compact: &CompactionRequest{}}).Err, ErrKeyNotFound)
	// The eviction order survives too. It was, oldest first, 2, 3, 1; touching
	// 3 makes it 2, 1, 3, so a new client evicts 2 (an order rebuilt by client
	// id would evict 1).
	r2 := newTestStore(t, Config{MaxSessions: 3})
	if err := r2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	apply(t, r2, &Command{ClientID: 3, Seq: 1, Compact: &CompactionRequest{}})
	apply(t, r2, sessionPut(4, 1, "n", "1"))
	if r2.mu.st.sessions.get(2) != nil || r2.mu.st.sessions.get(1) == nil {
		t.Fatal("eviction order not restored")
	}

	small := newTestStore(t, Config{MaxSessions: 2})
	wantErr(t, "restore into a smaller session table", small.Restore(snap), ErrCorruptSnapshot)
}
