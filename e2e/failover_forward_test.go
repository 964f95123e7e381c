package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestWritesThroughFollowersDuringFailover kills the leader of a 3-member cluster of
// raftkv processes (default timings) with SIGKILL and at once sends writes through
// both survivors. Each must succeed within maxFailover (3s), and each must have
// applied once (version 1). A follower that forwarded a write to the dead leader sends
// it again to the new one; before that, such a write waited for the whole request
// timeout (7s) and failed.
func TestWritesThroughFollowersDuringFailover(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3)
	for round := range 2 {
		lead := c.leader(10 * time.Second)
		alive := []*procMember{}
		for _, m := range c.members {
			if m != lead {
				alive = append(alive, m)
			}
		}
		c.kill(lead)
		killed := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for _, m := range alive {
			for i := range 5 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("failover%d/%s/%d", round, m.name, i)
					ctx, cancel := context.WithTimeout(context.Background(), maxFailover)
					defer cancel()
					if _, err := m.client.Put(ctx, key, "v"); err != nil {
						errs <- fmt.Errorf("put %s through %s, %v after the kill: %w", key, m.name,
							time.Since(killed).Round(time.Millisecond), err)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("round %d: 10 writes through the survivors %v done %v after killing leader %s",
			round, names(alive), time.Since(killed).Round(time.Millisecond), lead.name)
		for _, m := range alive {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := m.client.Get(ctx, fmt.Sprintf("failover%d/", round), clientv3.WithPrefix())
			cancel()
			if err != nil {
				t.Fatalf("reading the writes back through %s: %v", m.name, err)
			}
			if len(resp.Kvs) != 10 {
				t.Fatalf("%s has %d of the 10 writes", m.name, len(resp.Kvs))
			}
			for _, kv := range resp.Kvs {
				if kv.Version != 1 {
					t.Fatalf("%s: %s applied %d times", m.name, kv.Key, kv.Version)
				}
			}
		}
		c.start(lead)
		c.waitWritable(c.members, 30*time.Second)
	}
}
