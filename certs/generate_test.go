package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testbedHosts are the hosts the Samba test bed asks for.
var testbedHosts = []string{
	"dc1.aadds.example.test", "dc2.aadds.example.test", "*.aadds.example.test",
	"localhost", "127.0.0.1", "127.0.0.2",
}

// newCA generates a CA or fails the test.
func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := GenerateCA("test CA", DefaultCAValidity)
	if err != nil {
		t.Fatalf("GenerateCA: %v", err)
	}
	return ca
}

// issue issues a server certificate for hosts and returns it parsed.
func issue(t *testing.T, ca *CA, hosts []string, validFor time.Duration) (*x509.Certificate, []byte, []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServer(hosts, validFor)
	if err != nil {
		t.Fatalf("IssueServer(%q): %v", hosts, err)
	}
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatalf("ParseCertsPEM: %v", err)
	}
	return chain[0], certPEM, keyPEM
}

// poolOf returns a pool trusting ca.
func poolOf(ca *CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Certificate())
	return p
}

func TestGenerateCA(t *testing.T) {
	t.Parallel()
	validFor := 48 * time.Hour
	ca, err := GenerateCA("ldapgate test CA", validFor)
	if err != nil {
		t.Fatalf("GenerateCA: %v", err)
	}
	c := ca.Certificate()
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want a CA", c.IsCA, c.BasicConstraintsValid)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen=%d MaxPathLenZero=%v, want path length 0", c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage %b lacks CertSign", c.KeyUsage)
	}
	if c.Subject.CommonName != "ldapgate test CA" {
		t.Errorf("CommonName = %q", c.Subject.CommonName)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", c.SerialNumber)
	}
	if until := time.Until(c.NotAfter); until < validFor-time.Minute || until > validFor {
		t.Errorf("NotAfter is %v from now, want about %v", until, validFor)
	}
	if time.Now().Before(c.NotBefore) {
		t.Errorf("NotBefore %v is in the future", c.NotBefore)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
}

func TestGenerateCARejectsNonPositiveValidity(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, -time.Hour} {
		if _, err := GenerateCA("x", d); err == nil {
			t.Errorf("GenerateCA(%v) succeeded, want an error", d)
		}
	}
}

func TestIssueServerVerifies(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf, _, _ := issue(t, ca, testbedHosts, DefaultServerValidity)
	tests := []struct {
		name   string
		host   string
		wantOK bool
	}{
		{"a DNS name given as host verifies", "dc1.aadds.example.test", true},
		{"a second DNS name verifies", "dc2.aadds.example.test", true},
		{"a name under the wildcard verifies", "dc7.aadds.example.test", true},
		{"localhost verifies", "localhost", true},
		{"an IPv4 address given as host verifies", "127.0.0.1", true},
		{"a second IP address verifies", "127.0.0.2", true},
		{"a name outside the domain is rejected", "dc1.other.test", false},
		{"a name two levels under the wildcard is rejected", "a.dc1.aadds.example.test", false},
		{"an IP address not given is rejected", "127.0.0.3", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := leaf.Verify(x509.VerifyOptions{
				DNSName:   tt.host,
				Roots:     poolOf(ca),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err == nil) != tt.wantOK {
				t.Errorf("Verify(%s) error = %v, want ok=%v", tt.host, err, tt.wantOK)
			}
		})
	}
}

func TestIssueServerCertificateFields(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf, _, keyPEM := issue(t, ca, []string{"dc1.example.test", "::1", "DC1.example.test", "127.0.0.1", "::1"}, time.Hour)
	if leaf.IsCA {
		t.Error("server certificate is a CA")
	}
	if leaf.Subject.CommonName != "dc1.example.test" {
		t.Errorf("CommonName = %q, want the first host", leaf.Subject.CommonName)
	}
	if got := strings.Join(leaf.DNSNames, ","); got != "dc1.example.test" {
		t.Errorf("DNSNames = %q, want one name (duplicates differing in case dropped)", got)
	}
	if len(leaf.IPAddresses) != 2 {
		t.Errorf("IPAddresses = %v, want ::1 and 127.0.0.1 once each", leaf.IPAddresses)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage = %v, want ServerAuth only", leaf.ExtKeyUsage)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %b, want DigitalSignature", leaf.KeyUsage)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", leaf.SerialNumber)
	}
	if until := time.Until(leaf.NotAfter); until < 59*time.Minute || until > time.Hour {
		t.Errorf("NotAfter is %v from now, want about 1h", until)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatalf("ParseKeyPEM: %v", err)
	}
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		t.Error("key does not match certificate")
	}
	other, _, _ := issue(t, ca, []string{"dc1.example.test"}, time.Hour)
	if other.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
}

func TestIssueServerStopsAtTheCAExpiry(t *testing.T) {
	t.Parallel()
	ca, err := GenerateCA("short-lived CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, _ := issue(t, ca, []string{"localhost"}, DefaultServerValidity)
	if !leaf.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("NotAfter = %v, want the CA's %v", leaf.NotAfter, ca.Certificate().NotAfter)
	}
}

