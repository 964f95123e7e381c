package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// keyPairFile is a certificate and its key read from files, read again at the next
// handshake once either file changes (size or modification time), so that a renewed
// certificate is served without a restart. A pair that fails to load then keeps the
// last good one in use, with a warning: a certificate caught half-written must not
// take the member off the network.
type keyPairFile struct {
	certFlag, certFile string
	keyFlag, keyFile   string
	logger             *slog.Logger

	mu struct {
		sync.Mutex
		cert   *tls.Certificate
		stamps [2]fileStamp
	}
}

// fileStamp is what tells a changed file: its size and modification time.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// loadKeyPair reads a certificate and its key, reporting a file that cannot be read
// or a pair that does not match with the flags that named them.
func loadKeyPair(certFlag, certFile, keyFlag, keyFile string, logger *slog.Logger) (*keyPairFile, error) {
	k := &keyPairFile{certFlag: certFlag, certFile: certFile, keyFlag: keyFlag, keyFile: keyFile, logger: logger}
	cert, err := k.read()
	if err != nil {
		return nil, err
	}
	stamps, err := k.stat()
	if err != nil {
		return nil, err
	}
	k.mu.cert, k.mu.stamps = cert, stamps
	return k, nil
}

// fixedKeyPair serves cert, which no file backs (a self-signed one).
func fixedKeyPair(cert tls.Certificate) *keyPairFile {
	k := &keyPairFile{}
	k.mu.cert = &cert
	return k
}

// get returns the certificate to present, reloading it if its files changed.
func (k *keyPairFile) get() (*tls.Certificate, error) {
	if k.certFile == "" {
		return k.mu.cert, nil // fixed: never changes, so no lock
	}
	stamps, statErr := k.stat()
	k.mu.Lock()
	cert, isSame := k.mu.cert, stamps == k.mu.stamps
	k.mu.Unlock()
	if statErr != nil || isSame {
		return cert, nil
	}
	fresh, err := k.read()
	k.mu.Lock()
	defer k.mu.Unlock()
	// Not retried until a file changes again: a pair caught half-written (the new
	// certificate with the old key) reloads once the key is written too.
	k.mu.stamps = stamps
	if err != nil {
		k.logger.Warn("TLS certificate changed on disk but does not load; still serving the previous one", "err", err)
		return k.mu.cert, nil
	}
	k.logger.Info("TLS certificate reloaded", "cert-file", k.certFile, "subject", fresh.Leaf.Subject.String(),
		"not-after", fresh.Leaf.NotAfter)
	k.mu.cert = fresh
	return fresh, nil
}

func (k *keyPairFile) stat() ([2]fileStamp, error) {
	var stamps [2]fileStamp
	for i, f := range []struct{ flag, path string }{{k.certFlag, k.certFile}, {k.keyFlag, k.keyFile}} {
		info, err := os.Stat(f.path)
		if err != nil {
			return stamps, fmt.Errorf("%s: %w", f.flag, err)
		}
		stamps[i] = fileStamp{size: info.Size(), modTime: info.ModTime()}
	}
	return stamps, nil
}

func (k *keyPairFile) read() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(k.certFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; give the PEM file of this member's certificate", k.certFlag, err)
	}
	keyPEM, err := os.ReadFile(k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; give the PEM file of the certificate's private key", k.keyFlag, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		hint := "give a PEM certificate and the PEM private key it was issued for"
		if strings.Contains(err.Error(), "does not match") {
			hint = "the key is not the one the certificate was issued for; give the matching key"
		}
		return nil, fmt.Errorf("%s %s and %s %s: %w; %s", k.certFlag, k.certFile, k.keyFlag, k.keyFile, err, hint)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s %s: %w", k.certFlag, k.certFile, err)
		}
	}
	if now := time.Now(); now.After(cert.Leaf.NotAfter) && k.logger != nil {
		k.logger.Warn("TLS certificate has expired; those who connect will refuse it", "cert-file", k.certFile,
			"not-after", cert.Leaf.NotAfter)
	}
	return &cert, nil
}

// selfSignedCert makes the certificate of --auto-tls and --peer-auto-tls: a fresh
// ECDSA P-256 key, valid for hosts and for validityYears, for both server and client
// authentication (a member presents its peer certificate when it dials, too).
func selfSignedCert(hosts []string, validityYears uint) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"raftkv"}, CommonName: "raftkv auto-tls"},
		// An hour back, for a peer whose clock is a little behind.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(int(validityYears), 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// readCRL reads a certificate revocation list, PEM or DER.
func readCRL(flag, path string) (*x509.RevocationList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; give a certificate revocation list (PEM or DER)", flag, err)
	}
	if block, _ := pem.Decode(data); block != nil {
		data = block.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s does not parse as a certificate revocation list: %w", flag, path, err)
	}
	return crl, nil
}

// checkRevoked refuses a connection whose certificates the CRL at path lists. It reads
// the list at each connection, as etcd does, so that a revocation takes effect at
// once; connections are long-lived, so this is rare.
func checkRevoked(flag, path string, cs tls.ConnectionState) error {
	crl, err := readCRL(flag, path)
	if err != nil {
		return err
	}
	for _, entry := range crl.RevokedCertificateEntries {
		for _, cert := range cs.PeerCertificates {
			if cert.SerialNumber.Cmp(entry.SerialNumber) == 0 {
				return fmt.Errorf("certificate %q (serial %x) is revoked by %s", cert.Subject.CommonName, cert.SerialNumber, path)
			}
		}
	}
	return nil
}

// sanLookupTimeout bounds the DNS lookups of checkClientSAN.
const sanLookupTimeout = 5 * time.Second

// checkClientSAN is etcd's check that the certificate of a peer names the address the
// peer connects from: an IP SAN equal to it, or a DNS SAN that resolves to it. A
// certificate without IP or DNS SANs passes, as in etcd.
func checkClientSAN(ctx context.Context, cs tls.ConnectionState, remote string) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if len(leaf.IPAddresses) == 0 && len(leaf.DNSNames) == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return err
	}
	if len(leaf.IPAddresses) > 0 && leaf.VerifyHostname(host) == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sanLookupTimeout)
	defer cancel()
	for _, name := range leaf.DNSNames {
		if strings.HasPrefix(name, "*.") {
			continue
		}
		addrs, _ := net.DefaultResolver.LookupHost(ctx, name)
		for _, addr := range addrs {
			if addr == host {
				return nil
			}
		}
	}
	return fmt.Errorf("peer certificate %q is for %v %v, not %s, the address it connects from; "+
		"issue it for that address, or set --peer-skip-client-san-verification", leaf.Subject.CommonName, leaf.IPAddresses, leaf.DNSNames, host)
}

// pemDecode is pem.Decode as a pair for loops.
func pemDecode(data []byte) (*pem.Block, []byte) { return pem.Decode(data) }
