package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// LoadCAPool reads the PEM bundle at path into a pool of trusted CAs. It fails,
// naming the file, when the file cannot be read or holds no certificate.
func LoadCAPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load ca bundle: %w", err)
	}
	certs, err := ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("load ca bundle %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// ClientConfig returns the TLS configuration for connections to an upstream server:
// TLS 1.2 or later, the server's certificate verified against pool and serverName
// (set it when dialing by IP address), and a session cache so that reconnects
// resume sessions instead of doing full handshakes. Use one config per upstream
// server group so its connections share the cache.
func ClientConfig(pool *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            pool,
		ServerName:         serverName,
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
}
