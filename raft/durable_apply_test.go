package raft

import "testing"

// A follower that receives entries and a commit index covering them in one
// AppendEntries (a follower behind the others) is handed them for applying only once
// its own write of them is durable: Advance (or AckDurable) reports it. An
// application may make its state durable at any time, so a state that held entries
// its own log could still lose would be ahead of the log after a crash.
func TestCommittedEntriesWaitForTheirOwnWrite(t *testing.T) {
	st := NewMemoryStorage()
	rn, err := NewRawNode(Config{ID: 2, Peers: []uint64{1, 2, 3}, ElectionTicks: 10, HeartbeatTicks: 1, Storage: st})
	if err != nil {
		t.Fatal(err)
	}
	ents := []Entry{{Term: 1, Index: 1, Data: []byte("a")}, {Term: 1, Index: 2, Data: []byte("b")}}
	if err := rn.Step(Message{Type: MsgApp, From: 1, To: 2, Term: 1, Index: 0, LogTerm: 0, Commit: 2, Entries: ents}); err != nil {
		t.Fatal(err)
	}
	rd := rn.Ready()
	if len(rd.Entries) != 2 || rd.HardState.Commit != 2 {
		t.Fatalf("Ready holds entries %v, commit %d; want the 2 new entries and commit 2", rd.Entries, rd.HardState.Commit)
	}
	if len(rd.CommittedEntries) != 0 {
		t.Fatalf("entries %v handed out for applying in the Ready that writes them", rd.CommittedEntries)
	}
	if err := st.Save(rd.HardState, rd.Entries); err != nil {
		t.Fatal(err)
	}
	rn.Advance(rd)
	if !rn.HasReady() {
		t.Fatal("no Ready once the entries are durable")
	}
	rd = rn.Ready()
	if len(rd.CommittedEntries) != 2 || rd.CommittedEntries[1].Index != 2 {
		t.Fatalf("after the write: committed entries %v, want 1 and 2", rd.CommittedEntries)
	}
	rn.Advance(rd)

	// With asynchronous writes: queued (AdvanceQueued) is not durable; AckDurable is.
	more := []Entry{{Term: 1, Index: 3, Data: []byte("c")}}
	if err := rn.Step(Message{Type: MsgApp, From: 1, To: 2, Term: 1, Index: 2, LogTerm: 1, Commit: 3, Entries: more}); err != nil {
		t.Fatal(err)
	}
	rd = rn.Ready()
	if len(rd.CommittedEntries) != 0 {
		t.Fatalf("entry %v handed out before its write", rd.CommittedEntries)
	}
	if err := st.Save(rd.HardState, rd.Entries); err != nil {
		t.Fatal(err)
	}
	rn.AdvanceQueued(rd)
	mark := rd.DurableMark()
	if rd := rn.Ready(); len(rd.CommittedEntries) != 0 {
		t.Fatalf("entry %v handed out while its write is only queued", rd.CommittedEntries)
	}
	rn.AckDurable(DurableMark{Index: 3, Term: 1})
	if rd := rn.Ready(); len(rd.CommittedEntries) != 0 {
		t.Fatalf("entry %v handed out on a mark not taken from a Ready", rd.CommittedEntries)
	}
	rn.AckDurable(mark)
	if rd := rn.Ready(); len(rd.CommittedEntries) != 1 || rd.CommittedEntries[0].Index != 3 {
		t.Fatalf("after AckDurable(3): committed entries %v, want 3", rd.CommittedEntries)
	}
}

// An acknowledgement of a write whose entries were since replaced says nothing of the
// entries that replaced them (§5.3: a conflicting suffix is deleted), even when a
// later leader writes the first entries back under the same index and term: the
// disk may hold the replacement's write, made in between (an ABA of the log).
func TestDurableAckOfReplacedEntriesIsIgnored(t *testing.T) {
	st := NewMemoryStorage()
	rn, err := NewRawNode(Config{ID: 2, Peers: []uint64{1, 2, 3, 4}, ElectionTicks: 10, HeartbeatTicks: 1, Storage: st})
	if err != nil {
		t.Fatal(err)
	}
	write := func(m Message) Ready {
		t.Helper()
		if err := rn.Step(m); err != nil {
			t.Fatal(err)
		}
		rd := rn.Ready()
		for _, e := range rd.CommittedEntries {
			if e.Index > 1 {
				t.Fatalf("entry %d (term %d) handed out before any write of it was acknowledged", e.Index, e.Term)
			}
		}
		if err := st.Save(rd.HardState, rd.Entries); err != nil {
			t.Fatal(err)
		}
		rn.AdvanceQueued(rd) // the write is in flight
		return rd
	}
	// W1: entries 1 and 2 of term 2, from the leader of term 2, which commits 1.
	w1 := write(Message{Type: MsgApp, From: 1, To: 2, Term: 2, Commit: 1,
		Entries: []Entry{{Term: 2, Index: 1}, {Term: 2, Index: 2}}})
	// W2: the leader of term 3 replaces 2 with its own 2 and 3.
	w2 := write(Message{Type: MsgApp, From: 3, To: 2, Term: 3, Index: 1, LogTerm: 2,
		Entries: []Entry{{Term: 3, Index: 2}, {Term: 3, Index: 3}}})
	// W3: the leader of term 4, whose log holds 2 of term 2, writes it back with its
	// own 3, and commits 2.
	w3 := write(Message{Type: MsgApp, From: 4, To: 2, Term: 4, Index: 1, LogTerm: 2, Commit: 2,
		Entries: []Entry{{Term: 2, Index: 2}, {Term: 4, Index: 3}}})
	for _, ack := range []struct {
		what string
		rd   Ready
	}{{"W1, of entry 2 of term 2 before it was replaced", w1}, {"W2, of the replacement", w2}} {
		rn.AckDurable(ack.rd.DurableMark())
		for _, e := range rn.Ready().CommittedEntries {
			if e.Index > 1 {
				t.Fatalf("entry %d (term %d) handed out on the acknowledgement of %s", e.Index, e.Term, ack.what)
			}
		}
	}
	rn.AckDurable(w3.DurableMark())
	rd := rn.Ready()
	if n := len(rd.CommittedEntries); n == 0 || rd.CommittedEntries[n-1].Index != 2 || rd.CommittedEntries[n-1].Term != 2 {
		t.Fatalf("after the acknowledgement of W3: %v, want up to 2 of term 2", rd.CommittedEntries)
	}
}
