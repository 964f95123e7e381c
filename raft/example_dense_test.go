package raft_test

import (
	"fmt"
	"time"

	"raftkv/raft"
)

// An application that numbers its commands 1, 2, 3, ... with no gaps, although the
// log's indices skip: each new leader's no-op takes an index too. It counts the
// ApplyCommand messages; a real application keeps the count in its state, and in its
// snapshots, so that it survives a restart and an ApplySnapshot.
func Example_denseCommandNumbers() {
	node, err := raft.NewNode(raft.Config{
		ID:           1,
		Peers:        []uint64{1},
		Storage:      raft.NewMemoryStorage(),
		TickInterval: 5 * time.Millisecond,
	}, raft.NewLocalNetwork().Transport(1))
	if err != nil {
		panic(err)
	}
	defer node.Stop()
	for _, isLeader := node.State(); !isLeader; _, isLeader = node.State() {
		time.Sleep(5 * time.Millisecond) // a lone node elects itself
	}
	for _, cmd := range []string{"a", "b", "c"} {
		node.Start([]byte(cmd))
	}

	var commands uint64 // the application's own count: its dense numbering
	for msg := range node.Apply() {
		switch msg.Type {
		case raft.ApplyCommand:
			commands++
			fmt.Printf("log index %d: command %d, %q\n", msg.Index, commands, msg.Command)
		case raft.ApplyNoOp:
			fmt.Printf("log index %d: no command (a leader's no-op)\n", msg.Index)
		case raft.ApplySnapshot:
			// commands = the count stored in msg.Snapshot
		}
		if commands == 3 {
			break
		}
	}
	// Output:
	// log index 1: no command (a leader's no-op)
	// log index 2: command 1, "a"
	// log index 3: command 2, "b"
	// log index 4: command 3, "c"
}
