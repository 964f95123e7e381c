package watch

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"raftkv/kv"
)

// fixture is a store and a hub following it. A manual fixture's hub has no
// goroutine: the test moves it with step, so what it sees is deterministic.
type fixture struct {
	t      *testing.T
	store  *kv.Store
	hub    *Hub
	index  uint64
	manual bool
}

func newFixture(t *testing.T, cfg Config, manual bool) *fixture {
	t.Helper()
	store, err := kv.NewStore(kv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := &fixture{t: t, store: store, manual: manual}
	if manual {
		f.hub = newHub(store, cfg)
		close(f.hub.done)
	} else {
		f.hub = NewHub(store, cfg)
	}
	t.Cleanup(f.hub.Close)
	return f
}

// apply applies cmd as the server's apply loop would, and fails the test on error.
func (f *fixture) apply(cmd *kv.Command) kv.Result {
	f.t.Helper()
	if cmd.Compact != nil {
		f.hub.Flush()
	}
	f.index++
	res := f.store.ApplyCommand(f.index, cmd)
	if res.Err != nil {
		f.t.Fatalf("applying %+v: %v", cmd, res.Err)
	}
	f.hub.Notify()
	return res
}

func (f *fixture) put(key, value string) int64 {
	f.t.Helper()
	return f.apply(&kv.Command{Put: &kv.PutRequest{Key: []byte(key), Value: []byte(value)}}).Put.Header.Revision
}

func (f *fixture) del(key, end string) {
	f.t.Helper()
	f.apply(&kv.Command{DeleteRange: &kv.DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)}})
}

func (f *fixture) txn(ops ...kv.RequestOp) {
	f.t.Helper()
	f.apply(&kv.Command{Txn: &kv.TxnRequest{Success: ops}})
}

func (f *fixture) compact(rev int64) {
	f.t.Helper()
	f.apply(&kv.Command{Compact: &kv.CompactionRequest{Revision: rev}})
}

func putOp(key, value string) kv.RequestOp {
	return kv.RequestOp{Put: &kv.PutRequest{Key: []byte(key), Value: []byte(value)}}
}

func delOp(key, end string) kv.RequestOp {
	return kv.RequestOp{DeleteRange: &kv.DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)}}
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// step runs one round of a manual hub's loop, catching up until it can go no
// further.
func (f *fixture) step() {
	f.hub.dispatch()
	for f.hub.catchUp() {
	}
	f.hub.answerProgress()
}

func (f *fixture) create(s *Stream, r CreateRequest) {
	f.t.Helper()
	if err := s.Create(context.Background(), r); err != nil {
		f.t.Fatalf("create %+v: %v", r, err)
	}
}

// drain returns the responses queued on s now, described.
func drain(s *Stream) []string {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []string
	for {
		r, ok := s.Next(ctx)
		if !ok {
			return out
		}
		out = append(out, describe(r))
	}
}

// next waits for s's next response.
func next(t *testing.T, s *Stream) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, ok := s.Next(ctx)
	if !ok {
		t.Fatal("no response within 10s")
	}
	return r
}

// describe renders a response compactly: "created 0 @1", "0 @3: PUT a=1@2 PUT
// b=1@3", "canceled 0 @3", "compacted 0 at 5", "progress -1 @7", "refused -1:
// reason".
func describe(r Response) string {
	switch {
	case r.Created && r.Canceled:
		return fmt.Sprintf("refused %d @%d: %s", r.WatchID, r.Revision, r.CancelReason)
	case r.Created:
		return fmt.Sprintf("created %d @%d", r.WatchID, r.Revision)
	case r.CompactRevision != 0:
		return fmt.Sprintf("compacted %d at %d canceled=%v @%d", r.WatchID, r.CompactRevision, r.Canceled, r.Revision)
	case r.Canceled:
		return fmt.Sprintf("canceled %d @%d", r.WatchID, r.Revision)
	case len(r.Events) == 0:
		return fmt.Sprintf("progress %d @%d", r.WatchID, r.Revision)
	}
	parts := []string{fmt.Sprintf("%d @%d:", r.WatchID, r.Revision)}
	for _, ev := range r.Events {
		parts = append(parts, describeEvent(ev, r.PrevKv))
	}
	return strings.Join(parts, " ")
}

func describeEvent(ev *kv.Event, withPrev bool) string {
	s := ""
	if ev.Type == kv.EventPut {
		s = fmt.Sprintf("PUT %s=%s@%d", ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
	} else {
		s = fmt.Sprintf("DELETE %s@%d", ev.Kv.Key, ev.Kv.ModRevision)
	}
	if withPrev && ev.PrevKv != nil {
		s += fmt.Sprintf("(prev %s@%d)", ev.PrevKv.Value, ev.PrevKv.ModRevision)
	}
	return s
}

// perWatch orders event responses by watch id, keeping each watch's own order:
// the hub queues one revision's responses for different watchers in any order.
func perWatch(got []string) []string {
	out := slices.Clone(got)
	slices.SortStableFunc(out, func(a, b string) int {
		var ia, ib int64
		fmt.Sscan(a, &ia)
		fmt.Sscan(b, &ib)
		return cmp.Compare(ia, ib)
	})
	return out
}

func wantResponses(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
