package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
)

// TLSInfo is the TLS of one side of a member, the client API or the peer transport,
// after etcd's transport.TLSInfo: Config.ClientTLS takes etcd's --cert-file,
// --key-file, --trusted-ca-file, --client-cert-auth, ... and Config.PeerTLS the same
// flags prefixed with --peer-. A side's https:// listen URLs need CertFile and
// KeyFile, or AutoTLS; its http:// URLs ignore all of it, as in etcd.
type TLSInfo struct {
	// CertFile and KeyFile are the PEM certificate (a chain, leaf first) and private
	// key this member presents to those who connect to it. Both files are read again
	// when either changes, at the next connection, so a renewed certificate takes
	// effect without a restart; a pair that no longer loads keeps the last good one
	// in use, with a warning.
	CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile, peer side only, are the certificate this
	// member presents when it dials a peer (etcd's --peer-client-cert-file); empty,
	// it presents CertFile. A certificate for both server and client authentication
	// serves both ways.
	ClientCertFile, ClientKeyFile string
	// TrustedCAFile holds the PEM certificates of the CAs that sign the certificates
	// of those who connect and, peer side, of the peers this member dials (empty:
	// the system's roots for the latter). As in etcd, setting it requires a
	// certificate signed by one of them of everyone who connects, as ClientCertAuth
	// does.
	TrustedCAFile string
	// ClientCertAuth requires a certificate of everyone who connects, signed by a CA
	// of TrustedCAFile (etcd's --client-cert-auth, --peer-client-cert-auth). On the
	// client side, the certificate's common name is then the client's identity
	// (ClientCertCommonName).
	ClientCertAuth bool
	// CRLFile, if set, is a certificate revocation list (PEM or DER): a connection
	// presenting a certificate it lists is refused. It is read at each connection,
	// as etcd does, so a new list takes effect at once.
	CRLFile string
	// AllowedCNs and AllowedHostnames, if set, narrow who may connect: the verified
	// certificate must have one of these common names, or be valid for one of these
	// host names (etcd's --peer-cert-allowed-cn, --peer-cert-allowed-hostname,
	// --client-cert-allowed-hostname). At most one of the two may be set, and
	// ClientCertAuth (or TrustedCAFile) is needed to have a verified certificate.
	AllowedCNs, AllowedHostnames []string
	// SkipClientSANVerify, peer side only, turns off etcd's check that the
	// certificate of a peer that connects names the address it connects from: an IP
	// address among its SANs, or a DNS name resolving to it. A certificate with no IP
	// or DNS SAN passes either way, as in etcd.
	SkipClientSANVerify bool
	// AutoTLS, when CertFile and KeyFile are empty, makes a self-signed certificate
	// at start for the side's listen hosts (etcd's --auto-tls, --peer-auto-tls):
	// traffic is encrypted but nobody is authenticated, and peers dialled with it are
	// not verified. For tests. raftkv keeps it in memory, where etcd writes it under
	// the data dir, so a restart makes a new one.
	AutoTLS bool
}

// isEmpty reports whether the side has no certificate of its own.
func (info TLSInfo) isEmpty() bool { return info.CertFile == "" && info.KeyFile == "" }

// tlsSide names one side's flags for messages: its flag prefix and its URL flags.
type tlsSide struct {
	prefix     string // "" or "peer-"
	listenFlag string
	autoFlag   string
}

var (
	clientSide = tlsSide{prefix: "", listenFlag: "--listen-client-urls", autoFlag: "--auto-tls"}
	peerSide   = tlsSide{prefix: "peer-", listenFlag: "--listen-peer-urls", autoFlag: "--peer-auto-tls"}
)

func (s tlsSide) flag(name string) string { return "--" + s.prefix + name }

// checkFlag names a flag about checking the other side's certificate: the client
// side's carry "client-" (--client-crl-file), the peer side's "peer-".
func (s tlsSide) checkFlag(name string) string {
	if s.prefix == "" {
		return "--client-" + name
	}
	return s.flag(name)
}

// tlsConfigs are the tls.Configs a member serves and dials with; nil where no URL
// needs one.
type tlsConfigs struct {
	// client serves the https:// client URLs.
	client *tls.Config
	// peer serves the https:// peer URLs, and peerDial dials the https:// peers.
	peer, peerDial *tls.Config
	// warnings say what is set but unused, for the log.
	warnings []string
}

