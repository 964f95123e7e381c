package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"raftkv/internal/testport"
	"raftkv/server"
)

// startEtcd starts a single-member embedded etcd on loopback with its data in a temp
// dir, and returns its client endpoint (host:port). It stops when the test ends.
// mutate, if given, changes the config before the start.
func startEtcd(t *testing.T, mutate ...func(*embed.Config)) string {
	t.Helper()
	// A port another process took between testport's check and etcd's bind (seen
	// once, after a go test ./... loop): start again on other ports, as startRaftkv
	// does.
	for attempt := 1; ; attempt++ {
		host, err := startEtcdOnce(t, mutate...)
		if err == nil {
			return host
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatalf("starting embedded etcd: %v", err)
		}
		t.Logf("starting embedded etcd (attempt %d): %v; again on other ports", attempt, err)
	}
}

// startEtcdOnce is startEtcd's one attempt; an error is one of the start itself.
func startEtcdOnce(t *testing.T, mutate ...func(*embed.Config)) (string, error) {
	t.Helper()
	ports := testport.Free(t, 2)
	clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[0]))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[1]))
	cfg := embed.NewConfig()
	cfg.Name = "oracle"
	cfg.Dir = t.TempDir()
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Only a crash of the oracle is worth printing; shutdown logs errors that are not.
	// A fatal log ends the whole test binary before any test's t.Log is printed, so
	// the hook names the test and how to replay it (logReplay) first.
	cfg.LogLevel = "panic"
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(
		zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(os.Stderr), zap.PanicLevel),
		zap.AddCaller(), zap.WithFatalHook(oracleFatal{test: t.Name()})))
	// The oracle never restarts, so its fsyncs buy nothing but time.
	cfg.UnsafeNoFsync = true
	for _, m := range mutate {
		m(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", err
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("embedded etcd failed while starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("embedded etcd was not ready within 30s")
	}
	return clientURL.Host, nil
}

// replays holds, by test name, the command that replays a seeded test that runs an
// oracle (logReplay), for oracleFatal to print.
var replays sync.Map

// logReplay logs how to replay the test's seeded run, and keeps it for oracleFatal.
func logReplay(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Log(msg)
	replays.Store(t.Name(), msg)
	t.Cleanup(func() { replays.Delete(t.Name()) })
}

// oracleFatal runs when the embedded etcd logs at fatal level, which is one of its
// own defects (e2e/README.md lists those met so far): it says which test's oracle
// died and how to replay that test, then ends the process as zap would.
type oracleFatal struct{ test string }

func (o oracleFatal) OnWrite(ce *zapcore.CheckedEntry, _ []zapcore.Field) {
	replay, _ := replays.Load(o.test)
	if replay == nil {
		replay = "(the test logged no replay command)"
	}
	fmt.Fprintf(os.Stderr, "e2e: the embedded etcd of %s stopped the test binary with a fatal error (%q, above); %s\n",
		o.test, ce.Message, replay)
	os.Exit(1)
}

// inProcessMember is one raftkv member run with server.New in the test process.
type inProcessMember struct {
	cfg       server.Config
	srv       *server.Server
	clientURL string
}

// restart stops the member and starts it again on its data dir, then waits until it
// serves a linearizable read.
func (m *inProcessMember) restart(t *testing.T) {
	t.Helper()
	m.srv.Stop()
	srv, err := server.New(m.cfg)
	if err != nil {
		t.Fatalf("restarting raftkv member %s: %v", m.cfg.Name, err)
	}
	t.Cleanup(srv.Stop)
	m.srv = srv
	waitServing(t, m.clientURL)
}

func waitServing(t *testing.T, clientURL string) {
	t.Helper()
	cli := newClient(t, hostPort(clientURL))
	defer cli.Close()
	err := eventually(20*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "ready-probe")
		return err
	})
	if err != nil {
		t.Fatalf("raftkv member at %s did not serve a linearizable read within 20s: %v", clientURL, err)
	}
}

// startRaftkv starts an n-member raftkv cluster in this process on loopback, with
// short timings and a snapshot every snapshotCount entries, and waits until every
// member serves a linearizable read. It does not write, so the store's revision is
// still 1 when it returns. mutate, if given, changes each member's config.
func startRaftkv(t *testing.T, n int, snapshotCount uint64, mutate ...func(*server.Config)) []*inProcessMember {
	t.Helper()
	dir := t.TempDir()
	// A port testport.Free found free can be taken before the member binds it (CI
	// saw it twice for TestAuthDifferential, with the tests parallel, cause not
	// found): the cluster then starts again on other ports.
	for attempt := 1; ; attempt++ {
		members, err := startRaftkvOn(testport.Free(t, 2*n), filepath.Join(dir, fmt.Sprint(attempt)), n, snapshotCount, mutate)
		if errors.Is(err, syscall.EADDRINUSE) && attempt < 3 {
			t.Logf("attempt %d: %v; starting again on other ports", attempt, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			t.Cleanup(m.srv.Stop)
		}
		for _, m := range members {
			waitServing(t, m.clientURL)
		}
		return members
	}
}

// startRaftkvOn starts n members on ports (client and peer port of each) with their
// data under dir; if one fails, it stops those it started and returns the error.
func startRaftkvOn(ports []int, dir string, n int, snapshotCount uint64, mutate []func(*server.Config)) ([]*inProcessMember, error) {
	initial := map[string][]string{}
	for i := range n {
		initial[fmt.Sprintf("m%d", i)] = []string{fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])}
	}
	members := make([]*inProcessMember, 0, n)
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		cfg := server.Config{
			Name:                name,
			DataDir:             filepath.Join(dir, name),
			ListenClientURLs:    []string{clientURL},
			AdvertiseClientURLs: []string{clientURL},
			ListenPeerURLs:      initial[name],
			InitialCluster:      initial,
			HeartbeatInterval:   10 * time.Millisecond,
			ElectionTimeout:     100 * time.Millisecond,
			SnapshotCount:       snapshotCount,
		}
		for _, m := range mutate {
			m(&cfg)
		}
		srv, err := server.New(cfg)
		if err != nil {
			for _, m := range members {
				m.srv.Stop()
			}
			return nil, fmt.Errorf("starting raftkv member %s: %w", name, err)
		}
		members = append(members, &inProcessMember{cfg: cfg, srv: srv, clientURL: clientURL})
	}
	return members, nil
}

// follower returns a member that is not the leader.
func follower(t *testing.T, members []*inProcessMember) *inProcessMember {
	t.Helper()
	return memberByRole(t, members, false)
}

// leader returns the member that leads.
func leader(t *testing.T, members []*inProcessMember) *inProcessMember {
	t.Helper()
	return memberByRole(t, members, true)
}

func memberByRole(t *testing.T, members []*inProcessMember, isLeader bool) *inProcessMember {
	t.Helper()
	cli := newClient(t, hostPort(members[0].clientURL))
	defer cli.Close()
	var found *inProcessMember
	err := eventually(10*time.Second, 50*time.Millisecond, func() error {
		for _, m := range members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := cli.Status(ctx, hostPort(m.clientURL))
			cancel()
			if err != nil {
				return err
			}
			if st.Leader != 0 && (st.Leader == st.Header.MemberId) == isLeader {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no member has the role (leader: %v)", isLeader)
	})
	if err != nil {
		t.Fatalf("finding a member (leader: %v): %v", isLeader, err)
	}
	return found
}
