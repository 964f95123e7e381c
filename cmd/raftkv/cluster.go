package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"raftkv/internal/durable"
)

// clusterOptions are the flags of "raftkv cluster".
type clusterOptions struct {
	members   int
	basePort  int
	dir       string
	noRestart bool
	// tls runs the members on https:// URLs with self-signed certificates.
	tls bool
	// memberArgs are the flags after "--", given to every member.
	memberArgs []string
}

// maxLocalMembers bounds --members: etcd advises at most 7 voting members, and more
// only slows every write.
const maxLocalMembers = 7

func (a *app) newClusterCommand() *cobra.Command {
	var opts clusterOptions
	cmd := &cobra.Command{
		Use:   "cluster [flags] [-- member flags]",
		Short: "start a local cluster of 3 members (--members N), restart any that dies, stop them all on Ctrl-C",
		Long: "The members are child processes of this one, named infra1, infra2, ... with their data in\n" +
			"--dir/<name>. Member k listens for clients on etcd's local-cluster ports: --base-port for\n" +
			"the first, --base-port + 10000*k for the others (2379, 22379, 32379, 42379, 52379), and for\n" +
			"peers on the client port + 1. A member that exits is restarted after 2s (longer if it keeps\n" +
			"failing) unless --no-restart; the others keep serving. SIGINT, SIGTERM or SIGHUP stops every\n" +
			"member; if this process dies some other way, the members stop too. Flags after \"--\" go to\n" +
			"every member, e.g. raftkv cluster -- --snapshot-count 1000.",
		Example: "  raftkv cluster\n  raftkv cluster --members 5\n  raftkv cluster --base-port 0 --dir /tmp/c   # free ports, listed in the banner",
		Args: func(cmd *cobra.Command, args []string) error {
			if at := cmd.ArgsLenAtDash(); len(args) > 0 && at != 0 {
				return usageErrorf("unexpected argument %q; member flags go after \"--\"", args[0])
			}
			opts.memberArgs = args
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runCluster(opts)
		},
	}
	fs := cmd.Flags()
	opts.members, opts.basePort = 3, 2379
	fs.Var(wholeNumberValue{&opts.members, fmt.Sprintf("give a number of members from 1 to %d", maxLocalMembers)},
		"members", fmt.Sprintf("Number of members, 1 to %d.", maxLocalMembers))
	fs.Var(wholeNumberValue{&opts.basePort, "give a port from 1 to 65535, or 0 for free ports"},
		"base-port", "Client port of the first member; see above for the others. 0 picks free ports\n(from 10000-19999 when the kernel's ephemeral range starts above them; the same again\nwhen --dir holds a cluster that ran on free ports).")
	fs.StringVar(&opts.dir, "dir", "raftkv-cluster", "Directory for the members' data dirs, their pid files and the cluster's layout.")
	fs.BoolVar(&opts.noRestart, "no-restart", false, "Leave a member that exits down instead of restarting it.")
	fs.BoolVar(&opts.tls, "tls", false, "Serve clients and peers on https:// URLs with self-signed certificates (--auto-tls,\n--peer-auto-tls): encrypted, not authenticated. Clients need --insecure-skip-tls-verify.")
	return cmd
}

// wholeNumberValue is an int flag whose refusal of a value that is no number says
// which numbers the flag takes: pflag's own says only strconv.ParseInt: parsing
// "abc": invalid syntax. The range itself is checked where the other flags are known
// (planCluster, localPorts). Its Type is pflag's, so the help reads as before.
type wholeNumberValue struct {
	p *int
	// want says what to give instead, as the error says it.
	want string
}

func (v wholeNumberValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v wholeNumberValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return fmt.Errorf("%q is not a whole number; %s", s, v.want)
	}
	*v.p = int(n)
	return nil
}

func (wholeNumberValue) Type() string { return "int" }

