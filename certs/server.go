package certs

import (
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
)

// Reloader serves a certificate and key loaded from files and loads them again on
// request, so that a renewed certificate takes effect without a restart. It is
// safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	mu                sync.Mutex // serialises Reload
	cert              atomic.Pointer[tls.Certificate]
}

// NewReloader loads the certificate chain in certFile and its key in keyFile.
func NewReloader(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload loads the files again. When they cannot be read, parsed or do not match,
// it returns an error and keeps serving the certificate it had.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.load(r.certFile, r.keyFile)
}

// ReloadFrom loads the certificate chain in certFile and its key in keyFile,
// which later Reloads read too. When they cannot be read, parsed or do not
// match, it returns an error and keeps serving, and reloading, what it had.
func (r *Reloader) ReloadFrom(certFile, keyFile string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(certFile, keyFile); err != nil {
		return err
	}
	r.certFile, r.keyFile = certFile, keyFile
	return nil
}

// load serves the pair in certFile and keyFile; r.mu is held.
func (r *Reloader) load(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s with key %s: %w", certFile, keyFile, err)
	}
	r.cert.Store(&cert)
	return nil
}

// GetCertificate returns the current certificate; it fits tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// ServerConfig returns the TLS configuration for a listener that serves r's
// certificate with TLS 1.2 or later.
func ServerConfig(r *Reloader) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
	}
}
