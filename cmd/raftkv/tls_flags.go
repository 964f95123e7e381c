package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"raftkv/server"
)

// groupSecurity is etcd's heading for its TLS flags.
const groupSecurity = "Security"

// tlsFlags are etcd's TLS flags, for the client API and (--peer-*) the peer
// transport; server.TLSInfo says what each does.
type tlsFlags struct {
	client, peer           server.TLSInfo
	clientAllowedHostnames []string
	clientAllowedCNs       []string
	peerAllowedCNs         []string
	peerAllowedHostnames   []string
	selfSignedCertValidity uint64
	cipherSuites           []string
	tlsMinVersion          string
	tlsMaxVersion          string
}

// servedTLSFlags are the flags of etcd's --help that tlsFlags serves.
var servedTLSFlags = []string{
	"cert-file", "key-file", "client-cert-auth", "client-crl-file", "client-cert-allowed-hostname", "trusted-ca-file", "auto-tls",
	"peer-cert-file", "peer-key-file", "peer-client-cert-auth", "peer-client-cert-file", "peer-client-key-file",
	"peer-trusted-ca-file", "peer-cert-allowed-cn", "peer-cert-allowed-hostname", "peer-auto-tls", "self-signed-cert-validity",
	"peer-crl-file", "cipher-suites", "tls-min-version", "tls-max-version", "peer-skip-client-san-verification",
}

// clientCertAllowedCNFlag is the flag behind etcd's config file key
// client-transport-security.allowed-cn, which etcd's command line lacks.
const clientCertAllowedCNFlag = "client-cert-allowed-cn"

func (f *tlsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.client.CertFile, "cert-file", "", "Path to the client server TLS cert file (PEM; a chain, leaf first). Read again when it changes.")
	fs.StringVar(&f.client.KeyFile, "key-file", "", "Path to the client server TLS key file.")
	fs.BoolVar(&f.client.ClientCertAuth, "client-cert-auth", false, "Require a client certificate signed by --trusted-ca-file; its common name is the client's identity.")
	fs.StringVar(&f.client.CRLFile, "client-crl-file", "", "Path to the client certificate revocation list file; a revoked client is refused.")
	fs.StringSliceVar(&f.clientAllowedHostnames, "client-cert-allowed-hostname", nil, "Comma-separated list of allowed SAN hostnames for client cert authentication.")
	fs.StringSliceVar(&f.clientAllowedCNs, clientCertAllowedCNFlag, nil, "Comma-separated list of allowed CNs for client cert authentication (etcd's config file: client-transport-security.allowed-cn).")
	fs.StringVar(&f.client.TrustedCAFile, "trusted-ca-file", "", "Path to the client server TLS trusted CA cert file; setting it also requires client certificates, as in etcd.")
	fs.BoolVar(&f.client.AutoTLS, "auto-tls", false, "Client TLS using a generated self-signed certificate (for tests: clients cannot verify it).")
	fs.StringVar(&f.peer.CertFile, "peer-cert-file", "", "Path to the peer server TLS cert file.")
	fs.StringVar(&f.peer.KeyFile, "peer-key-file", "", "Path to the peer server TLS key file.")
	fs.BoolVar(&f.peer.ClientCertAuth, "peer-client-cert-auth", false, "Require a peer certificate signed by --peer-trusted-ca-file of every peer that connects.")
	fs.StringVar(&f.peer.ClientCertFile, "peer-client-cert-file", "", "Path to the certificate presented when dialling peers (default: --peer-cert-file).")
	fs.StringVar(&f.peer.ClientKeyFile, "peer-client-key-file", "", "Path to the key of --peer-client-cert-file.")
	fs.StringVar(&f.peer.TrustedCAFile, "peer-trusted-ca-file", "", "Path to the peer server TLS trusted CA file; setting it also requires peer certificates.")
	fs.StringSliceVar(&f.peerAllowedCNs, "peer-cert-allowed-cn", nil, "Comma-separated list of allowed CNs for inter-peer TLS authentication.")
	fs.StringSliceVar(&f.peerAllowedHostnames, "peer-cert-allowed-hostname", nil, "Comma-separated list of allowed SAN hostnames for inter-peer TLS authentication.")
	fs.BoolVar(&f.peer.AutoTLS, "peer-auto-tls", false, "Peer TLS using generated self-signed certificates (encrypted, not authenticated: for tests).")
	fs.BoolVar(&f.peer.SkipClientSANVerify, "peer-skip-client-san-verification", false, "Skip the check that a peer's certificate names the address it connects from.")
	numberVar(fs, &f.selfSignedCertValidity, "self-signed-cert-validity", 1, "years", "The validity period of the client and peer certificates of --auto-tls and --peer-auto-tls, unit is year.")
	fs.StringVar(&f.peer.CRLFile, "peer-crl-file", "", "Path to the peer certificate revocation list file; a revoked peer is refused.")
	fs.StringSliceVar(&f.cipherSuites, "cipher-suites", nil, "Comma-separated list of supported TLS 1.2 cipher suites between client/server and peers, by Go's names\n(empty: Go's defaults).")
	fs.StringVar(&f.tlsMinVersion, "tls-min-version", "TLS1.2", "Minimum TLS version supported by raftkv: TLS1.2 or TLS1.3.")
	fs.StringVar(&f.tlsMaxVersion, "tls-max-version", "", "Maximum TLS version supported by raftkv: TLS1.2 or TLS1.3 (empty defers to Go).")
	if err := fs.MarkHidden(clientCertAllowedCNFlag); err != nil {
		panic(err)
	}
	setGroup(fs, groupSecurity, servedTLSFlags...)
}

