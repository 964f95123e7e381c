package kv

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// newTestStore returns a store whose engine is in a directory, as the server's
// is; newTestStoreOn chooses.
func newTestStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	return newTestStoreOn(t, cfg, "file")
}

// backends are the file systems a store's engine can be on, by the name
// newTestStoreOn takes: the operating system's, and pebble's in memory. Unless
// cfg says otherwise, the one in memory separates every value of 2 bytes or more
// (Config.SeparateValueBytes), so that tests run on both backends read values
// of both kinds: the tests' values are mostly shorter than the default's 128.
var backends = []string{"file", "mem"}

func newTestStoreOn(t testing.TB, cfg Config, backend string) *Store {
	t.Helper()
	var s *Store
	var err error
	switch backend {
	case "file":
		s, err = OpenStore(cfg, t.TempDir())
	case "mem":
		if cfg.SeparateValueBytes == 0 {
			cfg.SeparateValueBytes = 2
		}
		s, err = NewStore(cfg)
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	if err != nil {
		t.Fatalf("new %s store (%+v): %v", backend, cfg, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// apply encodes cmd and applies it at the next log index, as the server would.
func apply(t testing.TB, s *Store, cmd *Command) Result {
	t.Helper()
	data, err := cmd.Encode()
	if err != nil {
		t.Fatalf("Encode(%+v): %v", cmd, err)
	}
	return s.Apply(s.AppliedIndex()+1, data)
}

func mustPut(t testing.TB, s *Store, key, value string) *PutResponse {
	t.Helper()
	res := apply(t, s, &Command{Put: &PutRequest{Key: []byte(key), Value: []byte(value)}})
	if res.Err != nil {
		t.Fatalf("put %q: %v", key, res.Err)
	}
	return res.Put
}

func mustDelete(t testing.TB, s *Store, key, rangeEnd string) *DeleteRangeResponse {
	t.Helper()
	res := apply(t, s, &Command{DeleteRange: &DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(rangeEnd)}})
	if res.Err != nil {
		t.Fatalf("delete %q..%q: %v", key, rangeEnd, res.Err)
	}
	return res.DeleteRange
}

func mustTxn(t testing.TB, s *Store, txn *TxnRequest) *TxnResponse {
	t.Helper()
	res := apply(t, s, &Command{Txn: txn})
	if res.Err != nil {
		t.Fatalf("txn: %v", res.Err)
	}
	return res.Txn
}

func mustRange(t testing.TB, s *Store, r *RangeRequest) *RangeResponse {
	t.Helper()
	resp, err := s.Range(r)
	if err != nil {
		t.Fatalf("range %+v: %v", r, err)
	}
	return resp
}

// get returns the key at rev (0: current), or nil if it does not exist.
func get(t testing.TB, s *Store, key string, rev int64) *KeyValue {
	t.Helper()
	resp := mustRange(t, s, &RangeRequest{Key: []byte(key), Revision: rev})
	if len(resp.Kvs) == 0 {
		return nil
	}
	return &resp.Kvs[0]
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func keysOf(kvs []KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

func wantErr(t testing.TB, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: error %v, want %v", what, got, want)
	}
}

func wantKV(t testing.TB, what string, got *KeyValue, key, value string, create, mod, version int64) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: key %q missing", what, key)
	}
	if string(got.Key) != key || !bytes.Equal(got.Value, bytesOrNil(value)) ||
		got.CreateRevision != create || got.ModRevision != mod || got.Version != version {
		t.Fatalf("%s: got %q=%q create %d mod %d version %d, want %q=%q create %d mod %d version %d",
			what, got.Key, got.Value, got.CreateRevision, got.ModRevision, got.Version,
			key, value, create, mod, version)
	}
}

func putOp(key, value string) RequestOp {
	return RequestOp{Put: &PutRequest{Key: []byte(key), Value: bytesOrNil(value)}}
}

func delOp(key, rangeEnd string) RequestOp {
	return RequestOp{DeleteRange: &DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(rangeEnd)}}
}

func rangeOp(key, rangeEnd string) RequestOp {
	return RequestOp{Range: &RangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(rangeEnd)}}
}

func txnOp(txn *TxnRequest) RequestOp { return RequestOp{Txn: txn} }

// engineRecords prints every record of the store's engine but the position
// record (the applied index moves with every entry).
func engineRecords(t testing.TB, s *Store) string {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, err := s.mu.st.e.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var b strings.Builder
	for valid := it.First(); valid; valid = it.Next() {
		if bytes.Equal(it.Key(), metaPosition) {
			continue
		}
		fmt.Fprintf(&b, "%q=%q ", it.Key(), it.Value())
	}
	return b.String()
}

// keyHistories returns every key's retained history, from a SnapshotView.
func keyHistories(t testing.TB, s *Store) []*KeyHistory {
	t.Helper()
	v, err := s.SnapshotView()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	var out []*KeyHistory
	if err := v.EachKey(func(h *KeyHistory) error { out = append(out, h); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// bytesAllocated returns the bytes the process allocated while f ran.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
