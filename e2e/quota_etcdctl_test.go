package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
)

// The space quota end to end with etcdctl, against raftkv processes and embedded
// etcd with the same quota: puts past it fail with etcd's error and raise NOSPACE,
// which alarm list shows; reads still work; delete, compact and defrag make room,
// alarm disarm clears the alarm and puts work again. etcdctl prints the same for
// both, once member ids and revisions are masked.
func TestEtcdctlQuotaNoSpace(t *testing.T) {
	t.Parallel()
	const quota = "262144"
	bin := etcdctlBinary(t)
	etcdEP := startEtcd(t, func(cfg *embed.Config) { cfg.QuotaBackendBytes = 262144 })
	c := startProcCluster(t, 3, "--quota-backend-bytes", quota)
	value := strings.Repeat("v", 4096)
	took := regexp.MustCompile(`took \S+`)
	numbers := regexp.MustCompile(`[0-9]+`)
	run := func(e etcdctl, stdin string, args ...string) string {
		t.Helper()
		out, stderr, err := e.run(stdin, args...)
		if err != nil {
			out += errorLine(stderr)
		}
		return numbers.ReplaceAllString(took.ReplaceAllString(out, "took T"), "N")
	}
	script := func(e etcdctl) []string {
		var out []string
		puts := 0
		for ; puts < 400; puts++ {
			_, stderr, err := e.run("", "put", fmt.Sprintf("k%03d", puts), value)
			if err != nil {
				out = append(out, "put past the quota: "+errorLine(stderr))
				break
			}
		}
		if puts == 400 {
			t.Fatalf("%v: 400 puts of 4 KiB under a 256 KiB quota all succeeded", e.endpoints)
		}
		out = append(out,
			"alarm list: "+run(e, "", "alarm", "list"),
			"get: "+run(e, "", "get", "k000", "--keys-only"),
			"put small: "+run(e, "", "put", "small", "x"))
		del := run(e, "", "del", "--prefix", "k")
		out = append(out, "del: "+del)
		rev := strings.TrimSpace(strings.Split(run2(t, e, "-w", "fields", "get", "small"), "\"Revision\" : ")[1])
		rev = strings.SplitN(rev, "\n", 2)[0]
		out = append(out,
			"compact: "+run(e, "", "compact", rev, "--physical"),
			"defrag: "+run(e, "", "defrag"),
			"disarm: "+run(e, "", "alarm", "disarm"),
			"alarm list after: "+run(e, "", "alarm", "list"),
			"put after: "+run(e, "", "put", "small", "x"))
		return out
	}
	etcdOut := script(etcdctl{t: t, bin: bin, endpoints: []string{etcdEP}})
	raftkvOut := script(etcdctl{t: t, bin: bin, endpoints: c.endpoints()[:1]})
	if strings.Join(etcdOut, "\n") != strings.Join(raftkvOut, "\n") {
		t.Fatalf("etcdctl against etcd:\n%s\n\nagainst raftkv:\n%s", strings.Join(etcdOut, "\n"), strings.Join(raftkvOut, "\n"))
	}
	t.Logf("etcdctl against both:\n%s", strings.Join(raftkvOut, "\n"))
}

// errorLine is etcdctl's "Error: ..." line, without the client's JSON logs.
func errorLine(stderr string) string {
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "Error: ") {
			return line
		}
	}
	return strings.TrimSpace(stderr)
}

func run2(t *testing.T, e etcdctl, args ...string) string {
	t.Helper()
	out, stderr, err := e.run("", args...)
	if err != nil {
		t.Fatalf("etcdctl %v: %v %s", args, err, stderr)
	}
	return out
}
