package kv

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBtreeAgainstSortedSlice(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var tree btree
	var want []string
	for step := range 20000 {
		k := fmt.Sprintf("%x", rng.Uint32()%50000)
		if tree.get([]byte(k)) != nil {
			continue
		}
		tree.insert(&keyIndex{key: []byte(k)})
		at, _ := slices.BinarySearch(want, k)
		want = slices.Insert(want, at, k)
		if step%997 == 0 {
			checkBtree(t, &tree, want, seed)
		}
	}
	checkBtree(t, &tree, want, seed)
	for range 200 {
		from := fmt.Sprintf("%x", rng.Uint32()%50000)
		i, _ := slices.BinarySearch(want, from)
		var got []string
		tree.ascend([]byte(from), func(ki *keyIndex) bool {
			got = append(got, string(ki.key))
			return len(got) < 50
		})
		if exp := want[i:min(i+50, len(want))]; !slices.Equal(got, exp) {
			t.Fatalf("seed %d: ascend from %q: %v, want %v", seed, from, got, exp)
		}
	}
	if tree.get([]byte("not hex")) != nil {
		t.Fatal("get of a missing key")
	}
}

// checkBtree walks the whole tree, checking order, node sizes and lookups.
func checkBtree(t *testing.T, tree *btree, want []string, seed uint64) {
	t.Helper()
	var got []string
	tree.ascend(nil, func(ki *keyIndex) bool {
		got = append(got, string(ki.key))
		return true
	})
	if !slices.Equal(got, want) || tree.length != len(want) {
		t.Fatalf("seed %d: tree holds %d keys (length %d), want %d, or out of order", seed, len(got), tree.length, len(want))
	}
	var depth func(n *btreeNode, isRoot bool) int
	depth = func(n *btreeNode, isRoot bool) int {
		if len(n.items) > btreeMaxItems || (!isRoot && len(n.items) < btreeMaxItems/2) {
			t.Fatalf("seed %d: node with %d items", seed, len(n.items))
		}
		if len(n.children) == 0 {
			return 1
		}
		if len(n.children) != len(n.items)+1 {
			t.Fatalf("seed %d: node with %d items and %d children", seed, len(n.items), len(n.children))
		}
		d := depth(n.children[0], false)
		for _, c := range n.children[1:] {
			if depth(c, false) != d {
				t.Fatalf("seed %d: leaves at different depths", seed)
			}
		}
		return d + 1
	}
	depth(tree.root, true)
	for _, k := range want[:min(len(want), 100)] {
		if ki := tree.get([]byte(k)); ki == nil || string(ki.key) != k {
			t.Fatalf("seed %d: get %q", seed, k)
		}
	}
}
