//go:build integration

// Search tests (issue 4): pascom's search-then-bind and paged import through the
// real binary with ldap-utils, compared with the same searches made directly
// against the Samba DCs; the listener's refusals; and searches while both DCs
// are down, through fault proxies in front of them and an in-process gateway.
package integration

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/faultproxy"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// pbxNestedFilter is pascom's pre-filter by group, nested groups included.
const pbxNestedFilter = "(memberOf:1.2.840.113556.1.4.1941:=" + testbed.PBXUsersDN + ")"

// searchTool runs an ldap-utils command against the gateway (ignoring
// ldap.conf and ~/.ldaprc) with stdin as its input, bounded by toolWithin.
func searchTool(t *testing.T, stdin, tool string, args ...string) toolRun {
	t.Helper()
	return runBounded(t, tool, func(c *exec.Cmd) { c.Stdin = strings.NewReader(stdin) }, tool, append([]string{"-o", "nettimeout=10"}, args...)...)
}

// gatewaySearch runs ldapsearch through the gateway as login and returns the
// entries; any exit but 0 fails the test.
func gatewaySearch(t *testing.T, addr, login, password, base, filter string, extra []string, attrs ...string) []ldifEntry {
	t.Helper()
	args := []string{"-x", "-LLL", "-o", "ldif-wrap=no", "-H", "ldap://" + addr, "-D", login, "-w", password, "-b", base}
	args = append(append(append(args, extra...), filter), attrs...)
	r := searchTool(t, "", "ldapsearch", args...)
	if r.exit != 0 {
		t.Fatalf("ldapsearch %s through the gateway exited %d: %s", filter, r.exit, r.stderr)
	}
	entries, err := parseLDIF(r.stdout)
	if err != nil {
		t.Fatalf("ldapsearch's LDIF through the gateway: %v\n%s", err, r.stdout)
	}
	return entries
}

// uniqueDNs returns the entries' DNs sorted, failing on a duplicate.
func uniqueDNs(t *testing.T, entries []ldifEntry, where string) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for _, e := range entries {
		k := strings.ToLower(e.dn)
		if seen[k] {
			t.Fatalf("%s: %s came twice", where, e.dn)
		}
		seen[k] = true
		out = append(out, e.dn)
	}
	slices.Sort(out)
	return out
}

// sameDNs fails unless the two lists hold the same DNs.
func sameDNs(t *testing.T, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	missing, extra := 0, 0
	for _, dn := range want {
		if _, found := slices.BinarySearch(got, dn); !found {
			missing++
		}
	}
	for _, dn := range got {
		if _, found := slices.BinarySearch(want, dn); !found {
			extra++
		}
	}
	t.Errorf("through the gateway %d entries, directly %d: %d missing, %d extra", len(got), len(want), missing, extra)
}

func TestSearchPascomAuthFlowWithLdapUtils(t *testing.T) {
	gw := startProcGateway(t, "search-pascom", nil)
	for _, a := range []testbed.Account{testbed.JDoe, testbed.SOBrien} {
		t.Run(a.Login+": the proxy user finds exactly one DN, and ldapwhoami binds with it", func(t *testing.T) {
			entries := gatewaySearch(t, gw.addr, testbed.Service.UPN(), testbed.Service.Password, testbed.UsersDN,
				"(sAMAccountName="+a.Login+")", nil, "dn")
			if len(entries) != 1 {
				t.Fatalf("(sAMAccountName=%s) returned %d entries, want exactly one", a.Login, len(entries))
			}
			dn := entries[0].dn
			want, _ := ldap.ParseDN(a.DN())
			got, err := ldap.ParseDN(dn)
			if err != nil || !want.EqualFold(got) {
				t.Fatalf("the DN %q (%v) is not %s's %q", dn, err, a.Login, a.DN())
			}
			if len(entries[0].attrs) != 0 {
				t.Errorf("asked for dn only, got %v", entries[0].attrs)
			}
			r := searchTool(t, "", "ldapwhoami", "-x", "-H", "ldap://"+gw.addr, "-D", dn, "-w", a.Password)
			if r.exit != 0 {
				t.Fatalf("ldapwhoami -D %q exited %d: %s", dn, r.exit, r.stderr)
			}
			if out := strings.TrimSpace(r.stdout); out != "dn:"+dn {
				t.Errorf("ldapwhoami printed %q, want %q", out, "dn:"+dn)
			}
		})
	}
	t.Run("the bind with a found DN still needs the right password", func(t *testing.T) {
		r := searchTool(t, "", "ldapwhoami", "-x", "-H", "ldap://"+gw.addr, "-D", testbed.JDoe.DN(), "-w", wrongPassword("search-found-dn"))
		if r.exit != ldap.LDAPResultInvalidCredentials {
			t.Errorf("ldapwhoami with a wrong password exited %d, want 49: %s", r.exit, r.stderr)
		}
	})
	t.Run("a DN outside the base is refused like a wrong password", func(t *testing.T) {
		r := searchTool(t, "", "ldapwhoami", "-x", "-H", "ldap://"+gw.addr, "-D", "CN=John Doe,OU=AADDC Users,DC=evil,DC=test", "-w", testbed.JDoe.Password)
		if r.exit != ldap.LDAPResultInvalidCredentials {
			t.Errorf("ldapwhoami with a DN outside the base exited %d, want 49: %s", r.exit, r.stderr)
		}
	})
	lines := 0
	for _, l := range readLog(t, gw.logPath) {
		if l.str("msg") == "search" && l.num("result") == 0 && strings.HasPrefix(l.str("filter"), "(sAMAccountName=") {
			lines++
			for _, k := range []string{"client", "base", "scope", "entries", "dur"} {
				if _, ok := l[k]; !ok {
					t.Errorf("the search log line lacks %s: %v", k, l)
				}
			}
		}
	}
	if lines != 2 {
		t.Errorf("%d search log lines for the two lookups, want 2", lines)
	}
}