// localMember is one member of the local cluster as cluster.json records it.
type localMember struct {
	Name      string `json:"name"`
	ClientURL string `json:"client-url"`
	PeerURL   string `json:"peer-url"`
}

func (m localMember) endpoint() string { return endpointAddr(m.ClientURL) }

// isTLS reports whether the member serves https://.
func (m localMember) isTLS() bool { return strings.HasPrefix(m.ClientURL, "https://") }

// localPorts returns the ports of n members on etcd's local-cluster layout: the
// first member on basePort, member k on basePort + 10000*k, each peer port one above
// its client port. etcd's Procfile uses 2379, 22379 and 32379; 42379 and 52379 go on
// in the same way.
//
// The advice of its refusal fits the value: a base port below 1 needs a higher one,
// one that puts the last member above 65535 a lower one, and a --members that fits
// no base port (7: 10000*7 is past 65535) needs free ports.
func localPorts(n, basePort int) (client, peer []int, err error) {
	highest := 65534 // the highest base port that leaves room for the last peer port
	if n > 1 {
		highest -= 10000 * n
	}
	for k := 1; k <= n; k++ {
		c := basePort
		if k > 1 {
			c = basePort + 10000*k
		}
		if c >= 1 && c+1 <= 65535 {
			client, peer = append(client, c), append(peer, c+1)
			continue
		}
		advice := fmt.Sprintf("use a --base-port from 1 to %d, or 0 for free ports", highest)
		switch {
		case highest < 1:
			advice = fmt.Sprintf("no --base-port fits %d members on this layout; use --base-port 0 for free ports", n)
		case basePort > highest:
			advice = fmt.Sprintf("use --base-port %d or lower, or 0 for free ports", highest)
		}
		return nil, nil, fmt.Errorf("--members %d with --base-port %d puts infra%d on ports %d and %d (client, peer), outside 1-65535; %s",
			n, basePort, k, c, c+1, advice)
	}
	return client, peer, nil
}

// freeLocalPorts returns 2n loopback ports that were free a moment ago. They come
// from below the kernel's ephemeral port range (ip_local_port_range), where every
// outgoing connection and every other program's listener on port 0 takes its port:
// one of those could take a port picked there between this check and the member's
// bind, and the member would fail with "address already in use" (seen with tests
// running side by side). On a system whose range leaves no room below it, the
// kernel picks (port 0).
func freeLocalPorts(n int) (client, peer []int, err error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	first, last := freePortsFirst, min(freePortsEnd, ephemeralPortsStart())
	if last-first >= 1000 {
		start := rand.IntN(last - first)
		for i := 0; i < last-first && len(listeners) < 2*n; i++ {
			port := first + (start+i)%(last-first)
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				listeners = append(listeners, l)
			}
		}
	}
	for len(listeners) < 2*n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("finding a free port: %v", err)
		}
		listeners = append(listeners, l)
	}
	for i := range n {
		client = append(client, listeners[2*i].Addr().(*net.TCPAddr).Port)
		peer = append(peer, listeners[2*i+1].Addr().(*net.TCPAddr).Port)
	}
	return client, peer, nil
}

// checkPortsFree refuses a plan whose ports another process listens on. A member
// that cannot bind its port exits and is restarted for good, while clients given
// the cluster's endpoints would reach that other process: a member of another
// cluster, a leader that is none of this cluster's.
func checkPortsFree(plan []localMember) error {
	for _, m := range plan {
		for _, u := range []struct{ what, url string }{{"client", m.ClientURL}, {"peer", m.PeerURL}} {
			addr := endpointAddr(u.url)
			l, err := net.Listen("tcp", addr)
			if err != nil {
				_, port, _ := net.SplitHostPort(addr)
				return fmt.Errorf("%s (%s's %s URL) cannot be listened on: %v; another process has it "+
					"(ss -ltnp 'sport = :%s' names it): stop it, or start the cluster on other ports "+
					"(--base-port 0 picks free ones)", addr, m.Name, u.what, err, port)
			}
			l.Close()
		}
	}
	return nil
}

