package watchcheck

import (
	"slices"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"

	"raftkv/chaos/kvmodel"
)

// The fixture: a history on keys k/a and k/b, the events it made (every write that
// took effect, one revision each; revisions 1, 4 and 7 wrote other keys), the final
// Range, and two watches that received every event.
func fixture() ([]porcupine.Operation, map[string]KeyState, []Watch) {
	unknown := kvmodel.Output{Unknown: true}
	op := func(in kvmodel.Input, call int64, out kvmodel.Output, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: in, Call: call, Output: out, Return: ret}
	}
	put := func(key, v string) kvmodel.Input { return kvmodel.Input{Kind: kvmodel.Put, Key: key, Value: v} }
	cas := func(key, expect, v string) kvmodel.Input {
		return kvmodel.Input{Kind: kvmodel.CAS, Key: key, Expect: expect, Value: v}
	}
	history := []porcupine.Operation{
		op(put("k/a", "a1"), 0, kvmodel.Output{}, 10),                                         // revision 2
		op(put("k/b", "b1"), 5, kvmodel.Output{}, 15),                                         // revision 3
		op(cas("k/a", "a1", "a2"), 20, kvmodel.Output{Succeeded: true}, 30),                   // revision 5
		op(put("k/b", "b2"), 25, unknown, kvmodel.NeverReturned),                              // revision 6, unknown to its client
		op(put("k/a", "a3"), 26, unknown, kvmodel.NeverReturned),                              // never took effect
		op(cas("k/b", "x", "b3"), 40, kvmodel.Output{Succeeded: false}, 50),                   // compare failed
		op(put("k/a", "a4"), 60, kvmodel.Output{}, 70),                                        // revision 8
		op(kvmodel.Input{Kind: kvmodel.Get, Key: "k/a"}, 80, kvmodel.Output{Value: "a4"}, 90), // ignored
	}
	events := []Event{
		{Key: "k/a", Value: "a1", Revision: 2, CreateRevision: 2, Version: 1},
		{Key: "k/b", Value: "b1", Revision: 3, CreateRevision: 3, Version: 1},
		{Key: "k/a", Value: "a2", Revision: 5, CreateRevision: 2, Version: 2},
		{Key: "k/b", Value: "b2", Revision: 6, CreateRevision: 3, Version: 2},
		{Key: "k/a", Value: "a4", Revision: 8, CreateRevision: 2, Version: 3},
	}
	final := map[string]KeyState{
		"k/a": {Value: "a4", ModRevision: 8, CreateRevision: 2, Version: 3},
		"k/b": {Value: "b2", ModRevision: 6, CreateRevision: 3, Version: 2},
	}
	return history, final, []Watch{{Name: "W1", Events: events}, {Name: "W2", Events: slices.Clone(events)}}
}

// at returns the fixture's events at the revisions, in that order.
func at(revs ...int64) []Event {
	_, _, watches := fixture()
	var out []Event
	for _, rev := range revs {
		i := slices.IndexFunc(watches[0].Events, func(e Event) bool { return e.Revision == rev })
		out = append(out, watches[0].Events[i])
	}
	return out
}

func TestCheckAcceptsTheFixture(t *testing.T) {
	history, final, watches := fixture()
	r := Check(history, final, watches)
	if len(r.Problems) > 0 {
		t.Fatalf("problems in a correct history: %q", r.Problems)
	}
	want := Result{Events: 10, Writes: 5, Acknowledged: 4, Unknown: 1}
	if r.Events != want.Events || r.Writes != want.Writes || r.Acknowledged != want.Acknowledged ||
		r.Unknown != want.Unknown || r.Unverified != want.Unverified {
		t.Errorf("figures %+v, want %+v", r, want)
	}
}

