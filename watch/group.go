package watch

import "go.etcd.io/etcd/pkg/v3/adt"

// watcherSet is a set of watchers.
type watcherSet map[*watcher]struct{}

// group indexes watchers by what they watch, to find those an event's key concerns:
// single keys in a map, ranges in an interval tree (etcd's adt.IntervalTree, the
// structure etcd's own watcher groups use), each range's watchers sharing a node.
type group struct {
	all    watcherSet
	keys   map[string]watcherSet
	ranges adt.IntervalTree
	// prevKVs counts the watchers that want prev_kv, so a read asks for it only
	// when one does.
	prevKVs int
}

func newGroup() *group {
	return &group{all: watcherSet{}, keys: map[string]watcherSet{}, ranges: adt.NewIntervalTree()}
}

func (g *group) len() int { return len(g.all) }

// interval is w's range in the tree: [key, end), end empty meaning every key from
// key on (the affine comparison puts the empty end above every key).
func (w *watcher) interval() adt.Interval { return adt.NewBytesAffineInterval(w.key, w.end) }

func (g *group) add(w *watcher) {
	if _, dup := g.all[w]; dup {
		panic("watch: watcher added to a group twice")
	}
	g.all[w] = struct{}{}
	if w.prevKV {
		g.prevKVs++
	}
	if w.end == nil {
		set := g.keys[string(w.key)]
		if set == nil {
			set = watcherSet{}
			g.keys[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	ivl := w.interval()
	if iv := g.ranges.Find(ivl); iv != nil {
		iv.Val.(watcherSet)[w] = struct{}{}
		return
	}
	g.ranges.Insert(ivl, watcherSet{w: {}})
}

// remove takes w out of the group and reports whether it was in it.
func (g *group) remove(w *watcher) bool {
	if _, ok := g.all[w]; !ok {
		return false
	}
	delete(g.all, w)
	if w.prevKV {
		g.prevKVs--
	}
	if w.end == nil {
		set := g.keys[string(w.key)]
		delete(set, w)
		if len(set) == 0 {
			delete(g.keys, string(w.key))
		}
		return true
	}
	ivl := w.interval()
	iv := g.ranges.Find(ivl)
	if iv == nil {
		panic("watch: a range watcher's interval is missing from its group")
	}
	set := iv.Val.(watcherSet)
	delete(set, w)
	if len(set) == 0 {
		g.ranges.Delete(ivl)
	}
	return true
}

// contains reports whether a watcher of the group watches key.
func (g *group) contains(key []byte) bool {
	if _, ok := g.keys[string(key)]; ok {
		return true
	}
	return g.ranges.Len() > 0 && g.ranges.Intersects(adt.NewBytesAffinePoint(key))
}

// each calls fn for every watcher of the group that watches key.
func (g *group) each(key []byte, fn func(*watcher)) {
	for w := range g.keys[string(key)] {
		fn(w)
	}
	if g.ranges.Len() == 0 {
		return
	}
	g.ranges.Visit(adt.NewBytesAffinePoint(key), func(iv *adt.IntervalValue) bool {
		for w := range iv.Val.(watcherSet) {
			fn(w)
		}
		return true
	})
}
