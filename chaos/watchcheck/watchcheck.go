// Package watchcheck checks what watches of a key/value store received against the
// history of calls that wrote the keys (kvmodel's) and a final read of them: every
// write that took effect arrives on every watch exactly once, in revision order, with
// no gap in a key's versions, and with the value and revision the store gave it.
//
// Like kvmodel it needs no raftkv code; the chaos suite records the events of its
// watchers and calls Check once the run is over.
package watchcheck

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"

	"raftkv/chaos/kvmodel"
)

// Event is one event a watch received.
type Event struct {
	Key, Value string
	// Revision is the event's revision: the key's mod_revision after a put, the
	// delete's revision after a delete.
	Revision int64
	// CreateRevision and Version are the key's after a put, 0 after a delete.
	CreateRevision, Version int64
	Delete                  bool
}

func (e Event) String() string {
	if e.Delete {
		return fmt.Sprintf("delete of %s at revision %d", e.Key, e.Revision)
	}
	return fmt.Sprintf("%s = %q at revision %d (version %d, created at %d)", e.Key, e.Value, e.Revision, e.Version, e.CreateRevision)
}

// A Hole is where a watch was told that the revision it asked for was compacted: it
// had received every event up to After and resumed at Compact (the compact_revision
// the store answered), so the events of the revisions between may be missing from it,
// legitimately. The check of that watch restarts at Compact.
type Hole struct{ After, Compact int64 }

// hides says whether the hole covers rev.
func (h Hole) hides(rev int64) bool { return rev > h.After && rev < h.Compact }

// Watch is what one watch received over its whole life, across every resumption.
// Every watch given to Check watches the same keys (a prefix) from revision 1, so
// every watch must have received the same events, but for those its holes hide.
type Watch struct {
	Name   string
	Events []Event
	Holes  []Hole
}

// hidesAny says whether one of the watch's holes covers a revision strictly between
// after and before.
func (w *Watch) hidesAny(after, before int64) bool {
	for _, h := range w.Holes {
		if max(h.After+1, after+1) <= min(h.Compact-1, before-1) {
			return true
		}
	}
	return false
}

// KeyState is a key as a final linearizable Range returned it, after the last write.
type KeyState struct {
	Value                                string
	ModRevision, CreateRevision, Version int64
}

// Result is the verdict and its figures.
type Result struct {
	// Problems are the broken rules, each in words that name the watch, key,
	// revision and call; none means the verdict holds. At most maxPerKind of one
	// kind are listed per watch, then how many more there were.
	Problems []string
	// Events counts the events the watches received, all together.
	Events int
	// Writes counts the distinct writes the events show (each a key's revision),
	// of which Acknowledged were acknowledged to their client and Unknown had an
	// outcome the client never learnt.
	Writes, Acknowledged, Unknown int
	// Unverified counts key versions that no watch received because every watch had
	// a hole over them: compaction took them before any watch could see them.
	Unverified int
}

// maxPerKind bounds the problems of one kind listed for one watch: one fault tends
// to make many of a kind, and the first few say what happened.
const maxPerKind = 5

type revKey struct {
	rev int64
	key string
}

// seen is an event with the first watch that received it.
type seen struct {
	Event
	by string
}

