// Package certs holds every *tls.Config of the program: the listener's certificate
// (reloadable), the upstream CA pools with verification always on, and the throwaway
// CA and server certificates that `ldapgate certs init` generates for test beds.
package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// Default validity periods of generated certificates.
const (
	// DefaultCAValidity is how long a generated CA is valid: 10 years.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultServerValidity is how long a generated server certificate is valid: 2 years.
	DefaultServerValidity = 2 * 365 * 24 * time.Hour
)

// backdate is subtracted from NotBefore so that a peer whose clock runs slightly
// behind still accepts a certificate generated a moment ago.
const backdate = time.Hour

// CA is a certificate authority that issues server certificates.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

// GenerateCA creates a self-signed ECDSA P-256 CA valid for validFor from now.
// It may sign server certificates only (MaxPathLen 0).
func GenerateCA(commonName string, validFor time.Duration) (*CA, error) {
	if validFor <= 0 {
		return nil, fmt.Errorf("generate ca: validity %v is not positive", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"ldapgate"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, certPEM: EncodeCertPEM(der), keyPEM: keyPEM}, nil
}

// LoadCA reads a CA certificate and its private key from PEM files. It fails when
// the certificate is not a CA or the key does not belong to it.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca %s: %w", certFile, err)
	}
	cert := chain[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load ca %s: certificate %q is not a CA", certFile, cert.Subject.CommonName)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca %s: %w", keyFile, err)
	}
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load ca: key %s does not match certificate %s", keyFile, certFile)
	}
	return &CA{cert: cert, key: key, certPEM: EncodeCertPEM(cert.Raw), keyPEM: keyPEM}, nil
}

// Certificate returns the CA's certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA's certificate, PEM encoded: the file clients trust.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// KeyPEM returns the CA's private key, PEM encoded.
func (ca *CA) KeyPEM() []byte { return bytes.Clone(ca.keyPEM) }

// IssueServer creates an ECDSA P-256 server certificate (ServerAuth) for hosts,
// signed by the CA and valid for validFor from now, capped at the CA's own expiry.
// A host that parses as an IP address becomes an IP SAN, any other a DNS SAN
// (a wildcard such as "*.example.test" is allowed); the first host is also the
// subject's common name.
func (ca *CA) IssueServer(hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("issue server certificate: validity %v is not positive", validFor)
	}
	dnsNames, ips, err := splitHosts(hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	now := time.Now()
	if !now.Before(ca.cert.NotAfter) {
		return nil, nil, fmt.Errorf("issue server certificate: ca expired at %s", ca.cert.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validFor)
	if notAfter.After(ca.cert.NotAfter) {
		// A certificate outliving its issuer would stop verifying at the CA's expiry anyway.
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"ldapgate"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	keyPEM, err = EncodeKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCertPEM(der), keyPEM, nil
}

// splitHosts sorts hosts into DNS names and IP addresses, dropping duplicates.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("no host given")
	}
	seen := make(map[string]bool)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		if err := validDNSName(h); err != nil {
			return nil, nil, err
		}
		if k := strings.ToLower(h); !seen[k] {
			seen[k] = true
			dnsNames = append(dnsNames, h)
		}
	}
	return dnsNames, ips, nil
}

// validDNSName accepts host names of letters, digits, '-' and '_' separated by
// dots, with an optional "*." wildcard as the whole leftmost label.
func validDNSName(name string) error {
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("invalid host %q", name)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("invalid host %q", name)
		}
		for _, c := range l {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("invalid host %q", name)
			}
		}
	}
	return nil
}

// randomSerial returns a random positive serial number of at most 128 bits.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// publicKeyEqual reports whether two public keys are the same key.
func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
