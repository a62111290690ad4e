package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/certs"
	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/loadgen"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// passwordsOf lists every test bed password, none of which may be printed.
func passwordsOf(accounts ...testbed.Account) []string {
	var pws []string
	for _, a := range accounts {
		pws = append(pws, a.Password)
	}
	return pws
}

func TestBenchAgainstTheSimulator(t *testing.T) {
	t.Parallel()
	d := newCheckDomain(t)
	dc := d.dcs[0]
	jdoePW := writeFile(t, "jdoe.pw", testbed.JDoe.Password+"\n")
	svcPW := writeFile(t, "svc.pw", testbed.Service.Password+"\n")
	wrongPW := writeFile(t, "wrong.pw", "not-the-password\n")
	logins := writeFile(t, "logins.csv", "# login,password\n"+
		testbed.JDoe.UPN()+","+testbed.JDoe.Password+"\n\n"+
		`"`+testbed.SOBrien.DN()+`",`+testbed.SOBrien.Password+"\n")
	base := []string{"bench", "--url", dc.URL(), "--ca-file", d.caFile, "--server-name", dc.HostName(), "--count", "20", "--concurrency", "2"}
	secrets := append(passwordsOf(testbed.Accounts...), "not-the-password")
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  wantOutput
	}{{
		name: "binds of one login with the password from a file",
		args: []string{"--login", testbed.JDoe.DN(), "--password-file", jdoePW},
		want: wantOutput{code: 0, stdout: []string{
			"target      " + dc.URL() + ": bind, 2 clients, reused connections\n",
			"operations  20 in ", ": 20 ok, 0 failed\n",
			"throughput  ", "latency     p50 ",
			"codes       0               20  success\n",
			"timeline    second       ok   failed\n",
		}, emptyError: true},
	}, {
		name:  "the password piped on standard input, a new connection per bind",
		args:  []string{"--login", testbed.JDoe.UPN(), "--new-conn"},
		stdin: testbed.JDoe.Password + "\n",
		want:  wantOutput{code: 0, stdout: []string{"a new connection per operation", "20 ok, 0 failed"}, emptyError: true},
	}, {
		name: "logins from a file, round-robin, a quoted DN with an escaped comma",
		args: []string{"--logins", logins},
		want: wantOutput{code: 0, stdout: []string{"20 ok, 0 failed"}, emptyError: true},
	}, {
		name: "pascom's search-then-bind as the proxy user",
		args: []string{"--mode", "search-then-bind", "--login", testbed.SOBrien.Login, "--proxy-dn", testbed.Service.UPN(),
			"--proxy-password-file", svcPW, "--base-dn", testbed.UsersDN},
		stdin: testbed.SOBrien.Password + "\n",
		want:  wantOutput{code: 0, stdout: []string{"search-then-bind, 2 clients", "20 ok, 0 failed"}, emptyError: true},
	}, {
		name: "searches with the attributes pascom imports",
		args: []string{"--mode", "search", "--logins", logins, "--filter", "(userPrincipalName=%s)", "--attributes", "mail, telephoneNumber",
			"--proxy-dn", testbed.Service.UPN(), "--proxy-password-file", svcPW, "--base-dn", testbed.UsersDN},
		// Some succeeded: exit 0.
		want: wantOutput{code: 0, stdout: []string{"10 ok, 10 failed", "no-entry        10  the search found no entry"}, emptyError: true},
	}, {
		name: "nothing succeeds with a wrong password: exit 1 with AD's reason",
		args: []string{"--login", testbed.BJones.DN(), "--password-file", wrongPW},
		want: wantOutput{code: 1, stdout: []string{"0 ok, 20 failed", "codes       49              20  invalid credentials"},
			stderr: []string{"ldapgate: bench: no operation succeeded; the most common outcome was 49 (invalid credentials: ", "data 52e"}},
	}, {
		name: "a CA that did not sign the DC's certificate: exit 1 saying so",
		args: []string{"--login", testbed.JDoe.DN(), "--password-file", jdoePW, "--ca-file", wrongCA(t)},
		want: wantOutput{code: 1, stdout: []string{"codes       tls             20  TLS handshake failed"},
			stderr: []string{"the most common outcome was tls (TLS handshake failed: tls handshake: ", "certificate"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.secrets = secrets
			code, stdout, stderr := runWithStdin(strings.NewReader(tt.stdin), append(append([]string{}, base...), tt.args...)...)
			tt.want.check(t, code, stdout, stderr)
		})
	}
}

