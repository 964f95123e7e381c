package kv

import (
	"fmt"
	"testing"
)

// The newestCache holds at most maxKeys keys, evicting the oldest insert, and a
// set through a slot that has since been given to another key updates the key's
// own entry, never the other key's.
func TestNewestCacheSlots(t *testing.T) {
	c := newestCache{maxKeys: 3}
	v := func(n int64) newestVersion { return newestVersion{createRevision: n, version: n} }
	slotA := c.put([]byte("a"), v(1))
	c.put([]byte("b"), v(2))
	c.put([]byte("c"), v(3))
	c.set(slotA, []byte("a"), v(10))
	if got, _, ok := c.get([]byte("a")); !ok || got != v(10) {
		t.Fatalf("a after set through its slot: %+v, %v; want %+v", got, ok, v(10))
	}
	c.put([]byte("d"), v(4)) // evicts a, the oldest insert, into a's slot
	if _, _, ok := c.get([]byte("a")); ok {
		t.Fatal("a is still cached after a fourth key in a cache of 3")
	}
	c.set(slotA, []byte("a"), v(11)) // the slot is d's now
	if got, _, ok := c.get([]byte("d")); !ok || got != v(4) {
		t.Fatalf("d after a set of a through a's old slot: %+v, %v; want %+v", got, ok, v(4))
	}
	if got, _, ok := c.get([]byte("a")); !ok || got != v(11) {
		t.Fatalf("a after its set: %+v, %v; want %+v", got, ok, v(11))
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
