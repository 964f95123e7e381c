package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"raftkv/raft"
)

const testClusterID = 0x91bc

// logCapture is a slog.Handler that keeps records for assertions and echoes them to
// the test log.
type logCapture struct {
	t       testing.TB
	mu      *sync.Mutex
	records *[]string
	attrs   []slog.Attr
}

func newLogCapture(t testing.TB) *logCapture {
	return &logCapture{t: t, mu: new(sync.Mutex), records: new([]string)}
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	*h.records = append(*h.records, b.String())
	h.mu.Unlock()
	if testing.Verbose() {
		h.t.Log(b.String())
	}
	return nil
}

func (h *logCapture) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clip(h.attrs), attrs...)
	return &c
}

func (h *logCapture) WithGroup(string) slog.Handler { return h }

// find returns the logged lines that contain every one of subs.
func (h *logCapture) find(subs ...string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range *h.records {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(r, s)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

func testOptions(t testing.TB, segmentSize int64) (Options, *logCapture) {
	h := newLogCapture(t)
	return Options{ClusterID: testClusterID, SegmentSize: segmentSize, Logger: slog.New(h)}, h
}

func mustOpen(t testing.TB, fsys FS, dir string, opts Options) *Storage {
	t.Helper()
	s, err := Open(fsys, dir, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	return s
}

// makeEntries returns n entries from index first, of term, each with size bytes of
// data that identify it.
func makeEntries(first uint64, n int, term uint64, size int) []raft.Entry {
	ents := make([]raft.Entry, n)
	for i := range ents {
		idx := first + uint64(i)
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(idx*131 + term*7 + uint64(j))
		}
		ents[i] = raft.Entry{Term: term, Index: idx, Data: data}
	}
	return ents
}

// state is everything a raft.Storage reports, for comparing storages.
type state struct {
	HS      raft.HardState
	Snap    raft.Snapshot
	First   uint64
	Last    uint64
	Entries []raft.Entry
}

func (st state) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hs=%+v snap=%d/%d(%d bytes, %v) log=[%d,%d]", st.HS, st.Snap.Index, st.Snap.Term, len(st.Snap.Data),
		st.Snap.Membership, st.First, st.Last)
	if len(st.Entries) > 0 {
		b.WriteString(" terms=")
		for _, e := range st.Entries {
			fmt.Fprintf(&b, "%d", e.Term)
		}
	}
	return b.String()
}

func readState(t testing.TB, s raft.Storage) state {
	t.Helper()
	var st state
	var err error
	if st.HS, err = s.InitialState(); err != nil {
		t.Fatalf("InitialState: %v", err)
	}
	if st.Snap, err = s.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if st.First, err = s.FirstIndex(); err != nil {
		t.Fatalf("FirstIndex: %v", err)
	}
	if st.Last, err = s.LastIndex(); err != nil {
		t.Fatalf("LastIndex: %v", err)
	}
	if st.Last >= st.First {
		if st.Entries, err = s.Entries(st.First, st.Last+1, 1<<62); err != nil {
			t.Fatalf("Entries(%d, %d): %v", st.First, st.Last+1, err)
		}
	}
	st.Entries = normalize(st.Entries)
	if len(st.Snap.Data) == 0 {
		st.Snap.Data = nil
	}
	return st
}

func normalize(ents []raft.Entry) []raft.Entry {
	if len(ents) == 0 {
		return nil
	}
	out := slices.Clone(ents)
	for i := range out {
		if len(out[i].Data) == 0 {
			out[i].Data = nil
		}
	}
	return out
}

func equalState(a, b state) bool {
	return a.HS == b.HS && a.Snap.Index == b.Snap.Index && a.Snap.Term == b.Snap.Term &&
		a.Snap.Membership.Equal(b.Snap.Membership) &&
		bytes.Equal(a.Snap.Data, b.Snap.Data) && a.First == b.First && a.Last == b.Last &&
		reflect.DeepEqual(a.Entries, b.Entries)
}

// model is a plain in-memory raft.Storage with the semantics Storage must have: the
// reference the crash and corruption tests compare against.
type model struct {
	hs   raft.HardState
	snap raft.Snapshot
	ents []raft.Entry
}

func (m *model) lastIndex() uint64 { return m.snap.Index + uint64(len(m.ents)) }

func (m *model) term(i uint64) uint64 {
	if i == m.snap.Index {
		return m.snap.Term
	}
	return m.ents[i-m.snap.Index-1].Term
}