// buildTLS checks the TLS settings and returns the configs the listeners and the peer
// transport use. It reads every file named, so a missing or bad one is reported at
// start with the flag, the file and the reason. generate says whether to make the
// AutoTLS certificates; Validate, which does not, gets configs that are not for use.
func (c Config) buildTLS(generate bool) (tlsConfigs, error) {
	var out tlsConfigs
	versions, err := c.tlsVersions()
	if err != nil {
		return out, err
	}
	clientHTTPS := httpsURLs(slices.Concat(c.ListenClientURLs, c.ListenMetricsURLs))
	peerHTTPS := httpsURLs(c.ListenPeerURLs)
	var dialHTTPS []string
	for name, urls := range c.InitialCluster {
		if name != c.Name {
			for _, u := range httpsURLs(urls) {
				dialHTTPS = append(dialHTTPS, name+"="+u)
			}
		}
	}
	slices.Sort(dialHTTPS)

	if out.client, err = c.serverTLS(clientSide, c.ClientTLS, clientHTTPS, c.ListenClientURLs, versions, generate, &out.warnings); err != nil {
		return out, err
	}
	if out.client != nil {
		// gRPC over TLS negotiates HTTP/2 by ALPN; grpc-go clients refuse a server
		// that does not. HTTP/1.1 is for the HTTP endpoints beside it (http.go).
		out.client.NextProtos = []string{"h2", "http/1.1"}
	}
	if out.peer, err = c.serverTLS(peerSide, c.PeerTLS, peerHTTPS, c.ListenPeerURLs, versions, generate, &out.warnings); err != nil {
		return out, err
	}
	if len(dialHTTPS) > 0 {
		if out.peerDial, err = c.peerDialTLS(dialHTTPS, versions, out.peer); err != nil {
			return out, err
		}
	}
	return out, nil
}

// tlsVersions is the part of a tls.Config both sides share: versions and ciphers.
type tlsVersions struct {
	min, max     uint16
	cipherSuites []uint16
}

func (c Config) tlsVersions() (tlsVersions, error) {
	var v tlsVersions
	var err error
	if v.min, err = parseTLSVersion("--tls-min-version", c.TLSMinVersion); err != nil {
		return v, err
	}
	if v.min == 0 {
		v.min = tls.VersionTLS12 // as etcd: older versions are insecure
	}
	if v.max, err = parseTLSVersion("--tls-max-version", c.TLSMaxVersion); err != nil {
		return v, err
	}
	if v.max != 0 && v.min > v.max {
		return v, fmt.Errorf("--tls-min-version %s is above --tls-max-version %s; lower the one or raise the other", c.TLSMinVersion, c.TLSMaxVersion)
	}
	for _, name := range c.CipherSuites {
		id, ok := cipherSuiteID(name)
		if !ok {
			return v, fmt.Errorf("--cipher-suites: unknown cipher suite %q; use Go's names, one of %s", name, strings.Join(secureCipherSuiteNames(), ", "))
		}
		v.cipherSuites = append(v.cipherSuites, id)
	}
	if v.min == tls.VersionTLS13 && len(v.cipherSuites) > 0 {
		// Go does not let TLS 1.3's suites be chosen, so the list would do nothing.
		return v, fmt.Errorf("--cipher-suites cannot be set with --tls-min-version TLS1.3: TLS 1.3's suites are not configurable; drop one of the two")
	}
	return v, nil
}

// parseTLSVersion reads etcd's names of TLS versions; "" is 0, Go's choice.
func parseTLSVersion(flag, name string) (uint16, error) {
	switch name {
	case "":
		return 0, nil
	case "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%s %q: use TLS1.2 or TLS1.3", flag, name)
}

// cipherSuiteID finds a cipher suite by Go's name, as etcd does, including the names
// of the insecure suites and the two ChaCha20 names without _SHA256 that older Go
// used.
func cipherSuiteID(name string) (uint16, bool) {
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if cs.Name == name {
			return cs.ID, true
		}
	}
	switch name {
	case "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305":
		return tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true
	case "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305":
		return tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true
	}
	return 0, false
}

func secureCipherSuiteNames() []string {
	var names []string
	for _, cs := range tls.CipherSuites() {
		if slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			names = append(names, cs.Name)
		}
	}
	return names
}

