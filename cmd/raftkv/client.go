package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// defaultEndpoints are where the client commands look when --endpoints is not given:
// the client URLs of "raftkv cluster"'s first three members, etcd's local-cluster
// ports, the first of which is also where a member started with no flags listens.
// A command is served by the first that answers, and "raftkv status" leaves out the
// ones that do not answer and are not members of the cluster that does, so the
// defaults work against a single member as well as against the local cluster.
var defaultEndpoints = []string{"127.0.0.1:2379", "127.0.0.1:22379", "127.0.0.1:32379"}

// Client defaults. A Range page aims at pageTargetBytes, which keeps the CLI's
// memory flat on a store of any size; the receive limit is etcdctl's default of
// MaxInt32 cut to what a page can need: a page of one key holds at most one value,
// and a value is at most the server's --max-request-bytes (1.5 MiB by default, and
// etcd advises against more than 10 MiB).
const (
	defaultDialTimeout    = 2 * time.Second
	defaultCommandTimeout = 5 * time.Second
	defaultMaxRecvBytes   = 64 << 20
)

// clientFlags are the flags every client command takes, with etcdctl's names.
type clientFlags struct {
	endpoints      []string
	dialTimeout    time.Duration
	commandTimeout time.Duration
	writeOut       string
	maxRecvBytes   int
	// endpointsGiven is whether the user chose the endpoints; set by begin.
	endpointsGiven bool
	tls            clientTLSFlags
	auth           clientAuthFlags
}

// register adds the client flags to a client command. outputs are the -w formats the
// command prints, its default first.
func (c *clientFlags) register(cmd *cobra.Command, outputs ...string) {
	fs := cmd.Flags()
	fs.StringSliceVar(&c.endpoints, "endpoints", defaultEndpoints, "Comma-separated gRPC endpoints (host:port) of the members to ask; the first that answers serves the command.")
	setHelpDefault(fs, "endpoints", strings.Join(defaultEndpoints, ","))
	c.dialTimeout, c.commandTimeout = defaultDialTimeout, defaultCommandTimeout
	fs.Var(timeoutValue{durationValue{&c.dialTimeout}}, "dial-timeout", "How long to wait for a connection to one endpoint before trying the next.")
	fs.Var(timeoutValue{durationValue{&c.commandTimeout}}, "command-timeout", "How long the whole command may take, over every endpoint it tries.")
	fs.StringVarP(&c.writeOut, "write-out", "w", "", "Output format: "+strings.Join(outputs, " or ")+".")
	setHelpDefault(fs, "write-out", outputs[0])
	numberVar(fs, &c.maxRecvBytes, "max-recv-bytes", defaultMaxRecvBytes, "bytes", "Largest response message the client accepts, in bytes.")
	setGroup(fs, groupClient, "endpoints", "dial-timeout", "command-timeout", "write-out", "max-recv-bytes")
	c.tls.register(fs)
	c.auth.register(fs)
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if c.writeOut == "" {
			c.writeOut = outputs[0]
		}
		for _, o := range outputs {
			if c.writeOut == o {
				return c.begin(cmd)
			}
		}
		return usageErrorf("-w %q: %s prints %s", c.writeOut, cmd.CommandPath(), strings.Join(outputs, " or "))
	}
}

// timeoutValue is a client command's timeout flag: a member's durationValue, whose
// refusal of a bare number does not offer 0, which a timeout cannot be (begin
// refuses it).
type timeoutValue struct{ durationValue }

func (v timeoutValue) Set(s string) error {
	if s != "0" && strings.ContainsAny(s, "0123456789") && strings.Trim(s, "+-.0123456789") == "" {
		return fmt.Errorf("%q has no unit; give e.g. %ss, %sm or %sms", s, s, s, s)
	}
	return v.durationValue.Set(s)
}