func TestIssueServerRefusesAnExpiredCA(t *testing.T) {
	t.Parallel()
	ca := expiredCA(t)
	if _, _, err := ca.IssueServer([]string{"localhost"}, time.Hour); err == nil || !strings.Contains(err.Error(), "ca expired") {
		t.Errorf("IssueServer error = %v, want ca expired", err)
	}
}

func TestIssueServerRejectsBadHosts(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	tests := []struct {
		name  string
		hosts []string
	}{
		{"no host is rejected", nil},
		{"an empty host is rejected", []string{""}},
		{"a host with a space is rejected", []string{"dc1 example.test"}},
		{"a bare star is rejected", []string{"*"}},
		{"a wildcard that is not the leftmost label is rejected", []string{"dc.*.example.test"}},
		{"an empty label is rejected", []string{"dc1..example.test"}},
		{"a URL is rejected", []string{"ldaps://dc1.example.test"}},
		{"a bad host after good ones is rejected", []string{"localhost", "a/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := ca.IssueServer(tt.hosts, time.Hour); err == nil {
				t.Errorf("IssueServer(%q) succeeded, want an error", tt.hosts)
			}
		})
	}
}

func TestLoadCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	other := newCA(t)
	leafPEM, leafKeyPEM, err := ca.IssueServer([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caCert, caKey := write("ca.pem", ca.CertPEM()), write("ca.key", ca.KeyPEM())
	otherKey := write("other.key", other.KeyPEM())
	leafCert, leafKey := write("leaf.pem", leafPEM), write("leaf.key", leafKeyPEM)
	garbage := write("garbage", []byte("not pem"))
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name         string
		cert, key    string
		wantContains string // "" means success
	}{
		{"a CA written by GenerateCA loads", caCert, caKey, ""},
		{"a key of another CA is rejected", caCert, otherKey, "does not match"},
		{"a server certificate is not a CA", leafCert, leafKey, "is not a CA"},
		{"a missing certificate file is named", missing, caKey, missing},
		{"a missing key file is named", caCert, missing, missing},
		{"a certificate file without PEM is named", garbage, caKey, garbage},
		{"a key file without PEM is named", caCert, garbage, garbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := LoadCA(tt.cert, tt.key)
			if tt.wantContains != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantContains) {
					t.Fatalf("LoadCA error = %v, want one containing %q", err, tt.wantContains)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			if !got.Certificate().Equal(ca.Certificate()) {
				t.Error("loaded a different certificate")
			}
			leaf, _, _ := issue(t, got, []string{"localhost"}, time.Hour)
			if err := leaf.CheckSignatureFrom(ca.Certificate()); err != nil {
				t.Errorf("a certificate issued by the loaded CA does not chain to it: %v", err)
			}
		})
	}
}

func TestParseKeyPEMReadsEveryEncoding(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	certFirst := append(EncodeCertPEM([]byte("ignored")), pkcs8...)
	tests := []struct {
		name    string
		data    []byte
		wantErr error // nil means the key must come back
	}{
		{"a PKCS #8 key is read", pkcs8, nil},
		{"a SEC 1 EC key is read", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), nil},
		{"a key after a certificate block is found", certFirst, nil},
		{"text without PEM has no key", []byte("hello"), ErrNoPrivateKey},
		{"a certificate alone has no key", EncodeCertPEM([]byte("x")), ErrNoPrivateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseKeyPEM(tt.data)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseKeyPEM error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKeyPEM: %v", err)
			}
			if !publicKeyEqual(key.Public(), got.Public()) {
				t.Error("ParseKeyPEM returned another key")
			}
		})
	}
}

func TestParseCertsPEMKeepsOrderAndSkipsOtherBlocks(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	leaf, leafPEM, keyPEM := issue(t, ca, []string{"localhost"}, time.Hour)
	data := append(append(append([]byte{}, leafPEM...), keyPEM...), ca.CertPEM()...)
	got, err := ParseCertsPEM(data)
	if err != nil {
		t.Fatalf("ParseCertsPEM: %v", err)
	}
	if len(got) != 2 || !got[0].Equal(leaf) || !got[1].Equal(ca.Certificate()) {
		t.Errorf("got %d certificates, want the leaf then the CA", len(got))
	}
	if _, err := ParseCertsPEM(keyPEM); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("ParseCertsPEM(key only) error = %v, want ErrNoCertificate", err)
	}
	if _, err := ParseCertsPEM(EncodeCertPEM([]byte("junk"))); err == nil {
		t.Error("ParseCertsPEM accepted a corrupt certificate")
	}
}

// expiredCA returns a CA whose validity ended an hour ago.
func expiredCA(t *testing.T) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "expired CA"},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(-time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{cert: cert, key: key, certPEM: EncodeCertPEM(der), keyPEM: keyPEM}
}
