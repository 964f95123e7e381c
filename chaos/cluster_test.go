package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// The cluster's layout. Every member is on the clients network for its whole life, and
// the host reaches it there at the container's address: clients are never cut off, as
// in Jepsen, so a partition shows in what the members answer, not in dial errors. Peers
// reach each other only through the peer networks, under aliases that exist on those
// networks alone (a member's --initial-advertise-peer-urls is http://m3:2380, and "m3"
// resolves only where m3 is attached with that alias). With no partition every member
// is on peer network 0; a partition moves members between peer networks 0 and 1 or
// off both (see partition_test.go). All three networks are internal: the members can
// reach nothing but each other, and nothing they resolve leaves the machine.
//
// Each member has a fixed address on each network (the test picks the networks'
// subnets), so that a partition and its heal change which members can talk, never a
// member's address: Docker would otherwise hand a reconnected member the next free
// address, often one another member held before, and two members could swap
// addresses mid-run. A changed address is a fault of its own (readdress), since
// members must survive it too.
const (
	memberCount  = 5
	clientPort   = "2379"
	peerPort     = "2380"
	peerNetCount = 2
	// containerUser is the image's USER, which owns the data dirs the test mounts.
	containerUser = 65532
	// tmpfsBytes is the size of each member's data dir when the test can mount one. A
	// WAL segment is preallocated to 64 MiB, so a member needs room for two of them,
	// a snapshot and the value file; the disk-full fault fills what is left.
	tmpfsBytes = 256 << 20
	// fillFile is the file the disk-full fault writes into a member's data dir.
	fillFile = "chaos-fill"
)

type member struct {
	index     int    // in cluster.members
	name      string // --name, and the alias peers dial it by: m1 ... m5
	container string // <run id>-<name>
	dataDir   string // on the host, bind-mounted on /data
	cli       *clientv3.Client
	// peerNets are the peer networks (indexes into cluster.peerNets) the member is
	// attached to: the test's own record, changed only by connect/disconnect.
	peerNets map[int]bool
	// readdressed says the member is at its second address on the peer networks.
	readdressed bool
}

// network is a Docker network of the run, on a /24 the test chose.
type network struct {
	name   string
	prefix string // the subnet's first three octets and a dot: "172.23.45."
}

// Members' host numbers on every network: the usual one, and the one a readdress
// fault moves a member to.
const (
	homeHost      = 10
	readdressHost = 100
)

// address returns m's address on n.
func (n network) address(m *member) string {
	host := homeHost + m.index
	if m.readdressed {
		host = readdressHost + m.index
	}
	return n.prefix + strconv.Itoa(host)
}

type cluster struct {
	t         *testing.T
	runID     string
	image     string
	clientNet network
	peerNets  []network
	members   []*member
	// canFillDisk says whether each data dir is a tmpfs of tmpfsBytes the test mounted
	// (it must run as root for that).
	canFillDisk bool

	// clientIPs maps a container's name to its address on the clients network.
	clientIPs map[string]string
}

// startCluster creates the networks, data dirs and containers of a 5-member cluster
// and waits until it takes a write. Everything it creates is removed when the test
// ends, whether it passed or not.
func startCluster(t *testing.T, image, runID string, snapshotCount int) *cluster {
	t.Helper()
	ctx := context.Background()
	c := &cluster{t: t, runID: runID, image: image, clientIPs: map[string]string{}}

	c.clientNet = c.createNetwork("clients")
	for i := range peerNetCount {
		c.peerNets = append(c.peerNets, c.createNetwork(fmt.Sprintf("peers%d", i)))
	}

	base := t.TempDir()
	c.canFillDisk = os.Geteuid() == 0
	if !c.canFillDisk {
		t.Logf("not root: data dirs are plain directories, and the disk-full fault is off (it needs a tmpfs the test mounts)")
	}
	var initialCluster []string
	for i := range memberCount {
		name := fmt.Sprintf("m%d", i+1)
		m := &member{index: i, name: name, container: runID + "-" + name, dataDir: filepath.Join(base, name), peerNets: map[int]bool{}}
		c.members = append(c.members, m)
		initialCluster = append(initialCluster, fmt.Sprintf("%s=http://%s:%s", name, name, peerPort))
		c.makeDataDir(m)
	}

	for _, m := range c.members {
		c.clientIPs[m.container] = c.clientNet.address(m)
		args := []string{"create", "--name", m.container, "--label", runLabel + "=" + runID,
			"--network", c.clientNet.name, "--ip", c.clientNet.address(m), "--volume", m.dataDir + ":/data"}
		if !c.canFillDisk {
			// The data dir belongs to the test's user, so the member runs as it.
			args = append(args, "--user", fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()))
		}
		args = append(args, image,
			"--name="+m.name,
			"--data-dir=/data",
			"--listen-client-urls=http://0.0.0.0:"+clientPort,
			"--advertise-client-urls=http://"+m.container+":"+clientPort,
			"--listen-peer-urls=http://0.0.0.0:"+peerPort,
			"--initial-advertise-peer-urls=http://"+m.name+":"+peerPort,
			"--initial-cluster="+strings.Join(initialCluster, ","),
			"--initial-cluster-token="+runID,
			fmt.Sprintf("--snapshot-count=%d", snapshotCount))
		if _, err := docker(ctx, args...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.removeContainer(m) })
		c.connect(m, 0)
	}
	// Registered after the containers' removal, so it runs before it.
	t.Cleanup(func() {
		if t.Failed() {
			c.saveLogs()
		}
	})
	c.startAll(c.members)
	for _, m := range c.members {
		m.cli = c.newClient(m.container + ":" + clientPort)
	}
	if err := c.waitWritable(60 * time.Second); err != nil {
		t.Fatalf("the new cluster took no write within 60s: %v", err)
	}
	return c
}

