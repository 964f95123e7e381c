package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/pflag"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// clientAuthFlags are etcdctl's --user and --password. With --user, the first
// connection that comes up authenticates, and every call of the command, on any
// endpoint, carries the token it got: a simple token is good on every member. A
// cluster with auth disabled answers Authenticate with "authentication is not
// enabled", and the command goes on without a token, as etcdctl's does.
type clientAuthFlags struct {
	user, password string
	// askPassword asks for the password of a --user without one (the terminal).
	askPassword func(name string) (string, error)

	// Set by begin: the user to authenticate as, "" for none, and its password.
	name, pass string
	mu         struct {
		sync.Mutex
		// done: authenticated, or failed for good (err); token is "" with auth
		// disabled. inflight is closed when the authentication under way ends.
		done     bool
		token    string
		err      error
		inflight chan struct{}
	}
}

func (f *clientAuthFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.user, "user", "", "Authenticate as this user: NAME:PASSWORD, or NAME alone to be asked the password\non the terminal.")
	fs.StringVar(&f.password, "password", "", "The password of --user, which then holds the name alone.")
	setGroup(fs, groupClient, "user", "password")
}

// begin reads the flags as etcdctl does: with --password, --user is the name
// whole; else NAME:PASSWORD, or NAME and a password asked for. No error repeats a
// password.
func (f *clientAuthFlags) begin() error {
	if f.user == "" {
		if f.password != "" {
			return errors.New("--password is given without --user; give --user NAME too")
		}
		return nil
	}
	f.name, f.pass = f.user, f.password
	if f.password == "" {
		var hasPassword bool
		f.name, f.pass, hasPassword = strings.Cut(f.user, ":")
		if f.name != "" && !hasPassword {
			var err error
			if f.pass, err = f.askPassword(f.name); err != nil {
				return err
			}
		}
	}
	if f.name == "" {
		return errors.New("--user names no user before its ':'; give --user NAME:PASSWORD")
	}
	return nil
}

// errNoTerminal is askPassword's answer when there is no terminal to ask on.
var errNoTerminal = errors.New("stdin is not a terminal to ask the password on")

// askPasswordOn asks for name's password on the terminal of stdin, without echo,
// the prompt going to prompt.
func askPasswordOn(prompt io.Writer) func(name string) (string, error) {
	return func(name string) (string, error) {
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return "", fmt.Errorf("--user %s has no password, and %w: give --user %s:PASSWORD or --password", name, errNoTerminal, name)
		}
		fmt.Fprint(prompt, "Password: ")
		password, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("reading the password of --user %s: %w", name, err)
		}
		return string(password), nil
	}
}

// authenticate gets the command's token on conn, unless a connection already did:
// one authentication at a time, and none after one succeeded or failed for good.
// A failure that another member may not have (no leader, a timeout) leaves the
// next connection to try again.
func (f *clientAuthFlags) authenticate(ctx context.Context, conn *grpc.ClientConn) error {
	if f.name == "" {
		return nil
	}
	for {
		f.mu.Lock()
		if f.mu.done {
			err := f.mu.err
			f.mu.Unlock()
			return err
		}
		inflight := f.mu.inflight
		if inflight == nil {
			f.mu.inflight = make(chan struct{})
		}
		f.mu.Unlock()
		if inflight == nil {
			break
		}
		select {
		case <-inflight:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	resp, err := pb.NewAuthClient(conn).Authenticate(ctx, &pb.AuthenticateRequest{Name: f.name, Password: f.pass})
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.mu.inflight)
	f.mu.inflight = nil
	switch {
	case err == nil:
		f.mu.done, f.mu.token = true, resp.Token
	case status.Convert(err).Message() == status.Convert(rpctypes.ErrGRPCAuthNotEnabled).Message():
		f.mu.done = true
	case retryable(err):
		return err
	default:
		f.mu.done, f.mu.err = true, err
	}
	return f.mu.err
}

// tokenCredentials put the command's token on every call, where etcd's clients put
// it.
type tokenCredentials struct{ f *clientAuthFlags }

func (c tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	c.f.mu.Lock()
	token := c.f.mu.token
	c.f.mu.Unlock()
	if token == "" {
		return nil, nil
	}
	return map[string]string{rpctypes.TokenFieldNameGRPC: token}, nil
}

// RequireTransportSecurity: no, as etcd's clients; over plaintext the token and the
// password travel in the clear (use https:// endpoints).
func (tokenCredentials) RequireTransportSecurity() bool { return false }
