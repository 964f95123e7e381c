package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// addVoter adds a voter named name through cli (clientv3's MemberAdd, retried while
// the cluster is not ready for it), starts it with the --initial-cluster the answer
// gives, and waits until it takes a write and is listed started.
func addVoter(t *testing.T, c *procCluster, cli *clientv3.Client, name string, listed []string) *procMember {
	t.Helper()
	m := c.newJoiner(name, "")
	var resp *clientv3.MemberAddResponse
	err := eventually(30*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		resp, err = cli.MemberAdd(ctx, []string{m.peerURL})
		return err
	})
	if err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
	if !resp.Member.IsLearner && len(resp.Members) != len(listed)+1 {
		t.Fatalf("MemberAdd of %s answered %d members, want %d", name, len(resp.Members), len(listed)+1)
	}
	m.args = append(m.args, "--initial-cluster", initialClusterOf(resp, name))
	c.start(m)
	c.waitWritable([]*procMember{m}, 30*time.Second)
	waitListed(t, cli, append(listed, name)...)
	return m
}

// Grow 1 → 3 → 5 members and shrink 5 → 3 while clients read, write and
// compare-and-swap: each added member joins with --initial-cluster-state existing and
// an empty data dir, each removed one exits with status 3, and the history is
// linearizable with no acknowledged write lost.
func TestMemberGrowAndShrinkUnderLoad(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 1)
	w := startMemberWorkload(t, c.endpoints())
	admin := newClient(t, c.endpoints()...)
	names := []string{"m1"}
	time.Sleep(time.Second)
	for _, name := range []string{"m2", "m3", "m4", "m5"} {
		began := time.Now()
		addVoter(t, c, admin, name, names)
		names = append(names, name)
		w.setEndpoints(runningEndpoints(c))
		admin.SetEndpoints(runningEndpoints(c)...)
		t.Logf("%s added and serving %v after the MemberAdd", name, time.Since(began).Round(time.Millisecond))
		time.Sleep(500 * time.Millisecond)
	}
	for _, name := range []string{"m5", "m4"} {
		var victim *procMember
		for _, m := range c.members {
			if m.name == name {
				victim = m
			}
		}
		id := memberID(t, admin, name)
		names = names[:len(names)-1]
		var keep []string
		for _, m := range c.members {
			if m != victim && m.running() {
				keep = append(keep, hostPort(m.clientURL))
			}
		}
		w.setEndpoints(keep)
		admin.SetEndpoints(keep...)
		out, err := runEtcdctlChange(t, keep, "member", "remove", fmt.Sprintf("%x", id))
		if err != nil || !strings.Contains(out, fmt.Sprintf("Member %16x removed from cluster", id)) {
			t.Fatalf("etcdctl member remove %x: %v\n%s", id, err, out)
		}
		c.waitRemovedExit(victim, 15*time.Second)
		waitListed(t, admin, names...)
		time.Sleep(500 * time.Millisecond)
	}
	w.finish(c.members[0])
}

// Replace a SIGKILLed member the etcdctl way: member remove, member add of a fresh
// one on a new port, start it with the ETCD_ variables etcdctl printed and an empty
// data dir. Clients run throughout.
func TestMemberReplaceKilledMember(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3)
	w := startMemberWorkload(t, c.endpoints())
	time.Sleep(time.Second)
	dead := c.members[2]
	deadID := memberID(t, c.members[0].client, dead.name)
	c.kill(dead)
	live := []string{hostPort(c.members[0].clientURL), hostPort(c.members[1].clientURL)}
	w.setEndpoints(live)
	time.Sleep(500 * time.Millisecond)
	out, err := runEtcdctlChange(t, live, "member", "remove", fmt.Sprintf("%x", deadID))
	if err != nil {
		t.Fatalf("etcdctl member remove of the killed member: %v\n%s", err, out)
	}
	fresh := c.newJoiner("m4", "")
	out, err = runEtcdctlChange(t, live, "member", "add", "m4", "--peer-urls", fresh.peerURL)
	if err != nil {
		t.Fatalf("etcdctl member add: %v\n%s", err, out)
	}
	env := regexp.MustCompile(`(?m)^(ETCD_[A-Z_]+)="(.*)"$`).FindAllStringSubmatch(out, -1)
	if len(env) != 4 {
		t.Fatalf("etcdctl member add printed %q; want ETCD_NAME, ETCD_INITIAL_CLUSTER, ETCD_INITIAL_ADVERTISE_PEER_URLS and ETCD_INITIAL_CLUSTER_STATE", out)
	}
	for _, kv := range env {
		fresh.env = append(fresh.env, kv[1]+"="+kv[2])
	}
	// The flags newJoiner set that etcdctl's variables also set would be given twice.
	fresh.args = withoutFlags(fresh.args, "--name", "--initial-advertise-peer-urls", "--initial-cluster-state")
	c.start(fresh)
	c.waitWritable([]*procMember{fresh}, 30*time.Second)
	waitListed(t, c.members[0].client, "m1", "m2", "m4")
	w.setEndpoints(append(live, hostPort(fresh.clientURL)))
	time.Sleep(2 * time.Second)
	w.finish(fresh)
}

