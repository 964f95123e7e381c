package kv

import (
	"bytes"
	"slices"
)

// btree is an in-memory B-tree of keyIndex entries ordered by key. It is the
// store's key index: point lookups for single-key reads and writes, and in-order
// iteration from a key for ranges.
//
// It supports insert but not delete: keys leave the index only when compaction
// drops their whole history, and compaction already visits every key, so it
// rebuilds the tree instead (see state.compact). That keeps this file small.
type btree struct {
	root *btreeNode
	// length is the number of entries.
	length int
}

// btreeMaxItems is the most entries a node holds. 63 entries of 8-byte pointers
// keep a node within eight cache lines, and with a fan-out of up to 64 the tree
// over a million keys is four levels deep.
const btreeMaxItems = 63

// btreeNode is a leaf when children is empty.
// Invariant: len(keys) == len(items) and keys[i] is items[i].key.
// Invariant: len(children) == 0 || len(children) == len(items)+1.
// Invariant: items are strictly ascending by key, and every key in children[i]
// lies between items[i-1] and items[i].
type btreeNode struct {
	// keys repeats the items' keys so that a search reads the slice headers from
	// the node itself: going through items[i] would cost a cache miss more per
	// comparison, which profiles showed dominating lookups in a 100k-key tree.
	keys     [][]byte
	items    []*keyIndex
	children []*btreeNode
}

func newBtreeNode() *btreeNode {
	return &btreeNode{
		keys:  make([][]byte, 0, btreeMaxItems),
		items: make([]*keyIndex, 0, btreeMaxItems),
	}
}

// insertItemAt puts ki at position i of the node's items.
func (n *btreeNode) insertItemAt(i int, ki *keyIndex) {
	n.keys = slices.Insert(n.keys, i, ki.key)
	n.items = slices.Insert(n.items, i, ki)
}

// search returns the position of the first item whose key is >= key, and
// whether that item's key equals key.
func (n *btreeNode) search(key []byte) (int, bool) {
	keys := n.keys
	lo, hi := 0, len(keys)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if bytes.Compare(keys[mid], key) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(keys) && bytes.Equal(keys[lo], key)
}

// get returns the entry for key, or nil.
func (t *btree) get(key []byte) *keyIndex {
	n := t.root
	for n != nil {
		i, found := n.search(key)
		if found {
			return n.items[i]
		}
		if len(n.children) == 0 {
			return nil
		}
		n = n.children[i]
	}
	return nil
}

// insert adds ki, whose key must not be in the tree yet. It splits full nodes on
// the way down, so it never has to walk back up.
func (t *btree) insert(ki *keyIndex) {
	if t.root == nil {
		t.root = newBtreeNode()
	}
	if len(t.root.items) == btreeMaxItems {
		left := t.root
		mid, right := left.split()
		t.root = newBtreeNode()
		t.root.insertItemAt(0, mid)
		t.root.children = append(make([]*btreeNode, 0, btreeMaxItems+1), left, right)
	}
	t.root.insertNonFull(ki)
	t.length++
}

// split moves the upper half of a full node into a new right sibling and returns
// the middle item, which the caller moves up into the parent.
func (n *btreeNode) split() (*keyIndex, *btreeNode) {
	const half = btreeMaxItems / 2
	mid := n.items[half]
	right := newBtreeNode()
	right.keys = append(right.keys, n.keys[half+1:]...)
	right.items = append(right.items, n.items[half+1:]...)
	clear(n.keys[half:])
	clear(n.items[half:])
	n.keys = n.keys[:half]
	n.items = n.items[:half]
	if len(n.children) > 0 {
		right.children = append(make([]*btreeNode, 0, btreeMaxItems+1), n.children[half+1:]...)
		clear(n.children[half+1:])
		n.children = n.children[:half+1]
	}
	return mid, right
}

func (n *btreeNode) insertNonFull(ki *keyIndex) {
	for {
		i, found := n.search(ki.key)
		if found {
			panic("kv: btree insert of a key already present: " + string(ki.key))
		}
		if len(n.children) == 0 {
			n.insertItemAt(i, ki)
			return
		}
		if len(n.children[i].items) == btreeMaxItems {
			mid, right := n.children[i].split()
			n.insertItemAt(i, mid)
			n.children = slices.Insert(n.children, i+1, right)
			switch c := bytes.Compare(ki.key, mid.key); {
			case c == 0:
				panic("kv: btree insert of a key already present: " + string(ki.key))
			case c > 0:
				i++
			}
		}
		n = n.children[i]
	}
}

// ascend calls visit for every entry with key >= from, in key order, until visit
// returns false. A nil from starts at the first key. visit must not insert.
func (t *btree) ascend(from []byte, visit func(*keyIndex) bool) {
	if t.root != nil {
		t.root.ascend(from, true, visit)
	}
}

// ascend walks the subtree. Once the walk has passed from, every later entry is
// >= from, so usePivot is dropped and children are walked without searching.
func (n *btreeNode) ascend(from []byte, usePivot bool, visit func(*keyIndex) bool) bool {
	i := 0
	if usePivot {
		i, _ = n.search(from)
	}
	for ; i < len(n.items); i++ {
		if len(n.children) > 0 {
			if !n.children[i].ascend(from, usePivot, visit) {
				return false
			}
			usePivot = false
		}
		if !visit(n.items[i]) {
			return false
		}
	}
	if len(n.children) > 0 {
		return n.children[len(n.items)].ascend(from, usePivot, visit)
	}
	return true
}
