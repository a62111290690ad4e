//go:build integration

package integration

// 'ldapgate check' against the Samba test bed, through the real binary: what an
// admin runs at the console before (and beside) 'ldapgate serve'.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// checkWithin bounds one run of 'ldapgate check' (or of a short 'ldapgate bench').
const checkWithin = 60 * time.Second

// checkRun is what one run of the binary did.
type checkRun struct {
	exit           int
	stdout, stderr string
}

// runCheck runs 'ldapgate check' with args and stdin, bounded.
func runCheck(t *testing.T, stdin string, args ...string) checkRun {
	t.Helper()
	return runLdapgate(t, stdin, append([]string{"check"}, args...)...)
}

// runLdapgate runs the real binary with args and stdin, bounded by checkWithin.
func runLdapgate(t *testing.T, stdin string, args ...string) checkRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), checkWithin)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := checkRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("ldapgate %s did not finish within %s", strings.Join(args, " "), checkWithin)
	case errors.As(err, &exit):
		r.exit = exit.ExitCode()
	case err != nil:
		t.Fatalf("run ldapgate: %v", err)
	}
	return r
}

func (r checkRun) String() string {
	return fmt.Sprintf("exit code %d\nstdout:\n%s\nstderr:\n%s", r.exit, r.stdout, r.stderr)
}