// serverTLS checks one side's settings and returns the tls.Config its https://
// listeners serve with, or nil if it has none.
func (c Config) serverTLS(side tlsSide, info TLSInfo, https, listenURLs []string, v tlsVersions, generate bool, warnings *[]string) (*tls.Config, error) {
	if (info.CertFile == "") != (info.KeyFile == "") {
		return nil, fmt.Errorf("%s %q and %s %q: give both, or neither", side.flag("cert-file"), info.CertFile, side.flag("key-file"), info.KeyFile)
	}
	if len(https) == 0 {
		if !info.isEmpty() || info.ClientCertAuth || info.AutoTLS {
			*warnings = append(*warnings, fmt.Sprintf("%s has no https:// URL, so its TLS settings (%s, %s, %s) are ignored for it, as etcd does",
				side.listenFlag, side.flag("cert-file"), side.flag("client-cert-auth"), side.autoFlag))
		}
		// The files are still checked: a bad one is a mistake whether used or not.
	}
	var pair *keyPairFile
	switch {
	case !info.isEmpty():
		if info.AutoTLS {
			*warnings = append(*warnings, fmt.Sprintf("%s ignored: %s and %s are given", side.autoFlag, side.flag("cert-file"), side.flag("key-file")))
		}
		var err error
		if pair, err = loadKeyPair(side.flag("cert-file"), info.CertFile, side.flag("key-file"), info.KeyFile, c.Logger); err != nil {
			return nil, err
		}
	case info.AutoTLS:
		if generate && len(https) > 0 {
			cert, err := selfSignedCert(listenHosts(listenURLs), c.SelfSignedCertValidity)
			if err != nil {
				return nil, fmt.Errorf("%s: making a self-signed certificate: %w", side.autoFlag, err)
			}
			pair = fixedKeyPair(cert)
		}
	case len(https) > 0:
		return nil, fmt.Errorf("%s %s is https://, which needs %s and %s (or %s for a self-signed certificate); give them, or use http://",
			side.listenFlag, https[0], side.flag("cert-file"), side.flag("key-file"), side.autoFlag)
	}
	var cas *x509.CertPool
	if info.TrustedCAFile != "" {
		var err error
		if cas, err = loadCAs(side.flag("trusted-ca-file"), info.TrustedCAFile); err != nil {
			return nil, err
		}
	}
	verify, err := connectionChecks(side, info)
	if err != nil {
		return nil, err
	}
	if pair == nil {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:     v.min,
		MaxVersion:     v.max,
		CipherSuites:   v.cipherSuites,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.get() },
	}
	if info.TrustedCAFile != "" || info.ClientCertAuth {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = cas // nil: the system's roots
	}
	cfg.VerifyConnection = verify
	if side == peerSide && !info.SkipClientSANVerify && cfg.ClientAuth == tls.RequireAndVerifyClientCert {
		// The check needs the address the peer connects from, which only the
		// ClientHello carries: a config of its own for each connection.
		base := cfg
		base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			conf := base.Clone()
			conf.GetConfigForClient = nil
			remote := hello.Conn.RemoteAddr().String()
			conf.VerifyConnection = func(cs tls.ConnectionState) error {
				if verify != nil {
					if err := verify(cs); err != nil {
						return err
					}
				}
				return checkClientSAN(hello.Context(), cs, remote)
			}
			return conf, nil
		}
	}
	return cfg, nil
}