// withoutFlags drops each named flag and its value from args.
func withoutFlags(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		drop := false
		for _, n := range names {
			if args[i] == n {
				drop = true
			}
		}
		if drop {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// Remove the leader: it goes on leading until its removal commits, then steps down
// and exits with status 3; the other two elect a leader and clients go on.
func TestMemberRemoveTheLeader(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3)
	w := startMemberWorkload(t, c.endpoints())
	time.Sleep(time.Second)
	lead := c.leader(10 * time.Second)
	var rest []*procMember
	var restEndpoints []string
	for _, m := range c.members {
		if m != lead {
			rest = append(rest, m)
			restEndpoints = append(restEndpoints, hostPort(m.clientURL))
		}
	}
	w.setEndpoints(restEndpoints)
	id := memberID(t, rest[0].client, lead.name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := rest[0].client.MemberRemove(ctx, id)
	cancel()
	if err != nil {
		t.Fatalf("removing the leader %s: %v", lead.name, err)
	}
	if len(resp.Members) != 2 {
		t.Fatalf("after removing the leader, %d members listed", len(resp.Members))
	}
	c.waitRemovedExit(lead, 15*time.Second)
	c.waitWritable(rest, 10*time.Second)
	waitListed(t, rest[0].client, rest[0].name, rest[1].name)
	time.Sleep(time.Second)
	w.finish(rest[0])
}

// A learner added to a cluster that snapshots every 100 entries catches up by
// snapshot (the leader sends one), is refused promotion until then with etcd's
// error, and is promoted; clients run throughout.
func TestMemberLearnerCatchesUpBySnapshotAndIsPromoted(t *testing.T) {
	t.Parallel()
	c := startProcCluster(t, 3, "--snapshot-count", "100")
	w := startMemberWorkload(t, c.endpoints())
	for i := range 600 {
		if err := w.acked.put(c.members[i%3].client, fmt.Sprintf("acked/pre/%04d", i), "x", 5*time.Second); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	lead := c.leader(10 * time.Second)
	leadLog := fileSize(lead.logPath)
	learner := c.newJoiner("m4", "", "--snapshot-count", "100")
	out, err := runEtcdctlChange(t, c.endpoints()[:3], "member", "add", "m4", "--peer-urls", learner.peerURL, "--learner")
	if err != nil || !strings.Contains(out, "added as learner to cluster") {
		t.Fatalf("etcdctl member add --learner: %v\n%s", err, out)
	}
	id := regexp.MustCompile(`Member ([0-9a-f ]{16}) added`).FindStringSubmatch(out)
	learnerID := strings.TrimSpace(id[1])
	initial := regexp.MustCompile(`ETCD_INITIAL_CLUSTER="(.*)"`).FindStringSubmatch(out)
	out, err = runEtcdctl(t, c.endpoints()[:3], "member", "promote", learnerID)
	if err == nil || !strings.Contains(out, "etcdserver: can only promote a learner member which is in sync with leader") {
		t.Fatalf("promoting the learner before it started: %v\n%s", err, out)
	}
	learner.args = append(learner.args, "--initial-cluster", initial[1])
	began := time.Now()
	c.start(learner)
	err = eventually(60*time.Second, 200*time.Millisecond, func() error {
		out, err := runEtcdctl(t, c.endpoints()[:3], "member", "promote", learnerID)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "promoted in cluster") {
			return fmt.Errorf("printed %q", out)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("promoting the learner: %v", err)
	}
	t.Logf("learner promoted %v after it started", time.Since(began).Round(time.Millisecond))
	if !logContainsSince(lead.logPath, leadLog, "raft: sending snapshot") {
		t.Errorf("the leader %s did not log sending a snapshot to the learner", lead.name)
	}
	if !logContainsSince(learner.logPath, 0, "transport: snapshot received") {
		t.Errorf("the learner did not log receiving a snapshot")
	}
	out, err = runEtcdctl(t, c.endpoints()[:3], "member", "list")
	if err != nil || strings.Contains(out, ", true") || !strings.Contains(out, learnerID+", started, m4, "+learner.peerURL) {
		t.Fatalf("member list after the promotion: %v\n%s", err, out)
	}
	w.setEndpoints(runningEndpoints(c))
	time.Sleep(time.Second)
	w.finish(learner)
}
