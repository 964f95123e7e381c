package raft_test

import (
	"fmt"
	"time"

	"raftkv/raft"
)

// A three-node cluster in one process, driven through the seed's interface: Start a
// command on whichever node is the leader, then read it back from Apply once it
// commits.
func Example() {
	network := raft.NewLocalNetwork()
	peers := []uint64{1, 2, 3}
	var nodes []*raft.Node
	for _, id := range peers {
		node, err := raft.NewNode(raft.Config{
			ID:           id,
			Peers:        peers,
			Storage:      raft.NewMemoryStorage(),
			TickInterval: 10 * time.Millisecond,
		}, network.Transport(id))
		if err != nil {
			panic(err)
		}
		network.Attach(id, node)
		nodes = append(nodes, node)
	}
	defer func() {
		for _, node := range nodes {
			node.Stop()
		}
	}()

	// Until an election has run, every node answers isLeader=false.
	var leader *raft.Node
	var index uint64
	for leader == nil {
		time.Sleep(10 * time.Millisecond)
		for _, node := range nodes {
			if i, _, isLeader := node.Start([]byte("hello")); isLeader {
				leader, index = node, i
				break
			}
		}
	}

	// The command is committed when the entry at its index carries it.
	for msg := range leader.Apply() {
		if msg.Index == index {
			fmt.Printf("committed %q: %v\n", msg.Command, msg.Type == raft.ApplyCommand)
			break
		}
	}
	// Output: committed "hello": true
}
