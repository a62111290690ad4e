package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// checkDomain is a simulated domain with two DCs for the check commands, and
// configuration files pointing at it.
type checkDomain struct {
	dcs    []*adsim.DC
	caFile string
}

func newCheckDomain(t testing.TB) *checkDomain {
	t.Helper()
	// No lockout: the tests send wrong passwords on purpose.
	dir, err := adsim.NewDirectory(adsim.Config{Lockout: &adsim.LockoutPolicy{}})
	if err != nil {
		t.Fatal(err)
	}
	d := &checkDomain{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(d.caFile, dir.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dc1", "dc2"} {
		dc, err := dir.NewDC(adsim.DCConfig{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = dc.Close() })
		d.dcs = append(d.dcs, dc)
	}
	return d
}

// checkFile is what differs from the domain's working configuration.
type checkFile struct {
	servers  []string // "url server_name" lines; default both DCs
	caFile   string
	password string
	// passwordFile, when set, is written as bind_password_file instead of
	// bind_password.
	passwordFile string
	baseDN       string
	mode         os.FileMode
	extra        string // appended YAML
}

// config writes a configuration file for the domain and returns its path.
func (d *checkDomain) config(t *testing.T, f checkFile) string {
	t.Helper()
	if f.servers == nil {
		for _, dc := range d.dcs {
			f.servers = append(f.servers, dc.URL()+" "+dc.HostName())
		}
	}
	if f.caFile == "" {
		f.caFile = d.caFile
	}
	if f.password == "" {
		f.password = testbed.Service.Password
	}
	if f.baseDN == "" {
		f.baseDN = testbed.BaseDN
	}
	if f.mode == 0 {
		f.mode = 0o600
	}
	var b strings.Builder
	b.WriteString("upstream:\n  servers:\n")
	for _, s := range f.servers {
		url, name, _ := strings.Cut(s, " ")
		fmt.Fprintf(&b, "    - url: %s\n      server_name: %s\n", url, name)
	}
	secret := fmt.Sprintf("bind_password: %q", f.password)
	if f.passwordFile != "" {
		secret = "bind_password_file: " + f.passwordFile
	}
	fmt.Fprintf(&b, "  ca_file: %s\n  bind_dn: %s\n  %s\n  base_dn: %s\n  netbios_domain: %s\n  dial_timeout: 2s\n  op_timeout: 2s\n",
		f.caFile, testbed.Service.UPN(), secret, f.baseDN, testbed.NetBIOS)
	if f.baseDN == testbed.BaseDN {
		fmt.Fprintf(&b, "  user_base_dn: %s\n", testbed.UsersDN)
	}
	b.WriteString(f.extra)
	path := filepath.Join(t.TempDir(), "ldapgate.yaml")
	if err := os.WriteFile(path, []byte(b.String()), f.mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, f.mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// runWithStdin runs the command line like run does, with stdin as the
// standard input of 'check auth' and 'bench'.
func runWithStdin(stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	root := rootCommand()
	for i, c := range root.subcommands {
		switch c.name {
		case "check":
			root.subcommands[i] = checkCommand(stdin)
		case "bench":
			root.subcommands[i] = benchCommand(stdin)
		}
	}
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut}
	code = exitCode(e, dispatch(e, root, args))
	return code, out.String(), errOut.String()
}

// refusedAddr is a loopback address where nothing listens.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// wrongCA writes a CA bundle that did not sign the domain's certificates.
func wrongCA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := certs.WriteInit(dir, []string{"localhost"}, false); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "ca.pem")
}

// wantOutput checks exit code and substrings of stdout and stderr, and that
// no secret shows in either.
type wantOutput struct {
	code       int
	stdout     []string
	stderr     []string
	noStdout   []string // substrings stdout must not hold
	secrets    []string
	emptyOut   bool
	emptyError bool
}

