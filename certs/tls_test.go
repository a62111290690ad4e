package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeServerFiles issues a certificate for hosts and writes it and its key into
// dir, returning the two paths.
func writeServerFiles(t *testing.T, ca *CA, dir string, hosts []string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServer(hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// newReloader writes a certificate for hosts into a temporary directory and
// returns a Reloader serving it.
func newReloader(t *testing.T, ca *CA, hosts []string) *Reloader {
	t.Helper()
	r, err := NewReloader(writeServerFiles(t, ca, t.TempDir(), hosts))
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	return r
}

// handshake runs a TLS handshake over an in-memory connection and returns the
// client's view of it. The server sends one byte after its handshake so that
// the client also reads a TLS 1.3 session ticket, as a real client would.
func handshake(t *testing.T, client, server *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	cc, sc := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	_ = cc.SetDeadline(deadline)
	_ = sc.SetDeadline(deadline)
	done := make(chan struct{})
	// Both sides close the raw pipe: a tls.Conn.Close would block up to 5s writing
	// close_notify into a pipe nobody reads any more.
	go func() {
		defer close(done)
		defer sc.Close()
		s := tls.Server(sc, server)
		if s.Handshake() == nil {
			_, _ = s.Write([]byte{1})
		}
	}()
	c := tls.Client(cc, client)
	err := c.Handshake()
	if err == nil {
		_, err = io.ReadFull(c, make([]byte, 1))
	}
	state := c.ConnectionState()
	_ = cc.Close()
	<-done
	return state, err
}

func TestLoadCAPool(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name       string
		path       string
		wantErrIs  error
		wantInPool bool
	}{
		{"a CA bundle loads", write("ca.pem", ca.CertPEM()), nil, true},
		{"a bundle with text around the certificate loads", write("commented.pem", append([]byte("# our CA\n"), ca.CertPEM()...)), nil, true},
		{"a missing file is an error naming it", filepath.Join(dir, "missing.pem"), os.ErrNotExist, false},
		{"an empty file is an error naming it", write("empty.pem", nil), ErrNoCertificate, false},
		{"a garbage file is an error naming it", write("garbage.pem", []byte("garbage\x00\x01")), ErrNoCertificate, false},
		{"a file holding only a key is an error naming it", write("key.pem", ca.KeyPEM()), ErrNoCertificate, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, err := LoadCAPool(tt.path)
			if tt.wantErrIs != nil {
				if !errors.Is(err, tt.wantErrIs) || !strings.Contains(err.Error(), tt.path) {
					t.Fatalf("LoadCAPool error = %v, want %v naming %s", err, tt.wantErrIs, tt.path)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadCAPool: %v", err)
			}
			leaf, _, _ := issue(t, ca, []string{"localhost"}, time.Hour)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
				t.Errorf("a certificate of the CA does not verify with the pool: %v", err)
			}
		})
	}
}

func TestClientConfigSettings(t *testing.T) {
	t.Parallel()
	pool := x509.NewCertPool()
	c := ClientConfig(pool, "dc1.aadds.example.test")
	if c.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", c.MinVersion)
	}
	if c.RootCAs != pool || c.ServerName != "dc1.aadds.example.test" {
		t.Errorf("RootCAs or ServerName not set: %+v", c)
	}
	if c.InsecureSkipVerify {
		t.Error("verification is disabled")
	}
	if c.ClientSessionCache == nil {
		t.Error("no session cache")
	}
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	otherCA := newCA(t)
	server := ServerConfig(newReloader(t, ca, testbedHosts))
	tests := []struct {
		name       string
		client     *tls.Config
		wantErr    bool
		wantVerify bool // the failure is the client rejecting the certificate
	}{
		{"a client trusting the CA connects by DNS name", ClientConfig(poolOf(ca), "dc1.aadds.example.test"), false, false},
		{"a client trusting the CA connects by wildcard name", ClientConfig(poolOf(ca), "dc9.aadds.example.test"), false, false},
		{"a client trusting the CA connects by IP address", ClientConfig(poolOf(ca), "127.0.0.2"), false, false},
		{"a client trusting another CA is refused", ClientConfig(poolOf(otherCA), "dc1.aadds.example.test"), true, true},
		{"a client asking for a name not in the certificate is refused", ClientConfig(poolOf(ca), "dc1.evil.test"), true, true},
		{"a client limited to TLS 1.1 is refused", func() *tls.Config {
			c := ClientConfig(poolOf(ca), "localhost")
			c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			return c
		}(), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state, err := handshake(t, tt.client, server)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				if state.Version < tls.VersionTLS12 {
					t.Errorf("negotiated version %x, want TLS 1.2 or later", state.Version)
				}
				return
			}
			if err == nil {
				t.Fatal("handshake succeeded, want a failure")
			}
			var verr *tls.CertificateVerificationError
			if got := errors.As(err, &verr); got != tt.wantVerify {
				t.Errorf("handshake error %v: certificate verification error = %v, want %v", err, got, tt.wantVerify)
			}
		})
	}
}

