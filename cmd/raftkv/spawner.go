package main

import (
	"os/exec"
	"runtime"
	"sync"
)

// spawner starts the members from one goroutine locked to its OS thread for as long
// as the supervisor runs. Linux sends a child its parent-death signal when the
// thread that forked it exits, not when the process does (prctl(2),
// PR_SET_PDEATHSIG; golang/go#27505). The Go runtime ends a thread when a goroutine
// exits while locked to it, so a member started from a thread some library had
// locked could be sent SIGTERM while the supervisor runs on. The spawner's thread
// ends only in stop, after every member has exited.
type spawner struct {
	requests chan spawnRequest
	wg       sync.WaitGroup
}

type spawnRequest struct {
	cmd *exec.Cmd
	err chan error
}

func newSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest)}
	s.wg.Go(func() {
		// Never unlocked: the thread ends with this goroutine, in stop.
		runtime.LockOSThread()
		for r := range s.requests {
			r.err <- r.cmd.Start()
		}
	})
	return s
}

// start runs cmd.Start on the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, err: make(chan error, 1)}
	s.requests <- r
	return <-r.err
}

// stop ends the spawner and its thread; call it once no member runs.
func (s *spawner) stop() {
	close(s.requests)
	s.wg.Wait()
}
