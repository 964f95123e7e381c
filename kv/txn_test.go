package kv

import (
	"fmt"
	"strings"
	"testing"
)

func cmpOp(key string, target CompareTarget, result CompareResult, operand int64) Compare {
	c := Compare{Key: []byte(key), Target: target, Result: result}
	switch target {
	case CompareVersion:
		c.Version = operand
	case CompareCreate:
		c.CreateRevision = operand
	case CompareMod:
		c.ModRevision = operand
	case CompareLease:
		c.Lease = operand
	}
	return c
}

func cmpValue(key string, result CompareResult, value string) Compare {
	return Compare{Key: []byte(key), Target: CompareValue, Result: result, Value: []byte(value)}
}

// evalCompare runs a txn with one compare and reports which branch ran.
func evalCompare(t *testing.T, s *Store, c Compare) bool {
	t.Helper()
	resp, err := s.Txn(&TxnRequest{Compare: []Compare{c}})
	if err != nil {
		t.Fatalf("txn %+v: %v", c, err)
	}
	return resp.Succeeded
}

func TestTxnCompareTargets(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "k", "m") // 2
	mustGrant(t, s, 5, 60)
	apply(t, s, &Command{Put: &PutRequest{Key: []byte("k"), Value: []byte("m"), Lease: 5}}) // 3: version 2, mod 3, create 2
	type row struct {
		c    Compare
		want bool
	}
	var rows []row
	for _, tgt := range []struct {
		target CompareTarget
		actual int64
	}{{CompareVersion, 2}, {CompareCreate, 2}, {CompareMod, 3}, {CompareLease, 5}} {
		for _, off := range []int64{-1, 0, 1} {
			operand := tgt.actual + off
			rows = append(rows,
				row{cmpOp("k", tgt.target, CompareEqual, operand), off == 0},
				row{cmpOp("k", tgt.target, CompareNotEqual, operand), off != 0},
				row{cmpOp("k", tgt.target, CompareGreater, operand), off < 0},
				row{cmpOp("k", tgt.target, CompareLess, operand), off > 0})
		}
	}
	for _, v := range []struct {
		operand string
		cmp     int
	}{{"l", 1}, {"m", 0}, {"mm", -1}} {
		rows = append(rows,
			row{cmpValue("k", CompareEqual, v.operand), v.cmp == 0},
			row{cmpValue("k", CompareNotEqual, v.operand), v.cmp != 0},
			row{cmpValue("k", CompareGreater, v.operand), v.cmp > 0},
			row{cmpValue("k", CompareLess, v.operand), v.cmp < 0})
	}
	for _, r := range rows {
		if got := evalCompare(t, s, r.c); got != r.want {
			t.Errorf("compare target %d result %d on %+v: %v, want %v", r.c.Target, r.c.Result, r.c, got, r.want)
		}
	}
}

func TestTxnCompareMissingKey(t *testing.T) {
	s := newTestStore(t, Config{})
	for _, tc := range []struct {
		c    Compare
		want bool
	}{
		{cmpOp("nope", CompareVersion, CompareEqual, 0), true}, // the "key does not exist" idiom
		{cmpOp("nope", CompareCreate, CompareEqual, 0), true},
		{cmpOp("nope", CompareMod, CompareGreater, 0), false},
		{cmpValue("nope", CompareEqual, ""), false}, // a missing key has no value, not an empty one
		{cmpValue("nope", CompareNotEqual, "x"), false},
	} {
		if got := evalCompare(t, s, tc.c); got != tc.want {
			t.Errorf("%+v on missing key: %v, want %v", tc.c, got, tc.want)
		}
	}
}

func TestTxnCompareOverRange(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "p/a", "1")
	mustPut(t, s, "p/b", "1")
	mustPut(t, s, "p/b", "2")
	mustPut(t, s, "q", "9")
	ranged := func(c Compare, end string) Compare { c.RangeEnd = []byte(end); return c }
	for _, tc := range []struct {
		c    Compare
		want bool
	}{
		{ranged(cmpOp("p/", CompareVersion, CompareGreater, 0), "p0"), true},
		{ranged(cmpOp("p/", CompareVersion, CompareEqual, 1), "p0"), false}, // p/b is at version 2
		{ranged(cmpValue("p/", CompareLess, "3"), "p0"), true},
		{ranged(cmpValue("p/", CompareEqual, "1"), "p0"), false},
		{ranged(cmpOp("p/", CompareMod, CompareLess, 6), "\x00"), true},
		{ranged(cmpOp("p/", CompareMod, CompareLess, 5), "\x00"), false}, // from key reaches q, at mod 5
		{ranged(cmpOp("x", CompareCreate, CompareEqual, 0), "y"), true},  // empty range compares a zero kv
		{ranged(cmpValue("x", CompareEqual, ""), "y"), false},
	} {
		if got := evalCompare(t, s, tc.c); got != tc.want {
			t.Errorf("%q..%q target %d result %d: %v, want %v", tc.c.Key, tc.c.RangeEnd, tc.c.Target, tc.c.Result, got, tc.want)
		}
	}
}

