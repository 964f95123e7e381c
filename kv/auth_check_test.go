package kv

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.etcd.io/etcd/pkg/v3/adt"
)

// The permission checker answers what etcd's interval tree answers: a point is
// permitted when a permission holds it, a range when the permissions overlapping it
// join into one run covering it. Table cases first, for the shapes users grant.
func TestPermSetCovers(t *testing.T) {
	type perm struct{ key, end string }
	type query struct {
		key, end string
		want     bool
	}
	cases := []struct {
		name    string
		perms   []perm
		queries []query
	}{
		{"one key", []perm{{"foo", ""}}, []query{
			{"foo", "", true}, {"fo", "", false}, {"foo\x00", "", false}, {"fooa", "", false},
			{"foo", "foo\x00", true}, {"foo", "fooa", false}, {"foo", "\x00", false},
		}},
		{"range", []perm{{"a", "c"}}, []query{
			{"a", "", true}, {"b", "", true}, {"bzzz", "", true}, {"c", "", false},
			{"a", "c", true}, {"a", "c\x00", false}, {"b", "c", true}, {"a", "\x00", false},
			// A range that reads nothing (end before key) is covered when its key is.
			{"b", "a", true}, {"c", "b", false},
		}},
		{"prefix", []perm{{"app/", "app0"}}, []query{
			{"app/", "app0", true}, {"app/x", "", true}, {"app/x/", "app/x0", true}, {"app", "", false},
			{"app0", "", false}, {"app/", "app1", false},
		}},
		{"from a key on", []perm{{"m", "\x00"}}, []query{
			{"m", "", true}, {"zzz", "", true}, {"m", "\x00", true}, {"n", "\x00", true}, {"l", "\x00", false},
			{"\xff\xff", "", true}, {"l", "m", false},
		}},
		{"overlapping grants join", []perm{{"a", "c"}, {"b", "e"}}, []query{
			{"a", "e", true}, {"a", "e\x00", false}, {"c", "", true}, {"d", "e", true},
		}},
		{"touching grants join", []perm{{"a", "b"}, {"b", "c"}}, []query{
			{"a", "c", true}, {"b", "", true},
		}},
		{"a gap does not", []perm{{"a", "b"}, {"c", "d"}}, []query{
			{"a", "d", false}, {"a", "b", true}, {"c", "d", true}, {"b", "", false}, {"bz", "c", false},
		}},
		{"a key and the range after it", []perm{{"a", ""}, {"a\x00", "b"}}, []query{
			{"a", "b", true},
		}},
		{"a range inside a wider one", []perm{{"a", "z"}, {"c", "d"}}, []query{
			{"b", "y", true}, {"a", "\x00", false},
		}},
		{"open end swallows the rest", []perm{{"k", "\x00"}, {"m", "n"}, {"a", "l"}}, []query{
			{"a", "\x00", true}, {"0", "\x00", false},
		}},
		{"nothing granted", nil, []query{{"a", "", false}, {"a", "\x00", false}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ivs []keyInterval
			for _, p := range c.perms {
				ivs = append(ivs, permInterval([]byte(p.key), bytesOrNil(p.end)))
			}
			set := newPermSet(ivs)
			for _, q := range c.queries {
				if got := set.covers([]byte(q.key), bytesOrNil(q.end)); got != q.want {
					t.Errorf("perms %q: covers(%q, %q) = %v, want %v", c.perms, q.key, q.end, got, q.want)
				}
			}
		})
	}
}

// Random permissions and queries over a small alphabet, so that ranges overlap,
// touch and nest often, against etcd's own interval tree used as etcd uses it
// (server/auth/range_perm_cache.go). Replay a failure with its seed.
func TestPermSetMatchesEtcdIntervalTree(t *testing.T) {
	seed := uint64(20261203)
	rng := rand.New(rand.NewPCG(seed, 0))
	alphabet := []byte{0, 'a', 'b', 'c'}
	randKey := func() []byte {
		n := 1 + rng.IntN(3)
		k := make([]byte, n)
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	randRange := func(forPerm bool) (key, end []byte) {
		key = randKey()
		switch rng.IntN(4) {
		case 0:
			return key, nil
		case 1:
			return key, []byte{0}
		}
		end = randKey()
		if forPerm {
			for !validPermissionRange(key, end) {
				key, end = randKey(), randKey()
			}
		}
		return key, end
	}
	for round := range 3000 {
		tree := adt.NewIntervalTree()
		var ivs []keyInterval
		var granted []string
		for range rng.IntN(5) {
			key, end := randRange(true)
			granted = append(granted, fmt.Sprintf("[%q,%q)", key, end))
			ivs = append(ivs, permInterval(key, end))
			// etcd's getMergedPerms.
			var rangeEnd []byte
			if !isOpenEnd(end) {
				rangeEnd = end
			}
			if len(end) != 0 {
				tree.Insert(adt.NewBytesAffineInterval(key, rangeEnd), struct{}{})
			} else {
				tree.Insert(adt.NewBytesAffinePoint(key), struct{}{})
			}
		}
		set := newPermSet(ivs)
		for range 20 {
			key, end := randRange(false)
			var want bool
			switch {
			case len(end) == 0:
				want = tree.Intersects(adt.NewBytesAffinePoint(key))
			case isOpenEnd(end):
				want = tree.Contains(adt.NewBytesAffineInterval(key, nil))
			default:
				if string(key) >= string(end) {
					continue // reads nothing; etcd's tree answers by the tree's shape
				}
				want = tree.Contains(adt.NewBytesAffineInterval(key, end))
			}
			if got := set.covers(key, end); got != want {
				t.Fatalf("seed %d round %d: perms %v: covers(%q, %q) = %v, etcd's interval tree says %v",
					seed, round, granted, key, end, got, want)
			}
		}
	}
}