// TestCheckFinds breaks the fixture one way at a time (and three ways at once) and
// checks that the verdict fails with the problems that name the break, and no other.
func TestCheckFinds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(history []porcupine.Operation, final map[string]KeyState, watches []Watch)
		want   []string // one part of each problem, in the order Check lists them
		// unverified is the Unverified figure expected.
		unverified int
	}{
		{"a missing event", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[1].Events = at(2, 3, 6, 8)
		}, []string{`W2 never received k/a = "a2" at revision 5 (version 2, created at 2), which W1 did`}, 0},
		{"a duplicate", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[0].Events = at(2, 3, 3, 5, 6, 8)
		}, []string{`W1 received k/b = "b1" at revision 3 (version 1, created at 3) twice, as events 1 and 2`}, 0},
		{"an out-of-order pair", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[0].Events = at(2, 3, 6, 5, 8)
		}, []string{`W1 received k/a = "a2" at revision 5 (version 2, created at 2) as event 3, after event 2 at revision 6: out of revision order`}, 0},
		{"a missing event, a duplicate and an out-of-order pair on one watch", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[0].Events = at(2, 3, 3, 6, 5) // 8 is missing
		}, []string{"twice, as events 1 and 2", "as event 4, after event 3 at revision 6: out of revision order",
			`W1 never received k/a = "a4" at revision 8`}, 0},
		{"a stalled watch", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[1].Events = at(2, 3, 5)
		}, []string{"W2 never received k/b = \"b2\" at revision 6", "W2 never received k/a = \"a4\" at revision 8"}, 0},
		{"an acknowledged write no watch received", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[0].Events, w[1].Events = at(2, 3, 5, 6), at(2, 3, 5, 6)
		}, []string{"key k/a: version 3, between revisions 5 and 9, arrived on no watch",
			"put(k/a, a4), acknowledged at 70, arrived on no watch"}, 0},
		{"a write of unknown outcome that took effect but no watch received", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[0].Events, w[1].Events = at(2, 3, 5, 8), at(2, 3, 5, 8)
		}, []string{"key k/b: version 2, between revisions 3 and 7, arrived on no watch"}, 0},
		{"a version gap between two events", func(_ []porcupine.Operation, final map[string]KeyState, w []Watch) {
			// Both watches miss version 2 of k/a: the versions give it away.
			w[0].Events, w[1].Events = at(2, 3, 6, 8), at(2, 3, 6, 8)
		}, []string{"key k/a: version 2, between revisions 2 and 8, arrived on no watch",
			"cas(k/a, a1 → a2) → true, acknowledged at 30, arrived on no watch"}, 0},
		{"a compare-and-swap that returned false took effect", func(h []porcupine.Operation, _ map[string]KeyState, _ []Watch) {
			h[2].Output = kvmodel.Output{Succeeded: false}
		}, []string{`k/a = "a2" at revision 5 (version 2, created at 2): cas(k/a, a1 → a2) → false, yet its value arrived`}, 0},
		{"a compare-and-swap that took effect on another value", func(h []porcupine.Operation, _ map[string]KeyState, _ []Watch) {
			in := h[2].Input.(kvmodel.Input)
			in.Expect = "zz"
			h[2].Input = in
		}, []string{`cas(k/a, zz → a2) → true took effect, but the key's previous version was k/a = "a1" at revision 2`}, 0},
		{"a value no call wrote", func(_ []porcupine.Operation, final map[string]KeyState, w []Watch) {
			for i := range w {
				w[i].Events[4].Value = "ghost"
			}
			final["k/a"] = KeyState{Value: "ghost", ModRevision: 8, CreateRevision: 2, Version: 3}
		}, []string{`k/a = "ghost" at revision 8 (version 3, created at 2): no call of the history wrote the value`,
			"put(k/a, a4), acknowledged at 70, arrived on no watch"}, 0},
		{"a write applied twice", func(_ []porcupine.Operation, final map[string]KeyState, w []Watch) {
			again := Event{Key: "k/a", Value: "a1", Revision: 9, CreateRevision: 2, Version: 4}
			for i := range w {
				w[i].Events = append(w[i].Events, again)
			}
			final["k/a"] = KeyState{Value: "a1", ModRevision: 9, CreateRevision: 2, Version: 4}
		}, []string{"put(k/a, a1) returned at 10, before put(k/a, a4), which took the lower revision 8, was called at 60",
			"put(k/a, a1) arrived at revisions [2 9]: it took effect more than once"}, 0},
		{"revisions against real time", func(h []porcupine.Operation, _ map[string]KeyState, _ []Watch) {
			h[1].Call, h[1].Return = 80, 85 // put(k/b, b1) took revision 3, but was called after others returned
		}, []string{"cas(k/a, a1 → a2) → true returned at 30, before put(k/b, b1), which took the lower revision 3, was called at 80",
			"put(k/a, a4) returned at 70, before put(k/b, b1), which took the lower revision 3, was called at 80"}, 0},
		{"watches that disagree", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[1].Events[2].Value = "a2?"
		}, []string{`W2 received k/a = "a2?" at revision 5 (version 2, created at 2), but W1 received k/a = "a2" at revision 5`}, 0},
		{"a final Range that differs", func(_ []porcupine.Operation, final map[string]KeyState, _ []Watch) {
			final["k/a"] = KeyState{Value: "a4", ModRevision: 8, CreateRevision: 2, Version: 7}
		}, []string{"key k/a: versions 4 to 7, between revisions 8 and 9, arrived on no watch"}, 0},
		{"a key the final Range lacks", func(_ []porcupine.Operation, final map[string]KeyState, _ []Watch) {
			delete(final, "k/b")
		}, []string{`key k/b: the watches' last event of it is k/b = "b2" at revision 6 (version 2, created at 3), but the final Range does not have the key`}, 0},
		{"a compaction hole excuses what it hides on its watch", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[1].Events, w[1].Holes = at(2, 3, 6, 8), []Hole{{After: 3, Compact: 6}}
		}, nil, 0},
		{"a compaction hole does not excuse what lies outside it", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			w[1].Events, w[1].Holes = at(2, 3, 5, 8), []Hole{{After: 3, Compact: 5}}
		}, []string{`W2 never received k/b = "b2" at revision 6`}, 0},
		{"holes in every watch leave the versions unverified", func(_ []porcupine.Operation, _ map[string]KeyState, w []Watch) {
			for i := range w {
				w[i].Events, w[i].Holes = at(2, 3, 6, 8), []Hole{{After: 3, Compact: 6}}
			}
		}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			history, final, watches := fixture()
			tc.break_(history, final, watches)
			r := Check(history, final, watches)
			if len(r.Problems) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(r.Problems), len(tc.want), strings.Join(r.Problems, "\n"))
			}
			for i, want := range tc.want {
				if i < len(r.Problems) && !strings.Contains(r.Problems[i], want) {
					t.Errorf("problem %d is %q, want it to contain %q", i, r.Problems[i], want)
				}
			}
			if r.Unverified != tc.unverified {
				t.Errorf("Unverified = %d, want %d", r.Unverified, tc.unverified)
			}
		})
	}
}