// freePortsFirst and freePortsEnd bound the ports freeLocalPorts picks: above the
// registered services' usual ports, and below the range the tests' own port picker
// hands out (internal/testport, from 20000), so that e2e tests running beside a
// cluster started this way never pick its ports.
const freePortsFirst, freePortsEnd = 10000, 20000

// ephemeralPortsStart returns the first port of the kernel's ephemeral range, or
// the usual default (Linux's 32768) if it cannot be read.
func ephemeralPortsStart() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 {
		return linuxDefault
	}
	return lo
}

const layoutFile = "cluster.json"

// checkClusterDir refuses a --dir that cannot hold a cluster, a file or a path
// through one, in the words of the flag: reading cluster.json there said only
// "open afile/cluster.json: not a directory". A missing --dir is fine (saveLayout
// creates it).
func checkClusterDir(dir string) error {
	const advice = "give a directory for the members' data (raftkv cluster creates it if missing)"
	for path := dir; ; path = filepath.Dir(path) {
		info, err := os.Stat(path)
		switch {
		case err == nil && info.IsDir():
			return nil
		case err == nil && path == dir:
			return fmt.Errorf("--dir %s is a file, not a directory; %s", dir, advice)
		case err == nil:
			return fmt.Errorf("--dir %s is inside %s, a file, not a directory; %s", dir, path, advice)
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return fmt.Errorf("--dir %s: %v; %s", dir, err, advice)
		}
		if filepath.Dir(path) == path {
			return nil
		}
	}
}

// supervisorPidFile holds, in --dir beside its members' <name>.pid, the pid of the
// "raftkv cluster" that runs the cluster there: a second one on the same --dir finds
// it (checkDirNotRunning).
const supervisorPidFile = "cluster.pid"

// checkDirNotRunning refuses a --dir whose cluster already runs. A second supervisor
// would start members on the data dirs the running members hold; with --base-port 0
// it said only that their ports were taken, and advised --base-port 0.
func checkDirNotRunning(dir string) error {
	supervisor := livePid(filepath.Join(dir, supervisorPidFile))
	var members, memberPids []string
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	for _, path := range pidFiles {
		pid := livePid(path)
		if pid == 0 || filepath.Base(path) == supervisorPidFile {
			continue
		}
		members = append(members, fmt.Sprintf("%s (pid %d)", strings.TrimSuffix(filepath.Base(path), ".pid"), pid))
		memberPids = append(memberPids, strconv.Itoa(pid))
		if supervisor == 0 {
			// A supervisor that wrote no cluster.pid (an older raftkv) is the
			// members' parent.
			supervisor = raftkvParent(pid)
		}
	}
	switch {
	case supervisor != 0:
		with := ""
		if len(members) > 0 {
			with = ", with members " + strings.Join(members, ", ")
		}
		return fmt.Errorf("--dir %s is in use: raftkv cluster (pid %d) runs its cluster%s; use that cluster, "+
			"or stop it (Ctrl-C in its terminal, or kill %d) before starting it again, or use another --dir",
			dir, supervisor, with, supervisor)
	case len(members) > 0:
		return fmt.Errorf("--dir %s is in use: its members %s run without a raftkv cluster; stop them (kill %s), or use another --dir",
			dir, strings.Join(members, ", "), strings.Join(memberPids, " "))
	}
	return nil
}

// livePid returns the pid in the pid file at path if that process runs and, where
// /proc tells, is a raftkv; otherwise 0. A supervisor that was killed leaves its
// pid files behind, and the system may since have given their pids to other
// programs.
func livePid(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0 // this process took the pid of a supervisor that was killed
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && !strings.Contains(string(cmdline), "raftkv") {
		return 0 // another program, or a zombie (its cmdline is empty)
	}
	return pid
}

