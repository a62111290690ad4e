package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names WriteInit uses inside its directory.
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server.key"
)

// initCAName is the common name of the CA that WriteInit generates.
const initCAName = "ldapgate throwaway CA"

// InitResult says what WriteInit did with the CA and with the server certificate.
type InitResult struct {
	CA     Outcome
	Server Outcome
}

// Outcome says what WriteInit did with one certificate and its key.
type Outcome struct {
	// CertFile and KeyFile are the paths of the certificate and its key.
	CertFile, KeyFile string
	// Written is true when both files were (re)written, false when they were kept.
	Written bool
	// Reason says why, e.g. "created", "forced", "lacks host dc2.example.test".
	Reason string
}

// WriteInit makes dir hold a CA (ca.pem, ca.key) and a server certificate for hosts
// signed by it (server.pem, server.key), so that running it again is harmless:
// unless force is set, an existing CA is reused, and an existing server certificate
// is kept when it is signed by that CA, still valid and covers every host (as a SAN
// of its own, not through a wildcard); otherwise it is re-issued from the CA. With
// force, both are generated anew. Keys are written with mode 0600, every file
// through a temporary file and a rename.
func WriteInit(dir string, hosts []string, force bool) (InitResult, error) {
	if dir == "" {
		return InitResult{}, errors.New("no directory given")
	}
	if _, _, err := splitHosts(hosts); err != nil {
		return InitResult{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return InitResult{}, err
	}
	res := InitResult{
		CA:     Outcome{CertFile: filepath.Join(dir, CACertFile), KeyFile: filepath.Join(dir, CAKeyFile)},
		Server: Outcome{CertFile: filepath.Join(dir, ServerCertFile), KeyFile: filepath.Join(dir, ServerKeyFile)},
	}

	ca, err := initCA(&res.CA, force)
	if err != nil {
		return res, err
	}

	res.Server.Reason = "new CA"
	if !res.CA.Written {
		res.Server.Reason = serverNeedsIssue(ca, res.Server, hosts)
	}
	if res.Server.Reason == "" {
		res.Server.Reason = "valid for every host"
		return res, nil
	}
	certPEM, keyPEM, err := ca.IssueServer(hosts, DefaultServerValidity)
	if err != nil {
		return res, err
	}
	if err := writePair(res.Server, certPEM, keyPEM); err != nil {
		return res, err
	}
	res.Server.Written = true
	return res, nil
}

// initCA loads the CA described by o, or generates and writes a new one when
// there is none or force is set.
func initCA(o *Outcome, force bool) (*CA, error) {
	certExists, err := exists(o.CertFile)
	if err != nil {
		return nil, err
	}
	keyExists, err := exists(o.KeyFile)
	if err != nil {
		return nil, err
	}
	switch {
	case force:
		o.Reason = "forced"
	case certExists && keyExists:
		ca, err := LoadCA(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("reuse existing ca: %w", err)
		}
		o.Reason = "existing CA"
		return ca, nil
	case certExists:
		// Replacing a CA others may already trust must be a deliberate choice.
		return nil, fmt.Errorf("%s exists without %s", o.CertFile, o.KeyFile)
	case keyExists:
		return nil, fmt.Errorf("%s exists without %s", o.KeyFile, o.CertFile)
	default:
		o.Reason = "created"
	}
	ca, err := GenerateCA(initCAName, DefaultCAValidity)
	if err != nil {
		return nil, err
	}
	if err := writePair(*o, ca.CertPEM(), ca.KeyPEM()); err != nil {
		return nil, err
	}
	o.Written = true
	return ca, nil
}

// serverNeedsIssue returns why the server certificate described by o must be
// issued again, or "" when it can be kept.
func serverNeedsIssue(ca *CA, o Outcome, hosts []string) string {
	certPEM, certErr := os.ReadFile(o.CertFile)
	keyPEM, keyErr := os.ReadFile(o.KeyFile)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return "created"
	case certErr != nil:
		return fileProblem(o.CertFile, certErr)
	case keyErr != nil:
		return fileProblem(o.KeyFile, keyErr)
	}
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return fileProblem(o.CertFile, err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return fileProblem(o.KeyFile, err)
	}
	leaf := chain[0]
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		return "key does not match certificate"
	}
	if time.Now().After(leaf.NotAfter) {
		return "expired"
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		return "not valid under the CA"
	}
	for _, h := range hosts {
		if !hasSAN(leaf, h) {
			return fmt.Sprintf("lacks host %s", h)
		}
	}
	return ""
}

// fileProblem says in a few words what is wrong with the file at path.
func fileProblem(path string, err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return filepath.Base(path) + " missing"
	}
	return filepath.Base(path) + " unreadable"
}

// hasSAN reports whether host is literally one of the certificate's SANs.
func hasSAN(cert *x509.Certificate, host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return slices.ContainsFunc(cert.IPAddresses, ip.Equal)
	}
	return slices.ContainsFunc(cert.DNSNames, func(n string) bool { return strings.EqualFold(n, host) })
}

// writePair writes a key (mode 0600) and then its certificate (mode 0644).
func writePair(o Outcome, certPEM, keyPEM []byte) error {
	if err := writeFileAtomic(o.KeyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(o.CertFile, certPEM, 0o644)
}

// writeFileAtomic writes data to a temporary file beside path and renames it over
// path, so that a reader sees either the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// exists reports whether path exists.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}