// checkConfigFile writes the test bed's configuration with changes into a
// file of its own and returns the path.
func checkConfigFile(t *testing.T, changes map[string]any) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ldapgate.yaml")
	if err := os.WriteFile(path, gatewayConfig(t, changes), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// presentedCert is the leaf certificate d presents, read with a TLS dial of
// the test's own.
func presentedCert(t *testing.T, d dc) *tls.ConnectionState {
	t.Helper()
	pool, err := certs.LoadCAPool(testbed.CAFile())
	if err != nil {
		t.Fatalf("the test bed's CA: %v (start the test bed: sudo integration/samba/up.sh)", err)
	}
	addr := strings.TrimPrefix(d.url, "ldaps://")
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, certs.ClientConfig(pool, d.serverName))
	if err != nil {
		t.Fatalf("%s (%s) does not answer LDAPS: %v (start the test bed: sudo integration/samba/up.sh)", d.name, d.url, err)
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	return &cs
}

// stepLine is a step line: status, step, latency, e.g. "  OK    tcp          0.4ms  ".
var stepLine = regexp.MustCompile(`(?m)^  (OK|WARN|FAIL|SKIP)\s+(tcp|tls|bind|rootdse)\s+(\d+\.\dms)?\s+`)

func TestCheckUpstreamAgainstTheTestBedShowsEachDCsCertificateExpiryAndLatency(t *testing.T) {
	cfg := checkConfigFile(t, nil)
	r := runCheck(t, "", "upstream", "--config", cfg)
	if r.exit != 0 || r.stderr != "" {
		t.Fatalf("check upstream against the test bed: want exit code 0 and no stderr; %s", r)
	}
	// The output per DC, in the configured order.
	sections := strings.Split(r.stdout, "\nupstream.servers[")
	if len(sections) != 3 {
		t.Fatalf("want a section per DC (2); %s", r)
	}
	for i, d := range dcs {
		sec := sections[i+1]
		if want := strconv.Itoa(i) + "] " + d.url + " (certificate name " + d.serverName + ")"; !strings.HasPrefix(sec, want) {
			t.Errorf("%s: the section starts %.80q, want %q", d.name, sec, want)
		}
		steps := stepLine.FindAllStringSubmatch(sec, -1)
		if len(steps) != 4 {
			t.Errorf("%s: %d step lines, want tcp, tls, bind, rootdse:\n%s", d.name, len(steps), sec)
			continue
		}
		for _, s := range steps {
			if s[1] != "OK" || s[3] == "" {
				t.Errorf("%s: step %s is %s with latency %q, want OK with a latency:\n%s", d.name, s[2], s[1], s[3], sec)
			}
		}
		// The expiry shown is the certificate's the DC presents.
		leaf := presentedCert(t, d).PeerCertificates[0]
		days := int(time.Until(leaf.NotAfter).Hours() / 24)
		wantExpiry := "expires  " + leaf.NotAfter.UTC().Format("2006-01-02 15:04") + " UTC ("
		if !strings.Contains(sec, wantExpiry) || !regexp.MustCompile(`\((`+strconv.Itoa(days)+`|`+strconv.Itoa(days-1)+`) days left\)`).MatchString(sec) {
			t.Errorf("%s: want %q with about %d days left:\n%s", d.name, wantExpiry, days, sec)
		}
		for _, want := range []string{"subject  " + leaf.Subject.String(), "bound as " + testbed.Service.UPN(),
			"defaultNamingContext " + testbed.BaseDN, "dnsHostName " + d.serverName} {
			if !strings.Contains(sec, want) {
				t.Errorf("%s: the section lacks %q:\n%s", d.name, want, sec)
			}
		}
	}
	if !strings.Contains(r.stdout, "OK: 2 of 2 domain controllers passed every check.") {
		t.Errorf("no summary; %s", r)
	}
	if strings.Contains(r.stdout, testbed.Service.Password) {
		t.Errorf("the service account's password is in the output")
	}
	t.Logf("ldapgate check upstream against the test bed:\n%s", r.stdout)

	// The same as JSON, for monitoring.
	j := runCheck(t, "", "upstream", "--json", "--config", cfg)
	var rep struct {
		OK  bool `json:"ok"`
		DCs []struct {
			URL         string `json:"url"`
			OK          bool   `json:"ok"`
			Certificate struct {
				NotAfter time.Time `json:"not_after"`
				DaysLeft int       `json:"days_left"`
			} `json:"certificate"`
			Steps []struct {
				Name      string  `json:"name"`
				LatencyMS float64 `json:"latency_ms"`
			} `json:"steps"`
		} `json:"dcs"`
	}
	if err := json.Unmarshal([]byte(j.stdout), &rep); err != nil || j.exit != 0 {
		t.Fatalf("check upstream --json: %v; %s", err, j)
	}
	if !rep.OK || len(rep.DCs) != 2 {
		t.Fatalf("--json: ok %v with %d DCs, want true with 2; %s", rep.OK, len(rep.DCs), j)
	}
	for i, d := range rep.DCs {
		leaf := presentedCert(t, dcs[i]).PeerCertificates[0]
		if d.URL != dcs[i].url || !d.OK || !d.Certificate.NotAfter.Equal(leaf.NotAfter) || d.Certificate.DaysLeft <= 0 {
			t.Errorf("--json dc %d: %+v, want %s ok with the certificate's not_after %s", i, d, dcs[i].url, leaf.NotAfter)
		}
		for _, s := range d.Steps {
			if s.LatencyMS <= 0 {
				t.Errorf("--json dc %d: step %s has latency %v ms", i, s.Name, s.LatencyMS)
			}
		}
	}
}

func TestCheckUpstreamWithAWrongCABundleSaysExactlyThat(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), checkWithin)
	defer cancel()
	// A fresh CA that signed nothing the DCs present.
	if out, err := exec.CommandContext(ctx, gatewayBinary(t), "certs", "init", "--dir", dir, "--host", "localhost").CombinedOutput(); err != nil {
		t.Fatalf("ldapgate certs init: %v\n%s", err, out)
	}
	wrongCA := filepath.Join(dir, "ca.pem")
	r := runCheck(t, "", "upstream", "--config", checkConfigFile(t, map[string]any{"upstream.ca_file": wrongCA}))
	if r.exit != 1 {
		t.Errorf("want exit code 1; %s", r)
	}
	for _, d := range dcs {
		want := "FAIL  tls"
		if !strings.Contains(r.stdout, want) {
			t.Errorf("%s: no %q line; %s", d.name, want, r)
		}
		want = "TLS: the certificate of " + d.serverName + " is not signed by a CA in upstream.ca_file (" + wrongCA + "): x509: certificate signed by unknown authority"
		if !strings.Contains(r.stdout, want) {
			t.Errorf("%s: want %q; %s", d.name, want, r)
		}
	}
	if want := "ldapgate: check upstream: 2 of 2 domain controllers failed a check: " + testbed.DC1URL + " (tls), " + testbed.DC2URL + " (tls)"; !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q; %s", want, r)
	}
	if strings.Count(r.stdout, "SKIP  bind") != 2 {
		t.Errorf("the service bind ran although TLS failed; %s", r)
	}
	t.Logf("ldapgate check upstream with a wrong CA bundle:\n%s", r.stdout)
}

func TestCheckAuthAgainstTheTestBed(t *testing.T) {
	cfg := checkConfigFile(t, nil)
	wrong := wrongPassword("check-auth")
	tests := []struct {
		name, user, password string
		wantExit             int
		want                 []string
	}{
		{"the right password binds on dc1", testbed.JDoe.UPN(), testbed.JDoe.Password, 0,
			[]string{"user     " + testbed.JDoe.DN() + " (found by a search as the service account)", "dc       " + testbed.DC1URL, "result   OK"}},
		{"a wrong password shows AD's 52e", "jdoe", wrong, 1,
			[]string{`result   FAIL invalid credentials (AD said 52e: wrong password); the PBX would get 49 "invalid credentials"`}},
		{"a disabled account shows AD's 533", testbed.CWhite.Login, testbed.CWhite.Password, 1,
			[]string{"invalid credentials (AD said 533: account disabled)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCheck(t, tt.password+"\n", "auth", "--config", cfg, tt.user)
			if r.exit != tt.wantExit {
				t.Errorf("want exit code %d; %s", tt.wantExit, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q; %s", w, r)
				}
			}
			if strings.Contains(r.stdout+r.stderr, tt.password) {
				t.Errorf("the password is in the output")
			}
		})
	}
}
