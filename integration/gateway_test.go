//go:build integration

// End-to-end tests of the gateway against the Samba test bed (and the simulator
// where Samba cannot show the Windows behaviour): the "Done when" list of the
// gateway issue. Every gateway logs at debug level into TestMain's log
// directory, which TestMain scans for test passwords at the end.
package integration

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy"
)

// TestGatewayLdapUtilsAgainstTheRealBinary runs ldapsearch and ldapwhoami, as an
// admin would, against `ldapgate serve` in front of both Samba DCs.
func TestGatewayLdapUtilsAgainstTheRealBinary(t *testing.T) {
	lockHLockedOut(t)
	gw := startProcGateway(t, "ldap-utils", nil)

	jdoeDN := "CN=John Doe,OU=AADDC Users," + testbed.BaseDN
	goods := []struct {
		name, login, password, dn string
	}{
		{"jdoe signs in with its sAMAccountName", "jdoe", testbed.JDoe.Password, jdoeDN},
		{"jdoe signs in with its UPN", "jdoe@aadds.example.test", testbed.JDoe.Password, jdoeDN},
		{`jdoe signs in as AADDS\jdoe`, `AADDS\jdoe`, testbed.JDoe.Password, jdoeDN},
		{"jdoe signs in with its DN", jdoeDN, testbed.JDoe.Password, jdoeDN},
		{"jdoe signs in typed as JDoe", "JDoe", testbed.JDoe.Password, jdoeDN},
		{"sobrien signs in with a UTF-8 password and gets a DN with an escaped comma", "sobrien", "Pässw0rd!€ü",
			`CN=Seán O'Brien\, Jr.,OU=AADDC Users,DC=aadds,DC=example,DC=test`},
	}
	for _, c := range goods {
		t.Run(c.name, func(t *testing.T) {
			off := logSize(t, gw.logPath)
			r := runTool(t, "ldapsearch", gw.addr, c.login, c.password)
			if r.exit != 0 || !strings.Contains(r.stdout, "namingContexts: "+testbed.BaseDN) {
				t.Errorf("ldapsearch -D %q: exit %d, want 0 and the naming context\nstdout: %s\nstderr: %s", c.login, r.exit, r.stdout, r.stderr)
			}
			r = runTool(t, "ldapwhoami", gw.addr, c.login, c.password)
			if got := strings.TrimSpace(r.stdout); r.exit != 0 || got != "dn:"+c.dn {
				t.Errorf("ldapwhoami -D %q: exit %d, printed %q, want exit 0 and %q\nstderr: %s", c.login, r.exit, got, "dn:"+c.dn, r.stderr)
			}
			for i, l := range waitAudit(t, gw.logPath, off, 2) {
				if l.num("result") != 0 || l.str("reason") != "ok" || l.str("user") != c.dn || l.str("login") != c.login {
					t.Errorf("audit line %d: result %d, reason %q, user %q, login %q; want 0, ok, %q, %q",
						i, l.num("result"), l.str("reason"), l.str("user"), l.str("login"), c.dn, c.login)
				}
			}
		})
	}

	bads := []struct {
		name, login, password string
		// adCode and reason are what the audit line must say ("" for reason:
		// anything but ok; the client never sees either).
		adCode, reason string
		// goLDAP sends the bind with go-ldap: ldap-utils cannot put a NUL in -D.
		goLDAP bool
		// wrong: a wrong password of its own for each tool, so that neither is
		// the same wrong password again (which a negative cache may answer).
		wrong bool
	}{
		{name: "jdoe with a wrong password", login: "jdoe", wrong: true, adCode: "52e", reason: "ad_refused"},
		{name: "an unknown user", login: "nosuchuser", wrong: true, reason: "unknown_user"},
		{name: "disabled cwhite with its password", login: "cwhite", password: testbed.CWhite.Password, adCode: "533", reason: "ad_refused"},
		{name: "dmust, who must change its password, with its password", login: "dmust", password: testbed.DMust.Password, adCode: "773", reason: "ad_refused"},
		{name: "expired account eexpired with its password", login: "eexpired", password: testbed.EExpired.Password, adCode: "701", reason: "ad_refused"},
		{name: "gpwexpired, whose password expired, with its password", login: "gpwexpired", password: testbed.GPwExpired.Password, adCode: "532", reason: "ad_refused"},
		{name: "locked-out hlocked with its password", login: "hlocked", password: testbed.HLocked.Password, adCode: "775", reason: "ad_refused"},
		{name: "jdoe with an empty password", login: "jdoe", password: "", reason: "empty_password"},
		{name: "the name * with jdoe's password", login: "*", password: testbed.JDoe.Password},
		{name: "the name j* with jdoe's password", login: "j*", password: testbed.JDoe.Password},
		{name: "a filter injection with jdoe's password", login: "jdoe)(|(sAMAccountName=*", password: testbed.JDoe.Password},
		{name: "jdoe followed by a NUL byte with jdoe's password", login: "jdoe\x00", password: testbed.JDoe.Password, goLDAP: true},
		{name: "a 10 kB name with jdoe's password", login: "jdoe" + strings.Repeat("x", 10<<10), password: testbed.JDoe.Password},
	}
	diagnostics := map[string][]string{} // diagnostic text → which refusals got it
	for _, c := range bads {
		t.Run(c.name+" gets 49", func(t *testing.T) {
			off := logSize(t, gw.logPath)
			binds := 0
			if c.goLDAP {
				code, diag := bindAt(t, gw.addr, c.login, c.password)
				if code != ldap.LDAPResultInvalidCredentials {
					t.Errorf("bind %q with go-ldap: result %d, want 49", logName(c.login), code)
				}
				diagnostics[diag] = append(diagnostics[diag], c.name+" (go-ldap)")
				binds = 1
			} else {
				for _, tool := range []string{"ldapsearch", "ldapwhoami"} {
					password := c.password
					if c.wrong {
						password = wrongPassword(c.login + "-via-" + tool)
					}
					r := runTool(t, tool, gw.addr, c.login, password)
					if r.exit != ldap.LDAPResultInvalidCredentials || !strings.Contains(r.stderr, "Invalid credentials (49)") {
						t.Errorf("%s -D %q: exit %d, want 49 and \"Invalid credentials (49)\"\nstdout: %s\nstderr: %s", tool, logName(c.login), r.exit, r.stdout, r.stderr)
					}
					diagnostics[r.diagnostic()] = append(diagnostics[r.diagnostic()], c.name+" ("+tool+")")
					binds++
				}
			}
			lines := waitAudit(t, gw.logPath, off, binds)
			for i, l := range lines {
				reasonOK := l.str("reason") == c.reason || (c.reason == "" && l.str("reason") != "ok" && l.str("reason") != "")
				if l.num("result") != ldap.LDAPResultInvalidCredentials || l.str("ad_code") != c.adCode || !reasonOK {
					t.Errorf("audit line %d: result %d, ad_code %q, reason %q; want 49, %q, %s",
						i, l.num("result"), l.str("ad_code"), l.str("reason"), c.adCode, orAny(c.reason))
				}
				if c.adCode == "" && c.reason != "unknown_user" && (l.str("user") != "" || l.str("dc") != "") {
					t.Errorf("audit line %d: a name that names no account reached user %q on DC %q", i, l.str("user"), l.str("dc"))
				}
			}
			if len(lines) != binds {
				t.Errorf("%d audit lines for %d binds", len(lines), binds)
			}
		})
	}
	t.Run("every refusal carries the same diagnostic text", func(t *testing.T) {
		if len(diagnostics) != 1 {
			t.Fatalf("the refusals got %d different diagnostics, want one: %q", len(diagnostics), diagnostics)
		}
		for diag := range diagnostics {
			if diag != proxy.DiagInvalidCredentials {
				t.Errorf("diagnostic %q, want %q", diag, proxy.DiagInvalidCredentials)
			}
		}
	})
}