// Check checks the watches against history (a kvmodel history; its Gets are ignored)
// and final, the value of every key of the watched prefix after every write ended
// (a key missing from final does not exist). The rules:
//
//  1. Each watch receives its events in revision order and each event once.
//  2. Watches agree: one key's event at one revision is the same on every watch that
//     received it. The union of their events is the reference.
//  3. Each watch received every event of the reference but those its holes hide.
//  4. In the reference each key's versions run 1, 2, 3, ... with no gap (every write
//     takes the key's next version; a put after a delete starts again at 1), and
//     each key's last event is what final holds. Together with 3, every write that
//     took effect, including one whose client never learnt its outcome, reached
//     every watch: the final version counts the key's writes.
//  5. Each event's value was written to its key by one call of the history, at one
//     revision only; no compare-and-swap that returned false took effect; each
//     compare-and-swap that took effect found its expected value as the key's
//     previous version; every acknowledged write is in the reference; and the
//     revisions respect real time: a write that returned before another was called
//     has the lower revision.
func Check(history []porcupine.Operation, final map[string]KeyState, watches []Watch) Result {
	var r Result
	p := problems{counts: map[string]int{}}
	ref := map[revKey]seen{}
	for i := range watches {
		w := &watches[i]
		r.Events += len(w.Events)
		checkOrder(&p, w)
		for _, ev := range w.Events {
			k := revKey{ev.Revision, ev.Key}
			first, ok := ref[k]
			switch {
			case !ok:
				ref[k] = seen{ev, w.Name}
			case first.Event != ev:
				p.add(w.Name, "disagree", "%s received %s, but %s received %s", w.Name, ev, first.by, first.Event)
			}
		}
	}
	order := slices.SortedFunc(maps.Keys(ref), func(a, b revKey) int {
		return cmp.Or(cmp.Compare(a.rev, b.rev), strings.Compare(a.key, b.key))
	})
	for i := range watches {
		checkComplete(&p, &watches[i], ref, order)
	}
	byKey := map[string][]Event{}
	for _, k := range order {
		byKey[k.key] = append(byKey[k.key], ref[k].Event)
	}
	r.Writes = len(order)
	r.Unverified = checkVersions(&p, byKey, final, watches)
	r.Acknowledged, r.Unknown = checkHistory(&p, history, byKey, order, ref, watches)
	r.Problems = p.list()
	return r
}

// checkOrder applies rule 1 to one watch.
func checkOrder(p *problems, w *Watch) {
	at := map[revKey]int{}
	var maxRev int64
	maxAt := -1
	for i, ev := range w.Events {
		k := revKey{ev.Revision, ev.Key}
		if j, dup := at[k]; dup {
			p.add(w.Name, "duplicate", "%s received %s twice, as events %d and %d", w.Name, ev, j, i)
			continue
		}
		at[k] = i
		if ev.Revision < maxRev {
			p.add(w.Name, "order", "%s received %s as event %d, after event %d at revision %d: out of revision order",
				w.Name, ev, i, maxAt, maxRev)
			continue
		}
		maxRev, maxAt = ev.Revision, i
	}
}

// checkComplete applies rule 3 to one watch.
func checkComplete(p *problems, w *Watch, ref map[revKey]seen, order []revKey) {
	have := make(map[revKey]bool, len(w.Events))
	for _, ev := range w.Events {
		have[revKey{ev.Revision, ev.Key}] = true
	}
	for _, k := range order {
		if have[k] || slices.ContainsFunc(w.Holes, func(h Hole) bool { return h.hides(k.rev) }) {
			continue
		}
		s := ref[k]
		p.add(w.Name, "missing", "%s never received %s, which %s did", w.Name, s.Event, s.by)
	}
}