// matchAD compares a search through the gateway with the same search made
// directly against AD. Other tests change the shared test bed meanwhile (sync
// tests add and remove users), so a difference is looked at again, twice at
// most, before it fails the test: a real difference stays.
func matchAD(t *testing.T, gateway, direct func() []string) []string {
	t.Helper()
	for try := 1; ; try++ {
		got, want := gateway(), direct()
		if slices.Equal(got, want) || try == 3 {
			sameDNs(t, got, want)
			return got
		}
		t.Logf("try %d: %d entries through the gateway, %d directly; the test bed may have changed, searching again", try, len(got), len(want))
	}
}

func TestSearchPagedThroughTheGatewayMatchesAD(t *testing.T) {
	gw := startProcGateway(t, "search-paged", nil)
	proxyUser, proxyPassword := testbed.Service.UPN(), testbed.Service.Password
	t.Run("the bulk users come back in pages of 200, every one once, as from AD", func(t *testing.T) {
		got := matchAD(t, func() []string {
			return uniqueDNs(t, gatewaySearch(t, gw.addr, proxyUser, proxyPassword, testbed.LoadUsersDN, "(objectClass=user)",
				[]string{"-E", "pr=200/noprompt"}, "dn"), "through the gateway")
		}, func() []string {
			return uniqueDNs(t, syncLdapsearch(t, testbed.LoadUsersDN, "(objectClass=user)", []string{"dn"}), "directly")
		})
		if len(got) <= 1000 {
			t.Fatalf("%d bulk users; paging past AD's 1000 needs more (LDAPGATE_TEST_USERS=1200)", len(got))
		}
	})
	t.Run("pages of 1000 with the import's attributes carry AD's values", func(t *testing.T) {
		attrs := []string{"sAMAccountName", "displayName", "userPrincipalName"}
		byDN := func(entries []ldifEntry) map[string]string {
			m := map[string]string{}
			for _, e := range entries {
				var vals []string
				for _, a := range attrs {
					for _, v := range e.attrs[strings.ToLower(a)] {
						vals = append(vals, a+"="+string(v))
					}
				}
				m[strings.ToLower(e.dn)] = strings.Join(vals, ";")
			}
			return m
		}
		got := byDN(gatewaySearch(t, gw.addr, proxyUser, proxyPassword, testbed.LoadUsersDN, "(objectClass=user)",
			[]string{"-E", "pr=1000/noprompt"}, attrs...))
		want := byDN(syncLdapsearch(t, testbed.LoadUsersDN, "(objectClass=user)", attrs))
		if len(got) != len(want) {
			t.Errorf("%d entries through the gateway, %d directly", len(got), len(want))
		}
		for dn, v := range want {
			if got[dn] != v {
				t.Errorf("%s: %q through the gateway, %q directly", dn, got[dn], v)
				break
			}
		}
	})
	t.Run("the nested-group filter returns the same users as AD", func(t *testing.T) {
		got := matchAD(t, func() []string {
			return uniqueDNs(t, gatewaySearch(t, gw.addr, proxyUser, proxyPassword, testbed.UsersDN, pbxNestedFilter, nil, "dn"), "through the gateway")
		}, func() []string {
			return uniqueDNs(t, syncLdapsearch(t, testbed.UsersDN, pbxNestedFilter, []string{"dn"}), "directly")
		})
		for _, a := range []testbed.Account{testbed.JDoe, testbed.ASmith, testbed.SOBrien} {
			if !slices.ContainsFunc(got, func(dn string) bool { return strings.EqualFold(dn, a.DN()) }) {
				t.Errorf("%s (a nested member of PBX-Users) is missing", a.Login)
			}
		}
	})
	ended := 0
	for _, l := range readLog(t, gw.logPath) {
		if l.str("msg") == "paged search ended" {
			ended++
			if l.str("why") != "complete" {
				t.Errorf("a paged search ended otherwise than complete: %v", l)
			}
		}
	}
	if ended == 0 {
		t.Error("no paged search held an upstream connection (no \"paged search ended\" line)")
	}
}

