package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// openssl runs the openssl command line tool and returns its combined output.
func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is needed to check the certificates from an outside view, but it is not in PATH (apt-get install openssl): %v", err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}

// runCmd runs the ldapgate command line and returns its exit code and output.
func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCertsInitWritesCertificatesOpenSSLAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		hosts   []string
		wantSAN []string
		// alsoMatch are names outside hosts that the certificate must be valid for.
		alsoMatch []string
	}{
		{
			name:    "a DC name, localhost and two loopback addresses",
			hosts:   []string{"dc1.aadds.example.test", "localhost", "127.0.0.1", "127.0.0.2"},
			wantSAN: []string{"DNS:dc1.aadds.example.test", "DNS:localhost", "IP Address:127.0.0.1", "IP Address:127.0.0.2"},
		},
		{
			name: "the Samba test bed's command line with a wildcard",
			hosts: []string{"dc1.aadds.example.test", "dc2.aadds.example.test", "*.aadds.example.test",
				"localhost", "127.0.0.1", "127.0.0.2"},
			wantSAN: []string{"DNS:dc1.aadds.example.test", "DNS:dc2.aadds.example.test", "DNS:*.aadds.example.test",
				"DNS:localhost", "IP Address:127.0.0.1", "IP Address:127.0.0.2"},
			alsoMatch: []string{"dc7.aadds.example.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state", "tls")
			args := []string{"certs", "init", "--dir", dir}
			for _, h := range tt.hosts {
				args = append(args, "--host", h)
			}
			code, stdout, stderr := runCmd(args...)
			if code != 0 {
				t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
			}
			for _, f := range []string{"ca.pem", "server.pem"} {
				if !strings.Contains(stdout, "wrote "+filepath.Join(dir, f)) {
					t.Errorf("output does not report writing %s:\n%s", f, stdout)
				}
			}
			caFile, serverFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem")

			out, err := openssl(t, "verify", "-purpose", "sslserver", "-CAfile", caFile, serverFile)
			if err != nil || !strings.Contains(out, serverFile+": OK") {
				t.Fatalf("openssl verify: %v\n%s", err, out)
			}
			out, err = openssl(t, "x509", "-noout", "-ext", "subjectAltName", "-in", serverFile)
			if err != nil {
				t.Fatalf("openssl x509: %v\n%s", err, out)
			}
			for _, san := range tt.wantSAN {
				if !strings.Contains(out, san) {
					t.Errorf("subjectAltName lacks %s:\n%s", san, out)
				}
			}
			for _, h := range append(tt.hosts, tt.alsoMatch...) {
				check := "-verify_hostname"
				if net.ParseIP(h) != nil {
					check = "-verify_ip"
				}
				if strings.HasPrefix(h, "*.") {
					continue // a wildcard is a pattern, not a name a client asks for
				}
				out, err := openssl(t, "verify", "-CAfile", caFile, check, h, serverFile)
				if err != nil {
					t.Errorf("openssl verify %s %s: %v\n%s", check, h, err, out)
				}
			}
			out, err = openssl(t, "verify", "-CAfile", caFile, "-verify_hostname", "dc1.other.test", serverFile)
			if err == nil {
				t.Errorf("openssl accepted the certificate for dc1.other.test:\n%s", out)
			}

			before := readAll(t, dir)
			code, stdout, stderr = runCmd(args...)
			if code != 0 {
				t.Fatalf("second run: exit code %d, stderr:\n%s", code, stderr)
			}
			if strings.Count(stdout, "kept ") != 2 {
				t.Errorf("second run did not keep both pairs:\n%s", stdout)
			}
			if after := readAll(t, dir); after != before {
				t.Error("second run changed the files")
			}
		})
	}
}

// readAll returns the concatenated contents of the files in dir.
func readAll(t *testing.T, dir string) string {
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
		b.WriteString(e.Name() + "\n" + string(data))
	}
	return b.String()
}

func TestCertsInitReportsAFailure(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd("certs", "init", "--dir", filepath.Join(file, "tls"), "--host", "localhost")
	if code != 1 || !strings.HasPrefix(stderr, "ldapgate: certs init: ") {
		t.Errorf("exit code %d, stderr %q; want 1 and an error naming the command", code, stderr)
	}
}
