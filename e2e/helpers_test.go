package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// binDir holds the binaries the tests build (raftkv, etcdctl), once per test run.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "raftkv-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: creating a directory for test binaries: %v\n", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var builds struct {
	mu   sync.Mutex
	done map[string]error
}

// buildBinary runs `go build` for pkg (an import path resolved by this module's
// go.mod) into binDir/name, once per test run, and returns the binary's path.
// raftkv comes from the main module through the replace directive; etcdctl is a
// tool dependency in go.mod, so both build on a clean machine from the module proxy.
func buildBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.done == nil {
		builds.done = map[string]error{}
	}
	path := filepath.Join(binDir, name)
	err, built := builds.done[name]
	if !built {
		goTool, lookErr := exec.LookPath("go")
		if lookErr != nil {
			t.Fatalf("cannot build %s: the go command is not on PATH: %v", pkg, lookErr)
		}
		// A cold module and build cache makes etcdctl the slowest build; bound it all the same.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, goTool, "build", "-buildvcs=false", "-o", path, pkg)
		out, runErr := cmd.CombinedOutput()
		if runErr != nil {
			err = fmt.Errorf("go build -o %s %s: %v\n%s", path, pkg, runErr, out)
		} else {
			t.Logf("built %s from %s in %v", name, pkg, time.Since(start).Round(time.Millisecond))
		}
		builds.done[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func raftkvBinary(t *testing.T) string { return buildBinary(t, "raftkv", "raftkv/cmd/raftkv") }

func etcdctlBinary(t *testing.T) string {
	return buildBinary(t, "etcdctl", "go.etcd.io/etcd/etcdctl/v3")
}

// newClient returns a clientv3 client of the endpoints, closed when the test ends.
func newClient(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// hostPort strips the scheme of a URL like http://127.0.0.1:2379.
func hostPort(url string) string {
	return strings.TrimPrefix(url, "http://")
}

// eventually calls fn until it returns nil or timeout passes, and returns fn's last
// error (nil on success).
func eventually(timeout, pause time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause)
	}
}