func TestTxnBranchesAndOneRevision(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "1") // 2
	txn := &TxnRequest{
		Compare: []Compare{cmpValue("a", CompareEqual, "1")},
		Success: []RequestOp{putOp("b", "x"), putOp("c", "y"), delOp("a", "")},
		Failure: []RequestOp{putOp("f", "z")},
	}
	resp := mustTxn(t, s, txn)
	if !resp.Succeeded || resp.Header.Revision != 3 || s.Revision() != 3 || len(resp.Responses) != 3 {
		t.Fatalf("txn: %+v, store revision %d", resp, s.Revision())
	}
	for i, op := range resp.Responses[:2] {
		if op.Put == nil || op.Put.Header.Revision != 3 {
			t.Fatalf("response %d: %+v", i, op)
		}
	}
	if d := resp.Responses[2].DeleteRange; d == nil || d.Deleted != 1 || d.Header.Revision != 3 {
		t.Fatalf("delete response: %+v", resp.Responses[2])
	}
	wantKV(t, "b", get(t, s, "b", 0), "b", "x", 3, 3, 1)
	wantKV(t, "c", get(t, s, "c", 0), "c", "y", 3, 3, 1)

	// The same txn now fails its compare and runs the failure branch.
	resp = mustTxn(t, s, txn)
	if resp.Succeeded || len(resp.Responses) != 1 || resp.Responses[0].Put == nil || resp.Header.Revision != 4 {
		t.Fatalf("failure branch: %+v", resp)
	}
	if get(t, s, "f", 0) == nil {
		t.Fatal("failure branch put missing")
	}
}

func TestTxnOpsSeeEarlierOps(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "old") // 2
	// etcd refuses a put and a delete of one key at the same level, but lets a
	// nested txn delete what an earlier nested txn put.
	outer := mustTxn(t, s, &TxnRequest{Success: []RequestOp{
		txnOp(&TxnRequest{Success: []RequestOp{
			rangeOp("a", ""),
			putOp("a", "new"),
			rangeOp("a", ""),
			{Put: &PutRequest{Key: []byte("b"), Value: []byte("b1"), PrevKv: true}},
		}}),
		txnOp(&TxnRequest{Success: []RequestOp{
			{DeleteRange: &DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), PrevKv: true}},
			rangeOp("a", "c"),
		}}),
	}})
	first, second := outer.Responses[0].Txn, outer.Responses[1].Txn
	resp := &TxnResponse{Responses: append(append([]ResponseOp(nil), first.Responses...), second.Responses...)}
	before, after := resp.Responses[0].Range, resp.Responses[2].Range
	if string(before.Kvs[0].Value) != "old" || before.Header.Revision != 2 {
		t.Fatalf("range before the put: %+v", before)
	}
	wantKV(t, "range after the put", &after.Kvs[0], "a", "new", 2, 3, 2)
	if after.Header.Revision != 3 {
		t.Fatalf("range after a write reads at the txn's revision: header %d", after.Header.Revision)
	}
	if resp.Responses[3].Put.PrevKv != nil {
		t.Fatal("prev kv for a key created in this txn")
	}
	del := resp.Responses[4].DeleteRange
	if del.Deleted != 2 || strings.Join(keysOf(del.PrevKvs), ",") != "a,b" || string(del.PrevKvs[0].Value) != "new" {
		t.Fatalf("delete sees the txn's puts: %+v", del)
	}
	if last := resp.Responses[5].Range; len(last.Kvs) != 0 || last.Count != 0 {
		t.Fatalf("range after delete: %+v", last)
	}
	if s.Revision() != 3 {
		t.Fatalf("revision %d, want 3", s.Revision())
	}
	if get(t, s, "a", 0) != nil || get(t, s, "b", 0) != nil {
		t.Fatal("keys deleted in the txn still visible")
	}
	wantKV(t, "history at 2", get(t, s, "a", 2), "a", "old", 2, 2, 1)
}

