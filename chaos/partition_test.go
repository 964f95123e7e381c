package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// A partition is a list of groups of members (indexes into cluster.members) whose
// members reach each other; a member in two groups bridges them (it reaches both, they
// do not reach each other through it: raftkv does not relay), and a member in no group
// reaches no peer. It is made of peer networks: each group of two or more members gets
// a network of its own, and a member is attached to the networks of its groups only.
type partition [][]int

// whole is the absence of a partition: every member on peer network 0.
func whole() partition {
	var all []int
	for i := range memberCount {
		all = append(all, i)
	}
	return partition{all}
}

// networks returns, for each of memberCount members, the peer networks it must be
// attached to, given those it is on now (current). Of the ways to give each group of
// two or more a network of its own, it takes the one that moves the fewest members:
// a member that moves loses its connections over the network it leaves (they go
// silent rather than fail), so the members that stay keep theirs, as they would
// when a cut only separates some hosts from others. It fails if the partition
// needs more networks than there are.
func (p partition) networks(current [][]int) ([][]int, error) {
	var groups [][]int
	for _, group := range p {
		for _, i := range group {
			if i < 0 || i >= memberCount {
				return nil, fmt.Errorf("partition %s names member index %d; there are %d", p, i, memberCount)
			}
		}
		if len(group) >= 2 { // a member alone needs no network to reach nobody
			groups = append(groups, group)
		}
	}
	if len(groups) > peerNetCount {
		return nil, fmt.Errorf("partition %s needs %d peer networks; there are %d", p, len(groups), peerNetCount)
	}
	var best [][]int
	bestMoves := -1
	for _, assignment := range permutations(peerNetCount, len(groups)) {
		out := make([][]int, memberCount)
		for g, group := range groups {
			for _, i := range group {
				out[i] = append(out[i], assignment[g])
			}
		}
		moves := 0
		for i := range memberCount {
			slices.Sort(out[i])
			for _, n := range out[i] {
				if !slices.Contains(current[i], n) {
					moves++
				}
			}
			for _, n := range current[i] {
				if !slices.Contains(out[i], n) {
					moves++
				}
			}
		}
		if bestMoves < 0 || moves < bestMoves {
			best, bestMoves = out, moves
		}
	}
	return best, nil
}

// permutations returns every ordered choice of k distinct numbers of [0, n), in
// lexicographic order.
func permutations(n, k int) [][]int {
	if k == 0 {
		return [][]int{nil}
	}
	var out [][]int
	for _, rest := range permutations(n, k-1) {
		for x := range n {
			if !slices.Contains(rest, x) {
				out = append(out, append(slices.Clone(rest), x))
			}
		}
	}
	slices.SortFunc(out, slices.Compare)
	return out
}

// String names the members: "{m1 m2} {m3 m4 m5}".
func (p partition) String() string {
	var groups []string
	for _, group := range p {
		var names []string
		for _, i := range group {
			names = append(names, fmt.Sprintf("m%d", i+1))
		}
		groups = append(groups, "{"+strings.Join(names, " ")+"}")
	}
	return strings.Join(groups, " ")
}

// setPartition attaches and detaches members until the peer networks make p. It
// connects first and disconnects after, so that a member staying in a group never
// loses the peers it keeps.
func (c *cluster) setPartition(p partition) {
	c.t.Helper()
	current := make([][]int, memberCount)
	for i, m := range c.members {
		current[i] = slices.Sorted(maps.Keys(m.peerNets))
	}
	want, err := p.networks(current)
	if err != nil {
		c.t.Fatal(err)
	}
	for i, m := range c.members {
		for _, n := range want[i] {
			if !m.peerNets[n] {
				c.connect(m, n)
			}
		}
	}
	for i, m := range c.members {
		for n := range peerNetCount {
			if m.peerNets[n] && !slices.Contains(want[i], n) {
				c.disconnect(m, n)
			}
		}
	}
}

// TestPartitionNetworks checks the plan of peer networks for each kind of partition
// the nemesis makes, starting from the whole cluster on network 0.
func TestPartitionNetworks(t *testing.T) {
	allOnZero := [][]int{{0}, {0}, {0}, {0}, {0}}
	for _, tc := range []struct {
		name    string
		p       partition
		current [][]int
		want    [][]int
	}{
		{"whole", whole(), allOnZero, allOnZero},
		{"heal of a split", whole(), [][]int{{1}, {0}, {0}, {1}, {0}}, allOnZero},
		{"one isolated", partition{{1, 2, 3, 4}}, allOnZero, [][]int{nil, {0}, {0}, {0}, {0}}},
		{"majority and minority: the minority moves", partition{{0, 3}, {1, 2, 4}}, allOnZero,
			[][]int{{1}, {0}, {0}, {1}, {0}}},
		{"bridge: two move, the bridge joins them", partition{{0, 1, 2}, {2, 3, 4}}, allOnZero,
			[][]int{{0}, {0}, {0, 1}, {1}, {1}}},
		{"two pairs and one alone", partition{{0, 1}, {2}, {3, 4}}, allOnZero,
			[][]int{{0}, {0}, nil, {1}, {1}}},
		{"from an isolated member, the others stay", partition{{0, 3}, {1, 2, 4}}, [][]int{nil, {0}, {0}, {0}, {0}},
			[][]int{{1}, {0}, {0}, {1}, {0}}},
	} {
		got, err := tc.p.networks(tc.current)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("%s (%s): networks %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
	if _, err := (partition{{0, 1}, {2, 3}, {4, 0}}).networks(allOnZero); err == nil {
		t.Errorf("three groups of two need three networks; there are %d, yet no error", peerNetCount)
	}
	if _, err := (partition{{0, 7}}).networks(allOnZero); err == nil {
		t.Errorf("member index 7 of %d members, yet no error", memberCount)
	}
	if got := permutations(2, 2); !slices.EqualFunc(got, [][]int{{0, 1}, {1, 0}}, slices.Equal) {
		t.Errorf("permutations(2, 2) = %v, want [[0 1] [1 0]]", got)
	}
}
