package chaos

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"raftkv/chaos/kvmodel"
	"raftkv/chaos/watchcheck"
)

// finalReads reads every key of the workload with one linearizable range after the
// clients stopped and every fault was healed, and returns the values, the keys with
// their revisions and versions (for the watch verdict), and the read as one get per
// key of the history, for porcupine to check with the rest.
func finalReads(c *cluster, cli *clientv3.Client, history []porcupine.Operation, clientID int, now func() int64) (
	map[string]string, map[string]watchcheck.KeyState, []porcupine.Operation) {
	t := c.t
	deadline := time.Now().Add(recoveryTimeout)
	for {
		call := now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cli.Get(ctx, keyPrefix, clientv3.WithPrefix())
		cancel()
		ret := now()
		if err == nil && resp.More {
			t.Fatalf("the final read of prefix %s answered %d of %d keys (more=true); raise the members' --max-response-bytes",
				keyPrefix, len(resp.Kvs), resp.Count)
		}
		if err == nil {
			final, finalKeys := map[string]string{}, map[string]watchcheck.KeyState{}
			for _, kv := range resp.Kvs {
				final[string(kv.Key)] = string(kv.Value)
				finalKeys[string(kv.Key)] = watchcheck.KeyState{Value: string(kv.Value), ModRevision: kv.ModRevision,
					CreateRevision: kv.CreateRevision, Version: kv.Version}
			}
			keys := map[string]bool{}
			for _, op := range history {
				keys[op.Input.(kvmodel.Input).Key] = true
			}
			var ops []porcupine.Operation
			for _, key := range slices.Sorted(maps.Keys(keys)) {
				ops = append(ops, porcupine.Operation{ClientId: clientID, Call: call, Return: ret,
					Input: kvmodel.Input{Kind: kvmodel.Get, Key: key}, Output: kvmodel.Output{Value: final[key]}})
			}
			return final, finalKeys, ops
		}
		if time.Now().After(deadline) {
			t.Fatalf("the final read of every key failed for %v after the last heal: %v", recoveryTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// view is what a member holds, in a form two members can be compared by: the store's
// revision, every key with its create and mod revisions and version, and the values
// of the workload's keys.
func view(cli *clientv3.Client, serializable bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	all, err := cli.Get(ctx, "", opts...)
	if err != nil {
		return "", err
	}
	if all.More {
		return "", fmt.Errorf("a range over every key answered %d of %d keys (more=true)", len(all.Kvs), all.Count)
	}
	rev := all.Header.Revision
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d\n", rev)
	for _, kv := range all.Kvs {
		fmt.Fprintf(&b, "%s create %d mod %d version %d\n", kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version)
	}
	// At the same revision, so that the two reads see one state. A client of several
	// members may send this read to another member than the first: read
	// linearizably unless asked not to, so that it has applied rev.
	valueOpts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(rev)}
	if serializable {
		valueOpts = append(valueOpts, clientv3.WithSerializable())
	}
	values, err := cli.Get(ctx, keyPrefix, valueOpts...)
	if err != nil {
		return "", err
	}
	if values.More {
		return "", fmt.Errorf("a range over prefix %s answered %d of %d keys (more=true)", keyPrefix, len(values.Kvs), values.Count)
	}
	for _, kv := range values.Kvs {
		fmt.Fprintf(&b, "%s = %s\n", kv.Key, kv.Value)
	}
	return b.String(), nil
}

// checkConverged waits until every member holds what a linearizable read of the
// cluster returns, and returns how long that took; a member that does not within
// recoveryTimeout fails the run with the first line where it differs.
func checkConverged(c *cluster, cli *clientv3.Client) time.Duration {
	t := c.t
	start := time.Now()
	want, err := view(cli, false)
	if err != nil {
		t.Fatalf("reading the cluster's state for the convergence check: %v", err)
	}
	for _, m := range c.members {
		for {
			got, err := view(m.cli, true)
			if err == nil && got == want {
				break
			}
			if time.Since(start) > recoveryTimeout {
				if err != nil {
					t.Errorf("%s: reading its state for the convergence check: %v", m.name, err)
				} else {
					t.Errorf("%s does not hold what the cluster does after %v: %s", m.name, recoveryTimeout, firstDifference(got, want))
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return time.Since(start)
}

func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d is %q, the cluster's is %q", i+1, gl, wl)
		}
	}
	return "no difference"
}

// opCounts counts the history's calls by kind and outcome.
func opCounts(history []porcupine.Operation) map[string]int {
	counts := map[string]int{}
	for _, op := range history {
		in, out := op.Input.(kvmodel.Input), op.Output.(kvmodel.Output)
		kind := in.Kind.String()
		switch {
		case out.Unknown:
			kind += " unknown"
		case in.Kind == kvmodel.CAS && out.Succeeded:
			kind += " succeeded"
		case in.Kind == kvmodel.CAS:
			kind += " failed"
		}
		counts[kind]++
	}
	return counts
}

// setOutages fills in each record's Outage from the times the history's writes were
// acknowledged.
func setOutages(records []faultRecord, history []porcupine.Operation, historyStart time.Time) {
	var acks []int64
	for _, op := range history {
		in, out := op.Input.(kvmodel.Input), op.Output.(kvmodel.Output)
		if !out.Unknown && (in.Kind == kvmodel.Put || (in.Kind == kvmodel.CAS && out.Succeeded)) {
			acks = append(acks, op.Return)
		}
	}
	slices.Sort(acks)
	for i := range records {
		r := &records[i]
		records[i].Outage = longestGap(acks, int64(r.start.Sub(historyStart)), int64(r.recovered.Sub(historyStart)))
	}
}

// longestGap returns the longest interval of [from, to] that holds none of the sorted
// times.
func longestGap(sorted []int64, from, to int64) time.Duration {
	prev, longest := from, int64(0)
	i, _ := slices.BinarySearch(sorted, from)
	for ; i < len(sorted) && sorted[i] <= to; i++ {
		longest = max(longest, sorted[i]-prev)
		prev = sorted[i]
	}
	return time.Duration(max(longest, to-prev))
}

// recoveryTable is the figures of the faults by kind: how many, and the median and
// largest recovery times and outages.
func recoveryTable(records []faultRecord) string {
	byKind := map[faultKind][]faultRecord{}
	for _, r := range records {
		byKind[r.Kind] = append(byKind[r.Kind], r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-17s %5s %20s %20s %20s\n", "fault", "count", "write after heal", "victims back", "longest outage")
	fmt.Fprintf(&b, "%-17s %5s %20s %20s %20s\n", "", "", "median / max", "median / max", "median / max")
	for _, kind := range allFaultKinds {
		rs := byKind[kind]
		if len(rs) == 0 {
			continue
		}
		var writes, members, outages []time.Duration
		for _, r := range rs {
			writes = append(writes, r.WriteRecovery)
			members = append(members, r.MemberRecovery)
			outages = append(outages, r.Outage)
		}
		fmt.Fprintf(&b, "%-17s %5d %20s %20s %20s\n", kind, len(rs), medianMax(writes), medianMax(members), medianMax(outages))
	}
	return b.String()
}

func medianMax(ds []time.Duration) string {
	slices.Sort(ds)
	return fmt.Sprintf("%v / %v", ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}
