package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"raftkv/kv"
)

// The lease commands print what etcdctl's lease commands print, in its formats: a
// lease id as 16 hex digits, and the same sentences ("lease %016x granted with
// TTL(%ds)").

func (a *app) newLeaseCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease <subcommand>",
		Short: "grant, revoke, list, inspect and keep alive leases",
		Long: "A lease ends after its TTL unless kept alive, and the keys put with it (put --lease in\n" +
			"etcdctl, or clientv3.WithLease) are deleted with it. Lease ids are hexadecimal, as\n" +
			"etcdctl prints and reads them.",
		Args: subcommandArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.newLeaseGrantCommand(c), a.newLeaseRevokeCommand(c), a.newLeaseTimeToLiveCommand(c), a.newLeaseListCommand(c),
		a.newLeaseKeepAliveCommand(c))
	return cmd
}

// parseLeaseID reads a lease id as etcdctl does: hexadecimal, without 0x.
func parseLeaseID(arg string) (int64, error) {
	id, err := strconv.ParseInt(arg, 16, 64)
	if err != nil {
		return 0, usageErrorf("bad lease ID %q: expecting a hexadecimal id as 'raftkv lease grant' prints it, e.g. 694d7b6b3b0b6a0c", arg)
	}
	return id, nil
}

func (a *app) newLeaseGrantCommand(c *clientFlags) *cobra.Command {
	var idArg string
	cmd := &cobra.Command{
		Use:   "grant TTL",
		Short: "grant a lease of TTL seconds",
		Long: "A TTL below the cluster's minimum (1.5 election timeouts, 2s with the defaults) is raised to it;\n" +
			"the granted TTL is printed.",
		Args: exactArgs("TTL"),
	}
	c.register(cmd, "simple", "json")
	cmd.Flags().StringVar(&idArg, "id", "", "The lease id to grant, in hexadecimal; by default the server picks one.")
	// A negative TTL reaches the flag parser first, as a shorthand flag ("-5").
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if _, word, ok := strings.Cut(err.Error(), "' in "); ok && strings.HasPrefix(err.Error(), "unknown shorthand flag: '") {
			if _, isNumber := strconv.ParseInt(word, 10, 64); isNumber == nil {
				return negativeTTL(word)
			}
		}
		return &usageError{err}
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ttl, err := strconv.ParseInt(args[0], 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(args[0], "-"), err == nil && ttl > kv.MaxLeaseTTL:
			return usageErrorf("bad TTL %s: etcdserver: too large lease TTL; the most is %d seconds", args[0], kv.MaxLeaseTTL)
		case err != nil:
			return usageErrorf("bad TTL %q: give a whole number of seconds, e.g. 60", args[0])
		case ttl < 0:
			return negativeTTL(args[0])
		}
		var id int64
		if idArg != "" {
			if id, err = parseLeaseID(idArg); err != nil {
				return err
			}
		}
		return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewLeaseClient(conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: ttl, ID: id})
			if err == nil && resp.Error != "" {
				err = errors.New(resp.Error)
			}
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			fmt.Fprintf(a.stdout, "lease %016x granted with TTL(%ds)\n", resp.ID, resp.TTL)
			return nil
		})
	}
	return cmd
}

// negativeTTL refuses a TTL below 0: etcdctl's "bad TTL", with what a TTL is.
func negativeTTL(arg string) error {
	return usageErrorf("bad TTL %s: a lease's TTL is a positive number of seconds, e.g. raftkv lease grant 60", arg)
}

func (a *app) newLeaseRevokeCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "revoke a lease, deleting its keys",
		Args:  exactArgs("ID"),
	}
	c.register(cmd, "simple", "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseLeaseID(args[0])
		if err != nil {
			return err
		}
		return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewLeaseClient(conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			fmt.Fprintf(a.stdout, "lease %016x revoked\n", id)
			return nil
		})
	}
	return cmd
}

func (a *app) newLeaseTimeToLiveCommand(c *clientFlags) *cobra.Command {
	var keys bool
	cmd := &cobra.Command{
		Use:   "timetolive ID",
		Short: "print a lease's granted and remaining TTL",
		Long: "Prints what etcdctl lease timetolive prints: the TTL the lease was granted and the seconds it has\n" +
			"left, or that it already expired (or never was).",
		Args: exactArgs("ID"),
	}
	c.register(cmd, "simple", "json")
	cmd.Flags().BoolVar(&keys, "keys", false, "Also print the keys attached to the lease.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseLeaseID(args[0])
		if err != nil {
			return err
		}
		return c.first(cmd, true, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewLeaseClient(conn).LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys})
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				// etcdctl prints clientv3's response: the header's fields at the
				// top, then these.
				return printJSON(a.stdout, struct {
					*pb.ResponseHeader
					ID         int64    `json:"id"`
					TTL        int64    `json:"ttl"`
					GrantedTTL int64    `json:"granted-ttl"`
					Keys       [][]byte `json:"keys"`
				}{resp.Header, resp.ID, resp.TTL, resp.GrantedTTL, resp.Keys})
			}
			if resp.GrantedTTL == 0 && resp.TTL == -1 {
				_, err := fmt.Fprintf(a.stdout, "lease %016x already expired\n", resp.ID)
				return err
			}
			line := fmt.Sprintf("lease %016x granted with TTL(%ds), remaining(%ds)", resp.ID, resp.GrantedTTL, resp.TTL)
			if keys {
				names := make([]string, len(resp.Keys))
				for i, k := range resp.Keys {
					names[i] = string(k)
				}
				line += fmt.Sprintf(", attached keys(%v)", names)
			}
			_, err = fmt.Fprintln(a.stdout, line)
			return err
		})
	}
	return cmd
}