// peerDialTLS returns the config this member dials its https:// peers with: its peer
// certificate (or --peer-client-cert-file) for peers that require one, and the peer
// CA to verify them.
func (c Config) peerDialTLS(dialHTTPS []string, v tlsVersions, peerServer *tls.Config) (*tls.Config, error) {
	info := c.PeerTLS
	if info.isEmpty() && info.TrustedCAFile == "" && !info.AutoTLS {
		return nil, fmt.Errorf("--initial-cluster: peer %s is https://, and this member has no peer TLS settings to dial it with; "+
			"give --peer-trusted-ca-file (and --peer-cert-file, --peer-key-file if the peers require a certificate), or --peer-auto-tls",
			dialHTTPS[0])
	}
	if (info.ClientCertFile == "") != (info.ClientKeyFile == "") {
		return nil, fmt.Errorf("--peer-client-cert-file %q and --peer-client-key-file %q: give both, or neither", info.ClientCertFile, info.ClientKeyFile)
	}
	cfg := &tls.Config{MinVersion: v.min, MaxVersion: v.max, CipherSuites: v.cipherSuites}
	var pair *keyPairFile
	switch {
	case info.ClientCertFile != "":
		var err error
		if pair, err = loadKeyPair("--peer-client-cert-file", info.ClientCertFile, "--peer-client-key-file", info.ClientKeyFile, c.Logger); err != nil {
			return nil, err
		}
	case !info.isEmpty():
		var err error
		if pair, err = loadKeyPair("--peer-cert-file", info.CertFile, "--peer-key-file", info.KeyFile, c.Logger); err != nil {
			return nil, err
		}
	case info.AutoTLS && peerServer != nil:
		// The same self-signed certificate the peer listeners serve.
		cert, err := peerServer.GetCertificate(nil)
		if err != nil {
			return nil, err
		}
		pair = fixedKeyPair(*cert)
	}
	if pair != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.get() }
	}
	if info.TrustedCAFile != "" {
		var err error
		if cfg.RootCAs, err = loadCAs("--peer-trusted-ca-file", info.TrustedCAFile); err != nil {
			return nil, err
		}
	}
	if info.isEmpty() && info.AutoTLS {
		// Self-signed peers cannot be verified; etcd skips it likewise.
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

// connectionChecks returns the checks beyond the CA that a side makes of those who
// connect: revocation and allowed names.
func connectionChecks(side tlsSide, info TLSInfo) (func(tls.ConnectionState) error, error) {
	var checks []func(tls.ConnectionState) error
	if info.CRLFile != "" {
		if _, err := readCRL(side.checkFlag("crl-file"), info.CRLFile); err != nil {
			return nil, err
		}
		checks = append(checks, func(cs tls.ConnectionState) error { return checkRevoked(side.checkFlag("crl-file"), info.CRLFile, cs) })
	}
	if len(info.AllowedCNs) > 0 && len(info.AllowedHostnames) > 0 {
		return nil, fmt.Errorf("%s %v and %s %v: give one or the other", side.checkFlag("cert-allowed-cn"), info.AllowedCNs,
			side.checkFlag("cert-allowed-hostname"), info.AllowedHostnames)
	}
	if len(info.AllowedCNs)+len(info.AllowedHostnames) > 0 {
		if info.TrustedCAFile == "" && !info.ClientCertAuth {
			flag, names := side.checkFlag("cert-allowed-cn"), info.AllowedCNs
			if len(names) == 0 {
				flag, names = side.checkFlag("cert-allowed-hostname"), info.AllowedHostnames
			}
			who := "client"
			if side.prefix != "" {
				who = "peer"
			}
			return nil, fmt.Errorf("%s %s needs %s (and %s): without them no %s certificate is verified, so there is no name to check; add them, or drop %s",
				flag, strings.Join(names, ","), side.flag("client-cert-auth"), side.flag("trusted-ca-file"), who, flag)
		}
		checks = append(checks, func(cs tls.ConnectionState) error { return checkAllowedNames(info, cs) })
	}
	if len(checks) == 0 {
		return nil, nil
	}
	return func(cs tls.ConnectionState) error {
		for _, check := range checks {
			if err := check(cs); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// checkAllowedNames accepts a connection whose verified certificate has an allowed
// common name or is valid for an allowed host name.
func checkAllowedNames(info TLSInfo, cs tls.ConnectionState) error {
	for _, chain := range cs.VerifiedChains {
		if len(chain) == 0 {
			continue
		}
		leaf := chain[0]
		if slices.Contains(info.AllowedCNs, leaf.Subject.CommonName) {
			return nil
		}
		for _, host := range info.AllowedHostnames {
			if leaf.VerifyHostname(host) == nil {
				return nil
			}
		}
	}
	if len(info.AllowedCNs) > 0 {
		return fmt.Errorf("certificate's common name is not one of the allowed %v", info.AllowedCNs)
	}
	return fmt.Errorf("certificate is valid for none of the allowed host names %v", info.AllowedHostnames)
}

// loadCAs reads a PEM file of CA certificates.
func loadCAs(flag, path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; give the PEM file of the CA certificates to trust", flag, err)
	}
	pool := x509.NewCertPool()
	certs, err := parsePEMCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s does not parse: %w", flag, path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s %s holds no PEM certificate (no -----BEGIN CERTIFICATE----- block); give the CA's certificate in PEM", flag, path)
	}
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// parsePEMCertificates parses every CERTIFICATE block of data.
func parsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for block, rest := pemDecode(data); block != nil; block, rest = pemDecode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// httpsURLs returns the https:// URLs of urls.
func httpsURLs(urls []string) []string {
	var out []string
	for _, u := range urls {
		if strings.HasPrefix(u, "https://") {
			out = append(out, u)
		}
	}
	return out
}

// listenHosts returns the hosts of urls, for a self-signed certificate.
func listenHosts(urls []string) []string {
	var hosts []string
	for _, raw := range urls {
		if u, err := url.Parse(raw); err == nil && !slices.Contains(hosts, u.Hostname()) {
			hosts = append(hosts, u.Hostname())
		}
	}
	return hosts
}
