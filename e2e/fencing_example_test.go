package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"raftkv/server"
)

// Example_fencing shows why a lock held through a lease needs fencing, and the two
// ways to fence with the lock's revision.
//
// Holder A takes the lock, then pauses (a GC pause, a stopped VM) past its lease's
// TTL: its keep-alives stop, the lease expires, and the lock key with it. Holder B
// takes the lock. A wakes up believing it still holds the lock. Both of A's writes
// are refused:
//
//   - a write to raftkv itself, in a Txn that compares the lock key's create
//     revision (Mutex.IsOwner: the key Mutex.Key still exists, created at the
//     revision the lock was queued at): A's key was deleted with its lease, so the
//     compare fails and nothing is written;
//   - a write to another service, which A passes the revision at which it got the
//     lock (Mutex.Header().Revision) as a fencing token: each holder gets the lock
//     at a later revision than the one before it, after that one's key was
//     deleted, so the service refuses a token lower than the highest it accepted.
func Example_fencing() {
	endpoint, stop := startExampleMember()
	defer stop()
	ctx := context.Background()
	newClient := func() *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			panic(err)
		}
		return cli
	}
	cliA, cliB := newClient(), newClient()
	defer cliA.Close()
	defer cliB.Close()
	storage := &fencedStorage{}

	// A locks with a session of the shortest TTL this member allows (1s).
	sessionA, _ := concurrency.NewSession(cliA, concurrency.WithTTL(1))
	lockA := concurrency.NewMutex(sessionA, "/locks/resource")
	if err := lockA.Lock(ctx); err != nil {
		panic(err)
	}
	tokenA := lockA.Header().Revision // the revision at which A got the lock
	fmt.Println("A holds the lock; fencing token", tokenA)
	fmt.Println("A writes the service:", storage.write(tokenA, "from A"))

	// A pauses: nothing renews its lease while it sleeps.
	sessionA.Orphan()

	// B waits for the lock, which it gets once A's lease has expired and A's key was
	// deleted with it.
	sessionB, _ := concurrency.NewSession(cliB, concurrency.WithTTL(10))
	defer sessionB.Close()
	lockB := concurrency.NewMutex(sessionB, "/locks/resource")
	if err := lockB.Lock(ctx); err != nil {
		panic(err)
	}
	tokenB := lockB.Header().Revision
	fmt.Println("B holds the lock; fencing token", tokenB)
	fmt.Println("B writes raftkv:", fencedPut(ctx, cliB, lockB, "resource", "from B"))
	fmt.Println("B writes the service:", storage.write(tokenB, "from B"))

	// A wakes up and acts on the lock it no longer holds: both writes are refused.
	fmt.Println("A writes raftkv:", fencedPut(ctx, cliA, lockA, "resource", "from A"))
	fmt.Println("A writes the service:", storage.write(tokenA, "from A"))

	resp, _ := cliB.Get(ctx, "resource")
	fmt.Printf("resource = %q\n", resp.Kvs[0].Value)
	// Output:
	// A holds the lock; fencing token 2
	// A writes the service: accepted
	// B holds the lock; fencing token 4
	// B writes raftkv: accepted
	// B writes the service: accepted
	// A writes raftkv: refused: the lock key is gone or not ours
	// A writes the service: refused: token 2 is older than 4
	// resource = "from B"
}

// fencedPut writes key only if the caller still holds the lock: Mutex.IsOwner
// compares the create revision of the caller's lock key with the one it was created
// at, which a lock lost to an expired lease fails, its key deleted with the lease.
func fencedPut(ctx context.Context, cli *clientv3.Client, lock *concurrency.Mutex, key, value string) string {
	resp, err := cli.Txn(ctx).
		If(lock.IsOwner()).
		Then(clientv3.OpPut(key, value)).
		Commit()
	switch {
	case err != nil:
		return "error: " + err.Error()
	case !resp.Succeeded:
		return "refused: the lock key is gone or not ours"
	}
	return "accepted"
}

// fencedStorage is a service outside raftkv that takes the lock's revision as a
// fencing token with each write, and refuses a token lower than the highest it has
// accepted: a holder that lost the lock has an older token than the one that took
// it after.
type fencedStorage struct {
	mu      sync.Mutex
	highest int64
	value   string
}

func (s *fencedStorage) write(token int64, value string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Sprintf("refused: token %d is older than %d", token, s.highest)
	}
	s.highest, s.value = token, value
	return "accepted"
}

// startExampleMember starts a single raftkv member in this process with short
// timings (a 100ms election timeout, so a 1s minimum lease TTL) and a fresh data
// dir, waits until it serves, and returns its client endpoint and how to stop it.
func startExampleMember() (endpoint string, stop func()) {
	dir, err := os.MkdirTemp("", "raftkv-example-")
	if err != nil {
		panic(err)
	}
	var urls [2]string // client, peer: ports that were free a moment ago
	for i := range urls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		urls[i] = "http://" + l.Addr().String()
		l.Close()
	}
	srv, err := server.New(server.Config{
		Name: "example", DataDir: filepath.Join(dir, "data"),
		ListenClientURLs: urls[:1], AdvertiseClientURLs: urls[:1],
		ListenPeerURLs: urls[1:], InitialCluster: map[string][]string{"example": urls[1:]},
		HeartbeatInterval: 10 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		panic(err)
	}
	endpoint = hostPort(urls[0])
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	err = eventually(20*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "ready-probe")
		return err
	})
	if err != nil {
		panic(fmt.Sprintf("the example's member did not serve within 20s: %v", err))
	}
	return endpoint, func() {
		srv.Stop()
		os.RemoveAll(dir)
	}
}
