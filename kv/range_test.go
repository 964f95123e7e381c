package kv

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// rangeFixture holds keys whose version, create, mod and value orders all
// differ from their key order, so every sort target is told apart.
//
//	key  value  create  mod  version
//	a    "3"    2       2    1
//	b    "1"    3       7    2
//	c    "2"    4       6    3
//	d    "0"    8       8    1
func rangeFixture(t *testing.T) *Store {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "3") // 2
	mustPut(t, s, "b", "x") // 3
	mustPut(t, s, "c", "x") // 4
	mustPut(t, s, "c", "x") // 5
	mustPut(t, s, "c", "2") // 6
	mustPut(t, s, "b", "1") // 7
	mustPut(t, s, "d", "0") // 8
	return s
}

func TestRangeForms(t *testing.T) {
	s := newTestStore(t, Config{})
	for _, k := range []string{"a", "ab", "abc", "b", "ba", "c"} {
		mustPut(t, s, k, "v")
	}
	for _, tc := range []struct {
		key, end string
		want     string
	}{
		{"ab", "", "ab"},                    // single key
		{"zz", "", ""},                      // single missing key
		{"ab", "ac", "ab,abc"},              // prefix "ab"
		{"a", "b", "a,ab,abc"},              // prefix "a"
		{"b", "\x00", "b,ba,c"},             // from key
		{"\x00", "\x00", "a,ab,abc,b,ba,c"}, // everything
		{"b", "a", ""},                      // range end before key: empty, as in etcd
		{"b", "b", ""},                      // empty interval
	} {
		resp := mustRange(t, s, &RangeRequest{Key: []byte(tc.key), RangeEnd: bytesOrNil(tc.end)})
		if got := strings.Join(keysOf(resp.Kvs), ","); got != tc.want {
			t.Errorf("range %q..%q: %q, want %q", tc.key, tc.end, got, tc.want)
		}
		if resp.Count != int64(len(resp.Kvs)) || resp.More {
			t.Errorf("range %q..%q: count %d more %v for %d keys", tc.key, tc.end, resp.Count, resp.More, len(resp.Kvs))
		}
	}
}

func TestRangeLimitMoreCount(t *testing.T) {
	s := newTestStore(t, Config{})
	for i := range 10 {
		mustPut(t, s, fmt.Sprintf("k%d", i), "v")
	}
	for _, tc := range []struct {
		limit    int64
		wantKeys int
		wantMore bool
	}{{0, 10, false}, {-1, 10, false}, {3, 3, true}, {9, 9, true}, {10, 10, false}, {11, 10, false}} {
		resp := mustRange(t, s, &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: tc.limit})
		if len(resp.Kvs) != tc.wantKeys || resp.More != tc.wantMore || resp.Count != 10 {
			t.Errorf("limit %d: %d keys more %v count %d; want %d keys more %v count 10",
				tc.limit, len(resp.Kvs), resp.More, resp.Count, tc.wantKeys, tc.wantMore)
		}
	}
}

func TestRangeSort(t *testing.T) {
	s := rangeFixture(t)
	for _, tc := range []struct {
		target SortTarget
		order  SortOrder
		want   string
	}{
		{SortByKey, SortNone, "a,b,c,d"},
		{SortByKey, SortAscend, "a,b,c,d"},
		{SortByKey, SortDescend, "d,c,b,a"},
		{SortByValue, SortAscend, "d,b,c,a"},
		{SortByValue, SortDescend, "a,c,b,d"},
		{SortByValue, SortNone, "d,b,c,a"}, // etcd: a target with order NONE sorts ascending
		{SortByCreate, SortDescend, "d,c,b,a"},
		{SortByMod, SortAscend, "a,c,b,d"},
		{SortByMod, SortDescend, "d,b,c,a"},
		{SortByVersion, SortDescend, "c,b,a,d"}, // a and d tie at 1: insertion sort keeps them in input order
	} {
		resp := mustRange(t, s, &RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, SortTarget: tc.target, SortOrder: tc.order})
		if got := strings.Join(keysOf(resp.Kvs), ","); got != tc.want {
			t.Errorf("sort target %d order %d: %s, want %s", tc.target, tc.order, got, tc.want)
		}
	}
}

func TestRangeSortWithLimit(t *testing.T) {
	s := rangeFixture(t)
	// With a real sort order, etcd sorts every key and then cuts.
	resp := mustRange(t, s, &RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, SortTarget: SortByValue, SortOrder: SortAscend, Limit: 2})
	if got := strings.Join(keysOf(resp.Kvs), ","); got != "d,b" || !resp.More || resp.Count != 4 {
		t.Fatalf("value ascending, limit 2: %s more %v count %d", got, resp.More, resp.Count)
	}
	// etcd's quirk: with order NONE it fetches only Limit+1 keys in key order
	// (a, b, c), sorts those by value (b, c, a) and cuts to 2.
	resp = mustRange(t, s, &RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, SortTarget: SortByValue, Limit: 2})
	if got := strings.Join(keysOf(resp.Kvs), ","); got != "b,c" || !resp.More || resp.Count != 4 {
		t.Fatalf("value with order NONE, limit 2: %s more %v count %d; want b,c as etcd", got, resp.More, resp.Count)
	}
}