func (c *clientFlags) begin(cmd *cobra.Command) error {
	c.endpointsGiven = cmd.Flags().Changed("endpoints")
	if err := c.tls.begin(); err != nil {
		return &usageError{err}
	}
	if err := c.auth.begin(); err != nil {
		return &usageError{err}
	}
	var eps []string
	for _, ep := range c.endpoints {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		addr := endpointAddr(ep)
		switch {
		case strings.HasPrefix(ep, "https://"):
			c.tls.secure[addr] = true
		case strings.HasPrefix(ep, "http://"):
			c.tls.secure[addr] = false
		case strings.Contains(ep, "://"):
			return usageErrorf("--endpoints %s: use host:port, http://host:port or https://host:port", ep)
		default:
			c.tls.secure[addr] = c.tls.isGiven
		}
		if err := checkEndpoint(addr); err != nil {
			return usageErrorf("--endpoints %q is malformed: %v; give host:port, http://host:port or https://host:port", ep, err)
		}
		eps = append(eps, addr)
	}
	if len(eps) == 0 {
		return usageErrorf("--endpoints is empty; give host:port of at least one member")
	}
	c.endpoints = eps
	if c.dialTimeout <= 0 || c.commandTimeout <= 0 {
		return usageErrorf("--dial-timeout %v and --command-timeout %v must be positive", c.dialTimeout, c.commandTimeout)
	}
	if c.maxRecvBytes < 1024 {
		return usageErrorf("--max-recv-bytes %d is too small; use at least 1024", c.maxRecvBytes)
	}
	return nil
}

// checkEndpoint checks an endpoint's host:port, which gRPC would otherwise take as a
// name to resolve and fail on with "produced zero addresses".
func checkEndpoint(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err != nil:
		if ae, ok := err.(*net.AddrError); ok {
			return errors.New(ae.Err)
		}
		return err
	case host == "":
		return errors.New("no host")
	case strings.ContainsAny(host, "/?#@ "):
		return fmt.Errorf("%q is not a host name or address", host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a TCP port (1-65535)", port)
	}
	return nil
}

// endpointError is what went wrong at one endpoint.
type endpointError struct {
	endpoint string
	err      error
}

// endpointErrors is the error of a command that no endpoint served: each endpoint's
// own error, so that the cause is not hidden behind the last endpoint's timeout.
type endpointErrors []endpointError

func (e endpointErrors) Error() string {
	if len(e) == 1 {
		if e.allRefused() {
			return fmt.Sprintf("%s: %v\n%s", e[0].endpoint, e[0].err, strings.Replace(noMemberHint, "these endpoints", "this endpoint", 1))
		}
		return fmt.Sprintf("%s: %v", e[0].endpoint, e[0].err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "none of %d endpoints served the command:", len(e))
	for _, x := range e {
		fmt.Fprintf(&b, "\n  %s: %v", x.endpoint, x.err)
	}
	if e.allRefused() {
		b.WriteString("\n" + noMemberHint)
	}
	return b.String()
}

// noMemberHint is what to do when no endpoint has a member listening.
const noMemberHint = "no member is running at these endpoints: start a local cluster with 'raftkv cluster' " +
	"(or one member with 'raftkv'), or point --endpoints at a running member's client URLs"

// allRefused reports whether every endpoint refused the connection: nothing
// listens there, as opposed to a member that is slow, down mid-call or misconfigured.
func (e endpointErrors) allRefused() bool {
	for _, x := range e {
		if !strings.Contains(x.err.Error(), "connection refused") {
			return false
		}
	}
	return len(e) > 0
}

// dialError is a connection that never came up: the request was not sent, so any
// command may go on to the next endpoint.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }

// dial connects to ep, waiting at most --dial-timeout for the connection, and
// authenticates on it with --user (see clientAuthFlags).
func (c *clientFlags) dial(ctx context.Context, ep string) (*grpc.ClientConn, error) {
	conn, err := c.connect(ctx, ep)
	if err != nil {
		return nil, err
	}
	if err := c.auth.authenticate(ctx, conn); err != nil {
		conn.Close()
		if retryable(err) {
			// Nothing was sent but the authentication: any command may go on.
			return nil, &dialError{fmt.Errorf("authenticating as %s: %w", c.auth.name, c.rpcError(err))}
		}
		return nil, err
	}
	return conn, nil
}

// connect connects to ep, waiting at most --dial-timeout for the connection.
func (c *clientFlags) connect(ctx context.Context, ep string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if c.tls.secure[ep] {
		creds = credentials.NewTLS(c.tls.config.Clone())
	}
	conn, err := grpc.NewClient(ep,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(tokenCredentials{&c.auth}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.maxRecvBytes)))
	if err != nil {
		return nil, &dialError{err}
	}
	dialCtx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	conn.Connect()
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return conn, nil
		case connectivity.TransientFailure:
			// The state does not say why; a call that does not wait for the
			// connection fails at once with the dialer's error.
			_, err := pb.NewMaintenanceClient(conn).Status(dialCtx, &pb.StatusRequest{})
			conn.Close()
			if err == nil {
				err = errors.New("the connection failed")
			}
			return nil, &dialError{fmt.Errorf("cannot connect: %s%s%s", dialReason(err), c.tls.hint(err, c.tls.secure[ep]), notClientAPIHint(err))}
		}
		if !conn.WaitForStateChange(dialCtx, state) {
			conn.Close()
			return nil, &dialError{fmt.Errorf("no connection within --dial-timeout %v", c.dialTimeout)}
		}
	}
}

