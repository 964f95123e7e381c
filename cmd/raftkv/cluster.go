package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// localMember is one member of "raftkv cluster".
type localMember struct {
	name                 string
	clientPort, peerPort int
}

// localMembers are the three members, on etcd's conventional local-cluster ports.
func localMembers(basePort int) []localMember {
	return []localMember{
		{"infra1", basePort, basePort + 1},
		{"infra2", basePort + 20000, basePort + 20001},
		{"infra3", basePort + 30000, basePort + 30001},
	}
}

func runCluster(args []string) int {
	fs := flag.NewFlagSet("raftkv cluster", flag.ContinueOnError)
	dir := fs.String("dir", "raftkv-cluster", "directory for the members' data dirs")
	basePort := fs.Int("base-port", 2379, "client port of the first member; the others add 20000 and 30000, peers add 1")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: raftkv cluster [--dir D] [--base-port P]\n\nStarts three members as child processes and stops them on Ctrl-C.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *basePort < 1 || *basePort+30001 > 65535 {
		fmt.Fprintf(os.Stderr, "raftkv cluster: --base-port %d leaves the third member's ports outside 1..65535; use 1..35534\n", *basePort)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftkv cluster: cannot find own executable: %v\n", err)
		return 1
	}
	members := localMembers(*basePort)
	var initial []string
	for _, m := range members {
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", m.name, m.peerPort))
	}
	var children []*exec.Cmd
	exited := make(chan string, len(members))
	for _, m := range members {
		cmd := exec.Command(self,
			"--name", m.name,
			"--data-dir", filepath.Join(*dir, m.name),
			"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", m.clientPort),
			"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", m.clientPort),
			"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", m.peerPort),
			"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", m.peerPort),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", "raftkv-local-cluster",
		)
		cmd.Stdout = os.Stdout
		cmd.Stderr = &prefixWriter{prefix: m.name + " | ", w: os.Stderr}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "raftkv cluster: starting %s: %v\n", m.name, err)
			stopChildren(children)
			return 1
		}
		children = append(children, cmd)
		go func(name string, cmd *exec.Cmd) {
			_ = cmd.Wait()
			exited <- name
		}(m.name, cmd)
	}
	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, fmt.Sprintf("127.0.0.1:%d", m.clientPort))
	}
	fmt.Printf("raftkv: 3-member cluster starting, data under %s/\n", *dir)
	fmt.Printf("  endpoints: %s\n", strings.Join(endpoints, ","))
	fmt.Printf("  try:       etcdctl --endpoints=%s put foo bar\n", endpoints[0])
	fmt.Printf("             raftkv put foo bar && raftkv get foo\n")
	fmt.Printf("  Ctrl-C stops all three.\n")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case <-sigs:
		fmt.Println("raftkv: stopping the cluster")
		stopChildren(children)
		return 0
	case name := <-exited:
		fmt.Fprintf(os.Stderr, "raftkv cluster: member %s exited; stopping the others\n", name)
		stopChildren(children)
		return 1
	}
}

// stopChildren sends SIGTERM to every child and waits up to 10s before killing.
func stopChildren(children []*exec.Cmd) {
	for _, c := range children {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range children {
		for c.ProcessState == nil && time.Now().Before(deadline) {
			if err := c.Process.Signal(syscall.Signal(0)); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = c.Process.Kill()
	}
}

// prefixWriter prefixes each line a member logs with its name.
type prefixWriter struct {
	prefix  string
	w       *os.File
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := strings.IndexByte(string(p.partial), '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.partial[:i])
		p.partial = p.partial[i+1:]
	}
}