func TestBenchJSON(t *testing.T) {
	t.Parallel()
	d := newCheckDomain(t)
	dc := d.dcs[0]
	code, stdout, stderr := runWithStdin(strings.NewReader(testbed.JDoe.Password+"\n"), "bench", "--json", "--url", dc.URL(),
		"--ca-file", d.caFile, "--login", testbed.JDoe.DN(), "--duration", "1200ms", "--concurrency", "3")
	if code != 0 || stderr != "" {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
	}
	var rep struct {
		URL         string  `json:"url"`
		Mode        string  `json:"mode"`
		Concurrency int     `json:"concurrency"`
		Ops         int     `json:"ops"`
		OK          int     `json:"ok"`
		ElapsedS    float64 `json:"elapsed_s"`
		Throughput  float64 `json:"throughput"`
		LatencyMS   struct {
			P50, P90, P99, Max float64
		} `json:"latency_ms"`
		Codes []struct {
			Code  string `json:"code"`
			Name  string `json:"name"`
			Count int    `json:"count"`
		} `json:"codes"`
		Timeline []struct {
			Second, OK, Failed int
		} `json:"timeline"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if rep.URL != dc.URL() || rep.Mode != "bind" || rep.Concurrency != 3 || rep.ElapsedS != 1.2 || rep.Throughput <= 0 ||
		rep.LatencyMS.P50 <= 0 || rep.LatencyMS.Max < rep.LatencyMS.P99 || len(rep.Codes) != 1 || rep.Codes[0].Code != "0" ||
		rep.Codes[0].Name != "success" || rep.Codes[0].Count != rep.Ops || len(rep.Timeline) != 2 || rep.Timeline[1].Second != 1 {
		t.Errorf("report %+v from:\n%s", rep, stdout)
	}
}

func TestBenchUsage(t *testing.T) {
	t.Parallel()
	pw := writeFile(t, "pw", "secret-pw\n")
	empty := writeFile(t, "empty", "")
	lines := func(content string) string { return writeFile(t, "logins.csv", content) }
	url := []string{"bench", "--url", "ldap://127.0.0.1:1"}
	tests := []struct {
		name  string
		args  []string
		stdin string
		code  int
		want  string
	}{
		{"no url", []string{"bench", "--login", "jdoe"}, "", 2, "ldapgate: bench: --url is required"},
		{"no login", url, "", 2, "give either --login NAME or --logins FILE"},
		{"both a login and a logins file", append(url, "--login", "x", "--logins", pw), "", 2, "give either --login NAME or --logins FILE"},
		{"unbounded", append(url, "--login", "x", "--duration", "0"), "", 2, "--duration 0 and no --count: the run would never end"},
		{"an unknown mode", append(url, "--login", "x", "--mode", "modify"), "", 2, `--mode "modify": use bind, search-then-bind or search`},
		{"a search without a proxy", append(url, "--login", "x", "--mode", "search", "--base-dn", "dc=x"), "", 2, "--mode search needs --proxy-dn"},
		{"a proxy for binds", append(url, "--login", "x", "--password-file", pw, "--proxy-dn", "svc"), "", 2, "--proxy-dn and --proxy-password-file are for the search modes"},
		{"a stray argument", append(url, "--login", "x", "extra"), "", 2, `unexpected argument "extra"`},
		{"a url that is not LDAP", []string{"bench", "--url", "http://x", "--login", "x", "--password-file", pw}, "", 2, `scheme "http"; use ldap:// or ldaps://`},
		{"too many clients", append(url, "--login", "x", "--password-file", pw, "--concurrency", "0"), "", 2, "concurrency 0: must be between 1 and 100000"},
		{"an empty password file", append(url, "--login", "x", "--password-file", empty), "", 1, "the first line is empty; an empty password would be an anonymous bind"},
		{"no password on standard input", append(url, "--login", "x"), "", 1, "no password on standard input"},
		{"two passwords from a pipe", append(url, "--login", "x", "--mode", "search", "--proxy-dn", "svc", "--base-dn", "dc=x"), "pw\n", 2,
			"standard input is not a terminal and gives one password only: give --proxy-password-file"},
		{"a logins line with three fields", append(url, "--logins", lines("jdoe,pw\n# c\nasmith,pw,x\n")), "", 1, "line 3: 3 fields, want login,password"},
		{"a logins line without a password", append(url, "--logins", lines("jdoe,secret-pw\nasmith,\n")), "", 1, "line 2: empty password for asmith"},
		{"a logins line with a stray quote", append(url, "--logins", lines("jdoe,secret-pw\nas\"mith,pw\n")), "", 1, "line 2: bare \" in non-quoted-field; quote a field"},
		{"a filter with two places for the login", append(url, "--login", "x", "--password-file", pw, "--mode", "search", "--proxy-dn", "svc",
			"--proxy-password-file", pw, "--base-dn", "dc=x", "--filter", "(|(uid=%s)(cn=%s))"), "", 2, "has 2 %s, needs exactly one"},
		{"an empty logins file", append(url, "--logins", lines("# nothing\n")), "", 1, "no login in it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runWithStdin(strings.NewReader(tt.stdin), tt.args...)
			wantOutput{code: tt.code, stderr: []string{tt.want}, secrets: []string{"secret-pw"}, emptyOut: true}.check(t, code, stdout, stderr)
		})
	}
}