func (w wantOutput) check(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if code != w.code {
		t.Errorf("exit code %d, want %d", code, w.code)
	}
	for _, s := range w.stdout {
		if !strings.Contains(stdout, s) {
			t.Errorf("stdout lacks %q", s)
		}
	}
	for _, s := range w.stderr {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q", s)
		}
	}
	for _, s := range w.noStdout {
		if strings.Contains(stdout, s) {
			t.Errorf("stdout holds %q", s)
		}
	}
	for _, s := range w.secrets {
		if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
			t.Errorf("a password is in the output")
		}
	}
	if w.emptyOut && stdout != "" {
		t.Errorf("unexpected stdout")
	}
	if w.emptyError && stderr != "" {
		t.Errorf("unexpected stderr")
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	d := &checkDomain{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(d.caFile, []byte("not read by check config"), 0o600); err != nil {
		t.Fatal(err)
	}
	const fake = "ldaps://dc1.aadds.example.test:636 dc1.aadds.example.test"
	pwFile := filepath.Join(t.TempDir(), "bind-password")
	if err := os.WriteFile(pwFile, []byte("Fr0m-a-F1le!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const password = "S3cret!in-the-file"
	tests := []struct {
		name string
		file checkFile
		args func(path string) []string
		want wantOutput
	}{
		{
			name: "a valid file prints the effective configuration, defaults filled in and the password redacted",
			file: checkFile{servers: []string{fake}, password: password},
			want: wantOutput{code: 0, emptyError: true, secrets: []string{password},
				stdout: []string{"is valid", "bind_password: '[redacted]'", "op_timeout: 2s", "max_connections: 1024",
					"address: 127.0.0.1:389", "# No warnings.\n"}},
		},
		{
			name: "a secret in a file others can read is a warning after the configuration",
			file: checkFile{servers: []string{fake}, password: password, mode: 0o644},
			want: wantOutput{code: 0, emptyError: true, secrets: []string{password},
				stdout: []string{"bind_password: '[redacted]'", "# warning: config: ", "chmod 600"}},
		},
		{
			name: "a password read from bind_password_file is redacted too",
			file: checkFile{servers: []string{fake}, passwordFile: pwFile},
			want: wantOutput{code: 0, emptyError: true, secrets: []string{"Fr0m-a-F1le!"},
				stdout: []string{"bind_password: '[redacted]'", "bind_password_file: " + pwFile}},
		},
		{
			name: "an invalid file lists every problem with its key and exits 1",
			file: checkFile{servers: []string{"ldap://dc1.aadds.example.test dc1.aadds.example.test"}, password: password,
				extra: "listen:\n  max_connections: -1\n"},
			want: wantOutput{code: 1, emptyOut: true, secrets: []string{password},
				stderr: []string{"ldapgate: check config: ", "is not valid (2 problems):\n    config: ",
					"upstream.servers[0].url", "listen.max_connections"}},
		},
		{
			name: "a missing file exits 1 naming it",
			args: func(string) []string { return []string{"check", "config", "--config", "/nonexistent/ldapgate.yaml"} },
			want: wantOutput{code: 1, emptyOut: true, stderr: []string{"/nonexistent/ldapgate.yaml is not valid (1 problem):", "no such file"}},
		},
		{
			name: "without --config it is a usage error",
			args: func(string) []string { return []string{"check", "config"} },
			want: wantOutput{code: 2, emptyOut: true, stderr: []string{"ldapgate: check config: --config is required\nRun 'ldapgate help check config' for usage."}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var path string
			if tt.file.servers != nil {
				path = d.config(t, tt.file)
			}
			args := []string{"check", "config", "--config", path}
			if tt.args != nil {
				args = tt.args(path)
			}
			code, stdout, stderr := runCmd(args...)
			tt.want.check(t, code, stdout, stderr)
			if code == 0 {
				var doc map[string]any
				if err := yaml.Unmarshal([]byte(stdout), &doc); err != nil || doc["upstream"] == nil {
					t.Errorf("stdout is not the configuration as YAML: %v", err)
				}
			}
		})
	}
}

func TestCheckUpstream(t *testing.T) {
	t.Parallel()
	d := newCheckDomain(t)
	dc1, dc2 := d.dcs[0], d.dcs[1]
	refused := "ldaps://" + refusedAddr(t) + " " + dc1.HostName()
	badCA := wrongCA(t)
	tests := []struct {
		name string
		file checkFile
		want wantOutput
	}{
		{
			name: "every DC passes every step and the certificate's expiry is shown",
			want: wantOutput{code: 0, emptyError: true, secrets: []string{testbed.Service.Password},
				stdout: []string{
					"upstream.servers[0] " + dc1.URL() + " (certificate name " + dc1.HostName() + ")",
					"upstream.servers[1] " + dc2.URL(),
					"  OK    tcp  ", "  OK    tls  ", "certificate verified against upstream.ca_file",
					"subject  CN=" + dc1.HostName(), "days left)", "  OK    bind  ", "bound as " + testbed.Service.UPN(),
					"  OK    rootdse  ", "defaultNamingContext " + testbed.BaseDN, "dnsHostName " + dc2.HostName(),
					"OK: 2 of 2 domain controllers passed every check."},
				noStdout: []string{"FAIL", "WARN"}},
		},
		{
			name: "a CA bundle that did not sign the DCs' certificates fails TLS and names the file",
			file: checkFile{caFile: badCA},
			want: wantOutput{code: 1,
				stdout: []string{
					"FAIL  tls", "TLS: the certificate of " + dc1.HostName() + " is not signed by a CA in upstream.ca_file (" + badCA + "): x509: certificate signed by unknown authority",
					"export the AADDS secure LDAP certificate's CA", "the CA that upstream.ca_file must hold",
					"SKIP  bind", "SKIP  rootdse", "FAIL: 0 of 2"},
				stderr: []string{"ldapgate: check upstream: 2 of 2 domain controllers failed a check: " + dc1.URL() + " (tls), " + dc2.URL() + " (tls)"}},
		},
		{
			name: "a wrong service password fails the bind with the setting to check",
			file: checkFile{password: "Wr0ng-service-pw"},
			want: wantOutput{code: 1, secrets: []string{"Wr0ng-service-pw"},
				stdout: []string{"FAIL  bind", "the DC refused the service account's password (AD said 52e: wrong password): check upstream.bind_password"},
				stderr: []string{"2 of 2 domain controllers failed a check: " + dc1.URL() + " (bind)"}},
		},
		{
			name: "a DC that refuses connections fails the exit code although the other one works",
			file: checkFile{servers: []string{refused, dc2.URL() + " " + dc2.HostName()}},
			want: wantOutput{code: 1,
				stdout: []string{"FAIL  tcp", "refused the connection", "SKIP  tls", "  OK    rootdse  ", "FAIL: 1 of 2"},
				stderr: []string{"1 of 2 domain controllers failed a check: ldaps://127.0.0.1:"}},
		},
		{
			name: "a certificate that does not hold the server name says which setting to change",
			file: checkFile{servers: []string{dc1.URL() + " ldaps.contoso.example"}},
			want: wantOutput{code: 1,
				stdout: []string{"does not name ldaps.contoso.example", "set upstream.servers[0].server_name"}},
		},
		{
			name: "a base DN outside the DC's domain is a warning, not a failure",
			file: checkFile{baseDN: "DC=other,DC=test"},
			want: wantOutput{code: 0, emptyError: true,
				stdout: []string{"  WARN  rootdse", "upstream.base_dn (DC=other,DC=test) is not in this domain"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd("check", "upstream", "--config", d.config(t, tt.file))
			tt.want.check(t, code, stdout, stderr)
		})
	}
}

func TestCheckUpstreamJSON(t *testing.T) {
	t.Parallel()
	d := newCheckDomain(t)
	code, stdout, stderr := runCmd("check", "upstream", "--json", "--config", d.config(t, checkFile{caFile: wrongCA(t)}))
	if code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr)
	}
	var rep upstreamReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if rep.OK || len(rep.DCs) != 2 {
		t.Fatalf("report ok=%v with %d DCs, want false with 2:\n%s", rep.OK, len(rep.DCs), stdout)
	}
	dc := rep.DCs[0]
	var statuses []string
	for _, s := range dc.Steps {
		statuses = append(statuses, s.Name+":"+s.Status)
	}
	if got, want := strings.Join(statuses, " "), "tcp:ok tls:fail bind:skipped rootdse:skipped"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
	if dc.Certificate == nil || dc.Certificate.Verified || dc.Certificate.DaysLeft <= 0 || dc.Certificate.Subject == "" {
		t.Errorf("certificate %+v, want the unverified leaf the DC sent, with days left", dc.Certificate)
	}
}

func TestCheckUpstreamWarnsBeforeTheCertificateExpires(t *testing.T) {
	t.Parallel()
	d := newCheckDomain(t)
	cfg, err := loadConfig(d.config(t, checkFile{}))
	if err != nil {
		t.Fatal(err)
	}
	first := checkUpstream(context.Background(), "test", cfg.Upstream, time.Now)
	if !first.OK || first.DCs[0].Certificate == nil {
		t.Fatalf("the domain does not pass: %+v", first)
	}
	expiry := first.DCs[0].Certificate.Expiry
	tests := []struct {
		name       string
		now        time.Time
		wantStatus string
		wantDetail string
	}{
		{"31 days before the expiry it is fine", expiry.Add(-31*24*time.Hour - time.Hour), statusOK, "certificate verified"},
		{"10 days before the expiry it is a warning", expiry.Add(-10*24*time.Hour - time.Hour), statusWarn, "it expires in 10 days (" + expiry.Format(time.DateOnly) + "): renew the secure LDAP certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep := checkUpstream(context.Background(), "test", cfg.Upstream, func() time.Time { return tt.now })
			tls := rep.DCs[0].Steps[1]
			if tls.Status != tt.wantStatus || !strings.Contains(tls.Detail, tt.wantDetail) {
				t.Errorf("tls step %s %q, want %s containing %q", tls.Status, tls.Detail, tt.wantStatus, tt.wantDetail)
			}
			if !rep.OK || rep.err() != nil {
				t.Errorf("a certificate near its expiry failed the check: %v", rep.err())
			}
		})
	}
}

func TestCheckAuth(t *testing.T) {
	t.Parallel()
	d := newCheckDomain(t)
	cfg := d.config(t, checkFile{})
	dc1 := d.dcs[0].URL()
	jdoe, sobrien := testbed.JDoe, testbed.SOBrien
	const wrong = "Wr0ng!check-auth"
	tests := []struct {
		name  string
		user  string
		stdin string
		want  wantOutput
	}{
		{
			name: "the right password binds and every step is shown", user: "jdoe", stdin: jdoe.Password + "\n",
			want: wantOutput{code: 0, emptyError: true, stdout: []string{
				"login    jdoe: a sAMAccountName, key sam:jdoe\n",
				"user     " + jdoe.DN() + " (found by a search as the service account)\n",
				"dc       " + dc1 + "\n",
				"result   OK   AD accepted the password; the PBX would get 0 success\n",
				"latency  "}},
		},
		{
			name: "a wrong password is 49 with AD's sub-code explained", user: "jdoe", stdin: wrong + "\n",
			want: wantOutput{code: 1, secrets: []string{wrong},
				stdout: []string{"dc       " + dc1, `result   FAIL invalid credentials (AD said 52e: wrong password); the PBX would get 49 "invalid credentials"`},
				stderr: []string{"ldapgate: check auth: jdoe was refused: invalid credentials (AD said 52e: wrong password)\n"}},
		},
		{
			name: "a disabled account with the right password shows 533, which the PBX never sees", user: "cwhite", stdin: testbed.CWhite.Password + "\n",
			want: wantOutput{code: 1, stdout: []string{"invalid credentials (AD said 533: account disabled)", `the PBX would get 49 "invalid credentials"`}},
		},
		{
			name: "a UPN is shown as such", user: jdoe.UPN(), stdin: jdoe.Password + "\n",
			want: wantOutput{code: 0, emptyError: true, stdout: []string{"a userPrincipalName (UPN), key upn:" + jdoe.UPN()}},
		},
		{
			name: "a down-level name is shown as such", user: `AADDS\JDoe`, stdin: jdoe.Password + "\r\n",
			want: wantOutput{code: 0, emptyError: true, stdout: []string{`AADDS\JDoe: a down-level name (DOMAIN\sAMAccountName), key sam:jdoe`}},
		},
		{
			name: "a UTF-8 password without a line break binds", user: sobrien.Login, stdin: sobrien.Password,
			want: wantOutput{code: 0, emptyError: true, stdout: []string{"user     " + sobrien.DN()}},
		},
		{
			name: "an unknown user sends no bind", user: "nobody", stdin: wrong + "\n",
			want: wantOutput{code: 1, stdout: []string{"user     no user entry matches", "dc       none: no bind was sent to AD"},
				stderr: []string{"nobody was refused: no user matches the login under upstream.user_base_dn"}},
		},
		{
			name: "an empty line is an empty password, refused before AD", user: "jdoe", stdin: "\n",
			want: wantOutput{code: 1, stdout: []string{"empty password: an unauthenticated bind", "dc       none"}},
		},
		{
			name: "no input at all is an error, not an empty password", user: "jdoe", stdin: "",
			want: wantOutput{code: 1, emptyOut: true, stderr: []string{"ldapgate: check auth: no password on standard input"}},
		},
		{
			name: "a line longer than any AD password is refused", user: "jdoe", stdin: strings.Repeat("x", 2000) + "\n",
			want: wantOutput{code: 1, emptyOut: true, stderr: []string{"longer than 1024 bytes"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runWithStdin(strings.NewReader(tt.stdin), "check", "auth", "--config", cfg, tt.user)
			want := tt.want
			if pw := strings.TrimSpace(tt.stdin); len(pw) > 3 {
				want.secrets = append(want.secrets, pw)
			}
			want.check(t, code, stdout, stderr)
		})
	}
}

func TestCheckAuthUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"without USER it says what USER is", []string{"check", "auth", "--config", "x.yaml"}, "ldapgate: check auth: USER is required: the login to test"},
		{"without --config it names the flag", []string{"check", "auth", "jdoe"}, "ldapgate: check auth: --config is required"},
		{"an option after USER is refused with the reason", []string{"check", "auth", "jdoe", "--config", "x.yaml"}, `unexpected argument "--config"`},
		{"two users are refused", []string{"check", "auth", "--config", "x.yaml", "jdoe", "asmith"}, `unexpected argument "asmith"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runWithStdin(strings.NewReader("pw\n"), tt.args...)
			wantOutput{code: 2, emptyOut: true, stderr: []string{tt.want, "Run 'ldapgate help check auth' for usage."}}.check(t, code, stdout, stderr)
		})
	}
}
