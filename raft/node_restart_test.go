package raft

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestNodeRestartRedeliversAfterApplied: on restart the node delivers what the
// application lacks by Config.Applied: the stored snapshot if Applied is below it,
// then every committed entry after max(Applied, snapshot index), then what commits
// next (here the restarted leader's no-op at 21).
func TestNodeRestartRedeliversAfterApplied(t *testing.T) {
	checkNoGoroutineLeak(t)
	seq := func(from, to uint64) (s []string) {
		for i := from; i <= to; i++ {
			s = append(s, fmt.Sprintf("%d", i))
		}
		return s
	}
	for _, c := range []struct {
		applied uint64
		want    []string
	}{
		{0, append(append([]string{"snapshot 10"}, seq(11, 20)...), "no-op 21")},
		{5, append(append([]string{"snapshot 10"}, seq(11, 20)...), "no-op 21")},
		{10, append(seq(11, 20), "no-op 21")},
		{15, append(seq(16, 20), "no-op 21")},
		{20, []string{"no-op 21"}},
	} {
		t.Run(fmt.Sprintf("applied=%d", c.applied), func(t *testing.T) {
			st := NewMemoryStorage()
			if err := st.Save(HardState{Term: 1, Vote: 1, Commit: 20}, entriesFrom(1, 20)); err != nil {
				t.Fatal(err)
			}
			if _, err := st.CreateSnapshot(10, Membership{}, []byte("state at 10")); err != nil {
				t.Fatal(err)
			}
			node, err := NewNode(Config{ID: 1, Peers: []uint64{1}, Storage: st, Applied: c.applied,
				TickInterval: 5 * time.Millisecond}, sendingTo(&recordingTransport{}))
			if err != nil {
				t.Fatal(err)
			}
			defer node.Stop()
			var got []string
			deadline := time.After(10 * time.Second)
			for !slices.Contains(got, "no-op 21") {
				select {
				case msg := <-node.Apply():
					switch msg.Type {
					case ApplySnapshot:
						got = append(got, fmt.Sprintf("snapshot %d", msg.Index))
					case ApplyNoOp:
						got = append(got, fmt.Sprintf("no-op %d", msg.Index))
					default:
						got = append(got, fmt.Sprintf("%d", msg.Index))
					}
				case <-deadline:
					t.Fatalf("delivered %v, then nothing for 10s; want %v", got, c.want)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("delivered %v, want %v", got, c.want)
			}
		})
	}
}