func orAny(reason string) string {
	if reason == "" {
		return "any refusal"
	}
	return fmt.Sprintf("%q", reason)
}

// blankPasswords are RFC 4513 "unauthenticated binds" once AD trims nothing: a
// name with them must never reach AD, which answers an empty one with success.
var blankPasswords = []struct{ name, password string }{
	{"an empty password", ""},
	{"a space", " "},
	{"a tab", "\t"},
	{"spaces, a tab and a newline", "  \t\n"},
}

// loginForms are the four forms of a login for an account.
func loginForms(a testbed.Account) []string {
	return []string{a.Login, a.UPN(), testbed.NetBIOS + `\` + a.Login, a.DN()}
}

func TestGatewayNeverSendsEmptyOrWhitespacePasswordsToAD(t *testing.T) {
	t.Run("on the simulator", func(t *testing.T) {
		dir, err := adsim.NewDirectory(adsim.Config{})
		if err != nil {
			t.Fatal(err)
		}
		sims := make([]*adsim.DC, 2)
		for i, name := range []string{"dc1", "dc2"} {
			if sims[i], err = dir.NewDC(adsim.DCConfig{Name: name}); err != nil {
				t.Fatal(err)
			}
			if err := sims[i].Start("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sims[i].Close() })
		}
		caFile := filepath.Join(t.TempDir(), "adsim-ca.pem")
		if err := os.WriteFile(caFile, dir.CACertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}

		t.Run("the simulator itself answers an empty password with success, as Windows AD does", func(t *testing.T) {
			l, err := ldap.DialURL(sims[0].URL(), ldap.DialWithTLSConfig(sims[0].ClientTLSConfig()))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if _, err := l.SimpleBind(&ldap.SimpleBindRequest{Username: testbed.ASmith.DN(), Password: "", AllowEmptyPassword: true}); err != nil {
				t.Fatalf("a direct bind as asmith with an empty password: %v, want success (Windows AD's unauthenticated bind)", err)
			}
			if n := sims[0].AccountBinds(testbed.ASmith.Login); n != 1 {
				t.Fatalf("the simulator counted %d binds for asmith, want 1: its counter would not show a leak", n)
			}
		})

		gw := startInprocGateway(t, "adsim", map[string]any{
			"upstream.ca_file": caFile,
			"upstream.servers": []any{
				map[string]any{"url": sims[0].URL(), "server_name": testbed.DC1Name},
				map[string]any{"url": sims[1].URL(), "server_name": testbed.DC2Name},
			},
		})
		before := []adsim.Stats{sims[0].Stats(), sims[1].Stats()}
		for _, login := range loginForms(testbed.JDoe) {
			for _, b := range blankPasswords {
				t.Run(login+" with "+b.name+" gets 49", func(t *testing.T) {
					code, diag := bindAt(t, gw.addr, login, b.password)
					if code != ldap.LDAPResultInvalidCredentials || diag != proxy.DiagInvalidCredentials {
						t.Errorf("result %d %q, want 49 %q", code, diag, proxy.DiagInvalidCredentials)
					}
				})
			}
		}
		t.Run("no bind for jdoe and no request at all reached either simulated DC", func(t *testing.T) {
			for i, s := range sims {
				if n := s.AccountBinds(testbed.JDoe.Login); n != 0 {
					t.Errorf("dc%d received %d binds for jdoe, want 0", i+1, n)
				}
				after := s.Stats()
				if after.Binds != before[i].Binds || after.Searches != before[i].Searches || after.Connections != before[i].Connections {
					t.Errorf("dc%d saw traffic: before %+v, after %+v", i+1, before[i], after)
				}
			}
		})
		t.Run("jdoe's right password does reach a simulated DC, so the counter measures", func(t *testing.T) {
			if code, diag := bindAt(t, gw.addr, "jdoe", testbed.JDoe.Password); code != 0 {
				t.Fatalf("jdoe with its password: %d %q, want success", code, diag)
			}
			if n := sims[0].AccountBinds("jdoe") + sims[1].AccountBinds("jdoe"); n != 1 {
				t.Errorf("the simulated DCs counted %d binds for jdoe, want 1", n)
			}
		})
	})

	t.Run("on Samba, bjones's badPwdCount on both DCs", func(t *testing.T) {
		gw := startProcGateway(t, "bjones-badpwdcount", nil)
		admins := []*ldap.Conn{adminConn(t, dcs[0]), adminConn(t, dcs[1])}
		counts := func() [2]int {
			return [2]int{badPwdCountOf(t, admins[0], testbed.BJones.DN()), badPwdCountOf(t, admins[1], testbed.BJones.DN())}
		}
		// A good bind on a DC resets its count: start from zero on both.
		for _, d := range dcs {
			if got := bindResult(t, d, testbed.BJones.DN(), testbed.BJones.Password); got != "" {
				t.Fatalf("bjones with his password on %s: %s, want success", d.name, describe(got))
			}
		}
		if c := counts(); c != [2]int{0, 0} {
			t.Fatalf("bjones's badPwdCount is %v on dc1, dc2 after a good bind on each, want 0, 0", c)
		}

		t.Run("stays 0 after blank passwords in every login form through the gateway", func(t *testing.T) {
			for _, login := range loginForms(testbed.BJones) {
				for _, b := range blankPasswords {
					if code, diag := bindAt(t, gw.addr, login, b.password); code != ldap.LDAPResultInvalidCredentials {
						t.Errorf("%s with %s: %d %q, want 49", login, b.name, code, diag)
					}
				}
			}
			if c := counts(); c != [2]int{0, 0} {
				t.Errorf("bjones's badPwdCount is %v on dc1, dc2 after blank passwords, want 0, 0: they reached AD", c)
			}
		})
		t.Run("rises by exactly 1 on exactly one DC after one wrong password, so the measurement measures", func(t *testing.T) {
			if code, _ := bindAt(t, gw.addr, "bjones", wrongPassword("bjones-once-through-the-gateway")); code != ldap.LDAPResultInvalidCredentials {
				t.Fatalf("bjones with a wrong password: %d, want 49", code)
			}
			var c [2]int
			waitFor(t, logWithin, func() bool { c = counts(); return c[0]+c[1] > 0 },
				"bjones's badPwdCount stayed 0 on both DCs after a wrong password through the gateway")
			if c != [2]int{1, 0} && c != [2]int{0, 1} {
				t.Errorf("bjones's badPwdCount is %v on dc1, dc2 after one wrong password, want 1 on one DC and 0 on the other (sent to one DC, once)", c)
			}
		})
		t.Run("is 0 again after a good bind through the gateway", func(t *testing.T) {
			if code, diag := bindAt(t, gw.addr, "bjones", testbed.BJones.Password); code != 0 {
				t.Fatalf("bjones with his password: %d %q, want success", code, diag)
			}
			if c := counts(); c != [2]int{0, 0} {
				t.Errorf("bjones's badPwdCount is %v on dc1, dc2 after a good bind, want 0, 0", c)
			}
		})
	})
}

func TestGatewayWarmDNCacheBindsWithOneUpstreamBindAndNothingElse(t *testing.T) {
	const n = 50
	gw := startInprocGateway(t, "warm-dn-cache", nil)
	l, err := dialGateway(gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if code, diag := bindCode(t, l, "jdoe", testbed.JDoe.Password); code != 0 {
		t.Fatalf("warm-up bind: %d %q", code, diag)
	}
	before := gw.cluster.Stats()
	off := logSize(t, gw.logPath)
	// Three spellings of one sAMAccountName: the cache key is the account, not the typed string.
	forms := []string{"jdoe", "JDoe", `AADDS\jdoe`}
	for i := range n {
		if code, diag := bindCode(t, l, forms[i%len(forms)], testbed.JDoe.Password); code != 0 {
			t.Fatalf("bind %d as %s: %d %q", i, forms[i%len(forms)], code, diag)
		}
	}
	after := gw.cluster.Stats()
	var binds, searches, dials, handshakes uint64
	for i := range after {
		binds += after[i].Binds - before[i].Binds
		searches += after[i].Searches - before[i].Searches
		dials += after[i].Dials - before[i].Dials
		handshakes += after[i].Handshakes - before[i].Handshakes
	}
	if binds != n || searches != 0 || dials != 0 || handshakes != 0 {
		t.Errorf("%d binds after a warm-up made %d upstream binds, %d searches, %d dials, %d TLS handshakes; want %d, 0, 0, 0\nbefore: %s\nafter:  %s",
			n, binds, searches, dials, handshakes, n, describeDC(before[0]), describeDC(after[0]))
	}
	hits := 0
	for _, l := range waitAudit(t, gw.logPath, off, n) {
		if l["cache_hit"] == true {
			hits++
		}
	}
	if hits != n {
		t.Errorf("%d of %d audit lines say cache_hit, want all", hits, n)
	}
}

// hostileInput is what a misbehaving client sends on a new connection.
type hostileInput struct {
	name string
	send []byte
	// want is the response before the close; nil: no response, only the close.
	want *ldapResult
	// stays: the connection stays open (a SASL bind is answered, not an attack).
	stays bool
}

// TestGatewaySurvivesHostileClientsWhileAGoodClientBinds runs against the real
// binary. A panicking Authenticator is covered by the listener's own test,
// proxy/server_test.go TestAPanickingHandlerDoesNotTakeTheServerDown.
func TestGatewaySurvivesHostileClientsWhileAGoodClientBinds(t *testing.T) {
	const idle = 2000
	raiseFileLimit(t, 2*idle+1000)
	gw := startProcGateway(t, "robustness", map[string]any{
		"listen.max_connections":        idle + 100,
		"listen.max_connections_per_ip": idle + 50,
	})
	good := startGoodClient(t, gw.addr)

	t.Run("2,000 idle connections do not block the good client", func(t *testing.T) {
		conns := make([]net.Conn, 0, idle)
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for i := range idle {
			conns = append(conns, dialFrom(t, "127.0.0.5", gw.addr))
			// An anonymous bind proves the gateway serves the connection.
			if _, err := conns[i].Write(bindMessage(1, 3, "", simpleAuth(""))); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if r := readResult(t, conns[i]); r.code != 0 {
				t.Fatalf("anonymous bind on connection %d: %d, want 0", i, r.code)
			}
		}
		good.waitMore(t, 20, fmt.Sprintf("with %d idle connections open", idle))
		if code, diag := bindAt(t, gw.addr, "jdoe", testbed.JDoe.Password); code != 0 {
			t.Fatalf("a new connection with %d idle ones open: %d %q", idle, code, diag)
		}
		for _, l := range readLog(t, gw.logPath) {
			if l.str("msg") == "connection refused" {
				t.Errorf("the gateway refused a connection: %v", l)
			}
		}
	})

	hostile := []hostileInput{
		{name: "a 10 MB BER length header gets a Notice of Disconnection and a close",
			send: []byte{0x30, 0x84, 0x00, 0x98, 0x96, 0x80, 0x02, 0x01, 0x01},
			want: &ldapResult{id: 0, op: ldap.ApplicationExtendedResponse, code: ldap.LDAPResultProtocolError}},
		{name: "an LDAPv2 bind gets protocolError and a close",
			send: bindMessage(1, 2, "jdoe", simpleAuth(testbed.JDoe.Password)),
			want: &ldapResult{id: 1, op: ldap.ApplicationBindResponse, code: ldap.LDAPResultProtocolError}},
		{name: "a SASL bind gets authMethodNotSupported",
			send:  bindMessage(1, 3, "", saslAuth("EXTERNAL")),
			want:  &ldapResult{id: 1, op: ldap.ApplicationBindResponse, code: ldap.LDAPResultAuthMethodNotSupported},
			stays: true},
	}
	rng := rand.New(rand.NewPCG(1, 2)) // fixed: a failure names a set that can be replayed
	for i, size := range []int{1, 2, 7, 64, 300, 1000, 2048, 4000, 9000, 70000} {
		junk := make([]byte, size)
		for j := range junk {
			junk[j] = byte(rng.UintN(256))
		}
		if i%2 == 0 {
			junk[0] = 0x30 // past the first check: a SEQUENCE
		}
		hostile = append(hostile, hostileInput{name: fmt.Sprintf("%d random bytes (set %d) close the connection", size, i), send: junk})
	}
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			c := dialFrom(t, "127.0.0.6", gw.addr)
			if _, err := c.Write(h.send); err != nil {
				t.Fatal(err)
			}
			if h.want != nil {
				if got := readResult(t, c); got != *h.want {
					t.Errorf("response %+v, want %+v", got, *h.want)
				}
			}
			switch {
			case h.stays:
				if _, err := c.Write(bindMessage(2, 3, "", simpleAuth(""))); err != nil {
					t.Fatal(err)
				}
				if r := readResult(t, c); r.code != 0 {
					t.Errorf("an anonymous bind after it: %d, want 0", r.code)
				}
			default:
				_ = c.(*net.TCPConn).CloseWrite()
				if !closedSoon(c) {
					t.Errorf("the connection stayed open")
				}
			}
			good.waitMore(t, 3, h.name)
		})
	}

	t.Run("a connection over the per-IP cap is closed and the log names its address", func(t *testing.T) {
		const perIP = 5
		capped := startProcGateway(t, "per-ip-cap", map[string]any{"listen.max_connections_per_ip": perIP})
		goodCapped := startGoodClient(t, capped.addr)
		for i := range perIP {
			c := dialFrom(t, "127.0.0.7", capped.addr)
			if _, err := c.Write(bindMessage(1, 3, "", simpleAuth(""))); err != nil {
				t.Fatal(err)
			}
			if r := readResult(t, c); r.code != 0 {
				t.Fatalf("anonymous bind on connection %d of %d: %d", i+1, perIP, r.code)
			}
		}
		extra := dialFrom(t, "127.0.0.7", capped.addr)
		if !closedSoon(extra) {
			t.Fatalf("connection %d from 127.0.0.7 stayed open with max_connections_per_ip %d", perIP+1, perIP)
		}
		var logged []logLine
		waitFor(t, logWithin, func() bool {
			logged = logged[:0]
			for _, l := range readLog(t, capped.logPath) {
				if l.str("msg") == "connection refused" {
					logged = append(logged, l)
				}
			}
			return len(logged) > 0
		}, "no \"connection refused\" line in %s:\n%s", capped.logPath, tail(capped.logPath))
		if len(logged) != 1 || logged[0].str("client") != extra.LocalAddr().String() || logged[0].str("level") != "warn" {
			t.Errorf("refusal lines %v, want one warning naming client %s", logged, extra.LocalAddr())
		}
		goodCapped.waitMore(t, 5, "after the refusal")
	})

	if !gw.alive() {
		t.Fatalf("the gateway died; the end of its log:\n%s", tail(gw.logPath))
	}
	good.waitMore(t, 5, "after all hostile clients")
}