// checkVersions applies rule 4 and returns how many versions every watch's holes hid.
func checkVersions(p *problems, byKey map[string][]Event, final map[string]KeyState, watches []Watch) (unverified int) {
	// hiddenFromAll says whether every watch has a hole strictly between the two
	// revisions: then no watch could see what happened there.
	hiddenFromAll := func(after, before int64) bool {
		return len(watches) > 0 && !slices.ContainsFunc(watches, func(w Watch) bool { return !w.hidesAny(after, before) })
	}
	// gap reports the versions from and to of key, between revisions after and
	// before, that no watch received.
	gap := func(key string, from, to, after, before int64) {
		if hiddenFromAll(after, before) {
			unverified += int(to - from + 1)
			return
		}
		versions := fmt.Sprintf("versions %d to %d", from, to)
		if from == to {
			versions = fmt.Sprintf("version %d", from)
		}
		p.add("", "gap", "key %s: %s, between revisions %d and %d, arrived on no watch", key, versions, after, before)
	}
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		var prev Event // the zero Event: the key does not exist yet
		for _, ev := range byKey[key] {
			exists := prev.Version > 0 // prev is a put
			sameLife := exists && ev.CreateRevision == prev.CreateRevision
			switch {
			case ev.Delete && !exists:
				p.add("", "version", "key %s: the %s follows %s: it deletes a key that does not exist", key, ev, describePrev(prev))
			case ev.Delete:
			case !exists && ev.Version == 1 && ev.CreateRevision == ev.Revision:
			case !exists && ev.Version > 1:
				gap(key, 1, ev.Version-1, prev.Revision, ev.Revision)
			case sameLife && ev.Version == prev.Version+1:
			case sameLife && ev.Version > prev.Version+1:
				gap(key, prev.Version+1, ev.Version-1, prev.Revision, ev.Revision)
			default:
				p.add("", "version", "key %s: %s follows %s", key, ev, describePrev(prev))
			}
			prev = ev
		}
	}
	for _, key := range slices.Sorted(maps.Keys(final)) {
		want := final[key]
		evs := byKey[key]
		if len(evs) == 0 {
			gap(key, 1, want.Version, 0, want.ModRevision+1)
			continue
		}
		last := evs[len(evs)-1]
		switch {
		case last.Value == want.Value && last.Revision == want.ModRevision && last.Version == want.Version &&
			last.CreateRevision == want.CreateRevision && !last.Delete:
		case !last.Delete && last.CreateRevision == want.CreateRevision && last.Version < want.Version:
			gap(key, last.Version+1, want.Version, last.Revision, want.ModRevision+1)
		default:
			p.add("", "final", "key %s: the last event the watches received is the %s, but the final Range has %q at revision %d (version %d, created at %d)",
				key, last, want.Value, want.ModRevision, want.Version, want.CreateRevision)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		evs := byKey[key]
		if _, ok := final[key]; !ok && !evs[len(evs)-1].Delete {
			p.add("", "final", "key %s: the watches' last event of it is %s, but the final Range does not have the key", key, evs[len(evs)-1])
		}
	}
	return unverified
}

func describePrev(prev Event) string {
	if prev.Revision == 0 {
		return "nothing (it is the key's first event)"
	}
	return prev.String()
}