func TestSearchRefusalsAndTheAllowList(t *testing.T) {
	gw := startProcGateway(t, "search-refusals", nil)
	url := "ldap://" + gw.addr
	proxyArgs := []string{"-x", "-H", url, "-D", testbed.Service.UPN(), "-w", testbed.Service.Password}
	tests := []struct {
		name  string
		stdin string
		tool  string
		args  []string
		want  int
	}{
		{"an anonymous search gets 50", "", "ldapsearch", []string{"-x", "-H", url, "-b", testbed.UsersDN, "(sAMAccountName=jdoe)", "dn"}, ldap.LDAPResultInsufficientAccessRights},
		{"a user's search gets 50", "", "ldapsearch", []string{"-x", "-H", url, "-D", testbed.JDoe.UPN(), "-w", testbed.JDoe.Password, "-b", testbed.UsersDN, "(sAMAccountName=jdoe)", "dn"}, ldap.LDAPResultInsufficientAccessRights},
		{"a search of the domain root above the served OU gets 32", "", "ldapsearch", append(slices.Clone(proxyArgs), "-b", testbed.BaseDN, "(sAMAccountName=jdoe)", "dn"), ldap.LDAPResultNoSuchObject},
		{"a search of another domain gets 32", "", "ldapsearch", append(slices.Clone(proxyArgs), "-b", "DC=evil,DC=test", "(objectClass=*)", "dn"), ldap.LDAPResultNoSuchObject},
		{"modify gets 53", "dn: " + testbed.JDoe.DN() + "\nchangetype: modify\nreplace: telephoneNumber\ntelephoneNumber: +1 555 9999\n", "ldapmodify", slices.Clone(proxyArgs), ldap.LDAPResultUnwillingToPerform},
		{"add gets 53", "dn: CN=Mallory,OU=AADDC Users," + testbed.BaseDN + "\nobjectClass: user\nsAMAccountName: mallory\n", "ldapadd", slices.Clone(proxyArgs), ldap.LDAPResultUnwillingToPerform},
		{"delete gets 53", "", "ldapdelete", append(slices.Clone(proxyArgs), testbed.BJones.DN()), ldap.LDAPResultUnwillingToPerform},
		{"modrdn gets 53", "", "ldapmodrdn", append(slices.Clone(proxyArgs), testbed.BJones.DN(), "CN=Robert Jones"), ldap.LDAPResultUnwillingToPerform},
		{"compare gets 53", "", "ldapcompare", append(slices.Clone(proxyArgs), testbed.JDoe.DN(), "sAMAccountName:jdoe"), ldap.LDAPResultUnwillingToPerform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := searchTool(t, tt.stdin, tt.tool, tt.args...)
			if r.exit != tt.want {
				t.Errorf("%s exited %d, want %d: %s%s", tt.tool, r.exit, tt.want, r.stdout, r.stderr)
			}
		})
	}
	t.Run("a search outside the base names no matched DN", func(t *testing.T) {
		r := searchTool(t, "", "ldapsearch", append(slices.Clone(proxyArgs), "-b", "OU=Nowhere,"+testbed.BaseDN, "(objectClass=*)", "dn")...)
		if r.exit != ldap.LDAPResultNoSuchObject || strings.Contains(strings.ToLower(r.stdout+r.stderr), "matched") {
			t.Errorf("ldapsearch exited %d: %s%s", r.exit, r.stdout, r.stderr)
		}
	})

	t.Run("the rootDSE names the served domain, the paging control and WhoAmI", func(t *testing.T) {
		r := searchTool(t, "", "ldapsearch", "-x", "-LLL", "-H", url, "-s", "base", "-b", "", "(objectClass=*)", "+")
		for _, want := range []string{
			"namingContexts: " + testbed.BaseDN, "defaultNamingContext: " + testbed.BaseDN, "supportedLDAPVersion: 3",
			"supportedControl: 1.2.840.113556.1.4.319", "supportedExtension: 1.3.6.1.4.1.4203.1.11.3", "vendorName: ldapgate",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("the rootDSE lacks %q (exit %d):\n%s%s", want, r.exit, r.stdout, r.stderr)
			}
		}
	})

	hidden := []string{"whenCreated", "pwdLastSet", "badPwdCount", "uSNChanged", "objectSid", "lockoutTime"}
	t.Run("attributes off the allow-list are not returned even by name, though AD has them", func(t *testing.T) {
		direct := syncLdapsearch(t, testbed.UsersDN, "(sAMAccountName=jdoe)", hidden)
		if len(direct) != 1 || len(direct[0].attrs["whencreated"]) == 0 || len(direct[0].attrs["pwdlastset"]) == 0 {
			t.Fatalf("AD itself does not return whenCreated and pwdLastSet for jdoe: %v", direct)
		}
		entries := gatewaySearch(t, gw.addr, testbed.Service.UPN(), testbed.Service.Password, testbed.UsersDN, "(sAMAccountName=jdoe)", nil,
			append(slices.Clone(hidden), "mail", "telephoneNumber")...)
		if len(entries) != 1 {
			t.Fatalf("%d entries for jdoe", len(entries))
		}
		for _, h := range hidden {
			if _, ok := entries[0].attrs[strings.ToLower(h)]; ok {
				t.Errorf("%s came back through the gateway", h)
			}
		}
		for _, w := range []string{"mail", "telephonenumber"} {
			if len(entries[0].attrs[w]) == 0 {
				t.Errorf("the allowed %s did not come back", w)
			}
		}
	})
	t.Run("* returns the allow-list and nothing else", func(t *testing.T) {
		entries := gatewaySearch(t, gw.addr, testbed.Service.UPN(), testbed.Service.Password, testbed.UsersDN, "(sAMAccountName=jdoe)", nil, "*", "+")
		if len(entries) != 1 {
			t.Fatalf("%d entries for jdoe", len(entries))
		}
		allowed := configs.Default().Search.Attributes
		for name := range entries[0].attrs {
			if !slices.ContainsFunc(allowed, func(a string) bool { return strings.EqualFold(a, name) }) {
				t.Errorf("%s came back for *, off the allow-list", name)
			}
		}
		if len(entries[0].attrs["samaccountname"]) == 0 || len(entries[0].attrs["memberof"]) == 0 {
			t.Errorf("* lacks sAMAccountName or memberOf: %v", entries[0].attrs)
		}
	})
}

