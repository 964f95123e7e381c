package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// memberProcAttr puts a member in its own process group (a Ctrl-C in the terminal
// reaches the supervisor only, which stops the members in order) and asks Linux to
// send it SIGTERM, on which it stops cleanly, if the supervisor's spawner thread
// dies (see spawner).
func memberProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// watchGoRunParent returns a channel closed when this process's parent exits, if
// that parent is "go run", and the parent's pid. The go command ignores SIGINT and
// SIGQUIT (the terminal sends them to its child too) but dies of SIGTERM without
// passing it on, so "kill <pid of go run>" would otherwise leave the supervisor and
// its members running. Another parent (a shell, nohup, a service manager) is not
// watched: outliving it can be what the user wants.
func watchGoRunParent(done <-chan struct{}) (gone <-chan struct{}, parentPID int) {
	ppid := os.Getppid()
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid))
	if err != nil {
		return nil, 0
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 || filepath.Base(args[0]) != "go" || !slices.Contains(args[1:], "run") {
		return nil, 0
	}
	c := make(chan struct{})
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if os.Getppid() != ppid {
					close(c)
					return
				}
			}
		}
	}()
	return c, ppid
}
