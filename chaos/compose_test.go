package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCompose runs the README's container quickstart: deploy/image.sh, then
// deploy/compose.yaml up, etcdctl put through the first member's published port and
// get through the third's, a restart of the first member on its volume, and down -v,
// after which none of the project's containers, networks or volumes remains. It also
// checks what the image promises: a non-root user, /data a volume.
func TestCompose(t *testing.T) {
	requireDocker(t)
	compose := composeCommand(t)
	runID := newRunID(t)
	image := testImage(t, runID)

	imageConfig, err := docker(context.Background(), "image", "inspect", "--format",
		"{{.Config.User}} {{range $k, $v := .Config.Volumes}}{{$k}}{{end}} {{index .Config.Entrypoint 0}}", image)
	if err != nil {
		t.Fatal(err)
	}
	if want := "65532:65532 /data /raftkv"; imageConfig != want {
		t.Errorf("image %s: user, volumes and entrypoint are %q, want %q", image, imageConfig, want)
	}

	etcdctl := buildEtcdctl(t)
	ports := freePorts(t, 3)
	file, err := filepath.Abs(filepath.Join("..", "deploy", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "RAFTKV_IMAGE="+image, "RAFTKV_CLUSTER_TOKEN="+runID,
		fmt.Sprintf("RAFTKV_PORT_1=%d", ports[0]), fmt.Sprintf("RAFTKV_PORT_2=%d", ports[1]), fmt.Sprintf("RAFTKV_PORT_3=%d", ports[2]))
	run := func(name string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	composeArgs := func(args ...string) []string {
		return append(append(compose[1:], "--project-name", runID, "--file", file), args...)
	}
	down := func() error {
		_, err := run(compose[0], composeArgs("down", "--volumes", "--timeout", "5")...)
		return err
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := run(compose[0], composeArgs("logs", "--no-color", "--tail", "20")...); err == nil {
				t.Logf("the members' last log lines:\n%s", out)
			}
		}
		if err := down(); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	})
	if _, err := run(compose[0], composeArgs("up", "--detach")...); err != nil {
		t.Fatal(err)
	}

	endpoint := func(i int) string { return fmt.Sprintf("--endpoints=127.0.0.1:%d", ports[i]) }
	etcdctlUntil := func(want string, args ...string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, err := run(etcdctl, append([]string{"--command-timeout=2s"}, args...)...)
			if err == nil && out == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcdctl %s: got %q (%v) for 60s, want %q", strings.Join(args, " "), out, err, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	etcdctlUntil("OK\n", endpoint(0), "put", "foo", "bar")
	etcdctlUntil("foo\nbar\n", endpoint(2), "get", "foo")

	if _, err := run(compose[0], composeArgs("restart", "--timeout", "5", "raftkv-1")...); err != nil {
		t.Fatal(err)
	}
	etcdctlUntil("foo\nbar\n", endpoint(0), "get", "foo")

	if err := down(); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"container", "network", "volume"} {
		left, err := docker(context.Background(), kind, "ls", "--quiet", "--filter", "label=com.docker.compose.project="+runID)
		if kind == "container" {
			left, err = docker(context.Background(), "ps", "--all", "--quiet", "--filter", "label=com.docker.compose.project="+runID)
		}
		if err != nil {
			t.Fatal(err)
		}
		if left != "" {
			t.Errorf("after down --volumes, the project still has a %s: %s", kind, left)
		}
	}
}

// composeCommand returns the Compose command line: the docker compose plugin, or the
// older docker-compose tool (Debian's package of it is what this machine has).
func composeCommand(t *testing.T) []string {
	t.Helper()
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.Command("docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	skipOrFail(t, "neither `docker compose` nor `docker-compose` runs")
	return nil
}

// buildEtcdctl builds etcdctl, a tool dependency of this module, into a temp dir.
func buildEtcdctl(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "etcdctl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", path, "go.etcd.io/etcd/etcdctl/v3").CombinedOutput(); err != nil {
		t.Fatalf("building etcdctl: %v\n%s", err, out)
	}
	return path
}

// freePorts returns n ports free on the host's loopback right now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