// createNetwork creates an internal network on a /24 of 172.18.0.0-172.31.255.0
// drawn at random, drawing again while Docker says it overlaps a network it has.
func (c *cluster) createNetwork(role string) network {
	n := network{name: c.runID + "-" + role}
	for attempt := 0; ; attempt++ {
		second, third := 18+mathrand.IntN(14), mathrand.IntN(256)
		n.prefix = fmt.Sprintf("172.%d.%d.", second, third)
		_, err := docker(context.Background(), "network", "create", "--internal", "--label", runLabel+"="+c.runID,
			"--subnet", n.prefix+"0/24", n.name)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "overlaps") || attempt == 20 {
			c.t.Fatal(err)
		}
	}
	c.t.Cleanup(func() {
		if _, err := docker(context.Background(), "network", "rm", n.name); err != nil {
			c.t.Errorf("removing the test's network: %v", err)
		}
	})
	return n
}

// makeDataDir creates m's data dir: as root, a tmpfs of tmpfsBytes owned by the
// image's user, so that the disk-full fault can fill it from the host and it keeps
// its data across docker kill and start (a --tmpfs mount of the container's own
// would not); otherwise a plain directory.
func (c *cluster) makeDataDir(m *member) {
	t := c.t
	if err := os.Mkdir(m.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if !c.canFillDisk {
		return
	}
	if err := syscall.Mount("tmpfs", m.dataDir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", tmpfsBytes)); err != nil {
		t.Fatalf("mounting a %d MiB tmpfs on %s for %s's data: %v", tmpfsBytes>>20, m.dataDir, m.name, err)
	}
	// Registered after t.TempDir's removal, so it runs before it (cleanups run last
	// in, first out), and after the container's removal, registered later still.
	t.Cleanup(func() {
		if err := syscall.Unmount(m.dataDir, 0); err != nil {
			t.Errorf("unmounting %s's data dir %s: %v", m.name, m.dataDir, err)
		}
	})
	if err := os.Chown(m.dataDir, containerUser, containerUser); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) removeContainer(m *member) {
	if _, err := docker(context.Background(), "rm", "--force", "--volumes", m.container); err != nil {
		c.t.Errorf("removing the test's container: %v", err)
	}
}

// start starts m's container (created, killed or crashed).
func (c *cluster) start(m *member) {
	c.t.Helper()
	if err := c.startContainer(m); err != nil {
		c.t.Fatal(err)
	}
}

// startAll starts the containers at once: docker start takes about a second each.
func (c *cluster) startAll(members []*member) {
	c.t.Helper()
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { errs[i] = c.startContainer(m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) startContainer(m *member) error {
	_, err := docker(context.Background(), "start", m.container)
	return err
}

// state returns docker's word for m's container ("running", "paused", "exited") and
// its exit code.
func (c *cluster) state(m *member) (string, int) {
	out, err := docker(context.Background(), "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", m.container)
	if err != nil {
		c.t.Fatal(err)
	}
	var status string
	var code int
	if _, err := fmt.Sscan(out, &status, &code); err != nil {
		c.t.Fatalf("docker inspect of %s said %q: %v", m.container, out, err)
	}
	return status, code
}

func (c *cluster) connect(m *member, peerNet int) {
	c.t.Helper()
	n := c.peerNets[peerNet]
	if _, err := docker(context.Background(), "network", "connect", "--alias", m.name, "--ip", n.address(m), n.name, m.container); err != nil {
		c.t.Fatal(err)
	}
	m.peerNets[peerNet] = true
}

func (c *cluster) disconnect(m *member, peerNet int) {
	c.t.Helper()
	if _, err := docker(context.Background(), "network", "disconnect", c.peerNets[peerNet].name, m.container); err != nil {
		c.t.Fatal(err)
	}
	delete(m.peerNets, peerNet)
}

// readdress moves m to its other address on every peer network it is on.
func (c *cluster) readdress(m *member) {
	c.t.Helper()
	nets := slices.Sorted(maps.Keys(m.peerNets))
	for _, n := range nets {
		c.disconnect(m, n)
	}
	m.readdressed = !m.readdressed
	for _, n := range nets {
		c.connect(m, n)
	}
}

// dial connects the host's clients to a member at its current address on the clients
// network: an endpoint names the container, which the host cannot resolve itself.
func (c *cluster) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip, ok := c.clientIPs[host]
	if !ok {
		return nil, fmt.Errorf("dial %s: not a container of this run", addr)
	}
	d := net.Dialer{Timeout: time.Second, Control: setUserTimeout}
	return d.DialContext(ctx, "tcp", net.JoinHostPort(ip, port))
}

// newClient returns a clientv3 client of the endpoints, closed with the cluster.
func (c *cluster) newClient(endpoints ...string) *clientv3.Client {
	c.t.Helper()
	return c.newClientWith(nil, endpoints...)
}

// newClientWith is newClient with more dial options (a watcher's interceptor).
func (c *cluster) newClientWith(dialOptions []grpc.DialOption, endpoints ...string) *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: append([]grpc.DialOption{grpc.WithContextDialer(c.dial), redialParams}, dialOptions...),
	})
	if err != nil {
		c.t.Fatalf("clientv3.New(%v): %v", endpoints, err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// redialParams: gRPC waits up to 2 minutes before it redials an endpoint that
// failed; a restarted member should get its share of the load (and its watchers)
// back at once.
var redialParams = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: time.Second,
})