// searchCode runs (sAMAccountName=jdoe) on l and returns the result code (0 on
// success) and how long it took; anything but an LDAP answer fails the test.
func searchCode(t *testing.T, l *ldap.Conn) (uint16, time.Duration) {
	t.Helper()
	start := time.Now()
	res, err := l.Search(ldap.NewSearchRequest(testbed.UsersDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(sAMAccountName=jdoe)", []string{"sAMAccountName"}, nil))
	took := time.Since(start)
	if err == nil {
		if len(res.Entries) != 1 {
			t.Fatalf("(sAMAccountName=jdoe): %d entries", len(res.Entries))
		}
		return 0, took
	}
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode >= ldap.ErrorNetwork {
		t.Fatalf("search: no LDAP answer: %v", err)
	}
	return le.ResultCode, took
}

func TestSearchWhenBothDCsAreDown(t *testing.T) {
	// A search fails over (it is read-only), so with both DCs hung it may wait
	// a dial or an operation timeout on each: both are 2s here.
	const opTimeout = 2 * time.Second
	for _, tt := range []struct {
		name  string
		fault faultproxy.Fault
	}{
		{"refusing connections", faultproxy.Refuse()},
		{"blackholed", faultproxy.Blackhole()},
	} {
		t.Run("both DCs "+tt.name+": a search gets 52, the gateway keeps serving, and searches work once they are back", func(t *testing.T) {
			dc1, dc2 := startFaultProxy(t, "127.0.0.1:636"), startFaultProxy(t, "127.0.0.2:636")
			gw := startInprocGateway(t, "search-dcs-down-"+strings.Fields(tt.name)[0], map[string]any{
				"upstream.servers": []any{
					map[string]any{"url": "ldaps://" + dc1.Addr(), "server_name": testbed.DC1Name},
					map[string]any{"url": "ldaps://" + dc2.Addr(), "server_name": testbed.DC2Name},
				},
				"upstream.op_timeout":             opTimeout.String(),
				"upstream.dial_timeout":           opTimeout.String(),
				"upstream.breaker.failures":       2,
				"upstream.breaker.probe_interval": "1s",
			})
			l, err := dialGateway(gw.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if code, _ := bindCode(t, l, testbed.Service.UPN(), testbed.Service.Password); code != 0 {
				t.Fatalf("the proxy user's bind: %d", code)
			}
			if code, _ := searchCode(t, l); code != 0 {
				t.Fatalf("the warm-up search: %d", code)
			}

			setFault(t, dc1, tt.fault)
			setFault(t, dc2, tt.fault)
			for i := range 4 {
				code, took := searchCode(t, l)
				if code != ldap.LDAPResultUnavailable {
					t.Fatalf("search %d with both DCs %s: %d after %s, want 52", i, tt.name, code, took)
				}
				if bound := 2*opTimeout + 2*time.Second; took > bound {
					t.Errorf("search %d took %s, longer than %s", i, took, bound)
				}
			}
			s := gw.cluster.Stats()
			if s[0].Breaker == upstream.BreakerClosed || s[1].Breaker == upstream.BreakerClosed {
				t.Errorf("after 4 failed searches the breakers are %s and %s, want both open", s[0].Breaker, s[1].Breaker)
			}
			// The process keeps serving: a new client reads the rootDSE.
			other, err := dialGateway(gw.addr)
			if err != nil {
				t.Fatalf("connect while the DCs are down: %v", err)
			}
			defer other.Close()
			res, err := other.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"namingContexts"}, nil))
			if err != nil || len(res.Entries) != 1 {
				t.Fatalf("the rootDSE while both DCs are down: %v", err)
			}

			setFault(t, dc1, faultproxy.None())
			setFault(t, dc2, faultproxy.None())
			deadline := time.Now().Add(20 * time.Second)
			for {
				code, took := searchCode(t, l)
				if code == 0 {
					break
				}
				if code != ldap.LDAPResultUnavailable || time.Now().After(deadline) {
					t.Fatalf("after lifting the faults a search got %d (after %s)\n  %s\n  %s", code, took, describeDC(gw.cluster.Stats()[0]), describeDC(gw.cluster.Stats()[1]))
				}
				time.Sleep(100 * time.Millisecond) // pace the searches while the probes run
			}
			if code, _ := bindAt(t, gw.addr, testbed.Service.UPN(), testbed.Service.Password); code != 0 {
				t.Errorf("a new proxy bind after the DCs came back: %d", code)
			}
			unavailable := 0
			for _, line := range readLog(t, gw.logPath) {
				if line.str("msg") == "search" && line.num("result") == ldap.LDAPResultUnavailable {
					unavailable++
				}
			}
			if unavailable < 4 {
				t.Errorf("%d search log lines with result 52, want at least 4", unavailable)
			}
		})
	}
}

