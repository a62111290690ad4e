package certs

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// initFiles are the files WriteInit writes, in a fixed order.
var initFiles = []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile}

// readInit returns the content of every file WriteInit writes in dir.
func readInit(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := make(map[string][]byte)
	for _, name := range initFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		m[name] = b
	}
	return m
}

// mustInit runs WriteInit and fails the test on an error.
func mustInit(t *testing.T, dir string, hosts []string, force bool) InitResult {
	t.Helper()
	res, err := WriteInit(dir, hosts, force)
	if err != nil {
		t.Fatalf("WriteInit(%q, force=%v): %v", hosts, force, err)
	}
	return res
}

// changed lists the files whose content differs between two readInit results.
func changed(before, after map[string][]byte) []string {
	var names []string
	for _, name := range initFiles {
		if !bytes.Equal(before[name], after[name]) {
			names = append(names, name)
		}
	}
	return names
}

func TestWriteInitCreatesAVerifiableSet(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state", "tls")
	res := mustInit(t, dir, testbedHosts, false)
	if !res.CA.Written || !res.Server.Written {
		t.Errorf("result %+v, want both written", res)
	}
	if res.CA.CertFile != filepath.Join(dir, CACertFile) || res.Server.KeyFile != filepath.Join(dir, ServerKeyFile) {
		t.Errorf("result paths %+v do not point into %s", res, dir)
	}
	wantMode := map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600, ServerCertFile: 0o644, ServerKeyFile: 0o600}
	for name, mode := range wantMode {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(initFiles) {
		t.Errorf("dir holds %d entries, want only the %d files (no temporary files left)", len(entries), len(initFiles))
	}
	ca, err := LoadCA(res.CA.CertFile, res.CA.KeyFile)
	if err != nil {
		t.Fatalf("LoadCA on the written files: %v", err)
	}
	r, err := NewReloader(res.Server.CertFile, res.Server.KeyFile)
	if err != nil {
		t.Fatalf("NewReloader on the written files: %v", err)
	}
	if _, err := handshake(t, ClientConfig(poolOf(ca), "dc2.aadds.example.test"), ServerConfig(r)); err != nil {
		t.Errorf("handshake with the written files: %v", err)
	}
}

func TestWriteInitIsIdempotent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		secondHosts []string
		force       bool
		wantChanged []string
		wantReason  string // of the server outcome
	}{
		{"the same hosts keep every file", testbedHosts, false, nil, "valid for every host"},
		{"fewer hosts keep every file", []string{"localhost", "127.0.0.1"}, false, nil, "valid for every host"},
		{"hosts differing only in case keep every file", []string{"DC1.AADDS.example.test"}, false, nil, "valid for every host"},
		{"a host covered only by the wildcard re-issues the server certificate", []string{"dc3.aadds.example.test"}, false,
			[]string{ServerCertFile, ServerKeyFile}, "lacks host dc3.aadds.example.test"},
		{"an added IP address re-issues only the server certificate", append([]string{"127.0.0.3"}, testbedHosts...), false,
			[]string{ServerCertFile, ServerKeyFile}, "lacks host 127.0.0.3"},
		{"force replaces every file", testbedHosts, true, initFiles, "new CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mustInit(t, dir, testbedHosts, false)
			before := readInit(t, dir)
			res := mustInit(t, dir, tt.secondHosts, tt.force)
			after := readInit(t, dir)
			if got := changed(before, after); strings.Join(got, ",") != strings.Join(tt.wantChanged, ",") {
				t.Errorf("changed files %v, want %v", got, tt.wantChanged)
			}
			if res.Server.Reason != tt.wantReason {
				t.Errorf("server reason %q, want %q", res.Server.Reason, tt.wantReason)
			}
			if res.Server.Written != (len(tt.wantChanged) > 0) {
				t.Errorf("server Written = %v, want %v", res.Server.Written, len(tt.wantChanged) > 0)
			}
			if res.CA.Written != tt.force {
				t.Errorf("CA Written = %v, want %v", res.CA.Written, tt.force)
			}
			// Whatever happened, the server certificate must chain to the CA on disk.
			ca, err := LoadCA(res.CA.CertFile, res.CA.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if reason := serverNeedsIssue(ca, res.Server, tt.secondHosts); reason != "" {
				t.Errorf("after the second call the server certificate needs issuing: %s", reason)
			}
		})
	}
}