func (c *cluster) endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.container+":"+clientPort)
	}
	return out
}

// waitWritable waits until a put through any member succeeds.
func (c *cluster) waitWritable(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		for _, m := range c.members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = m.cli.Put(ctx, "chaos/probe", "start")
			cancel()
			if err == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// leader returns the member that says it leads, or nil if none answers so within a
// second.
func (c *cluster) leader() *member {
	for _, m := range c.members {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := m.cli.Status(ctx, m.container+":"+clientPort)
		cancel()
		if err == nil && resp.Leader != 0 && resp.Leader == resp.Header.MemberId {
			return m
		}
	}
	return nil
}

// logs returns m's output (the member logs to stderr).
func (c *cluster) logs(m *member) string {
	ctx, cancel := context.WithTimeout(context.Background(), dockerCallTimeout)
	defer cancel()
	// The member logs to stderr, which docker logs replays on its own stderr.
	out, err := exec.CommandContext(ctx, "docker", "logs", m.container).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(docker logs %s: %v: %s)", m.container, err, out)
	}
	return string(out)
}

// saveLogs writes every member's log to a directory that outlives the test and says
// where, with the last lines of each.
func (c *cluster) saveLogs() {
	dir, err := os.MkdirTemp("", "raftkv-chaos-"+c.runID+"-logs-")
	if err != nil {
		c.t.Logf("saving the members' logs: %v", err)
		return
	}
	for _, m := range c.members {
		log := c.logs(m)
		if err := os.WriteFile(filepath.Join(dir, m.name+".log"), []byte(log), 0o644); err != nil {
			c.t.Logf("saving %s's log: %v", m.name, err)
		}
		lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
		c.t.Logf("last lines of %s's log:\n%s", m.name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	c.t.Logf("the members' logs are in %s", dir)
}

// panicLine returns the last line of m's log that starts a panic or a fatal exit (its
// log spans every run of the container), or "".
func (c *cluster) panicLine(m *member) string {
	last := ""
	for line := range strings.Lines(c.logs(m)) {
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") || strings.HasPrefix(line, "raftkv: ") ||
			strings.HasPrefix(line, "Error: ") {
			last = strings.TrimSpace(line)
		}
	}
	return last
}