// apply sets cfg's TLS settings from the flags.
func (f *tlsFlags) apply(cfg *server.Config) error {
	if f.selfSignedCertValidity == 0 {
		return fmt.Errorf("--self-signed-cert-validity 0: a certificate must be valid for at least 1 year")
	}
	// A certificate's dates end at year 9999 (X.509's GeneralizedTime).
	if most := uint64(9999 - time.Now().Year() - 1); f.selfSignedCertValidity > most {
		return fmt.Errorf("--self-signed-cert-validity %d years would end past 9999, the last year a certificate can name; use at most %d",
			f.selfSignedCertValidity, most)
	}
	cfg.ClientTLS, cfg.PeerTLS = f.client, f.peer
	cfg.ClientTLS.AllowedHostnames = trimAll(f.clientAllowedHostnames)
	cfg.ClientTLS.AllowedCNs = trimAll(f.clientAllowedCNs)
	cfg.PeerTLS.AllowedCNs = trimAll(f.peerAllowedCNs)
	cfg.PeerTLS.AllowedHostnames = trimAll(f.peerAllowedHostnames)
	cfg.CipherSuites = trimAll(f.cipherSuites)
	cfg.TLSMinVersion, cfg.TLSMaxVersion = f.tlsMinVersion, f.tlsMaxVersion
	cfg.SelfSignedCertValidity = uint(f.selfSignedCertValidity)
	return nil
}

// trimAll drops the spaces around each element and the empty ones ("a, b," is a, b).
func trimAll(list []string) []string {
	var out []string
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// transportSecurityFlags maps the keys of etcd's config file sections
// client-transport-security and peer-transport-security to the flags they set.
var transportSecurityFlags = map[string]map[string]string{
	"client-transport-security": {
		"cert-file": "cert-file", "key-file": "key-file", "client-cert-file": "client-cert-file", "client-key-file": "client-key-file",
		"client-cert-auth": "client-cert-auth", "trusted-ca-file": "trusted-ca-file", "auto-tls": "auto-tls",
		"allowed-cn": clientCertAllowedCNFlag, "allowed-hostname": "client-cert-allowed-hostname",
	},
	"peer-transport-security": {
		"cert-file": "peer-cert-file", "key-file": "peer-key-file", "client-cert-file": "peer-client-cert-file",
		"client-key-file": "peer-client-key-file", "client-cert-auth": "peer-client-cert-auth",
		"trusted-ca-file": "peer-trusted-ca-file", "auto-tls": "peer-auto-tls", "allowed-cn": "peer-cert-allowed-cn",
		"allowed-hostname": "peer-cert-allowed-hostname", "skip-client-san-verification": "peer-skip-client-san-verification",
	},
}