func TestClientConfigResumesSessions(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	server := ServerConfig(newReloader(t, ca, []string{"localhost"}))
	client := ClientConfig(poolOf(ca), "localhost")
	first, err := handshake(t, client, server)
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	if first.DidResume {
		t.Error("the first connection resumed a session it cannot have")
	}
	second, err := handshake(t, client, server)
	if err != nil {
		t.Fatalf("second handshake: %v", err)
	}
	if !second.DidResume {
		t.Error("the second connection did a full handshake, want a resumed session")
	}
}

func TestReloader(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	dir := t.TempDir()
	certFile, keyFile := writeServerFiles(t, ca, dir, []string{"old.example.test"})
	r, err := NewReloader(certFile, keyFile)
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	served := func() string { return servedName(t, r) }
	if got := served(); got != "old.example.test" {
		t.Fatalf("serving %s, want old.example.test", got)
	}

	writeServerFiles(t, ca, dir, []string{"new.example.test"})
	if got := served(); got != "old.example.test" {
		t.Errorf("serving %s before Reload, want old.example.test", got)
	}
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload with good files: %v", err)
	}
	if got := served(); got != "new.example.test" {
		t.Errorf("serving %s after Reload, want new.example.test", got)
	}

	otherKey := filepath.Join(dir, "other.key")
	_, otherKeyPEM, err := ca.IssueServer([]string{"x.example.test"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherKey, otherKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name  string
		write func()
	}{
		{"a truncated certificate file", func() { _ = os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nMII"), 0o644) }},
		{"a key that belongs to another certificate", func() {
			writeServerFiles(t, ca, dir, []string{"other.example.test"})
			_ = os.Rename(otherKey, keyFile)
		}},
		{"a deleted key file", func() { _ = os.Remove(keyFile) }},
	}
	for _, b := range bad {
		b.write()
		if err := r.Reload(); err == nil || !strings.Contains(err.Error(), certFile) {
			t.Errorf("Reload after %s: error = %v, want one naming %s", b.name, err, certFile)
		}
		if got := served(); got != "new.example.test" {
			t.Errorf("serving %s after a failed Reload (%s), want the previous new.example.test", got, b.name)
		}
	}
}

func TestNewReloaderFailsOnMissingFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := NewReloader(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")); err == nil {
		t.Error("NewReloader succeeded without files")
	}
}

func TestServerConfigRequiresTLS12(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	c := ServerConfig(newReloader(t, ca, []string{"localhost"}))
	if c.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", c.MinVersion)
	}
}

// servedName is the first DNS name of the certificate r serves.
func servedName(t *testing.T, r *Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil || c == nil || c.Leaf == nil {
		t.Fatalf("GetCertificate = %v, %v", c, err)
	}
	return c.Leaf.DNSNames[0]
}

func TestReloadFromSwitchesFilesOnlyWhenTheyLoad(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	oldDir, newDir := t.TempDir(), t.TempDir()
	certFile, keyFile := writeServerFiles(t, ca, oldDir, []string{"old.example.test"})
	r, err := NewReloader(certFile, keyFile)
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	served := func() string { return servedName(t, r) }
	missing := filepath.Join(newDir, "missing.pem")
	if err := r.ReloadFrom(missing, keyFile); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("ReloadFrom a missing file = %v, want an error naming it", err)
	}
	// The failed switch left the old files in place for Reload.
	writeServerFiles(t, ca, oldDir, []string{"renewed.example.test"})
	if err := r.Reload(); err != nil || served() != "renewed.example.test" {
		t.Fatalf("Reload after a failed ReloadFrom = %v, serving %s; want the old files renewed", err, served())
	}
	newCert, newKey := writeServerFiles(t, ca, newDir, []string{"new.example.test"})
	if err := r.ReloadFrom(newCert, newKey); err != nil {
		t.Fatalf("ReloadFrom new files: %v", err)
	}
	if got := served(); got != "new.example.test" {
		t.Errorf("serving %s after ReloadFrom, want new.example.test", got)
	}
	writeServerFiles(t, ca, newDir, []string{"newer.example.test"})
	if err := r.Reload(); err != nil || served() != "newer.example.test" {
		t.Errorf("Reload after ReloadFrom = %v, serving %s; want the new files read again", err, served())
	}
}