func (a *app) newLeaseListCommand(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list the live leases",
		Args:  exactArgs(),
	}
	c.register(cmd, "simple", "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return c.first(cmd, true, func(ctx context.Context, conn *grpc.ClientConn) error {
			resp, err := pb.NewLeaseClient(conn).LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
			if err != nil {
				return err
			}
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			fmt.Fprintf(a.stdout, "found %d leases\n", len(resp.Leases))
			for _, l := range resp.Leases {
				fmt.Fprintf(a.stdout, "%016x\n", l.ID)
			}
			return nil
		})
	}
	return cmd
}

func (a *app) newLeaseKeepAliveCommand(c *clientFlags) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keep-alive ID",
		Short: "keep a lease alive until Ctrl-C",
		Long: "Renews the lease every third of its TTL, printing each renewal, until Ctrl-C or SIGTERM; a\n" +
			"member that fails is replaced by the next endpoint. When the lease is gone (revoked, or\n" +
			"expired while no member could be reached) it prints so and exits. --command-timeout bounds\n" +
			"each renewal, not the whole command.",
		Args: exactArgs("ID"),
	}
	c.register(cmd, "simple", "json")
	cmd.Flags().BoolVar(&once, "once", false, "Renew the lease once and exit.")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseLeaseID(args[0])
		if err != nil {
			return err
		}
		print := func(resp *pb.LeaseKeepAliveResponse) error {
			if c.writeOut == "json" {
				return printJSON(a.stdout, resp)
			}
			_, err := fmt.Fprintf(a.stdout, "lease %016x keepalived with TTL(%d)\n", resp.ID, resp.TTL)
			return err
		}
		if once {
			return c.first(cmd, false, func(ctx context.Context, conn *grpc.ClientConn) error {
				resp, err := keepAliveOnce(ctx, conn, id)
				if err != nil {
					return err
				}
				if resp.TTL <= 0 {
					return fmt.Errorf("lease %016x not found: it expired or was revoked", id)
				}
				return print(resp)
			})
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		k := &keepAliver{c: c, id: id, print: print, warn: a.stderr}
		gone, err := k.run(ctx)
		if gone && c.writeOut != "json" {
			fmt.Fprintf(a.stdout, "lease %016x expired or revoked.\n", id)
		}
		return err
	}
	return cmd
}

// keepAliveOnce sends one keep-alive on a stream of its own.
func keepAliveOnce(ctx context.Context, conn *grpc.ClientConn, id int64) (*pb.LeaseKeepAliveResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	stream, err := pb.NewLeaseClient(conn).LeaseKeepAlive(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return nil, err
	}
	return stream.Recv()
}

// keepAliver keeps one lease alive through the endpoints, moving to the next when one
// fails, as clientv3's KeepAlive does.
type keepAliver struct {
	c     *clientFlags
	id    int64
	print func(*pb.LeaseKeepAliveResponse) error
	warn  io.Writer

	ttl         time.Duration // the lease's TTL, from the last answer
	lastRenewed time.Time
}

// keepAliveRetryPause is the pause after every endpoint failed in turn.
const keepAliveRetryPause = 500 * time.Millisecond

// run renews the lease until ctx ends (nil), the lease is gone (gone), or, before any
// renewal, no endpoint answers (the endpoints' errors).
func (k *keepAliver) run(ctx context.Context) (gone bool, err error) {
	var errs endpointErrors
	for round := 0; ; round++ {
		for _, ep := range k.c.endpoints {
			gone, err := k.through(ctx, ep)
			switch {
			case ctx.Err() != nil:
				return false, nil
			case gone || err == nil:
				return gone, err
			}
			var pe *printError
			if errors.As(err, &pe) {
				return false, err
			}
			err = k.c.rpcError(err)
			if k.lastRenewed.IsZero() {
				errs = append(errs, endpointError{ep, err})
				continue
			}
			fmt.Fprintf(k.warn, "keep-alive through %s failed: %v; trying the next endpoint\n", ep, err)
			if time.Since(k.lastRenewed) > k.ttl {
				return true, fmt.Errorf("no member answered a keep-alive of lease %016x for its TTL (%v): it has expired", k.id, k.ttl)
			}
		}
		if k.lastRenewed.IsZero() {
			return false, errs
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(keepAliveRetryPause):
		}
	}
}

// through renews the lease through the endpoint ep until ctx ends or something fails;
// each renewal must be answered within --command-timeout.
func (k *keepAliver) through(ctx context.Context, ep string) (gone bool, err error) {
	conn, err := k.c.dial(ctx, ep)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewLeaseClient(conn).LeaseKeepAlive(ctx)
	if err != nil {
		return false, err
	}
	for {
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: k.id}); err != nil {
			return false, err
		}
		resp, err := recvWithin(ctx, stream, k.c.commandTimeout)
		if err != nil {
			return false, err
		}
		if resp.TTL <= 0 {
			return true, nil
		}
		k.ttl, k.lastRenewed = time.Duration(resp.TTL)*time.Second, time.Now()
		if err := k.print(resp); err != nil {
			return false, &printError{err}
		}
		// As clientv3: renew at a third of the TTL, so two renewals may fail in a row.
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(max(k.ttl/3, 500*time.Millisecond)):
		}
	}
}

// recvWithin waits at most timeout for the stream's next answer.
func recvWithin(ctx context.Context, stream pb.Lease_LeaseKeepAliveClient, timeout time.Duration) (*pb.LeaseKeepAliveResponse, error) {
	type result struct {
		resp *pb.LeaseKeepAliveResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := stream.Recv()
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-time.After(timeout):
		// The caller cancels the stream's context on return, which ends the Recv.
		return nil, fmt.Errorf("no answer within --command-timeout %v", timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