// TestCheckListsAFewProblemsOfAKind: a watch that missed thousands of events is
// reported with the first few and a count, not thousands of lines.
func TestCheckListsAFewProblemsOfAKind(t *testing.T) {
	var events []Event
	final := map[string]KeyState{}
	var history []porcupine.Operation
	for i := range 20 {
		key, value, rev := "k/"+string(rune('a'+i)), "v"+string(rune('a'+i)), int64(i+1)
		events = append(events, Event{Key: key, Value: value, Revision: rev, CreateRevision: rev, Version: 1})
		final[key] = KeyState{Value: value, ModRevision: rev, CreateRevision: rev, Version: 1}
		history = append(history, porcupine.Operation{Input: kvmodel.Input{Kind: kvmodel.Put, Key: key, Value: value},
			Call: int64(10 * i), Return: int64(10*i + 5), Output: kvmodel.Output{}})
	}
	r := Check(history, final, []Watch{{Name: "full", Events: events}, {Name: "empty"}})
	if len(r.Problems) != maxPerKind+1 || r.Problems[maxPerKind] != `... and 15 more problems of kind "missing" on empty` {
		t.Errorf("problems:\n%s\nwant %d of them and a line with the 15 more", strings.Join(r.Problems, "\n"), maxPerKind)
	}
}
