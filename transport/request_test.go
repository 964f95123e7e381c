package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRequestIsAnsweredByThePeer: a Request reaches the peer's OnRequest with the
// asker's id and the asker's deadline, and its answer or refusal comes back; a node
// without OnRequest refuses, and an unknown peer is an error before any dial.
func TestRequestIsAnsweredByThePeer(t *testing.T) {
	nodes := startCluster(t, []uint64{1, 2, 3}, func(c *Config) {
		if c.ID == 3 {
			return // answers no requests
		}
		id := c.ID
		c.OnRequest = func(ctx context.Context, from uint64, req []byte) ([]byte, error) {
			if string(req) == "refuse" {
				return nil, fmt.Errorf("node %d refuses %q from %d", id, req, from)
			}
			d, ok := ctx.Deadline()
			if !ok || time.Until(d) > 3*time.Second {
				return nil, fmt.Errorf("deadline %v (set %v): the asker's 2s did not travel", time.Until(d), ok)
			}
			return fmt.Appendf(nil, "%d answers %s from %d", id, req, from), nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, err := nodes[1].tr.Request(ctx, 2, []byte("ping"))
	if err != nil || !bytes.Equal(got, []byte("2 answers ping from 1")) {
		t.Fatalf("Request = %q, %v; want %q", got, err, "2 answers ping from 1")
	}
	_, err = nodes[1].tr.Request(ctx, 2, []byte("refuse"))
	if !errors.Is(err, ErrRequestRefused) || !strings.Contains(err.Error(), `node 2 refuses "refuse" from 1`) {
		t.Fatalf("refused Request = %v; want ErrRequestRefused with node 2's reason", err)
	}
	if _, err := nodes[1].tr.Request(ctx, 3, []byte("ping")); !errors.Is(err, ErrRequestRefused) {
		t.Fatalf("Request to a node without OnRequest = %v; want ErrRequestRefused", err)
	}
	if _, err := nodes[1].tr.Request(ctx, 9, []byte("ping")); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Request to node 9 = %v; want ErrUnknownPeer", err)
	}
}