// notClientAPIHint says what to do about an address that answered, but not with gRPC:
// most likely a member's peer URL, which speaks HTTP/2 of its own.
func notClientAPIHint(err error) string {
	if !strings.Contains(err.Error(), "not a settings frame") {
		return ""
	}
	return "; this address does not serve the client API: it may be a member's peer URL " +
		"(a member's client URLs are its --advertise-client-urls, port 2379 by default)"
}

// dialReason cuts gRPC's wrapping off a dial error: "dial tcp 127.0.0.1:2379:
// connect: connection refused".
func dialReason(err error) string {
	msg := status.Convert(err).Message()
	if _, after, ok := strings.Cut(msg, "Error while dialing: "); ok {
		msg = strings.TrimSuffix(after, `"`)
	}
	return msg
}

// rpcError says what a failed call means, with a hint where the CLI knows one.
func (c *clientFlags) rpcError(err error) error {
	var de *dialError
	if errors.As(err, &de) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch {
	case st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "received message larger than max"):
		return fmt.Errorf("%s; one key's value is larger than the client accepts: raise --max-recv-bytes (now %d)", st.Message(), c.maxRecvBytes)
	case st.Code() == codes.DeadlineExceeded:
		return fmt.Errorf("no answer within --command-timeout %v (%s)", c.commandTimeout, st.Message())
	case st.Code() == codes.Unavailable && strings.Contains(st.Message(), "Error while dialing"):
		return fmt.Errorf("connection lost: %s", dialReason(err))
	}
	return fmt.Errorf("%s (%s)", st.Message(), st.Code())
}

// retryable reports whether a read that failed with err may go to the next endpoint.
func retryable(err error) bool {
	var de *dialError
	if errors.As(err, &de) {
		return true
	}
	code := status.Code(err)
	return code == codes.Unavailable || code == codes.DeadlineExceeded
}

// learnerRefused reports a learner's refusal ("rpc not supported for learner"): it
// comes before the call runs, so even a write may go to the next endpoint, as
// etcdctl's does.
func learnerRefused(err error) bool {
	st := status.Convert(err)
	want := status.Convert(rpctypes.ErrGRPCNotSupportedForLearner)
	return st.Code() == want.Code() && st.Message() == want.Message()
}

// first runs call against the endpoints in order until one serves it, within
// --command-timeout in all. A call that failed after its request was sent goes to
// the next endpoint only if isRead: a write might have been applied already.
func (c *clientFlags) first(cmd *cobra.Command, isRead bool, call func(ctx context.Context, conn *grpc.ClientConn) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), c.commandTimeout)
	defer cancel()
	var errs endpointErrors
	for _, ep := range c.endpoints {
		if ctx.Err() != nil {
			errs = append(errs, endpointError{ep, fmt.Errorf("not tried: --command-timeout %v had passed", c.commandTimeout)})
			continue
		}
		conn, err := c.dial(ctx, ep)
		if err == nil {
			err = call(ctx, conn)
			conn.Close()
			if err == nil {
				return nil
			}
		}
		errs = append(errs, endpointError{ep, c.rpcError(err)})
		var de *dialError
		if !errors.As(err, &de) && !(isRead && retryable(err)) && !learnerRefused(err) {
			return errs
		}
	}
	return errs
}
