package kv

import (
	"fmt"
	"testing"
)

// The newestCache holds at most maxKeys keys, evicting one when full, and a set
// through a slot that has since been given to another key updates the key's own
// entry, never the other key's.
func TestNewestCacheSlots(t *testing.T) {
	c := newestCache{maxKeys: 3}
	v := func(n int64) newestVersion { return newestVersion{createRevision: n, version: n} }
	slots := map[string]int32{}
	for i, k := range []string{"a", "b", "c"} {
		slots[k] = c.put([]byte(k), v(int64(i+1)))
	}
	c.set(slots["a"], []byte("a"), v(10))
	if got, _, ok := c.get([]byte("a")); !ok || got != v(10) {
		t.Fatalf("a after set through its slot: %+v, %v; want %+v", got, ok, v(10))
	}
	slotD := c.put([]byte("d"), v(4)) // evicts one of a, b, c, into its slot
	var evicted []string
	for _, k := range []string{"a", "b", "c"} {
		if _, _, ok := c.get([]byte(k)); !ok {
			evicted = append(evicted, k)
		}
	}
	if len(evicted) != 1 || slots[evicted[0]] != slotD {
		t.Fatalf("a fourth key in a cache of 3 went to slot %d and evicted %q (slots %v); want one key, from that slot", slotD, evicted, slots)
	}
	gone := evicted[0]
	// The slot is d's now: the set inserts gone anew, which evicts a slot at
	// random, d's perhaps, but must not write gone's version into d's entry.
	c.set(slotD, []byte(gone), v(11))
	if got, _, ok := c.get([]byte("d")); ok && got != v(4) {
		t.Fatalf("d after a set of %s through %s's old slot: %+v; want %+v", gone, gone, got, v(4))
	}
	if got, _, ok := c.get([]byte(gone)); !ok || got != v(11) {
		t.Fatalf("%s after its set: %+v, %v; want %+v", gone, got, ok, v(11))
	}
	if len(c.byKey) != 3 || len(c.slots) != 3 {
		t.Fatalf("%d keys in %d slots; want 3 in 3", len(c.byKey), len(c.slots))
	}
	for i := range 10 {
		c.put(fmt.Appendf(nil, "k%d", i), v(int64(i)))
	}
	if len(c.byKey) != 3 || len(c.slots) != 3 {
		t.Fatalf("%d keys in %d slots after 10 more; want 3 in 3", len(c.byKey), len(c.slots))
	}
	for k, i := range c.byKey {
		if c.slots[i].key != k {
			t.Fatalf("key %q maps to slot %d, which holds %q", k, i, c.slots[i].key)
		}
	}
	c.reset()
	if _, _, ok := c.get([]byte("k9")); ok || len(c.slots) != 0 {
		t.Fatal("reset left keys in the cache")
	}
}

// Keys put over and over in a cycle longer than the cache still hit it: a cache
// that evicted its oldest insert would have evicted every key just before it came
// back, and hit none (bench/'s put-100k-keys, 100,000 keys against the default
// 65,536). Random eviction keeps about 40% at that ratio.
func TestNewestCacheKeepsSomeOfACycleLongerThanItself(t *testing.T) {
	const keys, cycle = 1000, 1500
	c := newestCache{maxKeys: keys}
	hits, puts := 0, 0
	for round := range 6 {
		for k := range cycle {
			key := fmt.Appendf(nil, "k%d", k)
			if _, _, ok := c.get(key); ok && round >= 2 {
				hits++
			}
			if round >= 2 {
				puts++
			}
			c.put(key, newestVersion{version: int64(round)})
		}
	}
	if len(c.byKey) != keys || len(c.slots) != keys {
		t.Fatalf("%d keys in %d slots; want %d in %d", len(c.byKey), len(c.slots), keys, keys)
	}
	if ratio := float64(hits) / float64(puts); ratio < 0.3 {
		t.Fatalf("hit %d of %d puts (%.2f) cycling through %d keys with room for %d; want at least 0.30", hits, puts, ratio, cycle, keys)
	}
}