// startBenchGateway runs the gateway in-process in front of the domain, with
// StartTLS on its plain listener, and returns its address and the CA file that
// verifies its certificate.
func startBenchGateway(t testing.TB, d *checkDomain) (addr, caFile string) {
	t.Helper()
	tlsDir := t.TempDir()
	if _, err := certs.WriteInit(tlsDir, []string{"localhost", "127.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	var servers []configs.Server
	for _, dc := range d.dcs {
		servers = append(servers, configs.Server{URL: dc.URL(), ServerName: dc.HostName()})
	}
	cfg := demoConfig("127.0.0.1:0", servers, d.caFile)
	cfg.Sync.Enabled = false
	cfg.Listen.StartTLS = true
	cfg.Listen.TLS = configs.ListenTLS{CertFile: filepath.Join(tlsDir, certs.ServerCertFile), KeyFile: filepath.Join(tlsDir, certs.ServerKeyFile)}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cluster, err := upstream.New(cfg.Upstream, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	auth, err := proxy.NewAuth(cfg, cluster, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg.Listen, cfg.Upstream.BaseDN, auth, zap.NewNop(), proxy.WithSearch(cfg, cluster))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("shut the gateway down: %v", err)
		}
		<-served
		_ = auth.Close()
		_ = cluster.Close()
	})
	return l.Addr().String(), filepath.Join(tlsDir, certs.CACertFile)
}

func TestBenchThroughTheGateway(t *testing.T) {
	t.Parallel()
	d := newCheckDomain(t)
	addr, caFile := startBenchGateway(t, d)
	svcPW := writeFile(t, "svc.pw", testbed.Service.Password+"\n")
	logins := writeFile(t, "logins.csv", "jdoe,"+testbed.JDoe.Password+"\n"+testbed.NetBIOS+`\asmith,`+testbed.ASmith.Password+"\n")
	base := []string{"bench", "--url", "ldap://" + addr, "--count", "40", "--concurrency", "4"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"binds with the logins a PBX sends", []string{"--logins", logins}, []string{"40 ok, 0 failed"}},
		{"binds over StartTLS, verified", []string{"--logins", logins, "--starttls", "--ca-file", caFile, "--server-name", "localhost", "--new-conn"},
			[]string{"a new connection per operation", "40 ok, 0 failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runWithStdin(strings.NewReader(""), append(append([]string{}, base...), tt.args...)...)
			wantOutput{code: 0, stdout: tt.want, secrets: passwordsOf(testbed.Accounts...), emptyError: true}.check(t, code, stdout, stderr)
		})
	}
	t.Run("pascom's search-then-bind with its filter", func(t *testing.T) {
		code, stdout, stderr := runWithStdin(strings.NewReader(""), append(append([]string{}, base...), "--mode", "search-then-bind",
			"--logins", writeFile(t, "l.csv", "jdoe,"+testbed.JDoe.Password+"\nsobrien,"+testbed.SOBrien.Password+"\n"),
			"--proxy-dn", testbed.Service.UPN(), "--proxy-password-file", svcPW, "--base-dn", testbed.UsersDN)...)
		wantOutput{code: 0, stdout: []string{"40 ok, 0 failed"}, secrets: passwordsOf(testbed.Accounts...), emptyError: true}.check(t, code, stdout, stderr)
	})
}

// BenchmarkGatewayBinds is the bind path end to end: loadgen's clients (4,
// reused plain-LDAP connections) bind with logins a PBX sends through an
// in-process gateway (guard, gldap, bind path, LDAPS pool) to two simulated
// DCs. Everything shares the CPU: profile it (-cpuprofile) to see the
// gateway's share.
func BenchmarkGatewayBinds(b *testing.B) {
	d := newCheckDomain(b)
	addr, _ := startBenchGateway(b, d)
	b.ReportAllocs()
	cpu0 := processCPU(b)
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:  "ldap://" + addr,
		Mode: loadgen.ModeBind,
		Logins: []loadgen.Login{
			{Name: testbed.JDoe.Login, Password: testbed.JDoe.Password},
			{Name: testbed.ASmith.UPN(), Password: testbed.ASmith.Password},
		},
		Concurrency: 4,
		Count:       b.N,
	})
	if err != nil || res.OK != b.N {
		b.Fatalf("%d of %d ok (%v): %v", res.OK, b.N, res.Codes, err)
	}
	b.ReportMetric(res.Throughput, "binds/s")
	b.ReportMetric(float64(res.P99)/float64(time.Millisecond), "p99-ms")
	// CPU time says more than binds/s on a machine shared with other work.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/bind")
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