func TestTxnNested(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "flag", "on") // 2
	resp := mustTxn(t, s, &TxnRequest{
		Compare: []Compare{cmpValue("flag", CompareEqual, "on")},
		Success: []RequestOp{
			putOp("flag", "off"),
			txnOp(&TxnRequest{
				// Nested compares see the store before the txn, as in etcd:
				// flag is still "on" here although the op above changed it.
				Compare: []Compare{cmpValue("flag", CompareEqual, "on")},
				Success: []RequestOp{putOp("inner", "then"), rangeOp("flag", "")},
				Failure: []RequestOp{putOp("inner", "else")},
			}),
		},
	})
	inner := resp.Responses[1].Txn
	if !resp.Succeeded || inner == nil || !inner.Succeeded {
		t.Fatalf("nested txn: %+v / %+v", resp, inner)
	}
	if inner.Header.Revision != 0 {
		t.Fatalf("nested txn header revision %d; etcd leaves it 0", inner.Header.Revision)
	}
	if got := string(inner.Responses[1].Range.Kvs[0].Value); got != "off" {
		t.Fatalf("range in nested txn sees %q, want the outer put's off", got)
	}
	wantKV(t, "inner", get(t, s, "inner", 0), "inner", "then", 3, 3, 1)
	if resp.Header.Revision != 3 || s.Revision() != 3 {
		t.Fatalf("nested txn used revision %d / store %d, want one revision 3", resp.Header.Revision, s.Revision())
	}
}

func TestTxnReadOnly(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "1")
	txn := &TxnRequest{Success: []RequestOp{rangeOp("a", "")}}
	resp := mustTxn(t, s, txn)
	if s.Revision() != 2 || resp.Header.Revision != 2 {
		t.Fatalf("read-only txn through the log moved the revision: %d", s.Revision())
	}
	if direct, err := s.Txn(txn); err != nil || string(direct.Responses[0].Range.Kvs[0].Value) != "1" {
		t.Fatalf("Store.Txn: %+v %v", direct, err)
	}
	_, err := s.Txn(&TxnRequest{Failure: []RequestOp{putOp("a", "2")}})
	wantErr(t, "Store.Txn with a put", err, ErrNotReadOnly)
	if !IsTxnReadOnly(&TxnRequest{}) || IsTxnReadOnly(&TxnRequest{Success: []RequestOp{txnOp(&TxnRequest{})}}) {
		t.Fatal("IsTxnReadOnly disagrees with etcd")
	}
}

func TestTxnNothingHalfApplied(t *testing.T) {
	s := newTestStore(t, Config{})
	mustPut(t, s, "a", "1") // 2
	mustPut(t, s, "b", "1") // 3
	apply(t, s, &Command{Compact: &CompactionRequest{Revision: 3}})
	for _, tc := range []struct {
		name string
		ops  []RequestOp
		want error
	}{
		{"ignore value on missing key", []RequestOp{putOp("x", "1"), {Put: &PutRequest{Key: []byte("missing"), IgnoreValue: true}}}, ErrKeyNotFound},
		{"ignore lease on key created in the txn", []RequestOp{putOp("x", "1"), txnOp(&TxnRequest{Success: []RequestOp{{Put: &PutRequest{Key: []byte("x"), IgnoreLease: true}}}, Failure: []RequestOp{}})}, ErrDuplicateKey},
		{"future range", []RequestOp{putOp("x", "1"), {Range: &RangeRequest{Key: []byte("a"), Revision: 4}}}, ErrFutureRev},
		{"compacted range", []RequestOp{delOp("a", ""), {Range: &RangeRequest{Key: []byte("a"), Revision: 2}}}, ErrCompacted},
		{"negative revision after compaction", []RequestOp{putOp("x", "1"), {Range: &RangeRequest{Key: []byte("a"), Revision: -1}}}, ErrCompacted},
		{"error in nested txn", []RequestOp{putOp("x", "1"), txnOp(&TxnRequest{Success: []RequestOp{{Put: &PutRequest{Key: []byte("nope"), IgnoreValue: true}}}})}, ErrKeyNotFound},
		// etcd accepts this txn and then crashes applying it; here it fails whole.
		{"ignore value after from-key delete", []RequestOp{delOp("a", "\x00"), {Put: &PutRequest{Key: []byte("b"), IgnoreValue: true}}}, ErrKeyNotFound},
	} {
		before := engineRecords(t, s)
		res := apply(t, s, &Command{Txn: &TxnRequest{Success: tc.ops}})
		wantErr(t, tc.name, res.Err, tc.want)
		// Only the applied index may differ.
		if after := engineRecords(t, s); after != before {
			t.Fatalf("%s: failed txn changed the store:\nbefore %s\nafter  %s", tc.name, before, after)
		}
	}
	// The ops on the branch not taken are not checked against the store.
	resp := mustTxn(t, s, &TxnRequest{Failure: []RequestOp{{Put: &PutRequest{Key: []byte("missing"), IgnoreValue: true}}}})
	if !resp.Succeeded {
		t.Fatal("txn without compares must succeed")
	}
}