func TestWriteInitRepairsTheServerCertificate(t *testing.T) {
	t.Parallel()
	otherCA := newCA(t)
	otherCert, otherKey, err := otherCA.IssueServer(testbedHosts, DefaultServerValidity)
	if err != nil {
		t.Fatal(err)
	}
	_, strayKey, err := otherCA.IssueServer(testbedHosts, DefaultServerValidity)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		damage     func(dir string)
		wantReason string
	}{
		{"a deleted server certificate is issued again", func(dir string) {
			_ = os.Remove(filepath.Join(dir, ServerCertFile))
		}, "server.pem missing"},
		{"a deleted server key is issued again", func(dir string) {
			_ = os.Remove(filepath.Join(dir, ServerKeyFile))
		}, "server.key missing"},
		{"a garbage server certificate is issued again", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, ServerCertFile), []byte("garbage"), 0o644)
		}, "server.pem unreadable"},
		{"a key of another certificate is issued again", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, ServerKeyFile), strayKey, 0o600)
		}, "key does not match certificate"},
		{"a certificate of another CA is issued again", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, ServerCertFile), otherCert, 0o644)
			_ = os.WriteFile(filepath.Join(dir, ServerKeyFile), otherKey, 0o600)
		}, "not valid under the CA"},
		{"an expired server certificate is issued again", nil, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mustInit(t, dir, testbedHosts, false)
			before := readInit(t, dir)
			if tt.damage != nil {
				tt.damage(dir)
			} else {
				writeExpiredLeaf(t, dir, testbedHosts)
			}
			res := mustInit(t, dir, testbedHosts, false)
			if !res.Server.Written || res.Server.Reason != tt.wantReason {
				t.Errorf("server outcome %+v, want written because %q", res.Server, tt.wantReason)
			}
			after := readInit(t, dir)
			if got := changed(before, after); strings.Join(got, ",") != ServerCertFile+","+ServerKeyFile {
				t.Errorf("changed files %v, want only the server's", got)
			}
			ca, err := LoadCA(res.CA.CertFile, res.CA.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			if reason := serverNeedsIssue(ca, res.Server, testbedHosts); reason != "" {
				t.Errorf("the repaired server certificate needs issuing: %s", reason)
			}
		})
	}
}

func TestWriteInitRefusesToReplaceACA(t *testing.T) {
	t.Parallel()
	expired := expiredCA(t)
	tests := []struct {
		name         string
		setup        func(dir string)
		wantContains string
	}{
		{"a CA certificate without its key is an error", func(dir string) {
			_ = os.Remove(filepath.Join(dir, CAKeyFile))
		}, "exists without"},
		{"a CA key without its certificate is an error", func(dir string) {
			_ = os.Remove(filepath.Join(dir, CACertFile))
		}, "exists without"},
		{"a garbage CA certificate is an error", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, CACertFile), []byte("garbage"), 0o644)
		}, "reuse existing ca"},
		{"an expired CA is an error", func(dir string) {
			_ = os.WriteFile(filepath.Join(dir, CACertFile), expired.CertPEM(), 0o644)
			_ = os.WriteFile(filepath.Join(dir, CAKeyFile), expired.KeyPEM(), 0o600)
		}, "ca expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			mustInit(t, dir, testbedHosts, false)
			tt.setup(dir)
			before := dirContents(t, dir)
			if _, err := WriteInit(dir, testbedHosts, false); err == nil || !strings.Contains(err.Error(), tt.wantContains) {
				t.Fatalf("WriteInit error = %v, want one containing %q", err, tt.wantContains)
			}
			if after := dirContents(t, dir); after != before {
				t.Errorf("a failed WriteInit changed the directory:\nbefore %s\nafter  %s", before, after)
			}
			res := mustInit(t, dir, testbedHosts, true)
			if !res.CA.Written || !res.Server.Written {
				t.Errorf("with force: %+v, want both written", res)
			}
		})
	}
}

func TestWriteInitRejectsBadArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		dir   string
		hosts []string
	}{
		{"an empty directory name is rejected", "", []string{"localhost"}},
		{"no host is rejected", "tls", nil},
		{"an invalid host is rejected", "tls", []string{"localhost", "bad host"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := tt.dir
			if dir != "" {
				dir = filepath.Join(parent, dir)
			}
			if _, err := WriteInit(dir, tt.hosts, false); err == nil {
				t.Fatal("WriteInit succeeded, want an error")
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("WriteInit left %d entries behind", len(entries))
			}
		})
	}
}

// dirContents summarises the names and contents of the files in dir.
func dirContents(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.Name() + "=" + string(data) + ";")
	}
	return b.String()
}

// writeExpiredLeaf replaces the server certificate in dir with one for hosts,
// signed by the CA in dir, whose validity ended an hour ago.
func writeExpiredLeaf(t *testing.T, dir string, hosts []string) {
	t.Helper()
	ca, err := LoadCA(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	dnsNames, ips, err := splitHosts(hosts)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ServerCertFile), EncodeCertPEM(der), 0o644); err != nil {
		t.Fatal(err)
	}
}
