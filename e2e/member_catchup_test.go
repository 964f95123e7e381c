package e2e

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var catchupMiB = flag.Int("members.catchup-mib", 0, "TestMemberLearnerCatchUpTime: MiB of data the learner catches up on (0 skips the test)")

// TestMemberLearnerCatchUpTime measures how long a learner takes to catch up on a
// store of -members.catchup-mib MiB (64 KiB values) and be promoted: from its start
// until MemberPromote succeeds, and the term before and after (each new term is an
// election). A figure, not a check: it is skipped unless the flag
// is set, e.g. go test -run TestMemberLearnerCatchUpTime -members.catchup-mib 256.
func TestMemberLearnerCatchUpTime(t *testing.T) {
	t.Parallel()
	if *catchupMiB <= 0 {
		t.Skip("set -members.catchup-mib to measure")
	}
	c := startProcCluster(t, 3)
	value := strings.Repeat("v", 64<<10)
	keys := *catchupMiB * 16
	began := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < keys; i += 8 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.members[i%3].client.Put(ctx, fmt.Sprintf("big/%07d", i), value)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("wrote %d MiB (%d keys of 64 KiB) in %v", *catchupMiB, keys, time.Since(began).Round(time.Millisecond))
	learner := c.newJoiner("m4", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := c.members[0].client.MemberAddAsLearner(ctx, []string{learner.peerURL})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	learner.args = append(learner.args, "--initial-cluster", initialClusterOf(resp, "m4"))
	termBefore := statusTerm(t, c.members[0])
	started := time.Now()
	c.start(learner)
	err = eventually(10*time.Minute, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.members[0].client.MemberPromote(ctx, resp.Member.ID)
		return err
	})
	if err != nil {
		t.Fatalf("the learner was not promoted: %v", err)
	}
	t.Logf("learner caught up on %d MiB and was promoted %v after it started; the term went from %d to %d meanwhile",
		*catchupMiB, time.Since(started).Round(time.Millisecond), termBefore, statusTerm(t, c.members[0]))
	// How it went: the snapshot lines of the learner's log and of the others'.
	for _, m := range c.members {
		var lines []string
		for _, l := range strings.Split(tail(m.logPath, 100000), "\n") {
			if strings.Contains(l, "snapshot") && !strings.Contains(l, "storage opened") && len(lines) < 12 {
				lines = append(lines, l)
			}
		}
		t.Logf("%s's snapshot log lines:\n%s", m.name, strings.Join(lines, "\n"))
	}
	// The promotion answered on members[0]; the learner serves a linearizable read
	// once it has applied it too (until then it refuses it, as etcd's learners do).
	err = eventually(30*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := learner.client.Get(ctx, "big/", clientv3WithPrefixCountOnly()...)
		if err == nil && got.Count != int64(keys) {
			return fmt.Errorf("the promoted learner holds %d keys, want %d", got.Count, keys)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func statusTerm(t *testing.T, m *procMember) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := m.client.Status(ctx, hostPort(m.clientURL))
	if err != nil {
		t.Fatalf("status of %s: %v", m.name, err)
	}
	return st.RaftTerm
}
