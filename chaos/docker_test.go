package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The suite drives Docker through its command line rather than the Engine's Go SDK:
// every fault is then one command an operator can replay by hand (the test logs each
// one), the calls are few (tens per fault, each ~50 ms against faults held for
// seconds), and the SDK would add the moby module tree to this module for them.

// dockerCallTimeout bounds one docker command, so a hung daemon fails the test with
// the command's name instead of hanging it until go test's timeout.
const dockerCallTimeout = 60 * time.Second

// docker runs the docker CLI and returns its trimmed stdout; an error carries the
// command and its stderr.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerCallTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// requireDocker skips the test when no Docker engine answers, except under CI, where
// a missing engine is a broken CI machine and fails the test.
func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		skipOrFail(t, "the docker command is not on PATH: %v", err)
	}
	if _, err := docker(context.Background(), "version", "--format", "{{.Server.Version}}"); err != nil {
		skipOrFail(t, "no Docker engine answers: %v", err)
	}
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so this cannot be skipped: "+format, args...)
	}
	t.Skipf("skipped: "+format, args...)
}

// newRunID returns a name prefix no other run uses: two runs at once, on this machine
// or by other sessions sharing its Docker engine, never see each other's containers,
// networks or images.
func newRunID(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("drawing a run id: %v", err)
	}
	return "rkc-" + hex.EncodeToString(b[:])
}

// runLabel marks every container, network and volume of the suite, with the run id as
// its value: `docker ps -a --filter label=raftkv.chaos` finds what an interrupted run
// (go test's timeout panics past t.Cleanup) left behind.
const runLabel = "raftkv.chaos"

var imageFlag = flag.String("chaos.image", "", "use this image instead of building one with deploy/image.sh (e.g. raftkv:dev)")

// testImage returns the image to run: -chaos.image, or one built by deploy/image.sh
// under a tag of this run's own, removed when the test ends.
func testImage(t *testing.T, runID string) string {
	t.Helper()
	if *imageFlag != "" {
		if _, err := docker(context.Background(), "image", "inspect", "--format", "{{.Id}}", *imageFlag); err != nil {
			t.Fatalf("-chaos.image %s: %v; build it with deploy/image.sh %s", *imageFlag, err, *imageFlag)
		}
		return *imageFlag
	}
	tag := "raftkv:" + runID
	script, err := filepath.Abs(filepath.Join("..", "deploy", "image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, script, tag).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, tag, err, out)
	}
	t.Logf("%s in %v", strings.TrimSpace(string(out)), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if _, err := docker(context.Background(), "image", "rm", "--force", tag); err != nil {
			t.Errorf("removing the test image: %v", err)
		}
	})
	return tag
}

// interrupted is cancelled by SIGINT or SIGTERM: the nemesis then heals its fault and
// stops, so that the test's cleanup removes what it created (a signal's default
// action would end the process before any t.Cleanup ran).
var interrupted context.Context

func TestMain(m *testing.M) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	interrupted = ctx
	code := m.Run()
	stop()
	os.Exit(code)
}