func TestSearchReferencesAreNeitherChasedNorPassedOn(t *testing.T) {
	// Served from the domain root, where Samba answers a subtree search with a
	// reference to the Configuration partition as well as the entries.
	gw := startProcGateway(t, "search-references", map[string]any{"search.base_dn": testbed.BaseDN})
	args := []string{"-x", "-H", "ldap://" + gw.addr, "-D", testbed.Service.UPN(), "-w", testbed.Service.Password,
		"-b", testbed.BaseDN, "(sAMAccountName=jdoe)", "dn"}
	through := searchTool(t, "", "ldapsearch", args...)
	if through.exit != 0 || !strings.Contains(through.stdout, "dn: "+testbed.JDoe.DN()) {
		t.Fatalf("ldapsearch from the domain root through the gateway exited %d:\n%s%s", through.exit, through.stdout, through.stderr)
	}
	if strings.Contains(through.stdout, "ref:") || strings.Contains(through.stdout, "numReferences") {
		t.Errorf("the gateway passed a search reference on:\n%s", through.stdout)
	}
	// The same search straight to dc1 gets the reference: the test measures
	// something.
	direct := exec.Command("ldapsearch", "-x", "-o", "nettimeout=10", "-H", testbed.DC1URL, "-D", testbed.Service.UPN(), "-w", testbed.Service.Password,
		"-b", testbed.BaseDN, "(sAMAccountName=jdoe)", "dn")
	direct.Env = append(os.Environ(), "LDAPTLS_CACERT="+testbed.CAFile(), "LDAPTLS_REQCERT=demand")
	out, err := direct.Output()
	if err != nil || !strings.Contains(string(out), "ref: ") {
		t.Errorf("directly from dc1 the search gave no reference (%v):\n%s", err, out)
	}
}
