package server

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"raftkv/kv"
)

// hashKVEventually asks m for HashKV(rev) until m has applied rev.
func hashKVEventually(t *testing.T, m *testMember, rev int64) *pb.HashKVResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := pb.NewMaintenanceClient(m.conn).HashKV(ctx, &pb.HashKVRequest{Revision: rev})
		cancel()
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("HashKV(%d) on %s: %v", rev, m.cfg.Name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// HashKV at one revision is the same on every member, stays the same as writes go on,
// and answers etcd's errors for a compacted or future revision.
func TestHashKVSameOnEveryMember(t *testing.T) {
	members := startTestCluster(t, 3, nil)
	var rev int64
	put := func(k, v string) {
		retry(t, func(ctx context.Context) error {
			resp, err := members[0].client.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
			if err == nil {
				rev = resp.Header.Revision
			}
			return err
		})
	}
	for i := range 20 {
		put(string(rune('a'+i%5)), string(rune('0'+i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := members[0].client.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	compactAt := rev - 5
	if _, err := members[0].client.Compact(ctx, &pb.CompactionRequest{Revision: compactAt, Physical: true}); err != nil {
		t.Fatal(err)
	}
	put("c", "after")
	hashRev := rev
	first := hashKVEventually(t, members[0], hashRev)
	if first.CompactRevision != compactAt || first.HashRevision != hashRev {
		t.Fatalf("HashKV(%d): compact_revision %d hash_revision %d, want %d and %d",
			hashRev, first.CompactRevision, first.HashRevision, compactAt, hashRev)
	}
	for _, m := range members[1:] {
		got := hashKVEventually(t, m, hashRev)
		if got.Hash != first.Hash || got.CompactRevision != first.CompactRevision {
			t.Fatalf("%s: HashKV(%d) = %08x (compacted %d), %s says %08x (compacted %d)",
				m.cfg.Name, hashRev, got.Hash, got.CompactRevision, members[0].cfg.Name, first.Hash, first.CompactRevision)
		}
	}
	// Later writes leave the hash at hashRev alone, and change the current one.
	put("d", "later")
	if again := hashKVEventually(t, members[1], hashRev); again.Hash != first.Hash {
		t.Fatalf("HashKV(%d) changed from %08x to %08x after a later write", hashRev, first.Hash, again.Hash)
	}
	// members[0] took the put, so has applied it; HashKV(0) hashes up to it.
	now := hashKVEventually(t, members[0], 0)
	if now.Hash == first.Hash || now.HashRevision != rev {
		t.Fatalf("HashKV(0) = %08x at revision %d; want a new hash at revision %d", now.Hash, now.HashRevision, rev)
	}
	if other := hashKVEventually(t, members[1], rev); other.Hash != now.Hash {
		t.Fatalf("HashKV(%d): %08x on %s, %08x on %s", rev, now.Hash, members[0].cfg.Name, other.Hash, members[1].cfg.Name)
	}

	mc := pb.NewMaintenanceClient(members[0].conn)
	_, err := mc.HashKV(ctx, &pb.HashKVRequest{Revision: compactAt - 1})
	if st, _ := status.FromError(err); st.Code() != codes.OutOfRange || st.Message() != "etcdserver: mvcc: required revision has been compacted" {
		t.Fatalf("HashKV below the compaction: %v", err)
	}
	_, err = mc.HashKV(ctx, &pb.HashKVRequest{Revision: rev + 100})
	if st, _ := status.FromError(err); st.Code() != codes.OutOfRange || st.Message() != "etcdserver: mvcc: required revision is a future revision" {
		t.Fatalf("HashKV of a future revision: %v", err)
	}
	if _, err := mc.Hash(ctx, &pb.HashRequest{}); err != nil {
		t.Fatalf("Hash: %v", err)
	}
}

// The hashes see every part of a revision: a value, a lease, a create revision.
func TestHashKVSeesEveryField(t *testing.T) {
	build := func(mutate func(s *kv.Store)) (kvHash, uint32) {
		s, err := kv.NewStore(kv.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		apply := func(cmd *kv.Command) {
			if res := s.ApplyCommand(s.AppliedIndex()+1, cmd); res.Err != nil {
				t.Fatal(res.Err)
			}
		}
		apply(&kv.Command{Put: &kv.PutRequest{Key: []byte("a"), Value: []byte("1")}})
		apply(&kv.Command{Put: &kv.PutRequest{Key: []byte("b"), Value: []byte("2")}})
		mutate(s)
		view, err := s.SnapshotView()
		if err != nil {
			t.Fatal(err)
		}
		defer view.Release()
		h, err := hashKVView(view, 0)
		if err != nil {
			t.Fatal(err)
		}
		all, err := hashAll(view)
		if err != nil {
			t.Fatal(err)
		}
		return h, all
	}
	put := func(k, v string) func(*kv.Store) {
		return func(s *kv.Store) {
			s.ApplyCommand(s.AppliedIndex()+1, &kv.Command{Put: &kv.PutRequest{Key: []byte(k), Value: []byte(v)}})
		}
	}
	base, baseAll := build(put("c", "3"))
	if again, againAll := build(put("c", "3")); again != base || againAll != baseAll {
		t.Fatalf("the same writes hashed to %+v/%08x and %+v/%08x", base, baseAll, again, againAll)
	}
	for name, mutate := range map[string]func(*kv.Store){
		"another value": put("c", "4"),
		"another key":   put("d", "3"),
		"a delete": func(s *kv.Store) {
			s.ApplyCommand(s.AppliedIndex()+1, &kv.Command{DeleteRange: &kv.DeleteRangeRequest{Key: []byte("a")}})
		},
	} {
		h, all := build(mutate)
		if h.hash == base.hash || all == baseAll {
			t.Errorf("%s: hash %08x/%08x, the same as the base's", name, h.hash, all)
		}
	}
}