// raftkvParent returns the parent of process pid if /proc names one that is a
// raftkv, otherwise 0.
func raftkvParent(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	_, rest, ok := strings.Cut(string(stat[bytes.LastIndexByte(stat, ')')+1:]), " ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 2 {
		return 0
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil || ppid <= 1 {
		return 0
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid)); err != nil || !strings.Contains(string(cmdline), "raftkv") {
		return 0
	}
	return ppid
}

// clusterSetFlags are the member flags "raftkv cluster" cannot pass on after "--",
// with why: those runCluster sets for each member itself, which the same value for
// every member would override, and those that cannot be the same for every member.
var clusterSetFlags = []struct{ flag, why string }{
	{"name", "raftkv cluster names its members infra1, infra2, ..."},
	{"data-dir", "raftkv cluster keeps each member's data in --dir/<name>; use --dir"},
	{"wal-dir", "every member would write its WAL to that one directory (each keeps it in its data dir under --dir)"},
	{"listen-client-urls", "raftkv cluster gives each member its URLs from --base-port (0 for free ports)"},
	{"advertise-client-urls", "raftkv cluster gives each member its URLs from --base-port (0 for free ports)"},
	{"listen-peer-urls", "raftkv cluster gives each member its URLs from --base-port (0 for free ports)"},
	{"initial-advertise-peer-urls", "raftkv cluster gives each member its URLs from --base-port (0 for free ports)"},
	{"initial-cluster", "raftkv cluster starts its members as one cluster of --members members"},
	{"initial-cluster-state", "raftkv cluster starts its members as one new cluster, and restarts them on their data"},
	{"initial-cluster-token", "raftkv cluster starts its members as one cluster of --members members"},
	{"force-new-cluster", "every member would start a cluster of its own"},
	{"auto-tls", "use raftkv cluster --tls"},
	{"peer-auto-tls", "use raftkv cluster --tls"},
	{supervisorFDFlag, "raftkv cluster hands each member its own"},
}

// memberFlagSet returns the member's flags as "raftkv" parses them (newRootCommand),
// help and version included, with the values they set.
func memberFlagSet() (*pflag.FlagSet, *serveFlags) {
	f := &serveFlags{}
	flags := pflag.NewFlagSet("raftkv", pflag.ContinueOnError)
	flags.SetOutput(io.Discard)
	f.register(flags)
	flags.Bool("version", false, "")
	flags.BoolP("help", "h", false, "")
	for _, name := range clientBoolFlags {
		flags.Bool(name, false, "--"+name+" is a flag of the client commands, not of a member")
	}
	return flags, f
}

// checkMemberArgs refuses, before any member starts, flags after "--" that every
// member would refuse or that raftkv cluster cannot pass on (clusterSetFlags). A
// member that cannot parse its command line exits with status 2 as soon as it
// starts, on every restart.
func checkMemberArgs(args []string) error {
	const help = "raftkv --help lists the member flags"
	flags, _ := memberFlagSet()
	if err := flags.Parse(args); err != nil {
		return fmt.Errorf("member flags after \"--\": %v (%s)", err, help)
	}
	if rest := flags.Args(); len(rest) > 0 {
		return fmt.Errorf("member flags after \"--\": %q is no flag; a member takes flags only (%s)", rest[0], help)
	}
	for _, name := range []string{"help", "version"} {
		if flags.Changed(name) {
			return fmt.Errorf("member flags after \"--\": --%s would make every member print it and exit; run raftkv --%s", name, name)
		}
	}
	if err := checkClientBoolFlags(flags); err != nil {
		return fmt.Errorf("member flags after \"--\": %v", err)
	}
	for _, set := range clusterSetFlags {
		if flags.Changed(set.flag) {
			return fmt.Errorf("member flag --%s cannot be given after \"--\": %s; remove it", set.flag, set.why)
		}
	}
	return nil
}