func TestTxnRequestChecks(t *testing.T) {
	s := newTestStore(t, Config{MaxTxnOps: 4})
	many := func(n int) []RequestOp {
		ops := make([]RequestOp, n)
		for i := range ops {
			ops[i] = rangeOp(fmt.Sprint(i), "")
		}
		return ops
	}
	for _, tc := range []struct {
		name string
		txn  TxnRequest
		want error
	}{
		{"ok at the limit", TxnRequest{Compare: make([]Compare, 0), Success: many(4), Failure: many(4)}, nil},
		{"too many success", TxnRequest{Success: many(5)}, ErrTooManyOps},
		{"too many compares", TxnRequest{Compare: []Compare{cmpValue("a", 0, ""), cmpValue("a", 0, ""), cmpValue("a", 0, ""), cmpValue("a", 0, ""), cmpValue("a", 0, "")}}, ErrTooManyOps},
		// The nested txn may use only what its parent left: 4 - 2 = 2.
		{"nested budget", TxnRequest{Success: []RequestOp{rangeOp("a", ""), txnOp(&TxnRequest{Success: many(3)})}}, ErrTooManyOps},
		{"nested within budget", TxnRequest{Success: []RequestOp{rangeOp("a", ""), txnOp(&TxnRequest{Success: many(2)})}}, nil},
		{"empty compare key", TxnRequest{Compare: []Compare{{}}}, ErrEmptyKey},
		{"empty op", TxnRequest{Success: []RequestOp{{}}}, ErrKeyNotFound},
		{"op with two requests", TxnRequest{Success: []RequestOp{{Range: &RangeRequest{Key: []byte("a")}, Put: &PutRequest{Key: []byte("a")}}}}, ErrInvalidCommand},
		{"bad range in failure", TxnRequest{Failure: []RequestOp{{Range: &RangeRequest{Key: []byte("a"), SortOrder: 9}}}}, ErrInvalidSortOption},
		{"put value and ignore", TxnRequest{Success: []RequestOp{{Put: &PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}}}}, ErrValueProvided},
		{"empty delete key", TxnRequest{Success: []RequestOp{delOp("", "")}}, ErrEmptyKey},
	} {
		// Sentinels come back unwrapped, so they compare with ==.
		err := s.Check(&Command{Txn: &tc.txn})
		if err != tc.want {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if res := s.ApplyCommand(s.AppliedIndex()+1, &Command{Txn: &tc.txn}); res.Err != err {
			t.Fatalf("%s: Apply says %v, Check says %v", tc.name, res.Err, err)
		}
	}
}

// TestTxnOpsAboveTheDecodersDepth: etcd caps --max-txn-ops nowhere, so a limit above
// 1023 works (a txn of 2,000 puts applies and reads back), while a txn nested deeper
// than the codec carries is refused as too many operations, not accepted and then
// failed at encoding.
func TestTxnOpsAboveTheDecodersDepth(t *testing.T) {
	s := newTestStore(t, Config{MaxTxnOps: 5000})
	puts := make([]RequestOp, 2000)
	for i := range puts {
		puts[i] = putOp(fmt.Sprintf("k%04d", i), "v")
	}
	res := apply(t, s, &Command{Txn: &TxnRequest{Success: puts}})
	if res.Err != nil {
		t.Fatalf("txn of 2000 puts under MaxTxnOps 5000: %v", res.Err)
	}
	if got := mustRange(t, s, &RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true}).Count; got != 2000 {
		t.Fatalf("count after the txn: %d, want 2000", got)
	}
	nest := func(depth int) *Command {
		txn := &TxnRequest{}
		for range depth - 1 {
			txn = &TxnRequest{Success: []RequestOp{{Txn: txn}}}
		}
		return &Command{Txn: txn}
	}
	if err := s.Check(nest(maxTxnDepth)); err != nil {
		t.Fatalf("txn nested %d deep: %v", maxTxnDepth, err)
	}
	if _, err := nest(maxTxnDepth).Encode(); err != nil {
		t.Fatalf("encoding a txn nested %d deep: %v", maxTxnDepth, err)
	}
	if err := s.Check(nest(maxTxnDepth + 1)); err != ErrTooManyOps {
		t.Fatalf("txn nested %d deep: %v, want %v", maxTxnDepth+1, err, ErrTooManyOps)
	}
}