// saveWithModel saves to s and to the model m alike.
func saveWithModel(t *testing.T, s *Storage, m *model, hs raft.HardState, ents []raft.Entry) {
	t.Helper()
	if err := s.Save(hs, ents); err != nil {
		t.Fatal(err)
	}
	m.save(hs, ents)
}

func (m *model) save(st raft.HardState, ents []raft.Entry) {
	for len(ents) > 0 && ents[0].Index <= m.snap.Index {
		ents = ents[1:]
	}
	if len(ents) > 0 {
		off := ents[0].Index - m.snap.Index - 1
		m.ents = append(slices.Clip(m.ents[:off]), ents...)
	}
	if !st.IsEmpty() {
		m.hs = st
	}
}

func (m *model) createSnapshot(index uint64, members raft.Membership, data []byte) {
	term := m.term(index)
	m.ents = slices.Clone(m.ents[index-m.snap.Index:])
	m.snap = raft.Snapshot{Index: index, Term: term, Membership: members, Data: data}
}

// membershipAt is the configuration the workloads record in a snapshot at index: the
// bootstrap one (empty) or three voters and a learner, varying with index.
func membershipAt(index uint64) raft.Membership {
	if index%3 == 0 {
		return raft.Membership{}
	}
	return raft.Membership{Voters: []uint64{1, 2, 3}, Learners: []uint64{4 + index%7}}
}

func (m *model) applySnapshot(snap raft.Snapshot) {
	m.snap = snap
	m.ents = nil
}

func (m *model) state() state {
	st := state{HS: m.hs, Snap: m.snap, First: m.snap.Index + 1, Last: m.lastIndex(), Entries: normalize(m.ents)}
	if len(st.Snap.Data) == 0 {
		st.Snap.Data = nil
	}
	return st
}

func (m *model) clone() *model {
	return &model{hs: m.hs, snap: m.snap, ents: slices.Clone(m.ents)}
}

// workOp is one call of a scripted workload.
type workOp struct {
	kind  string // "save", "create", "stream" (CreateSnapshotFrom), "apply"
	hs    raft.HardState
	ents  []raft.Entry
	index uint64
	// members is the configuration of a snapshot created ("create", "stream").
	members raft.Membership
	data    []byte
	snap    raft.Snapshot
}

func (o workOp) String() string {
	switch o.kind {
	case "save":
		if len(o.ents) == 0 {
			return fmt.Sprintf("save hs=%+v", o.hs)
		}
		return fmt.Sprintf("save hs=%+v ents=[%d,%d] term %d", o.hs, o.ents[0].Index, o.ents[len(o.ents)-1].Index, o.ents[0].Term)
	case "create", "stream":
		return fmt.Sprintf("%s snapshot %d", o.kind, o.index)
	default:
		return fmt.Sprintf("apply snapshot %d/%d", o.snap.Index, o.snap.Term)
	}
}

func (o workOp) run(s *Storage) error {
	switch o.kind {
	case "save":
		return s.Save(o.hs, o.ents)
	case "create":
		_, err := s.CreateSnapshot(o.index, o.members, o.data)
		return err
	case "stream":
		_, err := s.CreateSnapshotFrom(o.index, o.members, func(w io.Writer) error {
			for data := o.data; len(data) > 0; {
				n := min(len(data), 100)
				if _, err := w.Write(data[:n]); err != nil {
					return err
				}
				data = data[n:]
			}
			return nil
		})
		return err
	default:
		return s.ApplySnapshot(o.snap)
	}
}

func (o workOp) apply(m *model) {
	switch o.kind {
	case "save":
		m.save(o.hs, o.ents)
	case "create", "stream":
		m.createSnapshot(o.index, o.members, o.data)
	default:
		m.applySnapshot(o.snap)
	}
}

// outcomes lists every state a crash in the middle of o can leave on top of m: m
// itself, m with each prefix of o's records (entries are written before the hard
// state), and m with all of o.
func (o workOp) outcomes(m *model) []state {
	out := []state{m.state()}
	if o.kind == "save" {
		for k := 1; k <= len(o.ents); k++ {
			p := m.clone()
			p.save(raft.HardState{}, o.ents[:k])
			out = append(out, p.state())
		}
	}
	full := m.clone()
	o.apply(full)
	return append(out, full.state())
}

func matchesAny(got state, candidates []state) bool {
	for _, c := range candidates {
		if equalState(got, c) {
			return true
		}
	}
	return false
}