// checkMemberConfig runs a member's own checks of its command line args (without
// the executable), the environment and --config-file, as serve does before it
// starts the server, and refuses a flag of clusterSetFlags that args leave unset
// and the environment or the config file set for every member.
func checkMemberConfig(args, environ []string) error {
	const fix = "fix the flags after \"--\", the RAFTKV_ or ETCD_ environment variables or the --config-file (raftkv --help lists the member flags)"
	flags, f := memberFlagSet()
	if err := flags.Parse(args); err != nil {
		return fmt.Errorf("the members would refuse their command line: %v; %s", err, fix)
	}
	fromArgs := map[string]bool{}
	flags.Visit(func(fl *pflag.Flag) { fromArgs[fl.Name] = true })
	if _, err := applySources(flags, environ); err != nil {
		return fmt.Errorf("the members would refuse to start: %v; %s", err, fix)
	}
	for _, set := range clusterSetFlags {
		if flags.Changed(set.flag) && !fromArgs[set.flag] {
			return fmt.Errorf("--%s is set for every member by the environment or the --config-file: %s; unset it there", set.flag, set.why)
		}
	}
	cfg, err := f.config()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fmt.Errorf("the members would refuse to start: %v; %s", err, fix)
	}
	return nil
}

// planCluster decides the members' names and URLs. A --dir that already holds a
// cluster keeps its layout: its members' ids and cluster id derive from their peer
// URLs, so other ports would make every data dir refuse to open. Asking for another
// layout on such a dir is an error that says what the dir holds.
func planCluster(opts clusterOptions) ([]localMember, error) {
	if opts.members < 1 || opts.members > maxLocalMembers {
		return nil, fmt.Errorf("--members %d: use 1 to %d", opts.members, maxLocalMembers)
	}
	path := filepath.Join(opts.dir, layoutFile)
	var saved []localMember
	switch data, err := os.ReadFile(path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("--dir %s: %v; give a directory raftkv cluster can read and write", opts.dir, err)
	default:
		if err := json.Unmarshal(data, &saved); err != nil || len(saved) == 0 {
			return nil, fmt.Errorf("%s is not a cluster layout (%v); remove it, or use another --dir", path, err)
		}
	}
	if saved != nil && saved[0].isTLS() != opts.tls {
		was, want := "https:// (--tls)", "http://"
		if opts.tls {
			was, want = want, was
		}
		return nil, fmt.Errorf("%s holds a cluster on %s URLs, not %s as asked; run it as it was started, "+
			"or use another --dir, or remove %s to start afresh", opts.dir, was, want, opts.dir)
	}
	if saved != nil && opts.basePort == 0 && len(saved) == opts.members {
		return saved, nil
	}
	var client, peer []int
	var err error
	if opts.basePort == 0 {
		client, peer, err = freeLocalPorts(opts.members)
	} else {
		client, peer, err = localPorts(opts.members, opts.basePort)
	}
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if opts.tls {
		scheme = "https"
	}
	var plan []localMember
	for i := range opts.members {
		plan = append(plan, localMember{
			Name:      fmt.Sprintf("infra%d", i+1),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, client[i]),
			PeerURL:   fmt.Sprintf("%s://127.0.0.1:%d", scheme, peer[i]),
		})
	}
	if saved != nil && !slices.Equal(saved, plan) {
		var was []string
		for _, m := range saved {
			was = append(was, m.Name+" "+m.ClientURL)
		}
		return nil, fmt.Errorf("%s holds a cluster of %d members (%s), not the %d members on --base-port %d asked for; "+
			"run with the --members and --base-port it was started with (--base-port 0 reuses its ports), "+
			"or use another --dir, or remove %s to start afresh",
			opts.dir, len(saved), strings.Join(was, ", "), opts.members, opts.basePort, opts.dir)
	}
	return plan, nil
}