func TestRangeKeysOnlyCountOnly(t *testing.T) {
	s := rangeFixture(t)
	resp := mustRange(t, s, &RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, KeysOnly: true, SortTarget: SortByValue})
	if got := strings.Join(keysOf(resp.Kvs), ","); got != "d,b,c,a" {
		t.Fatalf("keys-only still sorts by value: %s", got)
	}
	for _, kv := range resp.Kvs {
		if kv.Value != nil || kv.ModRevision == 0 {
			t.Fatalf("keys-only kv: %+v", kv)
		}
	}
	if get(t, s, "a", 0).Value == nil {
		t.Fatal("keys-only range cleared a stored value")
	}
	resp = mustRange(t, s, &RangeRequest{Key: []byte("b"), RangeEnd: []byte{0}, CountOnly: true, Limit: 1})
	if len(resp.Kvs) != 0 || resp.Count != 3 || resp.More || resp.Header.Revision != 8 {
		t.Fatalf("count-only: %+v", resp)
	}
}

func TestRangeRevisionFilters(t *testing.T) {
	s := rangeFixture(t)
	for _, tc := range []struct {
		req  RangeRequest
		want string
	}{
		{RangeRequest{MinModRevision: 5}, "b,c,d"},
		{RangeRequest{MaxModRevision: 6}, "a,c"},
		{RangeRequest{MinCreateRevision: 3, MaxCreateRevision: 4}, "b,c"},
		{RangeRequest{MinModRevision: 6, MaxCreateRevision: 3}, "b"},
		{RangeRequest{MinModRevision: 3, Limit: 1}, "b"},
	} {
		req := tc.req
		req.Key, req.RangeEnd = []byte("a"), []byte{0}
		resp := mustRange(t, s, &req)
		if got := strings.Join(keysOf(resp.Kvs), ","); got != tc.want || resp.Count != 4 {
			t.Errorf("%+v: %s count %d; want %s count 4 (count is taken before filters)", tc.req, got, resp.Count, tc.want)
		}
	}
}

func TestRangeRejects(t *testing.T) {
	s := rangeFixture(t)
	for _, tc := range []struct {
		req  RangeRequest
		want error
	}{
		{RangeRequest{}, ErrEmptyKey},
		{RangeRequest{Key: []byte("a"), SortOrder: 3}, ErrInvalidSortOption},
		{RangeRequest{Key: []byte("a"), SortTarget: 5}, ErrInvalidSortOption},
		{RangeRequest{Key: []byte("a"), SortTarget: -1}, ErrInvalidSortOption},
		{RangeRequest{Key: []byte("a"), Revision: 9}, ErrFutureRev},
	} {
		_, err := s.Range(&tc.req)
		wantErr(t, fmt.Sprintf("range %+v", tc.req), err, tc.want)
	}
}

// finishRange hands its fill the entries it returns, once they are cut to the
// limit, and none for a KeysOnly range; only a sort by value has every entry's
// value read, before the cut.
func TestFinishRangeFillsOnlyWhatItReturns(t *testing.T) {
	for _, c := range []struct {
		name      string
		r         RangeRequest
		wantFills []int // the entries handed to each call of fill
	}{
		{"limit", RangeRequest{Limit: 2}, []int{2}},
		{"descend, limit", RangeRequest{SortOrder: SortDescend, Limit: 3}, []int{3}},
		{"by mod revision", RangeRequest{SortTarget: SortByMod, SortOrder: SortDescend, Limit: 1}, []int{1}},
		{"keys only", RangeRequest{SortOrder: SortDescend, Limit: 2, KeysOnly: true}, nil},
		{"filtered", RangeRequest{MinModRevision: 4}, []int{2}},
		{"by value", RangeRequest{SortTarget: SortByValue, SortOrder: SortAscend, Limit: 2}, []int{5, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			entries := make([]rangeEntry, 5)
			for i := range entries {
				entries[i] = rangeEntry{kv: KeyValue{Key: []byte{'a' + byte(i)}, ModRevision: int64(i + 1)}, valueLen: 1}
			}
			var fills []int
			resp, err := finishRange(&RangeResponse{}, entries, 5, &c.r, newBudget(0), func(es []rangeEntry) error {
				fills = append(fills, len(es))
				for i := range es {
					if es[i].needsValue() {
						es[i].kv.Value = []byte{byte(5 - es[i].kv.ModRevision)}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(fills, c.wantFills) {
				t.Fatalf("fill was handed %v entries, want %v", fills, c.wantFills)
			}
			for _, kv := range resp.Kvs {
				if c.r.KeysOnly != (kv.Value == nil) {
					t.Fatalf("key %q has value %v (keys only: %v)", kv.Key, kv.Value, c.r.KeysOnly)
				}
			}
		})
	}
}
