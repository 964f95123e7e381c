package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// clientTLSFlags are etcdctl's TLS flags for the client commands. An https://
// endpoint is reached with TLS, an http:// one without; a bare host:port with TLS
// when any of these flags is given.
type clientTLSFlags struct {
	cacert, cert, key  string
	insecureSkipVerify bool

	// Set by begin: whether any flag was given, the config to dial with, and which
	// endpoints (host:port) take TLS.
	isGiven bool
	config  *tls.Config
	secure  map[string]bool
}

func (f *clientTLSFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cacert, "cacert", "", "Verify the members' certificates with this CA bundle (PEM); empty: the system's CAs.")
	fs.StringVar(&f.cert, "cert", "", "Identify this client with this TLS certificate (PEM), for members with --client-cert-auth.")
	fs.StringVar(&f.key, "key", "", "The private key of --cert (PEM).")
	fs.BoolVar(&f.insecureSkipVerify, "insecure-skip-tls-verify", false, "Skip the verification of the members' certificates (members with --auto-tls; tests only).")
	setGroup(fs, groupClient, "cacert", "cert", "key", "insecure-skip-tls-verify")
}

// begin reads the files the flags name, so that a bad one fails before any dial.
func (f *clientTLSFlags) begin() error {
	f.secure = map[string]bool{}
	f.isGiven = f.cacert != "" || f.cert != "" || f.key != "" || f.insecureSkipVerify
	f.config = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecureSkipVerify}
	if f.cacert != "" {
		data, err := os.ReadFile(f.cacert)
		if err != nil {
			return fmt.Errorf("--cacert: %w", err)
		}
		f.config.RootCAs = x509.NewCertPool()
		if !f.config.RootCAs.AppendCertsFromPEM(data) {
			return fmt.Errorf("--cacert %s holds no PEM certificate that parses; give the CA certificate that signed the members'", f.cacert)
		}
	}
	if (f.cert == "") != (f.key == "") {
		return fmt.Errorf("--cert %q and --key %q: give both, or neither", f.cert, f.key)
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return fmt.Errorf("--cert %s and --key %s: %w", f.cert, f.key, err)
		}
		f.config.Certificates = []tls.Certificate{pair}
	}
	return nil
}

// hint says what to do about a connection that failed for a TLS reason.
func (f *clientTLSFlags) hint(err error, isTLS bool) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return "; give --cacert with the CA that signed the members' certificates (--insecure-skip-tls-verify for --auto-tls members)"
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate"):
		return "; the member requires a client certificate of its CA: give --cert and --key"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "; the member serves plaintext: use an http:// endpoint, or leave out the TLS flags"
	case !isTLS && (strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset")):
		return "; if the member serves TLS, use an https:// endpoint and give --cacert (--insecure-skip-tls-verify for --auto-tls members)"
	case isTLS && f.cert == "" && (strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")):
		// With TLS 1.3 the client may finish first and learn of the refusal only as a
		// closed connection.
		return "; the member closed the connection: if it requires a client certificate, give --cert and --key"
	}
	return ""
}

// clientBoolFlags are the client commands' boolean flags. The root command knows them
// too, hidden: cobra finds the command word by skipping flags, and takes an unknown
// flag before it to have a value, so "raftkv --insecure-skip-tls-verify get foo"
// would read "get" as the flag's value. A member refuses them (checkClientBoolFlags).
var clientBoolFlags = []string{"insecure-skip-tls-verify"}

// registerClientBoolFlags adds clientBoolFlags to root, hidden, once its commands are
// added: each flag's usage is the refusal checkClientBoolFlags gives, naming the
// commands that take it.
func registerClientBoolFlags(root *cobra.Command) {
	for _, name := range clientBoolFlags {
		root.Flags().Bool(name, false, "--"+name+" is"+strings.TrimPrefix(flagOfCommandsHint(root, "--"+name), "; --"+name+" is"))
		if err := root.Flags().MarkHidden(name); err != nil {
			panic(err)
		}
	}
}

// checkClientBoolFlags refuses a client command's flag given to a member.
func checkClientBoolFlags(fs *pflag.FlagSet) error {
	for _, name := range clientBoolFlags {
		if f := fs.Lookup(name); f != nil && f.Changed {
			return errors.New(f.Usage)
		}
	}
	return nil
}

// endpointAddr is the host:port of an endpoint or client URL.
func endpointAddr(ep string) string {
	return strings.TrimPrefix(strings.TrimPrefix(ep, "https://"), "http://")
}
