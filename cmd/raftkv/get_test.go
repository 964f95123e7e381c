package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestGetPagesThroughARange: a prefix larger than one page comes out whole, in order,
// once; --limit stops it; and the pages are read at one revision (a key written
// after the first page is not in the listing).
func TestGetPagesThroughARange(t *testing.T) {
	m := startMembers(t, 1)[0]
	kv := pb.NewKVClient(dialTest(t, m.endpoint))
	const n = 1500 // firstPageKeys, then 4x per page: 16 + 64 + 256 + 1024 + the rest
	var want strings.Builder
	for i := range n {
		key, value := fmt.Sprintf("page/%05d", i), fmt.Sprintf("v%d", i)
		put(t, kv, key, value)
		fmt.Fprintf(&want, "%s\n%s\n", key, value)
	}
	put(t, kv, "paged", "not under the prefix")

	stdout, stderr, code := runCLI(t, nil, "get", "page/", "--prefix", "--endpoints", m.endpoint)
	if code != 0 || stdout != want.String() {
		t.Fatalf("get --prefix of %d keys: exit %d, stderr %q, %d bytes of output, want %d", n, code, stderr, len(stdout), want.Len())
	}
	stdout, _, code = runCLI(t, nil, "get", "page/", "--prefix", "--limit", "100", "--keys-only", "--endpoints", m.endpoint)
	if lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n"); code != 0 || len(lines) != 200 || lines[198] != "page/00099" {
		t.Fatalf("--limit 100 --keys-only: exit %d, %d lines, last key %q", code, len(lines), lines[len(lines)-2])
	}

	// A page printed, then a write under the prefix: the pages after the first must
	// not see it, since they read at the first page's revision.
	var out bytes.Buffer
	p := &pager{key: []byte("page/"), end: prefixEnd([]byte("page/")), pageKeys: 10,
		print: func(resp *pb.RangeResponse) error {
			if out.Len() == 0 {
				put(t, kv, "page/99999", "written after the first page")
			}
			for _, kv := range resp.Kvs {
				fmt.Fprintf(&out, "%s\n%s\n", kv.Key, kv.Value)
			}
			return nil
		}}
	if err := p.run(t.Context(), kv); err != nil || out.String() != want.String() {
		t.Fatalf("a listing with a write after its first page: %v; it has %d bytes, want %d (the write must not show)", err, out.Len(), want.Len())
	}
}

func put(t *testing.T, kv pb.KVClient, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte(value)}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// TestGetOfA200MBStore: raftkv get "" --prefix on a store of 200 MB, which is 50
// times gRPC's default receive limit, prints every key and value, in pages.
func TestGetOfA200MBStore(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MB; skipped with -short")
	}
	m := startMembers(t, 1)[0]
	kv := pb.NewKVClient(dialTest(t, m.endpoint))
	const (
		valueBytes = 512 << 10
		keys       = 400 // 400 x 512 KiB = 200 MiB
		writers    = 8
	)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < keys; i += writers {
				put(t, kv, fmt.Sprintf("big/%04d", i), valueOf(i, valueBytes))
			}
		})
	}
	wg.Wait()
	t.Logf("wrote %d MiB in %v", keys*valueBytes>>20, time.Since(start).Round(time.Millisecond))

	want := sha256.New()
	for i := range keys {
		fmt.Fprintf(want, "big/%04d\n%s\n", i, valueOf(i, valueBytes))
	}
	got := &countingHash{Hash: sha256.New()}
	var stderr bytes.Buffer
	start = time.Now()
	code := run([]string{"get", "", "--prefix", "--endpoints", m.endpoint, "--command-timeout", "2m"}, nil, got, &stderr)
	t.Logf("get --prefix printed %d MiB in %v", got.n>>20, time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("get \"\" --prefix of a 200 MiB store: exit %d: %s", code, stderr.String())
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("get \"\" --prefix printed %d bytes that differ from the %d keys written", got.n, keys)
	}
}

// valueOf is key i's value: its index, then filler.
func valueOf(i, size int) string {
	prefix := fmt.Sprintf("value-%d-", i)
	return prefix + strings.Repeat(string(rune('a'+i%26)), size-len(prefix))
}

type countingHash struct {
	hash.Hash
	n int
}

func (c *countingHash) Write(b []byte) (int, error) {
	c.n += len(b)
	return c.Hash.Write(b)
}
