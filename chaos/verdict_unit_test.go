package chaos

import (
	"testing"
	"time"
)

func TestLongestGap(t *testing.T) {
	acks := []int64{5, 10, 30, 31, 60}
	for _, tc := range []struct {
		from, to int64
		want     time.Duration
	}{
		{0, 100, 40},   // 60 → 100, the end of the window
		{10, 31, 20},   // 10 → 30
		{32, 59, 27},   // no ack inside: the whole window
		{0, 5, 5},      // 0 → the ack at 5
		{40, 40, 0},    // an empty window
		{61, 200, 139}, // after the last ack
	} {
		if got := longestGap(acks, tc.from, tc.to); got != tc.want {
			t.Errorf("longestGap(%v, %d, %d) = %d, want %d", acks, tc.from, tc.to, got, tc.want)
		}
	}
}