// saveLayout records plan in --dir, for planCluster at the next start. --dir is
// made durably (its parent synced: the members sync only from their own data dirs
// down, so a power loss could otherwise drop --dir and their data with it), and
// the file is written only when it changes, through a synced temporary file
// renamed into place: a crash while it is written leaves the old layout whole,
// never a truncated file the next start would refuse.
func saveLayout(dir string, plan []localMember) error {
	if err := durable.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	path := filepath.Join(dir, layoutFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return durable.WriteFile(path, data, 0o644)
}

// runCluster checks everything it can before the first member starts: a member
// that cannot start is restarted for good, and a wrong --dir or flag after "--" is
// better said once, by the flag's name, than by every member.
func (a *app) runCluster(opts clusterOptions) error {
	if err := checkMemberArgs(opts.memberArgs); err != nil {
		return &usageError{err}
	}
	if err := checkClusterDir(opts.dir); err != nil {
		return &usageError{err}
	}
	if err := checkDirNotRunning(opts.dir); err != nil {
		return err
	}
	plan, err := planCluster(opts)
	if err != nil {
		return &usageError{err}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find raftkv's own executable to start the members: %v", err)
	}
	var initial []string
	for _, m := range plan {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	var tlsArgs []string
	if opts.tls {
		tlsArgs = []string{"--auto-tls", "--peer-auto-tls"}
	}
	s := newSupervisor(a, opts)
	for _, m := range plan {
		s.members = append(s.members, &supervisedMember{
			localMember: m,
			dataDir:     filepath.Join(opts.dir, m.Name),
			pidFile:     filepath.Join(opts.dir, m.Name+".pid"),
			args: append([]string{self,
				"--name", m.Name,
				"--data-dir", filepath.Join(opts.dir, m.Name),
				"--listen-client-urls", m.ClientURL,
				"--advertise-client-urls", m.ClientURL,
				"--listen-peer-urls", m.PeerURL,
				"--initial-advertise-peer-urls", m.PeerURL,
				"--initial-cluster", strings.Join(initial, ","),
				"--initial-cluster-token", "raftkv-local-cluster",
			}, append(tlsArgs, opts.memberArgs...)...),
			restartDelay: firstRestartDelay,
		})
	}
	if err := checkMemberConfig(s.members[0].args[1:], a.environ); err != nil {
		return &usageError{err}
	}
	if err := checkPortsFree(plan); err != nil {
		return err
	}
	if err := saveLayout(opts.dir, plan); err != nil {
		return fmt.Errorf("--dir %s: %v; give a directory raftkv cluster can write", opts.dir, err)
	}
	release, err := claimDir(opts.dir)
	if err != nil {
		return err
	}
	defer release()
	return s.run()
}

// claimDir writes this supervisor's pid to --dir's cluster.pid, unless another live
// supervisor holds it: the file appears whole or not at all (a link of a written
// temporary file, which fails if the name exists), so of two supervisors started on
// one --dir at once only one gets it. A pid file left by a supervisor that was killed
// is taken over. release removes the file if it still names this process.
func claimDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, supervisorPidFile)
	mine := strconv.Itoa(os.Getpid()) + "\n"
	tmp, err := os.CreateTemp(dir, supervisorPidFile+".*")
	if err == nil {
		_, err = tmp.WriteString(mine)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		defer os.Remove(tmp.Name())
	}
	for attempt := 0; err == nil; attempt++ {
		if err = os.Link(tmp.Name(), path); err == nil || !errors.Is(err, os.ErrExist) || attempt > 0 {
			break
		}
		if inUse := checkDirNotRunning(dir); inUse != nil {
			return nil, inUse
		}
		err = os.Remove(path) // its supervisor is gone
	}
	if errors.Is(err, os.ErrExist) {
		if inUse := checkDirNotRunning(dir); inUse != nil {
			return nil, inUse
		}
	}
	if err != nil {
		return nil, fmt.Errorf("--dir %s: %v; give a directory raftkv cluster can write", dir, err)
	}
	return func() {
		if data, err := os.ReadFile(path); err == nil && string(data) == mine {
			os.Remove(path)
		}
	}, nil
}
