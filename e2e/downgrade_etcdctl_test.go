package e2e

import (
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
)

// etcdctl downgrade prints the same against raftkv as against etcd 3.7.3 for what
// does not depend on downgrading: the errors for a target that is not a version or
// not 3.6, the missing argument, and a cancel's success. A validate or enable of
// 3.6, which etcd takes, raftkv refuses saying why and what to do instead.
func TestEtcdctlDowngradeAsEtcd(t *testing.T) {
	t.Parallel()
	bin := etcdctlBinary(t)
	ctls := []etcdctl{
		{t: t, bin: bin, endpoints: []string{startEtcd(t, func(cfg *embed.Config) { cfg.TickMs, cfg.ElectionMs = 10, 100 })}},
		{t: t, bin: bin, endpoints: []string{hostPort(startRaftkv(t, 1, 0)[0].clientURL)}},
	}
	run := func(ctl etcdctl, args []string) string {
		stdout, stderr, err := ctl.run("", args...)
		exit := "exit 0"
		if err != nil {
			exit = err.Error()
		}
		return "stdout:\n" + stdout + "stderr:\n" + withoutClientLogs(stderr) + exit
	}
	for _, args := range [][]string{
		{"downgrade", "validate", "bad"},
		{"downgrade", "validate", "v3.6"},
		{"downgrade", "validate", "3.5"},
		{"downgrade", "enable", "3.8.0"},
		{"downgrade", "validate"},
		{"downgrade", "cancel"},
	} {
		etcd, raftkv := run(ctls[0], args), run(ctls[1], args)
		if etcd != raftkv {
			t.Errorf("etcdctl %s:\n--- etcd:\n%s\n--- raftkv:\n%s", strings.Join(args, " "), etcd, raftkv)
		}
	}
	for _, verb := range []string{"validate", "enable"} {
		args := []string{"downgrade", verb, "3.6"}
		if etcd := run(ctls[0], args); !strings.Contains(etcd, "Downgrade "+verb+" success, cluster version 3.7\n") {
			t.Errorf("etcdctl %s against etcd: %s", strings.Join(args, " "), etcd)
		}
		raftkv := run(ctls[1], args)
		if !strings.Contains(raftkv, "Error: rpc error: code = Unimplemented desc = raftkv cannot downgrade to 3.6: it has one storage version") ||
			!strings.Contains(raftkv, "raftkv snapshot to-etcd") || strings.HasSuffix(raftkv, "exit 0") {
			t.Errorf("etcdctl %s against raftkv, want the refusal: %s", strings.Join(args, " "), raftkv)
		}
	}
}