func TestTxnDuplicateKeys(t *testing.T) {
	s := newTestStore(t, Config{})
	nested := func(then, els []RequestOp) RequestOp {
		return txnOp(&TxnRequest{Success: then, Failure: els})
	}
	for _, tc := range []struct {
		name string
		ops  []RequestOp
		want error
	}{
		{"put twice", []RequestOp{putOp("a", "1"), putOp("a", "2")}, ErrDuplicateKey},
		{"put and delete", []RequestOp{putOp("a", "1"), delOp("a", "")}, ErrDuplicateKey},
		{"delete then put", []RequestOp{delOp("a", ""), putOp("a", "1")}, ErrDuplicateKey},
		{"put in deleted range", []RequestOp{delOp("a", "c"), putOp("b", "1")}, ErrDuplicateKey},
		{"put at range end", []RequestOp{delOp("a", "c"), putOp("c", "1")}, nil},
		{"put under a from-key delete", []RequestOp{delOp("a", "\x00"), putOp("b", "1")}, nil}, // etcd's blind spot
		{"two deletes", []RequestOp{delOp("a", "z"), delOp("a", "")}, nil},
		{"nested put vs outer put", []RequestOp{putOp("a", "1"), nested([]RequestOp{putOp("a", "2")}, nil)}, ErrDuplicateKey},
		{"nested put vs outer delete", []RequestOp{delOp("a", "b"), nested([]RequestOp{putOp("a", "2")}, nil)}, ErrDuplicateKey},
		{"nested delete vs outer put", []RequestOp{putOp("a", "1"), nested(nil, []RequestOp{delOp("a", "")})}, ErrDuplicateKey},
		{"then and else put the same key", []RequestOp{nested([]RequestOp{putOp("a", "1")}, []RequestOp{putOp("a", "2")})}, nil},
		{"two nested txns put the same key", []RequestOp{nested([]RequestOp{putOp("a", "1")}, nil), nested(nil, []RequestOp{putOp("a", "2")})}, ErrDuplicateKey},
		{"nested delete before nested put", []RequestOp{nested([]RequestOp{delOp("a", "")}, nil), nested([]RequestOp{putOp("a", "1")}, nil)}, ErrDuplicateKey},
		{"nested put before nested delete", []RequestOp{nested([]RequestOp{putOp("a", "1")}, nil), nested([]RequestOp{delOp("a", "")}, nil)}, nil}, // etcd lets this through
	} {
		err := s.Check(&Command{Txn: &TxnRequest{Success: tc.ops}})
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v, want accepted", tc.name, err)
			}
			continue
		}
		if err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestTxnWritesThenDeletesSameKey(t *testing.T) {
	// etcd accepts a put in one nested txn and a delete of the key in a later
	// one; the key ends deleted, and both happen at one revision.
	s := newTestStore(t, Config{})
	mustTxn(t, s, &TxnRequest{Success: []RequestOp{
		txnOp(&TxnRequest{Success: []RequestOp{putOp("a", "1")}}),
		txnOp(&TxnRequest{Success: []RequestOp{delOp("a", "")}}),
	}})
	if get(t, s, "a", 0) != nil || s.Revision() != 2 {
		t.Fatalf("a visible or revision %d", s.Revision())
	}
	// A from-key delete and a later put of a key in its range: recreated at the
	// same revision with version 1.
	mustPut(t, s, "b", "1") // 3
	mustTxn(t, s, &TxnRequest{Success: []RequestOp{delOp("a", "\x00"), putOp("b", "2")}})
	wantKV(t, "recreated in the txn that deleted it", get(t, s, "b", 0), "b", "2", 4, 4, 1)
	if snap, err := s.Snapshot(); err != nil {
		t.Fatal(err)
	} else if err := newTestStore(t, Config{}).Restore(snap); err != nil {
		t.Fatalf("restore of same-revision history: %v", err)
	}
}