// checkHistory applies rule 5 and returns how many writes the events show that were
// acknowledged, and how many had an unknown outcome.
func checkHistory(p *problems, history []porcupine.Operation, byKey map[string][]Event, order []revKey, ref map[revKey]seen, watches []Watch) (acknowledged, unknown int) {
	writes := map[string]porcupine.Operation{}
	for _, op := range history {
		in := op.Input.(kvmodel.Input)
		if in.Kind == kvmodel.Get {
			continue
		}
		if other, dup := writes[in.Value]; dup {
			panic(fmt.Sprintf("watchcheck: the history writes %q twice (%s and %s); kvmodel histories write each value once",
				in.Value, describe(other), describe(op)))
		}
		writes[in.Value] = op
	}
	revisionsOf := map[string][]int64{}
	// latest is the write with the latest call among those at lower revisions, for
	// the real-time rule.
	var latest *porcupine.Operation
	var latestRev int64
	for _, k := range order {
		ev := ref[k].Event
		if ev.Delete {
			p.add("", "history", "%s: no call of the history deletes", ev)
			continue
		}
		op, ok := writes[ev.Value]
		if !ok {
			p.add("", "history", "%s: no call of the history wrote the value", ev)
			continue
		}
		in, out := op.Input.(kvmodel.Input), op.Output.(kvmodel.Output)
		revisionsOf[ev.Value] = append(revisionsOf[ev.Value], ev.Revision)
		switch {
		case in.Key != ev.Key:
			p.add("", "history", "%s: the value was written by %s, to another key", ev, describe(op))
			continue
		case in.Kind == kvmodel.CAS && !out.Unknown && !out.Succeeded:
			p.add("", "history", "%s: %s, yet its value arrived", ev, describe(op))
		case in.Kind == kvmodel.CAS:
			if before := previous(byKey[ev.Key], ev); before == nil || before.Value != in.Expect {
				p.add("", "history", "%s: %s took effect, but the key's previous version was %s", ev, describe(op), describePrev(ptrOr(before)))
			}
		}
		if out.Unknown {
			unknown++
		} else {
			acknowledged++
		}
		if latest != nil && op.Return < latest.Call {
			p.add("", "realtime", "%s: %s returned at %d, before %s, which took the lower revision %d, was called at %d",
				ev, describe(op), op.Return, describe(*latest), latestRev, latest.Call)
		}
		if latest == nil || op.Call > latest.Call {
			latest, latestRev = &op, ev.Revision
		}
	}
	for _, value := range slices.Sorted(maps.Keys(revisionsOf)) {
		if revs := revisionsOf[value]; len(revs) > 1 {
			p.add("", "history", "%s arrived at revisions %v: it took effect more than once", describe(writes[value]), revs)
		}
	}
	for _, op := range history {
		in, out := op.Input.(kvmodel.Input), op.Output.(kvmodel.Output)
		isAck := !out.Unknown && (in.Kind == kvmodel.Put || (in.Kind == kvmodel.CAS && out.Succeeded))
		if !isAck || len(revisionsOf[in.Value]) > 0 {
			continue
		}
		if hiddenKey(byKey[in.Key], watches) {
			continue // counted in Unverified: every watch was compacted over some of its versions
		}
		p.add("", "lost", "%s, acknowledged at %d, arrived on no watch", describe(op), op.Return)
	}
	return acknowledged, unknown
}

// previous returns the event of ev's key just before it, if it is ev's previous
// version; nil if the key did not exist before ev.
func previous(evs []Event, ev Event) *Event {
	i := slices.IndexFunc(evs, func(e Event) bool { return e.Revision == ev.Revision })
	if i <= 0 || evs[i-1].Delete {
		return nil
	}
	return &evs[i-1]
}

func ptrOr(e *Event) Event {
	if e == nil {
		return Event{}
	}
	return *e
}

// hiddenKey says whether the key's history has a stretch every watch's holes hide
// (or, with no events, whether any watch has a hole at all).
func hiddenKey(evs []Event, watches []Watch) bool {
	after := int64(0)
	for _, ev := range append(slices.Clone(evs), Event{Revision: 1<<63 - 1}) {
		if !slices.ContainsFunc(watches, func(w Watch) bool { return !w.hidesAny(after, ev.Revision) }) {
			return true
		}
		after = ev.Revision
	}
	return false
}

func describe(op porcupine.Operation) string {
	return kvmodel.Describe(op.Input.(kvmodel.Input), op.Output.(kvmodel.Output))
}

// problems collects problem texts, at most maxPerKind of one kind per watch.
type problems struct {
	texts  []string
	counts map[string]int // by watch and kind
	order  []string       // the keys of counts, as they first came
}

func (p *problems) add(watch, kind, format string, args ...any) {
	key := watch + "\x00" + kind
	if p.counts[key] == 0 {
		p.order = append(p.order, key)
	}
	p.counts[key]++
	if p.counts[key] <= maxPerKind {
		p.texts = append(p.texts, fmt.Sprintf(format, args...))
	}
}

func (p *problems) list() []string {
	out := slices.Clone(p.texts)
	for _, key := range p.order {
		if n := p.counts[key]; n > maxPerKind {
			watch, kind, _ := strings.Cut(key, "\x00")
			where := ""
			if watch != "" {
				where = " on " + watch
			}
			out = append(out, fmt.Sprintf("... and %d more problems of kind %q%s", n-maxPerKind, kind, where))
		}
	}
	return out
}
