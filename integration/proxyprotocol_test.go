//go:build integration

package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// TestHAProxyInFrontOfTheGateway puts a real HAProxy (send-proxy-v2) in front
// of both listeners of the real binary: a client on 127.0.0.3 binds through
// HAProxy, which connects to the gateway from 127.0.0.1, and the audit line
// names 127.0.0.3 and the client's port.
func TestHAProxyInFrontOfTheGateway(t *testing.T) {
	dir := t.TempDir()
	ca, certFile, keyFile := listenerCert(t, dir)
	gw := startProcGateway(t, "gateway", map[string]any{
		"listen.ldaps_address":                 "127.0.0.1:0",
		"listen.tls.cert_file":                 certFile,
		"listen.tls.key_file":                  keyFile,
		"listen.proxy_protocol.trusted":        []string{"127.0.0.1"},
		"listen.proxy_protocol.header_timeout": "5s",
	})
	ldapsAddr := gw.listening(t, true)
	hp := startHAProxy(t, dir, map[string]string{"ldap": gw.addr, "ldaps": ldapsAddr})

	tests := []struct {
		name     string
		frontend string
		tls      bool
	}{
		{"plain LDAP", "ldap", false},
		{"LDAPS (the header before TLS)", "ldaps", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off := logSize(t, gw.logPath)
			c := dialFrom(t, "127.0.0.3", hp[tt.frontend])
			l := ldap.NewConn(c, tt.tls)
			if tt.tls {
				pool := x509.NewCertPool()
				pool.AddCert(ca.Certificate())
				tc := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
				if err := tc.Handshake(); err != nil {
					t.Fatalf("TLS through HAProxy: %v", err)
				}
				l = ldap.NewConn(tc, true)
			}
			l.Start()
			l.SetTimeout(15 * time.Second)
			defer l.Close()
			if code, diag := bindCode(t, l, testbed.JDoe.Login, testbed.JDoe.Password); code != 0 {
				t.Fatalf("jdoe through HAProxy: result %d (%s), want 0", code, diag)
			}
			lines := waitAudit(t, gw.logPath, off, 1)
			client := c.LocalAddr().String()
			if len(lines) != 1 || lines[0].str("client") != client || lines[0].num("result") != 0 {
				t.Fatalf("audit lines %v, want one with client %s (the client behind HAProxy) and result 0", lines, client)
			}
			if !strings.HasPrefix(client, "127.0.0.3:") {
				t.Fatalf("the test client is %s, want 127.0.0.3:port", client)
			}
		})
	}
	t.Run("a header straight from an untrusted address is refused", func(t *testing.T) {
		off := logSize(t, gw.logPath)
		c := dialFrom(t, "127.0.0.3", gw.addr)
		if _, err := c.Write([]byte("PROXY TCP4 127.0.0.9 127.0.0.1 1234 389\r\n")); err != nil {
			t.Fatal(err)
		}
		if !closedSoon(c) {
			t.Fatal("the connection stayed open")
		}
		waitLog(t, gw.logPath, off, func(l logLine) bool {
			return l.str("msg") == "PROXY protocol header from an untrusted address: connection closed" &&
				l.str("level") == "warn" && l.str("peer") == c.LocalAddr().String()
		}, "a Warn line refusing the header from "+c.LocalAddr().String())
	})
}

// listening returns the address the gateway logged for its plain (tls false)
// or LDAPS listener.
func (g *procGateway) listening(t *testing.T, tls bool) string {
	t.Helper()
	var addr string
	waitLog(t, g.logPath, 0, func(l logLine) bool {
		if l.str("msg") == "listening" && l["tls"] == tls {
			addr = l.str("listen")
		}
		return addr != ""
	}, fmt.Sprintf("a \"listening\" line with tls %v", tls))
	return addr
}

// waitLog waits (bounded) for a line after offset that match accepts, and
// returns it.
func waitLog(t *testing.T, path string, offset int64, match func(logLine) bool, what string) logLine {
	t.Helper()
	deadline := time.Now().Add(logWithin)
	for {
		for _, l := range readLogFrom(t, path, offset) {
			if match(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in %s within %s; the end of the log:\n%s", what, path, logWithin, tail(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listenerCert writes a CA and a listener certificate for 127.0.0.1 into dir.
func listenerCert(t *testing.T, dir string) (ca *certs.CA, certFile, keyFile string) {
	t.Helper()
	ca, err := certs.GenerateCA("ldapgate integration CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "listener.pem"), filepath.Join(dir, "listener-key.pem")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, certFile, keyFile
}

// haproxyWithin bounds HAProxy's start.
const haproxyWithin = 10 * time.Second

// startHAProxy runs haproxy in the foreground with one TCP frontend on a free
// 127.0.0.1 port per backend (name → the gateway's address), each sending
// PROXY v2 to it. It returns the frontends' addresses; the cleanup stops it.
func startHAProxy(t *testing.T, dir string, backends map[string]string) map[string]string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed: integration/test-all.sh installs it (apt-get install haproxy)")
	}
	var cfg strings.Builder
	cfg.WriteString("global\n    maxconn 64\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n")
	frontends := map[string]string{}
	for name, addr := range backends {
		frontends[name] = freeLoopbackPort(t)
		fmt.Fprintf(&cfg, "frontend %s\n    bind %s\n    default_backend %s_gw\n", name, frontends[name], name)
		fmt.Fprintf(&cfg, "backend %s_gw\n    server gw %s send-proxy-v2\n", name, addr)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "haproxy.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	_ = out.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopWithin):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("haproxy was still running %s after SIGTERM; killed it", stopWithin)
		}
	})
	deadline := time.Now().Add(haproxyWithin)
	for name, addr := range frontends {
		for {
			select {
			case err := <-exited:
				t.Fatalf("haproxy exited (%v) before it listened; its output:\n%s", err, tail(logPath))
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy's frontend %s did not listen on %s within %s; its output:\n%s", name, addr, haproxyWithin, tail(logPath))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return frontends
}

// freeLoopbackPort returns 127.0.0.1:PORT with a port that was free a moment ago.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
