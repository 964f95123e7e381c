package sim

import "time"

// event is one thing that happens at a virtual instant: a tick, a message arriving, a
// client waking up, a fault. Events run in order of (at, seq); seq is the order in which
// they were scheduled, so two events at the same instant always run in the same order
// and a seed replays exactly.
type event struct {
	at  time.Duration
	seq uint64
	run func()
}

// eventQueue is a binary min-heap of events keyed by (at, seq). It is written out by
// hand rather than through container/heap to avoid boxing every event in an interface:
// a long seed schedules millions of them.
type eventQueue struct {
	events  []event
	nextSeq uint64
}

func (q *eventQueue) len() int { return len(q.events) }

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.events[i], &q.events[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

// push schedules run at virtual time at.
func (q *eventQueue) push(at time.Duration, run func()) {
	q.events = append(q.events, event{at: at, seq: q.nextSeq, run: run})
	q.nextSeq++
	i := len(q.events) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q.events[i], q.events[parent] = q.events[parent], q.events[i]
		i = parent
	}
}

// peekTime returns the time of the earliest event; the queue must not be empty.
func (q *eventQueue) peekTime() time.Duration { return q.events[0].at }

// pop removes and returns the earliest event; the queue must not be empty.
func (q *eventQueue) pop() event {
	top := q.events[0]
	last := len(q.events) - 1
	q.events[0] = q.events[last]
	q.events[last] = event{}
	q.events = q.events[:last]
	i := 0
	for {
		left, right, smallest := 2*i+1, 2*i+2, i
		if left < last && q.less(left, smallest) {
			smallest = left
		}
		if right < last && q.less(right, smallest) {
			smallest = right
		}
		if smallest == i {
			break
		}
		q.events[i], q.events[smallest] = q.events[smallest], q.events[i]
		i = smallest
	}
	return top
}
